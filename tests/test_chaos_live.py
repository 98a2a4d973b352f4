"""Chaos against real processes: `meshsim serve --replicas 3` behind `meshsim live`, faults added over
their admin endpoints while calls flow, each effect and its clearing measured from the calls."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest

from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from tests.conftest import ROOT, meshsim, serve_replicas, start, stop
from tests.mesh import FAST_HEALTH, Mesh, admin_url, running_mesh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    retry = """\
[retry]
max_attempts = 3
initial_backoff = "10ms"
max_backoff = "50ms"
per_attempt_timeout = "400ms"
retryable_status_codes = ["UNAVAILABLE", "DEADLINE_EXCEEDED"]
previous_hosts = true
"""
    with running_mesh(tmp_path_factory.mktemp("chaos"), FAST_HEALTH + retry) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left(mesh: Mesh) -> Iterator[None]:
    yield
    for url in (mesh.proxy_admin, mesh.serve_admin):
        http(url, "DELETE", "/faults")
    settled(mesh)


def http(url: str, method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read()
            return response.status, json.loads(text) if path != "/metrics" else text.decode()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def add(url: str, **fault: Any) -> str:
    status, answer = http(url, "POST", "/faults", fault)
    assert status == 201, answer
    return str(answer["fault"]["id"])


def settled(mesh: Mesh) -> None:
    """Every replica in rotation again (a test's faults have cleared)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, clusters = http(mesh.proxy_admin, "GET", "/clusters")
        if all(e["in_rotation"] for e in clusters["clusters"][0]["endpoints"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"replicas not back in rotation: {clusters}")


@attrs.frozen
class Call:
    at: float
    status: str
    replica: str  # "" when it failed
    seconds: float


def calls(mesh: Mesh, seconds: float, workers: int = 4, metadata: tuple[tuple[str, str], ...] = ()) -> list[Call]:
    """Unary calls through the proxy from `workers` threads for `seconds` (each at most 2 s)."""
    channel = grpc.insecure_channel(mesh.proxy)
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    made: list[Call] = []
    start_at = time.monotonic()

    def work() -> None:
        while (now := time.monotonic()) < start_at + seconds:
            try:
                answer = stub.Process(mesh_pb2.ProcessRequest(request_id="x"), timeout=2, metadata=metadata)
                made.append(Call(now - start_at, "OK", answer.replica, time.monotonic() - now))
            except grpc.RpcError as error:
                made.append(Call(now - start_at, error.code().name, "", time.monotonic() - now))

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    channel.close()
    return made


def within_interval(count: int, total: int, share: float) -> bool:
    """`count` of `total` is within four standard errors of `share` (a binomial's normal approximation)."""
    spread = 4 * math.sqrt(share * (1 - share) / total)
    return abs(count / total - share) <= spread


def test_errors_on_every_replica_fail_their_share_then_clear(mesh: Mesh) -> None:
    add(mesh.serve_admin, action="errors", target="api", rate=0.3, status="INTERNAL", **{"for": "3s"})
    during = calls(mesh, 1.5)
    failed = sum(call.status == "INTERNAL" for call in during)
    assert len(during) > 100
    assert within_interval(failed, len(during), 0.3), (failed, len(during))
    http(mesh.serve_admin, "DELETE", "/faults")
    assert all(call.status == "OK" for call in calls(mesh, 0.5))


def test_the_proxy_aborts_a_share_of_one_methods_calls_that_carry_a_header(mesh: Mesh) -> None:
    add(
        mesh.proxy_admin,
        action="errors",
        target="mesh.v1.MeshService",
        rate=0.5,
        status="RESOURCE_EXHAUSTED",
        method="Process",
        header="x-chaos=on",
        **{"for": "5s"},
    )
    marked = calls(mesh, 1.0, metadata=(("x-chaos", "on"),))
    unmarked = calls(mesh, 0.5, metadata=(("x-chaos", "off"),))
    aborted = sum(call.status == "RESOURCE_EXHAUSTED" for call in marked)
    assert within_interval(aborted, len(marked), 0.5), (aborted, len(marked))
    assert all(call.status == "OK" for call in unmarked)
    _, metrics = http(mesh.proxy_admin, "GET", "/metrics")
    assert 'code="RESOURCE_EXHAUSTED"' in metrics  # aborted calls are recorded calls
    assert 'meshsim_faults_injected_total{action="errors"}' in metrics


def test_latency_on_one_replica_slows_only_its_calls(mesh: Mesh) -> None:
    slow = mesh.replicas[1]
    add(mesh.serve_admin, action="latency", target="api/1", add="150ms", **{"for": "4s"})
    during = calls(mesh, 1.5)
    on_slow = [call.seconds for call in during if call.replica == slow]
    elsewhere = [call.seconds for call in during if call.replica not in ("", slow)]
    assert on_slow and min(on_slow) >= 0.15
    assert sorted(elsewhere)[len(elsewhere) // 2] < 0.05


def test_a_proxy_delay_adds_to_every_call(mesh: Mesh) -> None:
    add(mesh.proxy_admin, action="latency", target="*", add="80ms", **{"for": "3s"})
    during = calls(mesh, 1.0)
    assert during and all(call.status == "OK" and call.seconds >= 0.08 for call in during)


def test_a_killed_replica_loses_its_calls_to_the_others_and_comes_back(mesh: Mesh) -> None:
    killed = mesh.replicas[2]
    add(mesh.serve_admin, action="kill", target="api/2", **{"for": "2s"})
    during = calls(mesh, 1.8)
    assert all(call.status == "OK" for call in during), [c for c in during if c.status != "OK"][:3]
    assert not [call for call in during if call.at > 0.5 and call.replica == killed]
    time.sleep(0.5)  # the fault has ended: the replica starts again on its port
    after = calls(mesh, 2.0)
    assert any(call.replica == killed for call in after[len(after) // 2 :])


def test_a_blackholed_replica_is_taken_out_and_retries_carry_its_calls(mesh: Mesh) -> None:
    held = mesh.replicas[0]
    add(mesh.serve_admin, action="blackhole", target="api/0", **{"for": "2.5s"})
    during = calls(mesh, 2.0)
    assert all(call.status == "OK" for call in during), [c for c in during if c.status != "OK"][:3]
    assert not [call for call in during if call.at > 1.0 and call.replica == held]
    _, clusters = http(mesh.proxy_admin, "GET", "/clusters")
    (endpoint,) = [e for e in clusters["clusters"][0]["endpoints"] if e["endpoint"] == held]
    assert not endpoint["in_rotation"]


def test_a_replica_reporting_not_serving_is_drained_until_the_fault_ends(mesh: Mesh) -> None:
    drained = mesh.replicas[1]
    add(mesh.serve_admin, action="health", target="api/1", status="NOT_SERVING", **{"for": "1.5s"})
    during = calls(mesh, 1.2)
    assert not [call for call in during if call.at > 0.5 and call.replica == drained]
    time.sleep(0.5)
    assert any(call.replica == drained for call in calls(mesh, 1.0))


def test_the_proxy_treats_a_killed_endpoint_as_dead_and_fails_attempts_in_its_place(mesh: Mesh) -> None:
    dead, failing = mesh.replicas[0], mesh.replicas[1]
    add(mesh.proxy_admin, action="kill", target=dead, **{"for": "3s"})
    add(mesh.proxy_admin, action="errors", target=failing, rate=1.0, status="UNAVAILABLE", **{"for": "3s"})
    during = calls(mesh, 1.5)
    # Every attempt sent to the failing endpoint fails; retries (to another host) carry its calls
    # to the last one.
    assert all(call.status == "OK" and call.replica == mesh.replicas[2] for call in during if call.at > 0.3)
    _, metrics = http(mesh.proxy_admin, "GET", "/metrics")
    assert 'meshsim_faults_active{action="kill"} 1.0' in metrics


def test_a_fault_clears_itself_when_its_time_is_up(mesh: Mesh) -> None:
    add(mesh.serve_admin, action="errors", target="api", rate=1.0, status="INTERNAL", **{"for": "0.5s"})
    _, listed = http(mesh.serve_admin, "GET", "/faults")
    assert [f["action"] for f in listed["faults"]] == ["errors"]
    time.sleep(0.8)
    _, listed = http(mesh.serve_admin, "GET", "/faults")
    assert listed["faults"] == []
    assert all(call.status == "OK" for call in calls(mesh, 0.3))
    _, metrics = http(mesh.serve_admin, "GET", "/metrics")
    assert 'meshsim_faults_cleared_total{action="errors",reason="expired"}' in metrics


def test_bad_requests_name_the_field_and_change_nothing(mesh: Mesh) -> None:
    cases = [
        ({"action": "errors", "target": "api/1", "rate": 2, "for": "1s"}, "rate"),
        ({"action": "errors", "target": "api/7", "rate": 0.5, "for": "1s"}, "target"),
        ({"action": "kill", "target": "api/1"}, "for"),
        ({"action": "kill", "target": "api/1", "for": "2d"}, "for"),
        ({"action": "kill", "target": "api/1", "for": "1s", "method": "Process"}, "method"),
        ({"action": "partition", "target": "api/1", "for": "1s", "client": "x"}, "action"),
        ({"action": "errors", "target": "api/1", "rate": 0.5, "for": "1s", "header": "x=1"}, "header"),
        ({"action": "lag", "target": "api/1", "for": "1s"}, "action"),
        ({"action": "latency", "target": "api/1", "for": "1s", "add": "1s", "colour": 1}, "colour"),
    ]
    for body, field in cases:
        status, answer = http(mesh.serve_admin, "POST", "/faults", body)
        assert (status, answer.get("field")) == (400, field), (body, answer)
    status, answer = http(mesh.proxy_admin, "POST", "/faults", {"action": "kill", "target": "*", "for": "1s"})
    assert (status, answer["field"]) == (400, "target")
    request = urllib.request.Request(mesh.serve_admin + "/faults", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400 and json.loads(refused.value.read()) == {"error": "the body is not JSON"}
    assert http(mesh.serve_admin, "GET", "/faults")[1] == {"faults": []}
    assert http(mesh.serve_admin, "GET", "/nowhere")[0] == 404
    assert http(mesh.serve_admin, "PUT", "/faults")[0] == 405
    assert http(mesh.proxy_admin, "GET", "/ready") == (200, {"ready": True})
    assert http(mesh.proxy_admin, "GET", "/healthz") == (200, {"alive": True})
    _, config = http(mesh.proxy_admin, "GET", "/config")
    assert config["health"]["interval"] == 0.2 and config["clusters"][0]["endpoints"] == list(mesh.replicas)


def test_the_chaos_command_adds_lists_and_clears(mesh: Mesh) -> None:
    urls = f"{mesh.serve_admin},{mesh.proxy_admin}"
    added = meshsim(
        "chaos", urls, "add", "errors", "--target", "api/1", "--status", "UNAVAILABLE", "--share", "0.5", "--for", "30s"
    )
    assert added.returncode == 0, added.stderr
    assert "errors 50% UNAVAILABLE on api/1 for 30s" in added.stdout
    # The proxy has the endpoint by its address; the replicas do not have "*".
    delay = meshsim("chaos", urls, "add", "latency", "--target", "*", "--delay", "5ms", "--for", "30s")
    assert delay.returncode == 0, delay.stderr
    listed = meshsim("chaos", urls, "list")
    assert listed.returncode == 0 and "api/1" in listed.stdout and "+5ms" in listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    wrong = meshsim("chaos", urls, "add", "errors", "--target", "api/1", "--share", "5", "--for", "1s")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "rate: must be at most 1" in wrong.stderr
    cleared = meshsim("chaos", urls, "clear")
    assert cleared.returncode == 0 and "cleared 2 faults" in cleared.stdout
    assert "no active faults" in meshsim("chaos", urls, "list").stdout
    gone = meshsim("chaos", "http://127.0.0.1:1", "list")
    assert gone.returncode == 2 and "cannot reach the admin endpoint" in gone.stderr


def test_a_token_guards_the_admin_endpoint_and_is_required_beyond_loopback(tmp_path: Path) -> None:
    refused = meshsim("serve", "--port", "0", "--admin", "0.0.0.0:0")
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith(
        "needs a token (--admin-token or MESHSIM_ADMIN_TOKEN): the admin API can add faults"
    )
    serve, _ = serve_replicas(1, "--admin", "127.0.0.1:0", "--admin-token", "s3cret")
    try:
        url = admin_url(serve)
        status, answer = http(url, "POST", "/faults", {"action": "kill", "target": "api/0", "for": "1s"})
        assert status == 401 and "bearer token" in answer["error"]
        assert http(url, "GET", "/faults", token="wrong")[0] == 401
        assert http(url, "GET", "/faults", token="s3cret") == (200, {"faults": []})
        assert http(url, "GET", "/healthz")[0] == 200  # probes need no token
        denied = meshsim("chaos", url, "list")
        assert denied.returncode == 2 and "bearer token is required" in denied.stderr
        assert meshsim("chaos", "--token", "s3cret", url, "list").returncode == 0
    finally:
        stop(serve)


def test_playing_the_failover_scenario_against_the_mesh_gives_the_simulated_failover(mesh: Mesh) -> None:
    """failover.toml kills api/1 at 10 s for 15 s: no call is lost (the proxy retries), api/1 takes no
    calls while it is down and takes them again once it is back, as the simulator predicts."""
    player = start("chaos", mesh.serve_admin, "play", str(ROOT / "scenarios" / "failover.toml"))
    try:
        assert player.stdout is not None
        assert player.stdout.readline().startswith("playing 1 fault of failover")  # its clock starts
        made = calls(mesh, 28.0, workers=2)
        out, err = player.communicate(timeout=30)
    finally:
        if player.poll() is None:
            player.kill()
    assert player.returncode == 0, err
    assert "kill on api/1 for 15s" in out and "all have ended" in out
    killed = mesh.replicas[1]
    failed = [call for call in made if call.status != "OK"]
    assert not failed, failed[:3]
    assert any(call.replica == killed for call in made if call.at < 9.5)
    assert not [call for call in made if 10.6 < call.at < 24.9 and call.replica == killed]
    assert any(call.replica == killed for call in made if call.at > 26.0)


def test_play_skips_a_fault_no_process_takes_and_says_so(mesh: Mesh, tmp_path: Path) -> None:
    scenario = tmp_path / "short.toml"
    scenario.write_text(
        """\
schema = "meshsim/v1"
name = "short"
duration = "2s"

[[service]]
name = "api"
replicas = 3

[[client]]
name = "web"
rate = 10

[[fault]]
at = "0s"
for = "1s"
action = "kill"
target = "api/0"

[[fault]]
at = "0.2s"
for = "1s"
action = "partition"
target = "api/1"
client = "web"
""",
        encoding="utf-8",
    )
    played = meshsim("chaos", f"{mesh.serve_admin},{mesh.proxy_admin}", "play", str(scenario))
    assert played.returncode == 1, played.stderr
    assert "kill on api/0 for 1s" in played.stdout.replace("\n", " ")
    assert "skipped partition on api/1: no process takes it" in played.stdout.replace("\n", " ")
    assert "skipped 1: no process took it" in played.stdout


def test_an_endpoint_fault_acts_only_on_its_method(mesh: Mesh) -> None:
    add(
        mesh.proxy_admin,
        action="errors",
        target=mesh.replicas[0],
        rate=1.0,
        status="INTERNAL",
        method="Chat",
        **{"for": "3s"},
    )
    assert all(call.status == "OK" for call in calls(mesh, 0.5))


def test_a_call_whose_deadline_passes_in_a_proxy_delay_is_recorded(mesh: Mesh) -> None:
    add(mesh.proxy_admin, action="latency", target="*", add="1s", **{"for": "3s"})
    channel = grpc.insecure_channel(mesh.proxy)
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    _, before = http(mesh.proxy_admin, "GET", "/metrics")
    with pytest.raises(grpc.RpcError) as late:
        stub.Process(mesh_pb2.ProcessRequest(request_id="late"), timeout=0.3)
    channel.close()
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.2)
    _, after = http(mesh.proxy_admin, "GET", "/metrics")
    counted = 'grpc_requests_total{client="proxy",code="DEADLINE_EXCEEDED",method="/mesh.v1.MeshService/Process"'
    assert counted not in before and counted in after


def test_the_chaos_command_says_a_bad_url_in_one_line(mesh: Mesh) -> None:
    for url, words in (
        ("http://127.0.0.1:abc", "URL"),
        ("ftp://127.0.0.1:1", "URL"),
        (f"http://{mesh.replicas[0]}", "cannot reach the admin endpoint"),  # a gRPC port
    ):
        said = meshsim("chaos", url, "list")
        assert said.returncode == 2 and "Traceback" not in said.stderr, said.stderr
        assert words in said.stderr
