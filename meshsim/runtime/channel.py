"""The call path: admission (limits, service breaker), then a call's attempts, then accounting.

`MeshChannel` is one client's channel to one service. `start()` admits a call and
runs it as a `CallRun`: a small state machine on the completion queue that sends
attempts (the first, retries after backoff, hedges on their delay), decides from
each attempt's status what happens next, and ends the call exactly once.

Commit (A6): a streaming call may be retried or hedged only until the first attempt
starts answering the caller. The transport then calls `CallRun.commit(handle)`: the
other attempts are cancelled, no new ones are sent, and that attempt alone decides
how the call ends.

Deadlines: a call's deadline bounds every attempt and hedge (an attempt's own
deadline is the earlier of the call's and its per-attempt timeout), and the call
never outlives it; when it passes, the attempts still running end with
DEADLINE_EXCEEDED, which is what each of them records.

Failures of the call path itself: a CallRun's steps run as callbacks of a timer
queue or a transport (in live mode, of the asyncio loop, which would swallow an
exception and leave the call open for ever). So every entry point of a call (its
begin, a retry, a hedge, its deadline, an attempt's end, a commit) catches what it
raises: the call ends INTERNAL, once, and one line is logged at warning level
(the traceback at debug level). A transport whose start_call raises something other
than EndpointGone ends that attempt INTERNAL.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable

import trio

from meshsim.core.breaker import BreakerState, CircuitBreaker
from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.endpoint import Endpoint
from meshsim.core.events import (
    AttemptFinished,
    AttemptKind,
    BreakerChanged,
    RequestFinished,
    RequestStarted,
    RetryRefused,
)
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import RetryBudget, RetryThrottle
from meshsim.core.status import StatusCode
from meshsim.runtime.balancer import Balancer
from meshsim.runtime.lean_call import LeanCall
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import Cancellable, Timers
from meshsim.runtime.transport import AttemptHandle, EndpointGone, Transport

Finished = Callable[[RequestFinished], None]
# on_ended(started, finished): what a load generator needs of a call's end.
Ended = Callable[[float, float], None]


def _times(on_ended: Ended) -> Finished:
    return lambda event: on_ended(event.started, event.finished)


_log = logging.getLogger(__name__)

# How many extra picks a retry or hedge may take to find a replica it has not tried.
_REPICKS = 8
# The permit of an attempt to a replica without a breaker.
NO_BREAKER = -1
_NONE: list[Endpoint] = []


class MeshChannel:
    """One client's channel to one service: policies and a balancer's picker in front of a transport.

    Every call started here ends in exactly one RequestFinished on the bus. A call
    for which no endpoint is pickable fails its attempt at once with UNAVAILABLE, as
    a gRPC channel in TRANSIENT_FAILURE fails a call that is not wait-for-ready.
    """

    def __init__(
        self,
        client: str,
        service: str,
        balancer: Balancer,
        transport: Transport,
        observer: Observer,
        timers: Timers,
        policies: CallPolicies | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`rng`: the stream retry backoff's jitter draws from (runtime.assembly.Streams' "backoff")."""
        self.client = client
        self.service = service
        self.balancer = balancer
        self.transport = transport
        self.observer = observer
        self.timers = timers
        self.policies = policies or CallPolicies()
        self.rng = rng or random.Random(f"channel/{client}/{service}")
        self._announce = observer.wants(RequestStarted)
        policies = self.policies
        self.throttle = None if policies.throttle is None else RetryThrottle(policies.throttle)
        self.budget = None if policies.budget is None else RetryBudget(policies.budget)
        self.service_breaker = None if policies.service_breaker is None else CircuitBreaker(policies.service_breaker)
        # One breaker per replica, made when the replica is first called (discovery adds replicas later).
        self._replica_breaker = policies.replica_breaker
        self._replica_breakers: dict[str, CircuitBreaker] = {}
        # Which policy each call pattern runs under, decided once rather than per call.
        self.policy_by_pattern = {p: policies.for_pattern(p) for p in Pattern}
        self.active_calls = 0
        self._per_endpoint = None if policies.limits is None else policies.limits.max_requests_per_endpoint
        # Every call not yet ended, in start order (a dict, so the order is never an address's).
        self._live: dict[CallRun | LeanCall, None] = {}
        self._pending: collections.deque[CallRun] = collections.deque()
        self.pending_calls = 0
        # With no policy that could act on a call, a call that finds an endpoint is one attempt and
        # needs no CallRun (runtime/lean_call.py).
        self._lean = (
            policies.limits is None
            and self.service_breaker is None
            and self._replica_breaker is None
            and self.throttle is None
            and self.budget is None
            and all(retry is None and hedging is None for retry, hedging in self.policy_by_pattern.values())
        )

    # --- admission ----------------------------------------------------------------

    def start(
        self, call: CallSpec, on_finished: Finished | None = None, policies: CallPolicies | None = None
    ) -> CallRun:
        """Start a call; `policies` replaces the channel's retry and hedging for this call only."""
        now = self.timers.now()
        if self._announce:
            self.observer.emit(RequestStarted(self.client, self.service, call.pattern, now))
        run = CallRun(self, call, now, on_finished)
        if policies is not None:
            run.retry, run.hedging = policies.for_pattern(call.pattern)
        self._live[run] = None
        try:
            if self.service_breaker is not None:
                allowed, moved = self.service_breaker.try_acquire(now)
                self._breaker_moved("service", self.service, moved, now)
                if not allowed:
                    run.finish(StatusCode.UNAVAILABLE)  # an open breaker fails fast
                    return run
                run.breaker_permit = self.service_breaker.generation
            limits = self.policies.limits
            if limits is not None and self.active_calls >= limits.max_requests:
                if self.pending_calls >= limits.max_pending:
                    run.finish(StatusCode.UNAVAILABLE)  # Envoy's overflow
                    return run
                self._pending.append(run)
                self.pending_calls += 1
                run.wait_for_slot()
                return run
        except Exception as error:
            run.fail("admission", error)
            return run
        self.active_calls += 1
        run.begin()
        return run

    def send(self, call: CallSpec, on_ended: Ended | None = None) -> None:
        """Start a call whose run the caller does not keep (a load generator's); `on_ended(started,
        finished)` when it ends. On a channel with no policy, as a LeanCall; otherwise as `start`."""
        if not self._lean:
            self.start(call, None if on_ended is None else _times(on_ended))
            return
        endpoint = self.balancer.picker.pick(call.key)
        if endpoint is None:
            # No endpoint: the general path waits for one (warming) or fails the attempt; pickers
            # that find none draw nothing, so picking again there changes no random stream.
            self.start(call, None if on_ended is None else _times(on_ended))
            return
        now = self.timers.now()
        if self._announce:
            self.observer.emit(RequestStarted(self.client, self.service, call.pattern, now))
        lean = LeanCall(self, call, endpoint, now, on_ended)
        self._live[lean] = None
        self.active_calls += 1
        lean.send(None if call.deadline is None else now + call.deadline)

    def lean_ended(self, lean: LeanCall) -> None:
        self._live.pop(lean, None)
        self.active_calls -= 1

    async def call(self, call: CallSpec, policies: CallPolicies | None = None) -> tuple[RequestFinished, CallRun]:
        """Start a call and wait for how it ended (for code that wants one task per call).

        Returns the call's RequestFinished and its CallRun, whose `handle` is the transport's
        handle of the attempt that decided it (a live transport keeps the response there).
        Cancelling the waiting task ends the call CANCELLED.
        """
        finished = trio.Event()
        result: list[RequestFinished] = []

        def store(event: RequestFinished) -> None:
            result.append(event)
            finished.set()

        run = self.start(call, store, policies)
        try:
            await finished.wait()
        except BaseException:
            run.finish(StatusCode.CANCELLED)
            raise
        return result[0], run

    def abort(self, status: StatusCode) -> None:
        """End every call still going (in flight, in backoff, waiting for a slot) with `status`."""
        for run in list(self._live):
            run.finish(status, cancel_with=status)

    def call_ended(self, run: CallRun, status: StatusCode, now: float) -> None:
        self._live.pop(run, None)
        if run.queued:
            self.pending_calls -= 1  # its deadline passed while it waited for a slot
            run.queued = False
        permit = run.breaker_permit
        if permit is not None:
            assert self.service_breaker is not None
            if run.attempts and status is not StatusCode.CANCELLED:
                moved = self.service_breaker.record(now, status, now - run.started, permit)
                self._breaker_moved("service", self.service, moved, now)
            else:
                # No outcome: the caller gave up, the limits refused it, or its deadline passed in the queue.
                self.service_breaker.release(permit)
        if run.admitted:
            self.active_calls -= 1
            while self._pending:
                waiting = self._pending.popleft()
                if not waiting.done:
                    self.pending_calls -= 1
                    waiting.queued = False
                    self.active_calls += 1
                    waiting.begin()
                    break

    # --- attempts -------------------------------------------------------------------

    def pick(self, key: str | None, avoid: list[Endpoint]) -> Endpoint | None:
        """The picker's choice, unless this call already tried it: then another pick or two, and
        failing that the first usable endpoint not yet tried (Envoy's previous_hosts predicate).
        An endpoint at its per-endpoint limit is never chosen."""
        balancer = self.balancer
        picker = balancer.picker
        cap = self._per_endpoint
        endpoint = picker.pick(key)
        if endpoint is None or (endpoint not in avoid and (cap is None or endpoint.in_flight < cap)):
            return endpoint
        for _ in range(min(len(balancer.endpoints), _REPICKS)):
            candidate = picker.pick(key)
            if candidate is not None and candidate not in avoid and (cap is None or candidate.in_flight < cap):
                return candidate
        for candidate in balancer.endpoints:
            if candidate not in avoid and balancer.usable(candidate) and (cap is None or candidate.in_flight < cap):
                return candidate
        if cap is not None:
            # Every usable replica is tried or full: a tried one with room, else none.
            return next((e for e in avoid if balancer.usable(e) and e.in_flight < cap), None)
        return endpoint

    def breaker_state(self, endpoint: str) -> BreakerState | None:
        """The state of `endpoint`'s breaker (None: no breaker, or none called yet)."""
        breaker = self._replica_breakers.get(endpoint)
        return None if breaker is None else breaker.state

    def replica_permit(self, endpoint: Endpoint, now: float) -> int | None:
        """May an attempt go to `endpoint` now? The permit (its breaker's generation, or NO_BREAKER),
        or None when the replica's breaker refuses."""
        config = self._replica_breaker
        if config is None:
            return NO_BREAKER
        breaker = self._replica_breakers.get(endpoint.name)
        if breaker is None:
            breaker = self._replica_breakers[endpoint.name] = CircuitBreaker(config)
        allowed, moved = breaker.try_acquire(now)
        self._breaker_moved("replica", endpoint.name, moved, now)
        return breaker.generation if allowed else None

    def attempt_ended(
        self,
        endpoint: Endpoint | None,
        kind: AttemptKind,
        status: StatusCode,
        started: float,
        now: float,
        permit: int = NO_BREAKER,
        blame: bool = True,
    ) -> None:
        """An attempt ended; with `blame` False (meshsim's own failure, not the replica's) it counts
        against neither the replica's breaker nor its outlier detection."""
        name = None if endpoint is None else endpoint.name
        direct = self.observer.direct(AttemptFinished)
        if direct is not None:
            direct(self.client, self.service, name, kind, status, started, now)
        else:
            self.observer.emit(AttemptFinished(self.client, self.service, name, kind, status, started, now))
        if endpoint is None:
            return
        if permit != NO_BREAKER:
            breaker = self._replica_breakers[endpoint.name]
            if status is StatusCode.CANCELLED or not blame:
                breaker.release(permit)  # a hedge that lost, a call its caller gave up: no outcome
            else:
                moved = breaker.record(now, status, now - started, permit)
                self._breaker_moved("replica", endpoint.name, moved, now)
        if blame:
            self.balancer.record_outcome(endpoint, status, now - started, now)

    def refused(self, reason: str, now: float) -> None:
        self.observer.emit(RetryRefused(now, self.client, self.service, reason))

    def _breaker_moved(self, scope: str, target: str, moved: BreakerState | None, now: float) -> None:
        if moved is not None:
            self.observer.emit(BreakerChanged(now, self.client, scope, target, moved.value))


class Attempt:
    __slots__ = ("endpoint", "handle", "kind", "permit", "started")

    def __init__(self, endpoint: Endpoint, kind: AttemptKind, started: float, permit: int) -> None:
        self.endpoint = endpoint
        self.kind = kind
        self.started = started
        self.permit = permit  # of the replica's breaker
        self.handle: AttemptHandle | None = None


class CallRun:
    """One call from admission to its single RequestFinished."""

    __slots__ = (
        "_backoff_step",
        "_commit_first",
        "_committed",
        "_deadline_timer",
        "_decider",
        "_next_timer",
        "_on_finished",
        "_retry_reserved",
        "_waiting_for_picker",
        "active",
        "admitted",
        "attempts",
        "breaker_permit",
        "call",
        "channel",
        "deadline_at",
        "done",
        "handle",
        "hedging",
        "last_status",
        "queued",
        "retry",
        "started",
        "tried",
    )

    def __init__(self, channel: MeshChannel, call: CallSpec, started: float, on_finished: Finished | None) -> None:
        self.channel = channel
        self.call = call
        self.started = started
        self.deadline_at = None if call.deadline is None else started + call.deadline
        self.retry, self.hedging = channel.policy_by_pattern[call.pattern]
        self.active: list[Attempt] = []
        self.tried: list[Endpoint] = []
        self.attempts = 0
        self.done = False
        self.admitted = False
        self.breaker_permit: int | None = None  # the service breaker's generation that let it through
        self.queued = False
        self.last_status = StatusCode.UNAVAILABLE
        self._on_finished = on_finished
        self._deadline_timer: Cancellable | None = None
        self._next_timer: Cancellable | None = None
        self._backoff_step = 0
        self._retry_reserved = False
        self._waiting_for_picker = False
        self._decider: Endpoint | None = None
        self._committed: AttemptHandle | None = None
        self._commit_first = False
        self.handle: AttemptHandle | None = None

    # --- lifecycle --------------------------------------------------------------------

    def wait_for_slot(self) -> None:
        """Queued behind a concurrency limit: the deadline still runs."""
        self.queued = True
        if self.deadline_at is not None:
            self._deadline_timer = self.channel.timers.call_at(self.deadline_at, self._deadline_passed)

    def begin(self) -> None:
        self.admitted = True
        try:
            timers = self.channel.timers
            needs_clock = self.retry is not None or self.hedging is not None
            if self.deadline_at is not None and needs_clock and self._deadline_timer is None:
                self._deadline_timer = timers.call_at(self.deadline_at, self._deadline_passed)
            self._send(AttemptKind.FIRST)
            self._schedule_hedge()
        except Exception as error:
            self.fail("the first attempt", error)

    def finish(self, status: StatusCode, cancel_with: StatusCode = StatusCode.CANCELLED) -> None:
        if self.done:
            return
        self.done = True
        channel = self.channel
        now = channel.timers.now()
        for timer in (self._deadline_timer, self._next_timer):
            if timer is not None:
                timer.cancel()
        # A timer holds this run's bound method: dropped, the run and its timers are not a cycle,
        # and reference counting frees them without the collector.
        self._deadline_timer = self._next_timer = None
        if self._retry_reserved and channel.budget is not None:
            channel.budget.active_retries -= 1
            self._retry_reserved = False
        if self.active:
            for attempt in list(self.active):
                try:
                    assert attempt.handle is not None
                    attempt.handle.cancel(cancel_with)
                except Exception as error:  # the call still ends, and says something went wrong
                    self._report("cancelling an attempt", error, ends_internal=True)
                    status = StatusCode.INTERNAL
        decider = self._decider
        event = RequestFinished(
            client=channel.client,
            service=channel.service,
            endpoint=None if decider is None else decider.name,
            pattern=self.call.pattern,
            status=status,
            started=self.started,
            finished=now,
            key=self.call.key,
            attempts=self.attempts,
            method=self.call.method,
        )
        # Whatever a listener does, the call is accounted for and its caller told.
        try:
            channel.observer.emit(event)
        finally:
            try:
                channel.call_ended(self, status, now)
            finally:
                if self._on_finished is not None:
                    self._on_finished(event)

    def fail(self, where: str, error: Exception) -> None:
        """`error` was raised on this call's path, at `where`: log it, and end the call INTERNAL
        unless it has already ended (or is ending: then it keeps the status it is ending with)."""
        ending = self.done
        self._report(where, error, ends_internal=not ending)
        if not ending:
            try:
                self.finish(StatusCode.INTERNAL, cancel_with=StatusCode.INTERNAL)
            except Exception as again:  # raised after the call ended (by a listener, the caller's callback)
                _log.debug("and once the call had ended", exc_info=again)

    def _report(self, where: str, error: Exception, ends_internal: bool) -> None:
        channel = self.channel
        call = self.call
        _log.warning(
            "call %s -> %s %s: %s raised %s: %s; %s",
            channel.client,
            channel.service,
            call.method or call.pattern.value,
            where,
            type(error).__name__,
            error,
            "it ends INTERNAL" if ends_internal else "the call had already been decided",
        )
        _log.debug("the traceback of the error above", exc_info=error)

    def commit(self, handle: AttemptHandle | None = None) -> None:
        """The attempt behind `handle` has started answering the caller: it alone decides the call.

        Without a handle (the call's requests outgrew what may be kept for a retry) the call
        commits to its oldest attempt in flight, or, waiting in backoff, ends with the status
        of the attempt before.
        """
        if self.done or self._committed is not None:
            return
        try:
            if handle is None:
                if not self.admitted or (self._waiting_for_picker and self.attempts == 0):
                    # Still waiting for a slot, or for a first replica: its first attempt is the one.
                    self._commit_first = True
                    return
                if not self.active:
                    self.finish(self.last_status)
                    return
                handle = self.active[0].handle
            assert handle is not None
            self._committed = handle
            if self._next_timer is not None:
                self._next_timer.cancel()
                self._next_timer = None
            for attempt in list(self.active):
                if attempt.handle is not handle:
                    assert attempt.handle is not None
                    attempt.handle.cancel(StatusCode.CANCELLED)
        except Exception as error:
            self.fail("the commit", error)

    def _deadline_passed(self) -> None:
        self._deadline_timer = None
        try:
            self.finish(StatusCode.DEADLINE_EXCEEDED, cancel_with=StatusCode.DEADLINE_EXCEEDED)
        except Exception as error:
            self.fail("the deadline", error)

    # --- attempts ---------------------------------------------------------------------

    def _send(self, kind: AttemptKind) -> None:
        channel = self.channel
        now = channel.timers.now()
        self.attempts += 1
        # Hedges spread over replicas not tried yet (a hedge on the replica that is slow is no
        # hedge); retries do so only with previous_hosts, as Envoy's predicate, not gRPC's picker.
        retry = self.retry
        avoid = self.tried if kind is AttemptKind.HEDGE or (retry is not None and retry.previous_hosts) else _NONE
        endpoint = channel.pick(self.call.key, avoid)
        if endpoint is None and channel.balancer.warming:
            # No replica has passed a first check yet: wait for one, as gRPC queues a pick while
            # its channel connects (the call's deadline still runs).
            self.attempts -= 1
            self._wait_for_picker(kind)
            return
        if endpoint is None:
            channel.attempt_ended(None, kind, StatusCode.UNAVAILABLE, now, now)
            if not self._unsent_hedge(kind):
                self._after(None, kind, StatusCode.UNAVAILABLE, None, now)
            return
        self.tried.append(endpoint)
        permit = channel.replica_permit(endpoint, now)
        if permit is None:
            channel.attempt_ended(None, kind, StatusCode.UNAVAILABLE, now, now)
            if not self._unsent_hedge(kind):
                self._after(endpoint, kind, StatusCode.UNAVAILABLE, None, now)
            return
        deadline_at = self.deadline_at
        if retry is not None and retry.per_attempt_timeout is not None:
            own = now + retry.per_attempt_timeout
            deadline_at = own if deadline_at is None else min(deadline_at, own)
        attempt = Attempt(endpoint, kind, now, permit)
        endpoint.in_flight += 1
        self.active.append(attempt)

        def done(status: StatusCode, pushback: int | None) -> None:
            try:
                endpoint.in_flight -= 1
                self.active.remove(attempt)
                ended = channel.timers.now()
                channel.attempt_ended(endpoint, kind, status, now, ended, permit)
                committed = self._committed
                if committed is not None and attempt.handle is not committed:
                    return  # cancelled by the commit: counted, but it decides nothing
                if not self.done:
                    self.handle = attempt.handle  # the latest attempt to end is the one that decides
                self._after(endpoint, kind, status, pushback, ended)
            except Exception as error:
                self.fail("the end of an attempt", error)

        answered = None
        if self.call.pattern is not Pattern.UNARY and (self.retry is not None or self.hedging is not None):

            def answered() -> None:
                # The attempt started answering the caller: the call is committed to it (A6).
                try:
                    self.commit(attempt.handle)
                except Exception as error:
                    self.fail("the answer of an attempt", error)

        try:
            start_call = channel.transport.start_call
            if answered is None:
                attempt.handle = start_call(endpoint.name, self.call, deadline_at, done)
            else:
                attempt.handle = start_call(endpoint.name, self.call, deadline_at, done, on_answer=answered)
        except EndpointGone:
            endpoint.in_flight -= 1
            self.active.remove(attempt)
            channel.attempt_ended(endpoint, kind, StatusCode.UNAVAILABLE, now, now, permit)
            self._after(endpoint, kind, StatusCode.UNAVAILABLE, None, now)
            return
        except Exception:
            # Not a failure the transport knows how to report: this attempt ends INTERNAL, and so
            # (by the caller's handler) does the call.
            endpoint.in_flight -= 1
            self.active.remove(attempt)
            channel.attempt_ended(endpoint, kind, StatusCode.INTERNAL, now, now, permit, blame=False)
            raise
        if self._commit_first:
            self._commit_first = False
            self._committed = attempt.handle

    def _wait_for_picker(self, kind: AttemptKind) -> None:
        channel = self.channel
        timers = channel.timers
        if self.deadline_at is not None and self._deadline_timer is None:
            self._deadline_timer = timers.call_at(self.deadline_at, self._deadline_passed)

        def resume() -> None:
            # Called by the balancer, wherever it runs: back onto the call path's own timers. In the
            # simulator that is after every verdict due at this instant, so a cluster whose replicas
            # pass their first checks together takes its waiting calls with all of them in.
            timers.call_at(timers.now(), self._resume, kind)

        self._waiting_for_picker = True
        channel.balancer.wait_for_picker(resume)

    def _resume(self, kind: AttemptKind) -> None:
        self._waiting_for_picker = False
        if self.done:
            return
        try:
            self._send(kind)
            if self._next_timer is None:
                self._schedule_hedge()
        except Exception as error:
            self.fail("an attempt that waited for a replica", error)

    def _unsent_hedge(self, kind: AttemptKind) -> bool:
        """A hedge that found no replica to go to (none pickable, or its breaker refused) is no answer:
        while attempts are in flight they still decide the call."""
        return kind is AttemptKind.HEDGE and bool(self.active)

    def _after(
        self, endpoint: Endpoint | None, kind: AttemptKind, status: StatusCode, pushback: int | None, now: float
    ) -> None:
        """An attempt ended: decide what the call does next."""
        channel = self.channel
        if kind is AttemptKind.RETRY and self._retry_reserved and channel.budget is not None:
            channel.budget.active_retries -= 1
            self._retry_reserved = False
        if self.done:
            return
        retry, hedging = self.retry, self.hedging
        throttle = channel.throttle
        if throttle is not None:
            if status is StatusCode.OK:
                throttle.record_success()
            elif (retry is not None and status in retry.retryable_status_codes) or (
                hedging is not None and status in hedging.non_fatal_status_codes
            ):
                throttle.record_failure()
        self.last_status = status
        if status is StatusCode.OK or self._committed is not None:
            self._decider = endpoint
            self.finish(status)
        elif retry is not None:
            self._decider = endpoint
            self._maybe_retry(status, pushback, now)
        elif hedging is not None:
            if status not in hedging.non_fatal_status_codes:
                self._decider = endpoint
                self.finish(status)  # a fatal status ends the call, hedges or not
            elif pushback is not None and pushback < 0:
                self._stop_hedging_or_finish(endpoint, status)
            elif self.attempts < hedging.attempts:
                if self._next_timer is not None:
                    self._next_timer.cancel()
                delay = 0.0 if pushback is None else pushback / 1000.0
                self._next_timer = channel.timers.call_at(now + delay, self._hedge)
            else:
                self._stop_hedging_or_finish(endpoint, status)
        else:
            self._decider = endpoint
            self.finish(status)

    def _maybe_retry(self, status: StatusCode, pushback: int | None, now: float) -> None:
        retry = self.retry
        assert retry is not None
        channel = self.channel
        timed_out_attempt = (
            status is StatusCode.DEADLINE_EXCEEDED and self.deadline_at is not None and now < self.deadline_at
        ) or (status is StatusCode.DEADLINE_EXCEEDED and self.deadline_at is None)
        retryable = status in retry.retryable_status_codes or (
            timed_out_attempt and retry.per_attempt_timeout is not None
        )
        if not retryable or (pushback is not None and pushback < 0) or self.attempts >= retry.attempts:
            self.finish(status)
            return
        if channel.throttle is not None and not channel.throttle.allows_retry():
            channel.refused("throttle", now)
            self.finish(status)
            return
        if channel.budget is not None:
            if not channel.budget.allows_retry(channel.active_calls):
                channel.refused("budget", now)
                self.finish(status)
                return
            channel.budget.active_retries += 1  # counted from now: waiting in backoff uses the budget
            self._retry_reserved = True
        if pushback is not None:
            delay = pushback / 1000.0
            self._backoff_step = 0
        else:
            self._backoff_step += 1
            delay = retry.backoff(self._backoff_step, channel.rng)
        self._next_timer = channel.timers.call_at(now + delay, self._send_retry)

    def _send_retry(self) -> None:
        self._next_timer = None
        if not self.done:
            try:
                self._send(AttemptKind.RETRY)
            except Exception as error:
                self.fail("a retry", error)

    def _schedule_hedge(self) -> None:
        hedging = self.hedging
        if hedging is None or self.done or self.attempts >= hedging.attempts or self._committed is not None:
            return
        if self._waiting_for_picker:
            return  # hedges start from the first attempt, once it has a replica
        self._next_timer = self.channel.timers.call_at(self.channel.timers.now() + hedging.hedging_delay, self._hedge)

    def _hedge(self) -> None:
        self._next_timer = None
        hedging = self.hedging
        if self.done or hedging is None:
            return
        try:
            if self.attempts >= hedging.attempts:
                if not self.active:
                    self.finish(self.last_status)
                return
            channel = self.channel
            if channel.throttle is not None and not channel.throttle.allows_retry():
                channel.refused("throttle", channel.timers.now())
                if not self.active:
                    self.finish(self.last_status)
                return
            self._send(AttemptKind.HEDGE)
            # The attempt may already have failed non-fatally and scheduled the next hedge.
            if self._next_timer is None:
                self._schedule_hedge()
        except Exception as error:
            self.fail("a hedge", error)

    def _stop_hedging_or_finish(self, endpoint: Endpoint | None, status: StatusCode) -> None:
        if self._next_timer is not None:
            self._next_timer.cancel()
            self._next_timer = None
        if not self.active:
            self._decider = endpoint
            self.finish(status)
