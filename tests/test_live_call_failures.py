"""Live calls whose retries back off by more than a float can hold: every call still ends.

A backoff multiplier of 1e200 (which the config accepts) once made the backoff raise
OverflowError on the call path, where asyncio swallowed it: without a deadline the call
never ended. Each call here must end UNAVAILABLE after its five attempts, within a bound.
"""

from __future__ import annotations

from typing import Any

import attrs
import grpc
import pytest
import trio

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.events import RequestFinished
from meshsim.core.health import HealthConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import RetryPolicy
from meshsim.core.status import StatusCode
from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
from meshsim.demo.servicer import ServerFaults
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer

pytestmark = pytest.mark.slow

HEALTH = HealthConfig(interval=0.1, timeout=0.5)
HUGE_BACKOFF = RetryPolicy(max_attempts=5, backoff_multiplier=1e200, initial_backoff=0.01, max_backoff=0.05)
CALLS = 3
# Five attempts and four waits of at most 50 ms each take well under a second; a call lost on the
# way would take for ever, so this bound only tells the two apart.
BOUND = 10.0


@attrs.define
class Outcomes:
    calls: list[RequestFinished] = attrs.Factory(list)

    def observer(self) -> Observer:
        observer = Observer()
        observer.subscribe(RequestFinished, self.calls.append)
        return observer


def failing_replicas() -> ServeConfig:
    return ServeConfig(port=0, replicas=2, faults=ServerFaults(error_rate=1.0))


def test_grpc_client_calls_with_a_huge_backoff_multiplier_all_end() -> None:
    seen = Outcomes()
    statuses: list[StatusCode] = []

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(failing_replicas()))
        client = live.GrpcClient(
            endpoints=[r.address for r in replicas],
            retry_policy=HUGE_BACKOFF,
            health=HEALTH,
            observer=seen.observer(),
        )
        try:
            async with client:
                with trio.fail_after(BOUND):
                    for n in range(CALLS):
                        with pytest.raises(live.RpcError) as failed:
                            await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))
                        statuses.append(failed.value.status)
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    assert statuses == [StatusCode.UNAVAILABLE] * CALLS
    assert [(c.status, c.attempts) for c in seen.calls] == [(StatusCode.UNAVAILABLE, 5)] * CALLS


def test_proxied_calls_with_a_huge_backoff_multiplier_all_end() -> None:
    seen = Outcomes()
    codes: list[grpc.StatusCode] = []

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(failing_replicas()))
        config = ProxyConfig.for_service(
            service=MESH_SERVICE,
            endpoints=tuple(r.address for r in replicas),
            health=HEALTH,
            policies=CallPolicies(retry=HUGE_BACKOFF),
        )
        try:
            async with Proxy(config, seen.observer()) as proxy:
                channel = grpc.aio.insecure_channel(proxy.address)
                stub: Any = mesh_pb2_grpc.MeshServiceStub(channel)
                try:
                    with trio.fail_after(BOUND):
                        for n in range(CALLS):
                            with pytest.raises(grpc.aio.AioRpcError) as failed:
                                await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n))))
                            codes.append(failed.value.code())
                finally:
                    await bridge.wait(channel.close())
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    assert codes == [grpc.StatusCode.UNAVAILABLE] * CALLS
    assert [(c.status, c.attempts) for c in seen.calls] == [(StatusCode.UNAVAILABLE, 5)] * CALLS
