"""Property: whatever the scenario, no started call is lost, and the run replays exactly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsim.core.events import RequestFinished
from meshsim.core.pickers import POLICIES
from meshsim.core.scenario_loader import load_scenario
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
    lines += ["", "[balancer]", f'policy = "{policy}"']
    if draw(st.booleans()):
        lines.append(f"panic_threshold = {draw(st.sampled_from([50, 100]))}")
    max_attempts = 1
    mode = draw(st.sampled_from(["none", "retry", "hedging", "both"]))
    if mode in ("retry", "both"):
        max_attempts = draw(st.integers(2, 7))
        lines += ["", "[retry]", f"max_attempts = {max_attempts}", 'initial_backoff = "10ms"']
        lines.append('retryable_status_codes = ["UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED"]')
        if draw(st.booleans()):
            lines.append(f'per_attempt_timeout = "{draw(st.integers(5, 100))}ms"')
        if mode == "both":
            lines.append('methods = ["Process", "StreamEvents"]')
    if mode in ("hedging", "both"):
        hedges = draw(st.integers(2, 7))
        max_attempts = max(max_attempts, hedges)
        lines += ["", "[hedging]", f"max_attempts = {hedges}", f'hedging_delay = "{draw(st.integers(0, 50))}ms"']
        lines.append('non_fatal_status_codes = ["UNAVAILABLE"]')
        if mode == "both":
            lines.append('methods = ["CollectMetrics", "Chat"]')
    if mode != "none" and draw(st.booleans()):
        lines += ["", "[retry_throttling]", "max_tokens = 10", "token_ratio = 0.1"]
    if mode in ("retry", "both") and draw(st.booleans()):
        lines += ["", "[retry_budget]", "budget_percent = 20", "min_retry_concurrency = 1"]
    if draw(st.booleans()):
        scope = draw(st.sampled_from(["replica", "service"]))
        lines += ["", f"[circuit_breaker.{scope}]", "minimum_calls = 5", "window_size = 10"]
        lines += ['wait_duration_in_open = "300ms"', "permitted_calls_in_half_open = 2", 'slow_call_duration = "50ms"']
    if draw(st.booleans()):
        lines += ["", "[concurrency_limit]", f"max_requests = {draw(st.integers(1, 5))}"]
        lines.append(f"max_pending = {draw(st.integers(0, 3))}")
    if draw(st.booleans()):
        lines += ["", "[outlier_detection]", 'interval = "500ms"', 'base_ejection_time = "1s"']
        lines += ["max_ejection_percent = 50", "[outlier_detection.consecutive_failures]", "threshold = 3"]
    lines += ["", "[health]"]
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
    lines.insert(0, f"# max_attempts={max_attempts}")
    return "\n".join(lines) + "\n"


@settings(
    max_examples=int(os.environ.get("MESHSIM_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    derandomize="MESHSIM_PROPERTY_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_no_call_is_ever_lost_and_runs_replay(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.toml"
        path.write_text(text, encoding="utf-8")
        scenario = load_scenario(path)
        observer_attempts: list[int] = []
        deadlines = {c.name: c.deadline for c in scenario.clients}

        def check(event: RequestFinished) -> None:
            observer_attempts.append(event.attempts)
            deadline = deadlines[event.client]
            # A call never outlives its deadline, whatever its retries, hedges and queues.
            assert deadline is None or event.finished - event.started <= deadline + 1e-9

        report, started, finished = run_counting(scenario, on_finished=check)
        again, _, _ = run_counting(scenario)
    cap = min(5, int(text.split("\n", 1)[0].split("=")[1]))  # A6 caps attempts at 5
    assert max(observer_attempts, default=0) <= cap
    assert started == finished
    assert sum(started.values()) == report.totals.requests
    assert_accounts_add_up(report)
    assert report.to_json() == again.to_json()
