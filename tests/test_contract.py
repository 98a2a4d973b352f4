"""One set of behaviour tests, run against the simulator and against real grpc.aio replicas.

Each case states a mesh (two replicas, a fault on the first, a policy) and what a
user should see; `simulate` runs it as a scenario in virtual time, `go_live` runs it
against replicas on 127.0.0.1, through GrpcClient and through the proxy. The same mesh logic must give the
same answer in both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import grpc
import pytest
import trio

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.events import EndpointEjected, RequestFinished
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import ConsecutiveFailuresConfig, OutlierConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import HedgingPolicy, RetryPolicy
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario

CALLS = 40


@attrs.frozen
class Case:
    name: str
    fault: str  # "errors" | "kill" | "slow", always on replica 0
    retry: bool = False
    hedging: bool = False
    outlier: bool = False


@attrs.define
class Seen:
    calls: list[RequestFinished] = attrs.Factory(list)
    ejected: list[str] = attrs.Factory(list)  # endpoint indices, as "0" / "1"

    def watch(self, observer: Observer, index_of: Callable[[str | None], str]) -> None:
        observer.subscribe(RequestFinished, self.calls.append)
        observer.subscribe(EndpointEjected, lambda e: self.ejected.append(index_of(e.endpoint)))


CASES = [
    Case("retries ride over a replica that fails every call", fault="errors", retry=True),
    Case("retries ride over a dead replica", fault="kill", retry=True),
    Case("outlier detection ejects a replica failing calls while healthy", fault="errors", outlier=True),
    Case("hedging answers from the fast replica", fault="slow", hedging=True),
]


def simulate(case: Case, tmp_path: Path) -> Seen:
    fault = {
        "errors": 'action = "errors"\nrate = 1.0\nstatus = "UNAVAILABLE"',
        "kill": 'action = "kill"',
        "slow": 'action = "latency"\nadd = "500ms"',
    }[case.fault]
    text = f"""
schema = "meshsim/v1"
seed = 5
duration = "{CALLS * 0.05}s"

[[service]]
name = "api"
replicas = 2
latency = "5ms"

[health]
interval = "100ms"
timeout = "50ms"

[[client]]
name = "c"
concurrency = 1
think_time = "15ms"
deadline = "2s"

[[fault]]
at = "0s"
target = "api/0"
{fault}
"""
    if case.retry:
        text += '\n[retry]\nmax_attempts = 3\ninitial_backoff = "5ms"\n'
    if case.hedging:
        text += '\n[hedging]\nmax_attempts = 2\nhedging_delay = "50ms"\n'
    if case.outlier:
        text += '\n[outlier_detection]\ninterval = "10s"\nbase_ejection_time = "30s"\nmax_ejection_percent = 50\n'
        text += "[outlier_detection.consecutive_failures]\nthreshold = 3\n"
    path = tmp_path / "case.toml"
    path.write_text(text, encoding="utf-8")
    observer = Observer()
    seen = Seen()
    seen.watch(observer, lambda name: (name or "").split("/")[-1])
    run_scenario(load_scenario(path), observer=observer)
    return seen


def go_live(case: Case, via: str) -> Seen:
    """Real replicas, reached through GrpcClient (`via="client"`) or through the proxy from a plain stub."""
    seen = Seen()

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=2)))
        addresses = [r.address for r in replicas]
        first = replicas[0]
        if case.fault == "errors":
            first.faults.error_rate = 1.0
        elif case.fault == "slow":
            first.faults.latency = 0.5
        else:
            await bridge.wait(first.stop(0))
        observer = Observer()
        seen.watch(observer, lambda name: str(addresses.index(name)) if name in addresses else "")
        outlier = None
        if case.outlier:
            outlier = OutlierConfig(
                interval=10.0,
                base_ejection_time=30.0,
                max_ejection_percent=50,
                consecutive_failures=ConsecutiveFailuresConfig(threshold=3),
            )
        retry = RetryPolicy(max_attempts=3, initial_backoff=0.005) if case.retry else None
        hedging = HedgingPolicy(max_attempts=2, hedging_delay=0.05) if case.hedging else None
        health = HealthConfig(interval=0.1, timeout=0.05)
        try:
            if via == "client":
                client = live.GrpcClient(
                    endpoints=addresses,
                    retry_policy=retry,
                    hedging_policy=hedging,
                    health=health,
                    outlier_detection=outlier,
                    observer=observer,
                )
                async with client:
                    await make_calls(lambda request: client.unary("Process", request, timeout=2.0))
            else:
                config = ProxyConfig.for_service(
                    service=MESH_SERVICE,
                    endpoints=tuple(addresses),
                    health=health,
                    policies=CallPolicies(retry=retry, hedging=hedging),
                    outlier=outlier,
                )
                async with Proxy(config, observer) as proxy:
                    channel = grpc.aio.insecure_channel(proxy.address)
                    stub = mesh_pb2_grpc.MeshServiceStub(channel)
                    try:
                        await make_calls(lambda request: bridge.wait(stub.Process(request, timeout=2.0)))
                    finally:
                        await bridge.wait(channel.close())
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    return seen


async def make_calls(send: Callable[[mesh_pb2.ProcessRequest], Awaitable[object]]) -> None:
    for n in range(CALLS):
        # A failed call raises, and is recorded as a RequestFinished all the same.
        with contextlib.suppress(live.RpcError, grpc.aio.AioRpcError):
            await send(mesh_pb2.ProcessRequest(request_id=str(n)))
        await trio.sleep(0.015)


def check(case: Case, seen: Seen) -> None:
    calls = seen.calls
    assert len(calls) >= CALLS // 2
    if case.retry:
        assert all(c.status is StatusCode.OK for c in calls)
        if case.fault == "errors":
            # Health says SERVING throughout, so retries alone did it. (A dead replica may be
            # found by health checks before any call reaches it, live more than simulated.)
            assert any(c.attempts == 2 for c in calls)
    if case.outlier:
        assert seen.ejected == ["0"]
        failed = [n for n, c in enumerate(calls) if c.status is not StatusCode.OK]
        # Round robin sends every other call to the bad replica until its third failure ejects it.
        assert len(failed) == 3
        assert all(c.status is StatusCode.OK for c in calls[failed[-1] + 1 :])
    if case.hedging:
        assert all(c.status is StatusCode.OK for c in calls)
        assert max(c.finished - c.started for c in calls) < 0.4


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_in_the_simulator(case: Case, tmp_path: Path) -> None:
    check(case, simulate(case, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_against_real_replicas_through_the_client(case: Case) -> None:
    check(case, go_live(case, via="client"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_against_real_replicas_through_the_proxy(case: Case) -> None:
    check(case, go_live(case, via="proxy"))
