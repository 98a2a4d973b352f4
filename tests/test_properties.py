"""Property: whatever the scenario, no started call is lost, and the run replays exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsim.core.pickers import POLICIES
from meshsim.core.scenario import Scenario
from tests.test_shipped_scenarios import assert_accounts_add_up, run_counting

ACTIONS = {
    "kill": "",
    "latency": 'multiply = 4\nadd = "5ms"',
    "errors": 'rate = 0.5\nstatus = "INTERNAL"',
    "blackhole": "",
    "health": 'status = "NOT_SERVING"',
    "partition": 'client = "c0"',
}


@st.composite
def scenarios(draw: st.DrawFn) -> str:
    replicas = draw(st.integers(1, 4))
    policy = draw(st.sampled_from(POLICIES))
    lines = [
        'schema = "meshsim/v1"',
        f"seed = {draw(st.integers(0, 10_000))}",
        'duration = "3s"',
        'drain = "1s"',
        "",
        "[[service]]",
        'name = "api"',
        f"replicas = {replicas}",
        f'latency = {{ dist = "exponential", mean = "{draw(st.integers(1, 200))}ms" }}',
        f"error_rate = {draw(st.sampled_from([0.0, 0.1]))}",
    ]
    if draw(st.booleans()):
        lines.append(f"capacity = {draw(st.integers(1, 4))}")
        if draw(st.booleans()):
            lines.append(f"queue_limit = {draw(st.integers(0, 3))}")
    lines += ["", "[balancer]", f'policy = "{policy}"', "", "[health]"]
    lines.append(f"enabled = {'true' if draw(st.booleans()) else 'false'}")
    lines += ['interval = "200ms"', 'timeout = "100ms"', "unhealthy_threshold = 1", "healthy_threshold = 1"]
    for n in range(draw(st.integers(1, 2))):
        lines += ["", "[[client]]", f'name = "c{n}"']
        if draw(st.booleans()):
            lines.append(f"rate = {draw(st.integers(10, 300))}")
        else:
            lines.append(f"concurrency = {draw(st.integers(1, 6))}")
        if draw(st.booleans()):
            lines.append(f'deadline = "{draw(st.integers(20, 500))}ms"')
        lines.append("patterns = { unary = 1, server_stream = 1, client_stream = 1, bidi = 1 }")
        lines.append('keys = { dist = "zipf", count = 50 }')
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(sorted(ACTIONS)))
        target = draw(st.sampled_from(["api", *(f"api/{i}" for i in range(replicas))]))
        lines += ["", "[[fault]]", f'at = "{draw(st.integers(0, 2900))}ms"', f'action = "{action}"']
        lines.append(f'target = "{target}"')
        if draw(st.booleans()):
            lines.append(f'for = "{draw(st.integers(1, 3000))}ms"')
        if ACTIONS[action]:
            lines.append(ACTIONS[action])
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_no_call_is_ever_lost_and_runs_replay(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.toml"
        path.write_text(text, encoding="utf-8")
        scenario = Scenario.from_toml(path)
        report, started, finished = run_counting(scenario)
        again, _, _ = run_counting(scenario)
    assert started == finished
    assert sum(started.values()) == report.totals.requests
    assert_accounts_add_up(report)
    assert report.to_json() == again.to_json()
