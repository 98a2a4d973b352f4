"""A simulated replica: service time, errors, capacity with a FIFO queue, and the faults on it.

Calls are timers on the completion queue, not tasks. Rules, so that reports can be
reasoned about:
- a call's status is decided when service starts (the replica's own error model, from
  `[[service.replica]]` or its service's, then its faults'); an error answer takes the same
  service time as a success, and carries the pushback configured for that error;
- a streaming call occupies the replica for `latency + messages * message_latency`; a
  server stream or bidi call that will succeed answers after `latency` (its headers and
  first message), which commits the call to that attempt (A6: no retry, no hedge after);
- a killed replica fails every call it holds (in service, queued, blackholed) with
  UNAVAILABLE at the kill, and refuses new ones with UNAVAILABLE; it comes back empty;
- a blackholed replica holds calls until their deadline; calls with no deadline
  resume when the blackhole lifts, as TCP retransmits would deliver them;
- a cancelled call (a hedge that lost, a call past its overall deadline) leaves at
  once and frees its place.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable

import trio
import trio.lowlevel

from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.faults import conditions_of
from meshsim.core.scenario import FaultConfig, ServiceConfig
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.runtime.timers import Timer, TimerQueue
from meshsim.runtime.transport import OnAnswer, OnDone, OnHealth

# Streams whose server answers (headers and a first message) before the whole call is served; a
# client stream, like a unary call, answers once, at the end.
_ANSWERS_EARLY = frozenset({Pattern.SERVER_STREAM, Pattern.BIDI})


class SimCall:
    """One attempt as the replica holds it; also the handle the caller may cancel."""

    __slots__ = (
        "answer",
        "call",
        "completion",
        "deadline",
        "on_answer",
        "on_done",
        "pushback",
        "replica",
        "state",
        "status",
    )

    WAITING, QUEUED, SERVING, HELD, DONE = range(5)

    def __init__(
        self, replica: SimReplica, call: CallSpec | None, on_done: OnDone, on_answer: OnAnswer | None = None
    ) -> None:
        self.replica = replica
        self.call = call
        self.on_done = on_done
        self.on_answer = on_answer
        self.deadline: Timer | None = None
        self.completion: Timer | None = None
        self.answer: Timer | None = None
        self.status = StatusCode.OK
        self.pushback: int | None = None
        self.state = SimCall.WAITING

    def cancel(self, status: StatusCode) -> None:
        self.replica.cancel(self, status)


def _ended(status: StatusCode, pushback: int | None) -> None:
    """The on_done of a call that has ended (it is called once; this is never called)."""


def _forget(sim_call: SimCall) -> None:
    """Drop what an ended call holds: its callbacks close over the caller's attempt, which holds
    this call, and its timers hold it too. Without these cycles a call is freed by reference
    counting when it ends, and the cyclic collector, which then runs far less often, has far
    less to look at (at 10,000 replicas it was half the run's time)."""
    sim_call.on_done = _ended
    sim_call.on_answer = None
    sim_call.completion = sim_call.deadline = sim_call.answer = None


class SimReplica:
    def __init__(self, name: str, service: ServiceConfig, index: int, timers: TimerQueue, rng: random.Random) -> None:
        self.name = name
        # The service as this replica serves it: its own [[service.replica]] values, if any.
        service = service.behaviour(index)
        self.service = service
        self.index = index
        self._timers = timers
        self._rng = rng
        self._capacity = service.capacity
        self._queue_limit = service.queue_limit
        self._latency = service.latency
        self._message_latency = service.message_latency
        self._error_model = bool(service.error_mix)
        self._busy = 0
        self._queue: collections.deque[SimCall] = collections.deque()
        self._queued = 0
        self._held: list[SimCall] = []
        # A dict, not a set: iteration must follow arrival order, never object addresses.
        self._live: dict[SimCall, None] = {}
        self._faults: list[FaultConfig] = []
        self.down = False
        self.blackholed = False
        self.health_override: HealthStatus | None = None
        self._add = 0.0
        self._multiply = 1.0
        self._errors: list[tuple[float, StatusCode, int | None]] = []
        self.cut_from: set[str] = set()  # clients partitioned from it
        self.changed = trio.Event()  # set (and replaced) whenever a fault begins or ends on it
        # Callbacks told the same (health Watch streams on the completion queue), in the order they came.
        self._watchers: dict[Callable[[], None], None] = {}

    # --- faults -----------------------------------------------------------------

    def apply(self, fault: FaultConfig) -> None:
        self._faults.append(fault)
        self._recompute()

    def clear(self, fault: FaultConfig) -> None:
        self._faults.remove(fault)
        self._recompute()

    def _recompute(self) -> None:
        was_down, was_blackholed = self.down, self.blackholed
        conditions = conditions_of([fault.effect for fault in self._faults])
        self.down = conditions.down
        self.blackholed = conditions.blackholed
        self._add = conditions.add
        self._multiply = conditions.multiply
        self._errors = conditions.errors
        self.health_override = conditions.health
        self.cut_from = conditions.cut_from
        changed, self.changed = self.changed, trio.Event()
        changed.set()
        for watcher in list(self._watchers):
            watcher()
        if self.down and not was_down:
            self._fail_everything(StatusCode.UNAVAILABLE)
        if was_blackholed and not self.blackholed:
            held, self._held = self._held, []
            for sim_call in held:
                if sim_call.state == SimCall.HELD:
                    self._admit(sim_call)

    # --- calls ------------------------------------------------------------------

    def refuse(self, on_done: OnDone, status: StatusCode) -> SimCall:
        """An attempt that fails at once (connection refused), still ending from the queue, not from inside."""
        sim_call = SimCall(self, None, on_done)
        sim_call.completion = self._timers.call_soon(self._end, sim_call, status)
        return sim_call

    def start_call(
        self, call: CallSpec, deadline_at: float | None, on_done: OnDone, on_answer: OnAnswer | None = None
    ) -> SimCall:
        if self.down:
            return self.refuse(on_done, StatusCode.UNAVAILABLE)
        sim_call = SimCall(self, call, on_done, on_answer)
        self._live[sim_call] = None
        if deadline_at is not None:
            sim_call.deadline = self._timers.call_at(deadline_at, self._expire, sim_call)
        if self.blackholed:
            sim_call.state = SimCall.HELD
            self._held.append(sim_call)
        elif self._capacity is None:
            self._serve(sim_call)  # _admit's first case, without its frame: no capacity, no queue
        else:
            self._admit(sim_call)
        return sim_call

    def _admit(self, sim_call: SimCall) -> None:
        if self._capacity is None or self._busy < self._capacity:
            self._serve(sim_call)
        elif self._queue_limit is not None and self._queued >= self._queue_limit:
            self._live.pop(sim_call, None)
            if sim_call.deadline is not None:
                sim_call.deadline.cancel()
            sim_call.completion = self._timers.call_soon(self._end, sim_call, StatusCode.RESOURCE_EXHAUSTED)
        else:
            sim_call.state = SimCall.QUEUED
            self._queue.append(sim_call)
            self._queued += 1

    def _serve(self, sim_call: SimCall) -> None:
        rng = self._rng
        seconds = first = self._latency.sample(rng)
        call = sim_call.call
        assert call is not None
        if call.pattern is not Pattern.UNARY:
            sample = self._message_latency.sample
            for _ in range(call.messages):
                seconds += sample(rng)
        seconds = seconds * self._multiply + self._add
        service = self.service
        # A replica without an error model draws nothing for one (injected_error would return None).
        injected = service.injected_error(rng) if self._error_model else None
        if injected is not None:
            sim_call.status = injected
            sim_call.pushback = service.error_pushback_ms
        for rate, code, pushback in self._errors:
            if rng.random() < rate and sim_call.status is StatusCode.OK:
                sim_call.status = code
                sim_call.pushback = pushback
        sim_call.state = SimCall.SERVING
        self._busy += 1
        now = self._timers.now()
        if sim_call.on_answer is not None and call.pattern in _ANSWERS_EARLY and sim_call.status is StatusCode.OK:
            # Its response headers and first message go out after the first service time: from then
            # on the caller has an answer, and the call is committed to this attempt (A6).
            sim_call.answer = self._timers.call_at(now + first * self._multiply + self._add, self._answered, sim_call)
        sim_call.completion = self._timers.call_at(now + seconds, self._complete, sim_call)

    @staticmethod
    def _answered(sim_call: SimCall) -> None:
        sim_call.answer = None
        if sim_call.state == SimCall.SERVING and sim_call.on_answer is not None:
            sim_call.on_answer()

    def _complete(self, sim_call: SimCall) -> None:
        # _release and _end, inline: this runs once a call.
        if sim_call.deadline is not None:
            sim_call.deadline.cancel()
        self._busy -= 1
        self._live.pop(sim_call, None)
        sim_call.state = SimCall.DONE
        if self._queue:
            self._serve_next()
        status = sim_call.status
        on_done = sim_call.on_done
        sim_call.on_done = _ended
        sim_call.on_answer = None
        sim_call.completion = sim_call.deadline = sim_call.answer = None
        on_done(status, sim_call.pushback if status is not StatusCode.OK else None)

    def _expire(self, sim_call: SimCall) -> None:
        self._leave(sim_call)
        self._end(sim_call, StatusCode.DEADLINE_EXCEEDED)

    def cancel(self, sim_call: SimCall, status: StatusCode) -> None:
        if sim_call.state == SimCall.DONE:
            return
        if sim_call.deadline is not None:
            sim_call.deadline.cancel()
        self._leave(sim_call)
        self._end(sim_call, status)

    def _leave(self, sim_call: SimCall) -> None:
        """Take a call out of wherever it is, without ending it."""
        if sim_call.answer is not None:
            sim_call.answer.cancel()
            sim_call.answer = None
        state = sim_call.state
        if state == SimCall.SERVING:
            assert sim_call.completion is not None
            sim_call.completion.cancel()
            self._release(sim_call)
        elif state == SimCall.QUEUED:
            self._queued -= 1  # left in the deque, skipped when reached
        elif state == SimCall.WAITING and sim_call.completion is not None:
            sim_call.completion.cancel()
        sim_call.state = SimCall.DONE
        self._live.pop(sim_call, None)

    def _release(self, sim_call: SimCall) -> None:
        """A serving call leaves: free its slot and start the next queued call."""
        self._busy -= 1
        self._live.pop(sim_call, None)
        sim_call.state = SimCall.DONE
        self._serve_next()

    def _serve_next(self) -> None:
        """A place is free: serve the first call still queued."""
        queue = self._queue
        while queue:
            waiting = queue.popleft()
            if waiting.state == SimCall.QUEUED:
                self._queued -= 1
                self._serve(waiting)
                return

    def _end(self, sim_call: SimCall, status: StatusCode, pushback: int | None = None) -> None:
        sim_call.state = SimCall.DONE
        on_done = sim_call.on_done
        _forget(sim_call)
        on_done(status, pushback if status is not StatusCode.OK else None)

    def _fail_everything(self, status: StatusCode) -> None:
        """Every call this replica holds ends now with `status`, in the order they arrived."""
        doomed = [c for c in self._live if c.state != SimCall.DONE]
        for sim_call in doomed:
            for timer in (sim_call.deadline, sim_call.completion, sim_call.answer):
                if timer is not None:
                    timer.cancel()
            sim_call.state = SimCall.DONE
        self._live.clear()
        self._queue.clear()
        self._held.clear()
        self._queued = 0
        self._busy = 0
        ends = [sim_call.on_done for sim_call in doomed]
        for sim_call in doomed:
            _forget(sim_call)
        for on_done in ends:
            on_done(status, None)

    def abort(self, status: StatusCode) -> None:
        self._fail_everything(status)

    # --- health -------------------------------------------------------------------

    def watch_changes(self, watcher: Callable[[], None]) -> None:
        """`watcher()` whenever a fault begins or ends here (synchronously: schedule, do not act)."""
        self._watchers[watcher] = None

    def unwatch_changes(self, watcher: Callable[[], None]) -> None:
        self._watchers.pop(watcher, None)

    def _probe_time(self) -> float:
        return self.service.probe_latency * self._multiply + self._add

    def _health_answer(self, service: str) -> HealthStatus:
        """What a Check answers once its probe time has passed."""
        if self.down:
            return HealthStatus.UNREACHABLE
        if service not in ("", self.service.name):
            return HealthStatus.SERVICE_UNKNOWN
        if self.health_override is not None:
            return self.health_override
        return HealthStatus.SERVING

    async def check_health(self, service: str) -> HealthStatus:
        if self.down:
            await trio.lowlevel.checkpoint()
            return HealthStatus.UNREACHABLE
        if self.blackholed:
            await trio.sleep_forever()
        await trio.sleep(self._probe_time())
        return self._health_answer(service)

    def probe(self, service: str, on_status: OnHealth, timeout: float) -> Timer:
        """check_health as one timer: `on_status` gets, from the completion queue, the answer or,
        when none would come within `timeout` (blackholed, or slower), TIMEOUT at the timeout.
        Whether it answers in time is known when the probe goes out, so one timer does."""
        timers = self._timers
        if self.down:
            return timers.call_soon(on_status, HealthStatus.UNREACHABLE)
        now = timers.now()
        latency = self._probe_time()
        if self.blackholed or latency >= timeout:
            # At a tie the timeout wins, as under trio.move_on_after, whose deadline is the older.
            return timers.call_at(now + timeout, on_status, HealthStatus.TIMEOUT)
        return timers.call_at(now + latency, self._probed, service, on_status)

    def _probed(self, service: str, on_status: OnHealth) -> None:
        on_status(self._health_answer(service))
