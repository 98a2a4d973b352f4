"""Actors, the event bus, the completion queue, health checking and the balancer, on a mock clock."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from meshsim.core.endpoint import Endpoint
from meshsim.core.events import HealthChanged
from meshsim.core.health import HealthConfig, HealthTracker
from meshsim.core.pickers import BalancerConfig
from meshsim.core.status import HealthStatus
from meshsim.runtime.actor import ActorFailed, ActorRestarted, Mailbox, RestartPolicy, Supervisor
from meshsim.runtime.balancer import Balancer, HealthProbed
from meshsim.runtime.health_checker import HealthChecker
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue

S, N, T = HealthStatus.SERVING, HealthStatus.NOT_SERVING, HealthStatus.TIMEOUT


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# meshsim's earlier semantics, still a setting: replicas in from the start, every failure thresholded.
THRESHOLDED = {"initial_healthy": True, "not_serving_at_once": False}


def test_health_tracker_needs_consecutive_results() -> None:
    tracker = HealthTracker(HealthConfig(unhealthy_threshold=3, healthy_threshold=2, **THRESHOLDED))
    assert [tracker.observe(s) for s in (N, N, S, N, N)] == [None, None, None, None, None]
    assert tracker.healthy
    assert tracker.observe(T) is False  # the third failure in a row; a timeout counts as one
    assert [tracker.observe(s) for s in (S, N, S)] == [None, None, None]
    assert tracker.observe(S) is True
    assert tracker.healthy


def test_every_non_serving_status_is_a_failure() -> None:
    for status in HealthStatus:
        tracker = HealthTracker(HealthConfig(unhealthy_threshold=1, **THRESHOLDED))
        assert tracker.observe(status) is (None if status is S else False)


def test_observer_delivers_by_type_in_subscription_order() -> None:
    observer = Observer()
    seen: list[str] = []
    observer.subscribe(int, lambda e: seen.append(f"a{e}"))
    observer.subscribe(int, lambda e: seen.append(f"b{e}"))
    observer.subscribe(str, lambda e: seen.append(f"s{e}"))
    observer.emit(1)
    observer.emit("x")
    observer.emit(2.0)  # nobody listens: dropped
    assert seen == ["a1", "b1", "sx"]
    assert observer.wants(int)
    assert not observer.wants(float)


async def test_timers_fire_in_time_order_and_same_instant_in_set_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = TimerQueue()
    fired: list[tuple[float, str]] = []

    def note(label: str) -> None:
        fired.append((trio.current_time(), label))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        timers.call_at(start + 2, note, "late")
        timers.call_at(start + 1, note, "first")
        timers.call_at(start + 1, note, "second")
        cancelled = timers.call_at(start + 1.5, note, "cancelled")
        cancelled.cancel()
        await trio.sleep(0.5)
        timers.call_at(start + 0.75, note, "added while sleeping, earlier")
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [(t - start, label) for t, label in fired] == [
        (0.75, "added while sleeping, earlier"),
        (1, "first"),
        (1, "second"),
        (2, "late"),
    ]


async def test_mailbox_is_bounded() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=2)
    mailbox.send_nowait(1)
    mailbox.send_nowait(2)
    with pytest.raises(trio.WouldBlock):
        mailbox.send_nowait(3)
    assert mailbox.receive_nowait() == 1


class Flaky:
    name = "flaky"

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"crash {self.runs}")


async def test_supervisor_restarts_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    observer = Observer()
    restarts: list[ActorRestarted] = []
    observer.subscribe(ActorRestarted, restarts.append)
    actor = Flaky(crashes=2)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        Supervisor(nursery, observer).start(actor, RestartPolicy(max_restarts=2, backoff=1.0))
    assert actor.runs == 3
    assert [(r.restarts, r.at - start) for r in restarts] == [(1, 0.0), (2, 1.0)]
    assert trio.current_time() - start == 3.0  # waited 1 s, then 2 s


async def test_supervisor_fails_loudly_when_restarts_run_out(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.RaisesGroup(pytest.RaisesExc(ActorFailed, match="'flaky' crashed after 1 restart")):
        async with trio.open_nursery() as nursery:
            Supervisor(nursery, Observer()).start(Flaky(crashes=5), RestartPolicy(max_restarts=1, backoff=0.1))


def make_balancer(observer: Observer, health: HealthConfig | None = None) -> Balancer:
    endpoints = [Endpoint(f"api/{i}", index=i) for i in range(3)]
    return Balancer(
        "balancer",
        "client",
        "api",
        BalancerConfig("round_robin"),
        health or HealthConfig(unhealthy_threshold=1, healthy_threshold=1, initial_healthy=True),
        endpoints,
        random.Random(0),
        observer,
    )


def test_balancer_publishes_a_picker_without_unhealthy_endpoints() -> None:
    observer = Observer()
    changes: list[HealthChanged] = []
    observer.subscribe(HealthChanged, changes.append)
    balancer = make_balancer(observer)

    async def main() -> None:
        balancer.handle(HealthProbed("api/1", N))
        picks = {balancer.picker.pick(None).name for _ in range(10)}  # type: ignore[union-attr]
        assert picks == {"api/0", "api/2"}
        balancer.handle(HealthProbed("api/0", HealthStatus.UNREACHABLE))
        balancer.handle(HealthProbed("api/2", T))
        assert balancer.picker.pick(None) is None
        balancer.handle(HealthProbed("api/1", S))
        assert {balancer.picker.pick(None).name for _ in range(5)} == {"api/1"}  # type: ignore[union-attr]

    trio.run(main, clock=trio.testing.MockClock())
    assert [(c.endpoint, c.healthy, c.last_probe) for c in changes] == [
        ("api/1", False, N),
        ("api/0", False, HealthStatus.UNREACHABLE),
        ("api/2", False, T),
        ("api/1", True, S),
    ]


class ScriptedHealth:
    """A transport whose health answers follow a script; `None` never answers."""

    def __init__(self, script: list[HealthStatus | None]) -> None:
        self.script = script
        self.asked: list[tuple[float, str, str]] = []

    def start_call(self, *args: object) -> None:
        raise AssertionError("the health checker makes no calls")

    async def check_health(self, endpoint: str, service: str) -> HealthStatus:
        self.asked.append((trio.current_time(), endpoint, service))
        answer = self.script.pop(0) if self.script else S
        if answer is None:
            await trio.sleep_forever()
        assert answer is not None
        return answer


async def test_health_checker_probes_on_interval_and_times_out(autojump_clock: trio.testing.MockClock) -> None:
    config = HealthConfig(interval=1.0, timeout=0.25, initial_healthy=True)
    transport = ScriptedHealth([S, None, N])
    mailbox: Mailbox[HealthProbed] = Mailbox()
    checker = HealthChecker("hc", "api/0", "mesh.v1.MeshService", config, transport, mailbox, random.Random(1))
    start = trio.current_time()
    with trio.move_on_after(3.5):
        await checker.run()
    results = [mailbox.receive_nowait() for _ in range(3)]
    assert [r.status for r in results] == [S, T, N]
    assert [(round(t - start, 6), e, s) for t, e, s in transport.asked] == [
        (1.0, "api/0", "mesh.v1.MeshService"),
        (2.0, "api/0", "mesh.v1.MeshService"),
        (3.25, "api/0", "mesh.v1.MeshService"),  # the timed-out probe took 0.25 s
    ]


def test_health_checker_jitter_stays_within_its_fraction() -> None:
    config = HealthConfig(interval=2.0, jitter=0.25)
    checker = HealthChecker("hc", "e", "s", config, ScriptedHealth([]), Mailbox(), random.Random(3))
    waits = [checker.next_wait() for _ in range(1000)]
    assert all(2.0 <= w <= 2.5 for w in waits)
    assert len(set(waits)) > 900


def test_a_pushed_health_status_counts_at_once() -> None:
    tracker = HealthTracker(HealthConfig(unhealthy_threshold=3, healthy_threshold=3, **THRESHOLDED))
    assert tracker.report(N) is False
    assert tracker.report(N) is None
    assert tracker.report(S) is True
    assert tracker.observe(N) is None  # polled probes still need their threshold afterwards
