"""Where gRPC and Envoy differ, each behaviour is a setting, and `preset` picks them together.

Each test runs the same scenario both ways and checks what tells the two apart; the
loader tests check that a preset only supplies defaults, which keys override.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from meshsim.core.events import AttemptFinished, EndpointEjected, HealthChanged, RequestFinished
from meshsim.core.outlier import ConsecutiveFailuresConfig, OutlierConfig, OutlierDetector
from meshsim.core.presets import PRESETS
from meshsim.core.scenario import ScenarioError
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario

HEADER = """\
schema = "meshsim/v1"
seed = 5
duration = "{duration}"
drain = "2s"
{top}

[[service]]
name = "api"
replicas = {replicas}
latency = "10ms"
"""


def simulate(
    write_scenario: Callable[[str], Path], body: str, *, replicas: int = 3, duration: str = "5s", top: str = ""
) -> tuple[list[RequestFinished], list[AttemptFinished], list[object]]:
    scenario = load_scenario(write_scenario(HEADER.format(duration=duration, replicas=replicas, top=top) + body))
    observer = Observer()
    calls: list[RequestFinished] = []
    attempts: list[AttemptFinished] = []
    events: list[object] = []
    observer.subscribe(RequestFinished, calls.append)
    observer.subscribe(AttemptFinished, attempts.append)
    observer.subscribe(HealthChanged, events.append)
    observer.subscribe(EndpointEjected, events.append)
    run_scenario(scenario, observer=observer)
    return calls, attempts, events


DEAD_FROM_THE_START = """
[health]
interval = "500ms"
unhealthy_threshold = 2
{initial}

[[client]]
name = "c"
rate = 200

[[fault]]
at = "0s"
action = "kill"
target = "api/1"
"""


@pytest.mark.parametrize("initial", ["", 'initial_state = "unhealthy"'])
def test_a_replica_dead_from_the_start_costs_no_call(write_scenario: Callable[[str], Path], initial: str) -> None:
    """gRPC keeps a subchannel out until it reports SERVING, Envoy an actively checked host until
    its first check passes: a replica that never answers is never called."""
    calls, attempts, _ = simulate(write_scenario, DEAD_FROM_THE_START.format(initial=initial))
    assert {c.status for c in calls} == {StatusCode.OK}
    assert not any(a.endpoint == "api/1" for a in attempts)


def test_starting_healthy_sends_calls_to_a_dead_replica(write_scenario: Callable[[str], Path]) -> None:
    # Polled, as Envoy checks (a watched replica's broken stream would take it out at once).
    initial = 'initial_state = "healthy"\nwatch = false'
    calls, _, _ = simulate(write_scenario, DEAD_FROM_THE_START.format(initial=initial))
    failed = [c for c in calls if c.status is not StatusCode.OK]
    assert len(failed) > 50  # a third of the calls until two failed probes take it out


def test_calls_before_the_first_checks_wait_for_them_instead_of_failing(write_scenario: Callable[[str], Path]) -> None:
    """A closed loop calls at t=0, before any replica has answered a check: as a gRPC channel
    that is still connecting, the pick waits (here 1 ms, a probe's answer) instead of failing."""
    calls, attempts, events = simulate(
        write_scenario, '[[client]]\nname = "c"\nconcurrency = 5\n\n[health]\ninterval = "1s"\n', duration="1s"
    )
    first = min(calls, key=lambda c: c.started)
    assert first.started == 0.0 and first.status is StatusCode.OK
    assert min(a.started for a in attempts) > 0.0  # sent once a replica was in
    ins = sorted(e.at for e in events if isinstance(e, HealthChanged) and e.healthy)
    assert len(ins) == 3 and ins[0] < 0.01  # each in after its first check, made at once
    assert {c.status for c in calls} == {StatusCode.OK}


def test_every_replica_failing_its_first_check_fails_calls_fast(write_scenario: Callable[[str], Path]) -> None:
    """Once every replica has answered and none passed, the channel is in TRANSIENT_FAILURE: calls
    fail at once rather than wait forever."""
    body = """
[health]
interval = "200ms"

[[client]]
name = "c"
rate = 100
deadline = "5s"

[[fault]]
at = "0s"
action = "health"
target = "api"
status = "NOT_SERVING"
"""
    calls, attempts, _ = simulate(write_scenario, body, duration="2s")
    assert calls and {c.status for c in calls} == {StatusCode.UNAVAILABLE}
    assert all(c.finished - c.started < 0.01 for c in calls)  # failed fast, not held to the deadline
    assert all(a.endpoint is None for a in attempts)


NOT_SERVING = """
[health]
interval = "1s"
unhealthy_threshold = 3
watch = false  # polled: a watched replica pushes NOT_SERVING, which counts at once either way
{setting}

[[client]]
name = "c"
rate = 50

[[fault]]
at = "2s"
action = "health"
target = "api/0"
status = "NOT_SERVING"
"""


@pytest.mark.parametrize(("setting", "probes"), [("", 1), ('not_serving = "threshold"', 3)])
def test_not_serving_takes_a_replica_out_at_once_or_after_the_threshold(
    write_scenario: Callable[[str], Path], setting: str, probes: int
) -> None:
    """Envoy's gRPC checker marks a host unhealthy at the first NOT_SERVING (an active failure);
    unhealthy_threshold counts only probes that got no answer."""
    _, _, events = simulate(write_scenario, NOT_SERVING.format(setting=setting))
    (out,) = [e for e in events if isinstance(e, HealthChanged) and e.endpoint == "api/0" and not e.healthy]
    assert 2.0 + probes - 1 < out.at <= 2.0 + probes + 0.01  # probes at 0, 1, 2, ... s


RETRY_ON_A_RING = """
[health]
enabled = false

[balancer]
policy = "consistent_hash"

[retry]
max_attempts = 3
initial_backoff = "1ms"
{setting}

[[client]]
name = "c"
rate = 100
keys = {{ dist = "uniform", count = 1 }}

[[fault]]
at = "0s"
action = "errors"
target = "api"
rate = 0.5
"""


@pytest.mark.parametrize("previous_hosts", [False, True])
def test_a_retry_on_a_ring_stays_on_its_replica_unless_previous_hosts(
    write_scenario: Callable[[str], Path], previous_hosts: bool
) -> None:
    """gRPC's retries go through the picker again, so a ring-hash retry lands where the key lives;
    Envoy's previous_hosts predicate sends it to another replica."""
    setting = "previous_hosts = true" if previous_hosts else ""
    _, attempts, _ = simulate(write_scenario, RETRY_ON_A_RING.format(setting=setting), duration="3s")
    replicas = {a.endpoint for a in attempts}
    assert (len(replicas) > 1) is previous_hosts


def test_the_ejection_cap_of_a50_and_of_envoy() -> None:
    """10 % of 3 replicas: A50 checks the share already ejected (0 % < 10 %: one goes), Envoy the
    share after the ejection (33 % > 10 %: none goes, unless always_eject_one_host)."""

    def ejected(**settings: object) -> int:
        config = OutlierConfig(
            max_ejection_percent=10.0, consecutive_failures=ConsecutiveFailuresConfig(threshold=1), **settings
        )
        import random

        od = OutlierDetector(config, ["a", "b", "c"], random.Random(0))
        for name in ("a", "b", "c"):
            od.record(name, StatusCode.UNAVAILABLE, 0.0)
        return len(od.ejected)

    assert ejected(ejection_cap="current") == 1
    assert ejected(ejection_cap="prospective") == 0
    assert ejected(ejection_cap="prospective", always_eject_one_host=True) == 1


def test_without_decay_the_ejection_time_keeps_growing() -> None:
    import random

    def times(decay: bool) -> list[float]:
        config = OutlierConfig(
            interval=10.0,
            base_ejection_time=10.0,
            max_ejection_time=1000.0,
            consecutive_failures=ConsecutiveFailuresConfig(threshold=1),
            multiplier_decay=decay,
        )
        od = OutlierDetector(config, ["a", "b"], random.Random(0))
        durations = []
        now = 0.0
        for _ in range(3):
            ejection = od.record("a", StatusCode.UNAVAILABLE, now)
            assert ejection is not None
            durations.append(ejection.duration)
            while od.is_ejected("a"):
                now += 10.0
                od.sweep(now)
            for _ in range(5):  # a while in rotation before it fails again
                now += 10.0
                od.sweep(now)
        return durations

    assert times(decay=True) == [10.0, 10.0, 10.0]
    assert times(decay=False) == [10.0, 20.0, 30.0]


def test_a_preset_gives_defaults_and_keys_override_them(write_scenario: Callable[[str], Path]) -> None:
    body = '[[client]]\nname = "c"\nrate = 10\n\n[outlier_detection]\n[outlier_detection.consecutive_failures]\n'
    grpc = load_scenario(write_scenario(HEADER.format(duration="1s", replicas=3, top="") + body))
    envoy = load_scenario(write_scenario(HEADER.format(duration="1s", replicas=3, top='preset = "envoy"') + body))
    assert grpc.preset == "grpc" and envoy.preset == "envoy"
    assert grpc.balancer.panic_threshold == 0.0 and envoy.balancer.panic_threshold == 50.0
    assert grpc.outlier is not None and grpc.outlier.ejection_cap == "current"
    assert envoy.outlier is not None and envoy.outlier.ejection_cap == "prospective"
    assert not grpc.health.initial_healthy and grpc.health.not_serving_at_once
    overridden = load_scenario(
        write_scenario(
            HEADER.format(duration="1s", replicas=3, top='preset = "envoy"')
            + body.replace("[outlier_detection]\n", '[outlier_detection]\nejection_cap = "current"\n')
            + '\n[balancer]\npanic_threshold = 0\n\n[health]\ninitial_state = "healthy"\n'
        )
    )
    assert overridden.balancer.panic_threshold == 0.0
    assert overridden.outlier is not None and overridden.outlier.ejection_cap == "current"
    assert overridden.health.initial_healthy
    assert set(PRESETS) == {"grpc", "envoy"}


def test_an_unknown_preset_is_one_line(write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(
        HEADER.format(duration="1s", replicas=1, top='preset = "linkerd"') + '[[client]]\nname = "c"\nrate = 1\n'
    )
    with pytest.raises(ScenarioError, match=r"preset: expected one of grpc, envoy, got 'linkerd'"):
        load_scenario(path)


def test_every_shipped_scenario_says_which_preset_it_follows() -> None:
    from tests.conftest import SCENARIOS

    for path in SCENARIOS:
        assert 'preset = "' in path.read_text(encoding="utf-8"), path.name


KILLED = """
[health]
interval = "1s"
unhealthy_threshold = 3
{setting}

[[client]]
name = "c"
rate = 50

[[fault]]
at = "2s"
action = "kill"
target = "api/0"
"""


@pytest.mark.parametrize(("setting", "noticed"), [("", 0.0), ("watch = false", 2.0)], ids=["watched", "polled"])
def test_a_watched_replica_is_out_as_it_dies_a_polled_one_after_its_probes(
    write_scenario: Callable[[str], Path], setting: str, noticed: float
) -> None:
    """gRPC's client health checking watches: the stream breaks as the replica dies. Envoy polls:
    three failed probes a second apart."""
    _, _, events = simulate(write_scenario, KILLED.format(setting=setting))
    (out,) = [e for e in events if isinstance(e, HealthChanged) and e.endpoint == "api/0" and not e.healthy]
    assert out.at == pytest.approx(2.0 + noticed, abs=0.01)


def test_a_watch_outlives_a_blackhole_and_still_sees_the_replica_die(write_scenario: Callable[[str], Path]) -> None:
    """A hung replica keeps its Watch stream open and silent; once the hang is over the same
    stream breaks at once when the replica dies, as a live one's does."""
    blackhole_first = (
        KILLED.format(setting="") + '\n[[fault]]\nat = "0.5s"\nfor = "0.5s"\naction = "blackhole"\ntarget = "api/0"\n'
    )
    _, _, events = simulate(write_scenario, blackhole_first)
    outs = [e for e in events if isinstance(e, HealthChanged) and e.endpoint == "api/0" and not e.healthy]
    assert outs[-1].at == pytest.approx(2.0, abs=0.01)
