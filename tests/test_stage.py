"""A scenario played live: real replicas on loopback, the faults meaning what they mean in the
simulator, a stop on SIGTERM that leaves nothing behind, and the same verdicts as simulated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshsim.core.events import AttemptFinished, HealthChanged, RequestFinished
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.runtime.observer import Observer
from meshsim.stage.runner import run_live
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

MESHSIM_RUN = [sys.executable, "-m", "meshsim", "run"]

EVERY_FAULT = """\
schema = "meshsim/v1"
seed = 9
duration = "8s"
drain = "1s"

[[service]]
name = "api"
replicas = 3
latency = "10ms"

[health]
interval = "200ms"
timeout = "150ms"
unhealthy_threshold = 2

[[client]]
name = "c1"
rate = 60
deadline = "400ms"

[[client]]
name = "c2"
rate = 60
deadline = "400ms"

[[fault]]
at = "1s"
for = "2s"
action = "kill"
target = "api/0"

[[fault]]
at = "1s"
for = "2s"
action = "partition"
target = "api/2"
client = "c2"

[[fault]]
at = "4s"
for = "2s"
action = "latency"
target = "api/1"
add = "100ms"

[[fault]]
at = "4s"
for = "2s"
action = "errors"
target = "api/2"
rate = 1.0
status = "INTERNAL"

[[fault]]
at = "4.5s"
for = "1s"
action = "blackhole"
target = "api/0"

[[fault]]
at = "6.5s"
for = "1s"
action = "health"
target = "api/1"
"""


def test_every_fault_means_live_what_it_means_simulated(write_scenario: Callable[[str], Path]) -> None:
    scenario = load_scenario(write_scenario(EVERY_FAULT))
    observer = Observer()
    calls: list[RequestFinished] = []
    attempts: list[AttemptFinished] = []
    health: list[HealthChanged] = []
    observer.subscribe(RequestFinished, calls.append)
    observer.subscribe(AttemptFinished, attempts.append)
    observer.subscribe(HealthChanged, health.append)
    report = run_live(scenario, handle_signals=False, observer=observer)
    assert report.mode == "live" and not report.interrupted
    assert report.totals.requests == len(calls) > 800  # 120 calls a second for 8 s

    def outs(client: str, replica: str) -> list[tuple[float, bool]]:
        return [(round(h.at, 1), h.healthy) for h in health if h.client == client and h.endpoint == replica][1:]

    # kill: api/0 is out for both clients as it dies, and back once its server is up again.
    for client in ("c1", "c2"):
        (out, back, *_) = outs(client, "api/0")
        assert out[1] is False and 0.95 <= out[0] <= 1.3 and back[1] is True and 2.95 <= back[0] <= 3.6
    # partition: only c2 loses api/2, and takes it back after.
    assert outs("c1", "api/2") == []
    (cut, healed) = outs("c2", "api/2")
    assert 1.0 <= cut[0] <= 1.8 and 3.0 <= healed[0] <= 3.8
    # latency: api/1's calls while it lasts take 100 ms more.
    slow = [a for a in attempts if a.endpoint == "api/1" and 4.1 <= a.started < 5.9 and a.status is StatusCode.OK]
    assert slow and min(a.finished - a.started for a in slow) >= 0.1
    # errors: api/2 fails every call while it lasts (INTERNAL is not retried: no policy).
    failing = [a.status for a in attempts if a.endpoint == "api/2" and 4.1 <= a.started < 5.9]
    assert failing and set(failing) == {StatusCode.INTERNAL}
    # blackhole: calls to api/0 are held until their deadline, its probes unanswered; a call whose
    # deadline outlasts the blackhole is answered once it lifts, as in the simulator.
    held = [a for a in attempts if a.endpoint == "api/0" and 4.55 <= a.started < 5.05]
    assert held and {a.status for a in held} == {StatusCode.DEADLINE_EXCEEDED}
    # health: api/1 answers NOT_SERVING while it lasts, and is out for both clients at once.
    for client in ("c1", "c2"):
        (out, back) = [o for o in outs(client, "api/1") if o[0] >= 6.0]
        assert 6.5 <= out[0] <= 6.8 and 7.5 <= back[0] <= 8.0


def test_sigterm_stops_the_run_and_reports_it_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    command = [*MESHSIM_RUN, "scenarios/failover.toml", "--live", "--json", str(target)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)  # the drain is 10 s at most
    assert process.returncode == 130, err
    assert "INTERRUPTED" in out
    report = json.loads(target.read_text())
    assert report["mode"] == "live" and report["interrupted"] is True
    assert 0 < report["totals"]["requests"] < 3000  # a few seconds of a 40 s run
    assert report["totals"]["by_status"].get("CANCELLED", 0) < 20


# Each played both ways; the verdicts must agree. Two at a time: each takes one core.
BOTH_WAYS = ["failover", "retries", "hedging", "circuit_breaker", "outlier_detection"]


def test_shipped_scenarios_give_the_same_verdicts_live_as_simulated(tmp_path: Path) -> None:
    results: dict[str, tuple[int, str]] = {}
    waiting = list(BOTH_WAYS)
    running: dict[str, subprocess.Popen[str]] = {}
    while waiting or running:
        while waiting and len(running) < 2:
            name = waiting.pop(0)
            json_path = tmp_path / f"{name}.json"
            running[name] = subprocess.Popen(
                [*MESHSIM_RUN, f"scenarios/{name}.toml", "--both", "-q", "--json", str(json_path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for name, process in list(running.items()):
            if process.poll() is not None:
                out, _ = process.communicate()
                results[name] = (process.returncode, out)
                del running[name]
        time.sleep(0.5)
    for name in BOTH_WAYS:
        # The exit code also counts latency beyond the comparison's tolerance, which two runs at a
        # time on a busy machine may cross: the verdicts are what must agree.
        _, out = results[name]
        sim = json.loads((tmp_path / f"{name}.sim.json").read_text())
        played = json.loads((tmp_path / f"{name}.live.json").read_text())
        verdicts = [(a["name"], a["passed"]) for a in sim["assertions"]]
        assert verdicts == [(a["name"], a["passed"]) for a in played["assertions"]], (name, out)
        assert all(passed for _, passed in verdicts), (name, out)
