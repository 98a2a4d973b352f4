"""`meshsim replay`: a recording made into a scenario, every balancing policy simulated on it.

The deterministic tests record in the simulator (a recorder listens to a simulated run), so the
replay can be checked against what made the recording; the end-to-end test records real calls
through GrpcClient over real replicas, one of them slow, and checks that theory holds."""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from click.testing import CliRunner

from meshsim import live
from meshsim.cli import main
from meshsim.core.call_log import CallRecorder, read_call_log
from meshsim.core.calls import Pattern
from meshsim.core.events import RequestFinished
from meshsim.core.measurements import percentile
from meshsim.core.replay import (
    CallTally,
    best_p99,
    compare_policies,
    derive,
    figures,
    recorded_figures,
)
from meshsim.core.scenario import Scenario, ScenarioError
from meshsim.core.scenario_loader import load_scenario, parse_scenario
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario

ONE_SLOW = """\
schema = "meshsim/v1"
seed = 5
duration = "20s"

[[service]]
name = "api"
replicas = 3
latency = { dist = "lognormal", median = "2ms", sigma = 0.4 }

[[service.replica]]
index = 1
latency = { dist = "uniform", low = "2s", high = "2.05s" }
errors = { UNAVAILABLE = 0.02 }

[[client]]
name = "web"
rates = [300, 300, 300, 300, 300, 150, 150, 150, 150, 150, 300, 300, 300, 300, 300, 300, 300, 300, 300, 300]
"""

REPLAY_COMMAND = importlib.import_module("meshsim.cli.replay")  # the module, not the command it names
LOAD_AWARE = ("least_connections", "p2c", "peak_ewma")


def simulate(scenario: Scenario, listener: Callable[[RequestFinished], None]) -> None:
    observer = Observer()
    observer.subscribe(RequestFinished, listener)
    run_scenario(scenario, observer=observer)


def record_simulated(text: str, path: Path) -> Path:
    """Record a simulated run of the scenario `text`, as a proxy would record live calls."""
    scenario = parse_scenario(text, path.with_suffix(".toml"))
    recorder = CallRecorder.open(path, source="simulator")
    observer = Observer()
    recorder.listen(observer)
    run_scenario(scenario, observer=observer)
    recorder.close()
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def one_slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_simulated(ONE_SLOW, tmp_path_factory.mktemp("replay") / "one_slow.rec")


# --------------------------------------------------------------------------- the derived scenario


def test_the_scenario_gives_each_replica_what_it_was_measured_with(one_slow: Path) -> None:
    log = read_call_log(one_slow)
    derivation = derive(log)
    scenario = parse_scenario(derivation.text, Path("derived.toml"))
    (service,) = scenario.services
    assert service.name == "api" and service.replicas == 3
    assert derivation.replicas == (("api/0", "api/0", "api"), ("api/1", "api/1", "api"), ("api/2", "api/2", "api"))
    slow = service.behaviour(1)
    assert 2.0 <= slow.latency.expected <= 2.05
    assert service.behaviour(0).latency.expected == pytest.approx(0.002 * math.exp(0.08), rel=0.1)
    ((status, share),) = slow.error_mix
    assert status is StatusCode.UNAVAILABLE and share == pytest.approx(0.02, abs=0.01)
    assert service.behaviour(0).error_mix == service.behaviour(2).error_mix == ()
    (client,) = scenario.clients
    assert client.name == "web" and client.rate_step == 1.0 and len(client.rates) == 20
    assert sum(client.rates) == len(log)  # every recorded call in exactly one step
    assert client.rates[6] == pytest.approx(150, abs=40) and client.rates[12] == pytest.approx(300, abs=60)
    assert scenario.duration == 20.0 and client.deadline is None and client.mix == ((Pattern.UNARY, 1.0),)
    assert derivation.notes == ()


def test_replaying_round_robin_reproduces_the_recording(one_slow: Path) -> None:
    """Calibration: the policy the recording was made with gives back the recorded figures."""
    log = read_call_log(one_slow)
    derivation = derive(log)
    scenario = parse_scenario(derivation.text, Path("derived.toml"))
    (replayed,) = compare_policies(scenario, ["api/0", "api/1", "api/2"], ["round_robin"], simulate)
    recorded = recorded_figures(log, derivation)
    assert replayed.calls == pytest.approx(recorded.calls, rel=0.05)
    assert replayed.p50 == pytest.approx(recorded.p50, rel=0.1)
    assert replayed.p99 == pytest.approx(recorded.p99, rel=0.05)
    assert replayed.success_rate == pytest.approx(recorded.success_rate, abs=0.005)
    assert replayed.shares == pytest.approx(recorded.shares, abs=0.02)


def test_load_aware_policies_beat_round_robin_at_p99_on_a_slow_replica(one_slow: Path) -> None:
    log = read_call_log(one_slow)
    derivation = derive(log)
    scenario = parse_scenario(derivation.text, Path("derived.toml"))
    rows = compare_policies(scenario, ["api/0", "api/1", "api/2"], ["round_robin", *LOAD_AWARE], simulate)
    by_policy = {row.label: row for row in rows}
    round_robin = by_policy["round_robin"]
    assert round_robin.p99 >= 2000
    for policy in LOAD_AWARE:
        assert by_policy[policy].p99 < round_robin.p99 / 10, policy
        assert by_policy[policy].shares[1] < 0.01, policy
    best = best_p99(rows)
    assert best is not None and best.label in LOAD_AWARE


def test_deadlines_patterns_retries_and_unrouted_calls(tmp_path: Path) -> None:
    def call(n: int, **changes: Any) -> RequestFinished:
        base = RequestFinished("batch", "api", "10.0.0.1:80", Pattern.UNARY, StatusCode.OK, n * 0.01, n * 0.01 + 0.02)
        return attrs.evolve(base, **changes)

    events = [call(n) for n in range(100)]
    events += [call(100 + n, status=StatusCode.DEADLINE_EXCEEDED, finished=1 + n * 0.01 + 0.25) for n in range(9)]
    events += [call(200 + n, pattern=Pattern.BIDI) for n in range(30)]
    events += [call(300 + n, attempts=2, endpoint="10.0.0.10:80") for n in range(10)]
    events += [call(400 + n, endpoint=None, status=StatusCode.UNAVAILABLE, attempts=0) for n in range(5)]
    path = tmp_path / "calls.rec"
    with CallRecorder.open(path) as recorder:
        for event in events:
            recorder.record(event)
    derivation = derive(read_call_log(path))
    scenario = parse_scenario(derivation.text, tmp_path / "derived.toml")
    (client,) = scenario.clients
    assert client.deadline == 0.25
    assert dict(client.mix) == {Pattern.UNARY: 124.0, Pattern.BIDI: 30.0} and client.messages == 1
    # Natural order: .1 before .10, whatever the text order says.
    assert [r for _, r, _ in derivation.replicas] == ["10.0.0.1:80", "10.0.0.10:80"]
    assert derivation.notes == (
        "batch: 9 calls ran out of time: replayed with a deadline of 250ms, their median duration",
        "5 calls (3.2%) reached no replica; in the replay the balancer decides where every call goes",
        "10 calls (6.5%) took more than one attempt: add the recorded client's [retry] or [hedging] to the "
        "scenario (--emit) to replay them as such",
    )
    assert all(f"# note: {note}" in derivation.text for note in derivation.notes)


def test_several_services_and_clients_and_names_of_any_kind(tmp_path: Path) -> None:
    odd = 'we"ird\nname:/x'

    def call(n: int, client: str, service: str, endpoint: str) -> RequestFinished:
        return RequestFinished(client, service, endpoint, Pattern.UNARY, StatusCode.OK, n * 0.1, n * 0.1 + 0.005)

    events = [call(n, "web", "shop.v1.Cart", "10.0.0.1:80") for n in range(20)]
    events += [call(n, "web", odd, "10.0.0.2:80") for n in range(20)]
    events += [call(n, "batch", "shop.v1.Cart", "10.0.0.3:80") for n in range(20)]
    events += [call(n, "lost", "nowhere", None) for n in range(20)]  # type: ignore[arg-type]
    path = tmp_path / "calls.rec"
    with CallRecorder.open(path) as recorder:
        for event in events:
            recorder.record(event)
    derivation = derive(read_call_log(path))
    scenario = parse_scenario(derivation.text, tmp_path / "derived.toml")
    # Services by the last part of their gRPC name, never with '/' or ':' (replica names have them).
    assert [s.name for s in scenario.services] == ["Cart", 'we"ird\nname__x']
    assert [(c.name, c.target) for c in scenario.clients] == [
        ("batch", "Cart"),
        ("web@Cart", "Cart"),
        ('web@we"ird\nname__x', 'we"ird\nname__x'),
    ]
    assert "[[service]]  # was shop.v1.Cart" in derivation.text
    assert '[[service]]  # was we"ird?name:/x' in derivation.text
    assert "20 calls of services no call of which reached a replica are left out" in derivation.notes


def test_figures_measure_as_reports_do() -> None:
    durations = [0.001 * n for n in range(1, 1001)]
    row = figures("x", durations, [0] * 990 + [14] * 10, [1] * 1000, [0, 1] * 500, 3)
    assert (row.p50, row.p99) == (500.0, 990.0)  # nearest rank, in ms
    assert row.p999 == percentile(durations, 99.9) * 1e3
    assert row.success_rate == 0.99 and row.amplification == 1.0 and row.shares == (0.5, 0.5, 0.0)
    tally = CallTally(["api/0"])
    tally(RequestFinished("c", "api", None, Pattern.UNARY, StatusCode.UNAVAILABLE, 1.0, 1.0, attempts=0))
    assert tally.figures("y").unrouted == 1.0 and math.isnan(tally.figures("y").shares[0])


# --------------------------------------------------------------------------- the command


def test_the_command_prints_the_comparison_and_emits_a_scenario_that_runs(one_slow: Path, tmp_path: Path) -> None:
    emitted = tmp_path / "replayed.toml"
    code, out, err = invoke("replay", str(one_slow), "--emit", str(emitted), "--jobs", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines if str(tmp_path) not in line) <= 80  # a path is never cut
    assert "Share of the calls each replica answered" in out
    assert any(line.startswith("lowest p99: ") and line.split()[2] in LOAD_AWARE for line in lines), out
    for label in ("recorded", "round_robin", *LOAD_AWARE):
        assert any(line.lstrip().startswith(label + " ") for line in lines), label
    assert f"wrote the scenario to {emitted}" in out
    load_scenario(emitted)
    code, out, err = invoke("run", str(emitted), "--quiet")
    assert code == 0, err


def test_the_same_recording_and_seed_give_the_same_bytes(one_slow: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        code, _, err = invoke("replay", str(one_slow), "--json", str(tmp_path / f"{name}.json"), "--jobs", "1")
        assert code == 0, err
        outputs.append((tmp_path / f"{name}.json").read_bytes())
    assert outputs[0] == outputs[1]
    document = json.loads(outputs[0])
    assert document["schema"] == "meshsim/replay/v1"
    assert [run["label"] for run in document["runs"]] == ["round_robin", "least_connections", "p2c", "peak_ewma"]
    assert document["recorded"]["share"].keys() == {"api/0", "api/1", "api/2"}
    assert document["lowest_p99"] in LOAD_AWARE
    code, _, _ = invoke("replay", str(one_slow), "--json", str(tmp_path / "c.json"), "--jobs", "1", "--seed", "2")
    assert code == 0 and (tmp_path / "c.json").read_bytes() != outputs[0]


@pytest.mark.slow
def test_policies_run_side_by_side_give_the_same_bytes(one_slow: Path, tmp_path: Path) -> None:
    for jobs in ("1", "2"):
        code, _, err = invoke("replay", str(one_slow), "--json", str(tmp_path / f"{jobs}.json"), "--jobs", jobs)
        assert code == 0, err
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()


def test_emit_and_json_to_stdout(one_slow: Path) -> None:
    code, out, err = invoke("replay", str(one_slow), "--emit", "-", "--policy", "p2c", "--jobs", "1")
    assert code == 0, err
    assert out.startswith("# Derived by `meshsim replay`") and 'policy = "p2c"' in out
    assert "lowest p99: p2c" in err  # the table goes to stderr, out of the scenario's way
    code, out, _ = invoke("replay", str(one_slow), "--json", "-", "--policy", "random", "--jobs", "1")
    assert code == 0 and json.loads(out)["runs"][0]["label"] == "random"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--policy", "round_robin,fastest"],
            "error: --policy: expected names from round_robin, random, weighted_round_robin, "
            "least_connections, p2c, consistent_hash, peak_ewma, got 'round_robin,fastest'",
            id="policy",
        ),
        pytest.param(["--policy", ","], "error: --policy: expected names from", id="no-policy"),
        pytest.param(["--step", "soon"], "error: --step: expected a duration like \"1s\", got 'soon'", id="step"),
        pytest.param(["--step", "0s"], "error: --step: must be at least 1ms, got '0s'", id="step-zero"),
        pytest.param(["--step", "0.5ms"], "error: --step: must be at least 1ms, got '0.5ms'", id="step-small"),
        pytest.param(["--emit", "-", "--json", "-"], "--emit - and --json - would both write to stdout", id="stdout"),
        pytest.param(
            ["--seed", "99999999999999999999"],
            "error: Invalid value for '--seed': 99999999999999999999 is not in the range 0<=x<=9223372036854775807",
            id="seed-too-large",
        ),
        pytest.param(["--seed", "-1"], "error: Invalid value for '--seed'", id="seed-negative"),
        pytest.param(["--jobs", "0"], "error: Invalid value for '--jobs'", id="jobs"),
        pytest.param(["--nope"], "error: No such option '--nope'", id="unknown-flag"),
        pytest.param(
            ["--json", "/nonexistent/x.json"],
            "error: --json /nonexistent/x.json: there is no directory /nonexistent",
            id="json-nowhere",
        ),
        pytest.param(
            ["--json", "."], "error: Invalid value for '--json': File '.' is a directory", id="json-directory"
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    one_slow: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bad option is found before any policy is simulated.
    monkeypatch.setattr(REPLAY_COMMAND, "_simulate", _never)
    code, _, err = invoke("replay", str(one_slow), "--jobs", "1", *args)
    assert code == 2
    assert message in err and err.count("\n") == 1, err


def _never(scenario: Scenario, listener: Callable[[RequestFinished], None]) -> None:
    raise AssertionError("simulated despite a bad option")


def test_the_largest_seed_is_the_scenario_files() -> None:
    from meshsim.cli.replay import MAX_SEED
    from meshsim.core.sweep import MAX_SEED as SCENARIO_MAX_SEED

    assert MAX_SEED == SCENARIO_MAX_SEED
    parse_scenario(ONE_SLOW.replace("seed = 5", f"seed = {MAX_SEED}"), Path("largest.toml"))
    with pytest.raises(ScenarioError):
        parse_scenario(ONE_SLOW.replace("seed = 5", f"seed = {MAX_SEED + 1}"), Path("larger.toml"))


def _interrupted(*args: object) -> None:
    raise KeyboardInterrupt


def _interrupted_in_a_nursery(*args: object) -> None:
    raise BaseExceptionGroup("from trio", [KeyboardInterrupt()])


def _worker_dies(*args: object) -> None:
    os._exit(1)


def test_ctrl_c_while_reading_is_one_line_and_exit_130(one_slow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("meshsim.core.call_log.read_call_log", _interrupted)
    code, _, err = invoke("replay", str(one_slow))
    assert (code, err) == (130, "error: interrupted\n")


def test_ctrl_c_in_a_simulation_is_one_line_and_exit_130(one_slow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REPLAY_COMMAND, "_simulate", _interrupted_in_a_nursery)
    code, _, err = invoke("replay", str(one_slow), "--jobs", "1")
    assert (code, err) == (130, "error: interrupted\n")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_is_one_line_and_exit_130(one_slow: Path, jobs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REPLAY_COMMAND, "_simulate", _interrupted)
    monkeypatch.setattr(REPLAY_COMMAND, "_one_policy", _interrupted)  # in a worker: raised again here
    code, _, err = invoke("replay", str(one_slow), "--jobs", jobs)
    assert (code, err) == (130, "error: interrupted\n")


def test_a_worker_that_dies_is_one_line_and_exit_3(one_slow: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REPLAY_COMMAND, "_one_policy", _worker_dies)
    code, _, err = invoke("replay", str(one_slow), "--jobs", "2")
    assert code == 3 and err.count("\n") == 1, err
    assert err.startswith("error: a worker process died while simulating the policies (killed, or out of memory?)")


def test_bad_recordings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("replay", str(tmp_path / "missing.rec"))
    assert (code, err.strip()) == (2, f"error: {tmp_path / 'missing.rec'}: no such file")
    (tmp_path / "scenario.toml").write_text('schema = "meshsim/v1"\n', encoding="utf-8")
    code, _, err = invoke("replay", str(tmp_path / "scenario.toml"))
    assert code == 2 and err.count("\n") == 1 and "not a meshsim call recording" in err
    with CallRecorder.open(tmp_path / "empty.rec"):
        pass
    code, _, err = invoke("replay", str(tmp_path / "empty.rec"))
    assert code == 2 and err.strip().endswith("no call in the recording reached a replica: there is nothing to replay")


def test_a_recording_too_large_to_simulate_says_so(tmp_path: Path) -> None:
    """A run's limits hold for a derived scenario too: here 600 replicas health-checked every second
    for the 3 hours the recording spans are too many probes."""
    events = [
        RequestFinished("c", "api", f"10.0.{n // 250}.{n % 250}:80", Pattern.UNARY, StatusCode.OK, n, n + 0.001)
        for n in range(600)
    ]
    events.append(attrs.evolve(events[0], started=10_800.0, finished=10_800.001))
    path = tmp_path / "sparse.rec"
    with CallRecorder.open(path) as recorder:
        for event in events:
            recorder.record(event)
    code, _, err = invoke("replay", str(path), "--jobs", "1")
    assert code == 2 and err.count("\n") == 1
    assert f"error: {path}: the scenario it makes cannot run: " in err and "health probes" in err


# --------------------------------------------------------------------------- for real


SLOW_SECONDS = 2.0
RATE = 300.0
LOAD_SECONDS = 3.0


async def through_grpc_client(addresses: list[str], path: Path) -> None:
    """RATE calls a second for LOAD_SECONDS, open loop, from GrpcClient (round robin), recorded."""
    from meshsim.pb.v1 import mesh_pb2

    async with live.GrpcClient(endpoints=addresses, record=path) as client:

        async def one(n: int) -> None:
            await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))

        async with trio.open_nursery() as nursery:
            began = trio.current_time()
            for n in range(int(RATE * LOAD_SECONDS)):
                await trio.sleep_until(began + n / RATE)
                nursery.start_soon(one, n)


async def through_the_proxy(addresses: list[str], path: Path) -> None:
    """The same load from a plain grpc.aio stub, through the proxy (round robin), which records."""
    import asyncio

    import grpc

    from meshsim.core.call_log import RecordConfig
    from meshsim.live.config import ProxyConfig
    from meshsim.live.proxy import Proxy
    from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc

    async def load(address: str) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            loop = asyncio.get_running_loop()
            began, calls = loop.time(), []
            for n in range(int(RATE * LOAD_SECONDS)):
                await asyncio.sleep(max(0.0, began + n / RATE - loop.time()))
                calls.append(asyncio.ensure_future(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)))))
            await asyncio.gather(*calls)

    # A third of the calls wait 2 s on the slow replica: 200 at once on the stub's one connection.
    config = ProxyConfig.for_service(
        "mesh.v1.MeshService", addresses, record=RecordConfig(path), max_concurrent_streams=1000
    )
    async with Proxy(config) as proxy:
        await bridge.wait(load(proxy.address))


@pytest.mark.slow
@pytest.mark.parametrize("record", [through_the_proxy, through_grpc_client], ids=["proxy", "grpc-client"])
def test_recorded_live_traffic_shows_load_aware_policies_beating_round_robin(
    tmp_path: Path, record: Callable[[list[str], Path], Any]
) -> None:
    """Real replicas on loopback, one of them 2 s slow; calls go round robin for 3 s and every one
    is recorded; the replay then simulates each policy on exactly that traffic."""
    from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas

    path = tmp_path / "live.rec"

    async def main() -> list[str]:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=3)))
        try:
            replicas[1].faults.latency = SLOW_SECONDS
            await record([r.address for r in replicas], path)
            return [r.address for r in replicas]
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    addresses = live.run(main)
    log = read_call_log(path)
    assert len(log) == int(RATE * LOAD_SECONDS) and log.complete
    assert {log.call(i).status for i in range(len(log))} == {StatusCode.OK}
    code, out, err = invoke("replay", str(path), "--json", str(tmp_path / "replay.json"), "--jobs", "1")
    assert code == 0, err
    document = json.loads((tmp_path / "replay.json").read_text())
    slow = next(name for name, recorded in document["scenario"]["replicas"].items() if recorded == addresses[1])
    recorded = document["recorded"]
    assert recorded["share"][slow] == pytest.approx(1 / 3, abs=0.02)  # round robin, as recorded
    runs = {run["label"]: run for run in document["runs"]}
    round_robin = runs["round_robin"]["latency_ms"]["p99"]
    assert round_robin >= SLOW_SECONDS * 1000
    assert recorded["latency_ms"]["p99"] == pytest.approx(round_robin, rel=0.05)
    for policy in LOAD_AWARE:
        assert runs[policy]["latency_ms"]["p99"] < round_robin / 4, (policy, out)
        assert runs[policy]["share"][slow] < 0.01, (policy, out)
    assert document["lowest_p99"] in LOAD_AWARE
    assert "lowest p99: " in out


def test_services_of_one_short_name_stay_apart(tmp_path: Path) -> None:
    events = [
        RequestFinished("web", service, f"10.0.0.{n}:80", Pattern.UNARY, StatusCode.OK, 0.1 * n, 0.1 * n + 0.01)
        for n, service in enumerate(["shop.v1.Cart", "shop.v2.Cart", "shop.v1.Cart"])
    ]
    path = tmp_path / "calls.rec"
    with CallRecorder.open(path) as recorder:
        for event in events:
            recorder.record(event)
    derivation = derive(read_call_log(path))
    assert [name for name, _, _ in derivation.replicas] == ["Cart/0", "Cart/1", "Cart-2/0"]


def test_services_served_at_the_same_addresses_are_credited_apart(tmp_path: Path) -> None:
    """One process serving two services (as most do): each service's calls count for its own
    replicas, not for the other's at the same address."""
    addresses = ["127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"]
    path = tmp_path / "calls.rec"
    with CallRecorder.open(path) as recorder:
        for n in range(600):
            service = "pkg.Alpha" if n % 2 else "pkg.Beta"
            start = n * 0.01
            recorder.record(
                RequestFinished("c", service, addresses[n % 3], Pattern.UNARY, StatusCode.OK, start, start + 0.002)
            )
    log = read_call_log(path)
    derivation = derive(log)
    assert [(name, service) for name, _, service in derivation.replicas] == [
        *((f"Alpha/{n}", "pkg.Alpha") for n in range(3)),
        *((f"Beta/{n}", "pkg.Beta") for n in range(3)),
    ]
    recorded = recorded_figures(log, derivation)
    assert recorded.shares == pytest.approx([1 / 6] * 6)
    assert recorded.unrouted == 0
    code, out, _ = invoke("replay", str(path), "--policy", "round_robin", "--json", "-")
    assert code == 0
    document = json.loads(out)
    assert document["recorded"]["share"] == pytest.approx(
        {f"{s}/{n}": 1 / 6 for s in ("Alpha", "Beta") for n in range(3)}, abs=1e-6
    )
    assert document["scenario"]["replicas"]["Beta/2"] == "127.0.0.1:5003"
