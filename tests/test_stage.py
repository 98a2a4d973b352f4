"""A scenario played live: real replicas on loopback, the faults meaning what they mean in the
simulator, a stop on SIGTERM that leaves nothing behind, and the same verdicts as simulated."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshsim.core.errors import StartupError
from meshsim.core.events import AttemptFinished, HealthChanged, RequestFinished
from meshsim.core.scenario import FaultConfig
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.runtime.observer import Observer
from meshsim.stage.replica import StagedReplica
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
    # blackhole: calls to api/0 are held until their deadline, its probes unanswered (the calls
    # started in its last 400 ms outlive it, and are answered once it lifts, as simulated).
    held = [a for a in attempts if a.endpoint == "api/0" and 4.55 <= a.started < 5.05]
    assert held and {a.status for a in held} == {StatusCode.DEADLINE_EXCEEDED}
    # health: api/1 answers NOT_SERVING while it lasts, and is out for both clients at once.
    for client in ("c1", "c2"):
        (out, back) = [o for o in outs(client, "api/1") if o[0] >= 6.0]
        assert 6.5 <= out[0] <= 6.8 and 7.5 <= back[0] <= 8.0


SLOW_CALLS = """\
schema = "meshsim/v1"
duration = "30s"
drain = "10s"

[[service]]
name = "api"
replicas = 2
latency = "3s"

[[client]]
name = "c"
concurrency = 4
deadline = "20s"
"""


@pytest.mark.parametrize(
    ("after", "signals", "in_flight"),
    [(0.0, 1, None), (1.5, 1, "OK"), (1.5, 2, "CANCELLED")],
    ids=["as-it-starts", "once", "twice"],
)
def test_sigterm_stops_the_run_reports_it_interrupted_and_leaves_no_replica(
    write_scenario: Callable[[str], Path], tmp_path: Path, after: float, signals: int, in_flight: str | None
) -> None:
    """As the callers connect, or later once (the load stops, the calls in flight drain: 3 s
    calls, a 10 s drain) or twice (the drain is not waited for, its calls end CANCELLED): the
    partial report comes out with every call in it, exit 130, every replica's port closed."""
    path = write_scenario(SLOW_CALLS)
    target = tmp_path / "report.json"
    command = [*MESHSIM_RUN, str(path), "--live", "--json", str(target)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    notice = [process.stderr.readline() for _ in range(2)]  # playing ... live, then the replicas
    assert notice[0].startswith(f"playing {path} live for 30 s"), notice
    addresses = notice[1].split(":", 1)[1].split()
    assert len(addresses) == 2
    time.sleep(after)
    for _ in range(signals):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "INTERRUPTED" in out
    report = json.loads(target.read_text())
    assert report["mode"] == "live" and report["interrupted"] is True
    if in_flight is None:
        assert report["totals"]["requests"] <= 4
    else:
        assert report["totals"]["by_status"] == {in_flight: 4}  # the four workers' first calls
    for address in addresses:
        host, port = address.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=1).close()


# Each played both ways; the verdicts must agree. Two at a time: each takes one core; failover
# alone, as its 300 calls a second with a 150 ms p99 bound leave no room for a neighbour on a
# 2-core machine.
BOTH_WAYS = ["failover", "retries", "hedging", "circuit_breaker", "outlier_detection"]
ALONE = {"failover"}


def test_shipped_scenarios_give_the_same_verdicts_live_as_simulated(tmp_path: Path) -> None:
    results: dict[str, tuple[int, str]] = {}
    waiting = list(BOTH_WAYS)
    running: dict[str, subprocess.Popen[str]] = {}
    while waiting or running:
        while waiting and len(running) < (1 if ALONE & {waiting[0], *running} else 2):
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
        statuses = played["totals"]["by_status"]  # what the live calls that failed ended with
        assert verdicts == [(a["name"], a["passed"]) for a in played["assertions"]], (name, statuses, out)
        assert all(passed for _, passed in verdicts), (name, out)


SHORT = """\
schema = "meshsim/v1"
duration = "1s"
drain = "0.5s"

[[service]]
name = "api"
replicas = 2

[[client]]
name = "c"
rate = 20
"""


def test_live_and_both_together_play_both_ways(tmp_path: Path, write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(SHORT)
    command = [*MESHSIM_RUN, str(path), "--live", "--both", "-q", "--json", str(tmp_path / "out.json")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in tmp_path.glob("out.*.json")} == {"out.sim.json", "out.live.json"}


def test_a_replica_that_cannot_start_again_after_a_kill_says_so(write_scenario: Callable[[str], Path]) -> None:
    scenario = load_scenario(write_scenario(SHORT + '\n[[fault]]\nat = "0s"\naction = "kill"\ntarget = "api/0"\n'))
    (kill,) = scenario.faults

    async def on_trio_side(change: Callable[[FaultConfig], None]) -> None:
        change(kill)  # as the fault injector does

    async def main() -> None:
        replica = StagedReplica(scenario.service("api"), 0, scenario.seed)
        await replica.start()
        try:
            await bridge.guest(on_trio_side, replica.apply)
            await replica.settle()
            with socket.socket() as squatter:  # takes its port while it is down
                squatter.bind((replica.host, replica.port))
                squatter.listen()
                await bridge.guest(on_trio_side, replica.clear)
                with pytest.raises(StartupError, match=rf"replica api/0: cannot listen on 127.0.0.1:{replica.port}"):
                    await replica.settle()
        finally:
            await replica.close()

    asyncio.run(main())


def test_a_rate_schedule_is_played_live_as_simulated(tmp_path: Path, write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(
        SHORT.replace('duration = "1s"', 'duration = "2s"').replace("rate = 20", 'rates = [10, 60]\nrate_step = "1s"')
    )
    command = [*MESHSIM_RUN, str(path), "--both", "-q", "--json", str(tmp_path / "out.json")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr
    simulated = json.loads((tmp_path / "out.sim.json").read_text())["totals"]["requests"]
    played = json.loads((tmp_path / "out.live.json").read_text())["totals"]["requests"]
    assert played == simulated  # the same planned arrivals: 10 a second, then 60
