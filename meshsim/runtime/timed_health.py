"""The health checker as timers: the same semantics as `health_checker.HealthChecker`, no task.

A simulated mesh of thousands of replicas has a checker per replica per client. As
tasks, each probe costs a wake-up, a sleep inside the replica and a mailbox round
trip to the balancer, and every sleeping checker is a deadline that stops the
completion queue from running ahead. Over a transport that answers probes and pushes
Watch updates through callbacks (`TimedHealthTransport`: the simulator's), each step is
a timer callback instead, and results go to the balancer synchronously.

The steps are those of HealthChecker: Watch where offered (a push counts at once; a
broken stream is UNREACHABLE until a new one answers; a stream silent for an interval
is backed by a Check, whose answer is dropped if the stream pushed meanwhile), else a
Check every interval with the thresholds; a probe that does not answer within the
timeout is TIMEOUT; each wait is jittered from the checker's own stream, drawn in the
same order as the task version draws.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

import trio

from meshsim.core.health import HealthConfig
from meshsim.core.status import HealthStatus
from meshsim.runtime.timers import Cancellable, Timers
from meshsim.runtime.transport import OnHealth


class HealthSink(Protocol):
    """Where results go (the balancer): a probe's answer, or a status the endpoint pushed."""

    def health_probed(self, endpoint: str, status: HealthStatus) -> None: ...

    def health_reported(self, endpoint: str, status: HealthStatus) -> None: ...


class TimedHealthTransport(Protocol):
    def probe(self, endpoint: str, service: str, on_status: OnHealth, timeout: float) -> Cancellable:
        """One Check: `on_status` from the completion queue with the answer, or with TIMEOUT once
        `timeout` has passed without one (at a tie, TIMEOUT)."""
        ...

    def watch(self, endpoint: str, service: str, on_status: OnHealth, on_end: Callable[[], None]) -> Cancellable:
        """A Watch stream: `on_status` for each status it pushes, `on_end` once if it breaks."""
        ...


def offers_timed_health(transport: object) -> bool:
    return callable(getattr(transport, "probe", None)) and callable(getattr(transport, "watch", None))


class TimedHealthChecker:
    def __init__(
        self,
        name: str,
        endpoint: str,
        service: str,
        config: HealthConfig,
        transport: TimedHealthTransport,
        sink: HealthSink,
        timers: Timers,
        rng: random.Random,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.service = service
        self.config = config
        self._transport = transport
        self._sink = sink
        self._timers = timers
        self._rng = rng
        self._heard = 0.0  # when the Watch stream last pushed a status
        self._probe_heard = 0.0  # _heard when the silent stream's Check went out
        self._next: Cancellable | None = None  # the next step's timer
        self._probe: Cancellable | None = None
        self._on_result: OnHealth | None = None
        self._stream: Cancellable | None = None
        self._stopped = False

    def next_wait(self) -> float:
        jitter = self.config.jitter
        return self.config.interval * (1.0 + jitter * self._rng.random()) if jitter else self.config.interval

    def start(self) -> None:
        if self.config.watch:
            self._open_watch()
        elif self.config.initial_healthy:
            self._after(self.next_wait(), self._poll)
        else:
            # Out until its first check: checked at once, as HealthChecker does.
            self._poll()

    def stop(self) -> None:
        self._stopped = True
        self._cancel_probe()
        for timer in (self._next, self._stream):
            if timer is not None:
                timer.cancel()
        self._next = self._stream = None

    async def run(self) -> None:
        """As an actor (membership starts checkers as tasks): the timers run until cancelled."""
        self.start()
        try:
            await trio.sleep_forever()
        finally:
            self.stop()

    # --- steps ---------------------------------------------------------------------

    def _after(self, delay: float, step: Callable[[], None]) -> None:
        self._next = self._timers.call_at(self._timers.now() + delay, step)

    def _check(self, on_result: OnHealth) -> None:
        self._on_result = on_result
        self._probe = self._transport.probe(self.endpoint, self.service, self._answered, self.config.timeout)

    def _answered(self, status: HealthStatus) -> None:
        self._probe = None
        on_result, self._on_result = self._on_result, None
        if on_result is not None and not self._stopped:
            on_result(status)

    def _cancel_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        self._on_result = None

    def _poll(self) -> None:
        self._next = None
        self._check(self._polled)

    def _polled(self, status: HealthStatus) -> None:
        self._sink.health_probed(self.endpoint, status)
        self._after(self.next_wait(), self._poll)

    # --- Watch -----------------------------------------------------------------------

    def _open_watch(self) -> None:
        self._next = None
        if self._stopped:
            return
        self._heard = self._timers.now()
        # The stream never ends from inside watch(), so the silence check always follows it.
        self._stream = self._transport.watch(self.endpoint, self.service, self._pushed, self._broke)
        self._after(self.next_wait(), self._silence_check)

    def _pushed(self, status: HealthStatus) -> None:
        self._heard = self._timers.now()
        self._sink.health_reported(self.endpoint, status)

    def _broke(self) -> None:
        # The stream ended or broke: unhealthy until a new one says otherwise.
        self._stream = None
        if self._next is not None:
            self._next.cancel()
        self._cancel_probe()
        self._sink.health_reported(self.endpoint, HealthStatus.UNREACHABLE)
        self._after(self.next_wait(), self._open_watch)

    def _silence_check(self) -> None:
        """A stream that has pushed nothing for an interval is backed by a Check (a hung endpoint
        keeps its stream open and says nothing), with the timeout and the thresholds."""
        self._next = None
        if self._timers.now() - self._heard < self.config.interval:
            self._after(self.next_wait(), self._silence_check)
            return
        self._probe_heard = self._heard
        self._check(self._silent_probed)

    def _silent_probed(self, status: HealthStatus) -> None:
        if self._heard == self._probe_heard:  # else the Watch pushed while the probe was out: the push is newer
            self._sink.health_probed(self.endpoint, status)
        if self._stream is not None:
            self._after(self.next_wait(), self._silence_check)
