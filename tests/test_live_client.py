"""GrpcClient against real grpc.aio replicas on 127.0.0.1: the simulator's mesh logic, live."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from meshsim import live
from meshsim.core.breaker import BreakerConfig
from meshsim.core.errors import ConfigError
from meshsim.core.events import AttemptFinished, BreakerChanged, RequestFinished
from meshsim.core.health import HealthConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import HedgingPolicy, RetryPolicy
from meshsim.core.status import StatusCode
from meshsim.demo.server import Replica, ServeConfig, start_replicas, stop_replicas
from meshsim.demo.servicer import MeshServicer, ServerFaults
from meshsim.live import bridge
from meshsim.live.config import FileDiscovery
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.messages import chat, metrics

FAST_HEALTH = HealthConfig(interval=0.1, timeout=0.5, unhealthy_threshold=1, healthy_threshold=1)


def with_mesh(check: Callable[[list[Replica]], Awaitable[None]], replicas: int = 2) -> None:
    async def main() -> None:
        started = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=replicas)))
        try:
            await check(started)
        finally:
            await bridge.wait(stop_replicas(started, 0))

    live.run(main)


def test_all_four_patterns_through_the_client() -> None:
    async def check(replicas: list[Replica]) -> None:
        addresses = [r.address for r in replicas]
        async with live.GrpcClient("mesh.v1.MeshService", endpoints=addresses) as client:
            answered = set()
            for n in range(4):
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=f"req-{n}", data="test data"))
                assert reply.request_id == f"req-{n}"
                answered.add(reply.replica)
            assert answered == set(addresses)  # round robin over both
            events = [e async for e in client.StreamEvents(mesh_pb2.StreamRequest(stream_id="s", count=4))]
            assert [e.sequence for e in events] == [0, 1, 2, 3]
            summary = await client.CollectMetrics(metrics())
            assert (summary.count, summary.mean) == (3, 3.0)
            answers = [m.message async for m in client.Chat(chat())]
            assert answers == ["echo: Message 0", "echo: Message 1", "echo: Message 2"]

    with_mesh(check)


def test_call_with_retry_rides_over_a_failing_replica() -> None:
    async def check(replicas: list[Replica]) -> None:
        replicas[0].faults.error_rate = 1.0  # UNAVAILABLE on every call, health still SERVING
        addresses = [r.address for r in replicas]
        observer = Observer()
        finished: list[RequestFinished] = []
        observer.subscribe(RequestFinished, finished.append)
        async with live.GrpcClient(endpoints=addresses, observer=observer) as client:
            for n in range(6):
                reply = await client.call_with_retry(
                    "Process",
                    mesh_pb2.ProcessRequest(request_id=str(n)),
                    RetryPolicy(max_attempts=3, initial_backoff=0.01),
                )
                assert reply.replica == replicas[1].address
            with pytest.raises(live.RpcError) as failed:
                await client.unary("Process", mesh_pb2.ProcessRequest(request_id="no-retry"))
                await client.unary("Process", mesh_pb2.ProcessRequest(request_id="no-retry"))
            assert failed.value.status is StatusCode.UNAVAILABLE
            assert "error injected" in failed.value.details
        assert any(e.attempts == 2 for e in finished)

    with_mesh(check)


def test_hedging_answers_from_the_fast_replica() -> None:
    async def check(replicas: list[Replica]) -> None:
        replicas[0].faults.latency = 2.0
        async with live.GrpcClient(endpoints=[r.address for r in replicas]) as client:
            for n in range(4):
                with trio.fail_after(1.5):
                    reply = await client.call_with_hedging(
                        "Process", mesh_pb2.ProcessRequest(request_id=str(n)), hedge_delay=0.05, max_hedges=1
                    )
                assert reply.replica == replicas[1].address

    with_mesh(check)


@pytest.mark.slow
def test_a_not_serving_replica_is_taken_out_and_a_dead_one_fails_over() -> None:
    async def check(replicas: list[Replica]) -> None:
        addresses = [r.address for r in replicas]
        async with live.GrpcClient(endpoints=addresses, health=FAST_HEALTH) as client:
            await bridge.wait(replicas[0].health.set("mesh.v1.MeshService", 2))  # NOT_SERVING
            await trio.sleep(0.5)
            for n in range(6):
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))
                assert reply.replica == addresses[1]
            await bridge.wait(replicas[0].health.set("mesh.v1.MeshService", 1))  # SERVING again
            await bridge.wait(replicas[1].stop(0))  # and the other one dies
            await trio.sleep(0.5)
            for n in range(6):
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=2.0)
                assert reply.replica == addresses[0]

    with_mesh(check)


def test_deadline_reaches_the_server_and_expires_calls() -> None:
    async def check(replicas: list[Replica]) -> None:
        async with live.GrpcClient(endpoints=[replicas[0].address]) as client:
            reply = await client.Process(mesh_pb2.ProcessRequest(request_id="d"), timeout=3.0)
            assert 0.0 < reply.deadline_remaining_s <= 3.05  # grpc-timeout is rounded up to its unit
            replicas[0].faults.latency = 1.0
            with pytest.raises(live.RpcError) as late:
                await client.Process(mesh_pb2.ProcessRequest(request_id="late"), timeout=0.1)
            assert late.value.status is StatusCode.DEADLINE_EXCEEDED

    with_mesh(check, replicas=1)


def test_cancelling_from_trio_cancels_the_grpc_call() -> None:
    async def check(replicas: list[Replica]) -> None:
        replicas[0].faults.latency = 5.0
        observer = Observer()
        finished: list[RequestFinished] = []
        attempts: list[AttemptFinished] = []
        observer.subscribe(RequestFinished, finished.append)
        observer.subscribe(AttemptFinished, attempts.append)
        async with live.GrpcClient(endpoints=[replicas[0].address], observer=observer) as client:
            with trio.move_on_after(0.2):
                await client.Process(mesh_pb2.ProcessRequest(request_id="gone"))
            assert [e.status for e in finished] == [StatusCode.CANCELLED]
            # The gRPC call is cancelled on the asyncio side; its end comes back shortly after.
            endpoint = client.channel.balancer.endpoints[0]
            with trio.fail_after(2):
                while endpoint.in_flight:  # noqa: ASYNC110 - a counter, not an event
                    await trio.sleep(0.01)
            assert [a.status for a in attempts] == [StatusCode.CANCELLED]

    with_mesh(check, replicas=1)


def test_health_follows_watch_without_waiting_for_a_poll() -> None:
    async def check(replicas: list[Replica]) -> None:
        addresses = [r.address for r in replicas]
        # Polling every 30 s could not notice within the test: only Watch can.
        slow_poll = HealthConfig(interval=30.0, timeout=1.0, unhealthy_threshold=3, healthy_threshold=3)
        async with live.GrpcClient(endpoints=addresses, health=slow_poll) as client:
            balancer = client.channel.balancer
            await trio.sleep(0.2)
            await bridge.wait(replicas[0].health.set("mesh.v1.MeshService", 2))  # NOT_SERVING
            with trio.fail_after(5):
                while balancer.endpoints[0].healthy:  # noqa: ASYNC110 - state owned by the balancer actor
                    await trio.sleep(0.02)
            await bridge.wait(replicas[0].health.set("mesh.v1.MeshService", 1))  # SERVING
            with trio.fail_after(5):
                while not balancer.endpoints[0].healthy:  # noqa: ASYNC110 - state owned by the balancer actor
                    await trio.sleep(0.02)

    with_mesh(check)


class CheckOnlyHealth(health.aio.HealthServicer):
    """A server from before Watch existed."""

    async def Watch(self, request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no Watch here")


def test_health_falls_back_to_check_without_watch() -> None:
    async def main() -> None:
        servicer = CheckOnlyHealth()

        async def start() -> tuple[grpc.aio.Server, int]:
            server = grpc.aio.server()
            port = server.add_insecure_port("127.0.0.1:0")
            mesh_pb2_grpc.add_MeshServiceServicer_to_server(MeshServicer(f"127.0.0.1:{port}", ServerFaults()), server)
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
            await server.start()
            await servicer.set("mesh.v1.MeshService", health_pb2.HealthCheckResponse.SERVING)
            return server, port

        server, port = await bridge.wait(start())
        try:
            polling = HealthConfig(interval=0.1, timeout=0.5, unhealthy_threshold=2, healthy_threshold=1)
            async with live.GrpcClient(endpoints=[f"127.0.0.1:{port}"], health=polling) as client:
                endpoint = client.channel.balancer.endpoints[0]
                await trio.sleep(0.3)
                assert endpoint.healthy
                await bridge.wait(servicer.set("mesh.v1.MeshService", health_pb2.HealthCheckResponse.NOT_SERVING))
                with trio.fail_after(5):
                    while endpoint.healthy:  # noqa: ASYNC110 - state owned by the balancer actor
                        await trio.sleep(0.02)
                with pytest.raises(live.RpcError) as refused:
                    await client.Process(mesh_pb2.ProcessRequest(request_id="x"))
                assert refused.value.status is StatusCode.UNAVAILABLE
        finally:
            await bridge.wait(server.stop(0))

    live.run(main)


# --- weights, hash keys and every call policy ----------------------------------------


def test_weights_share_calls_three_to_one() -> None:
    async def check(replicas: list[Replica]) -> None:
        addresses = [r.address for r in replicas]
        async with live.GrpcClient(endpoints=addresses, policy="weighted_round_robin", weights=[3, 1]) as client:
            answered = Counter()
            for n in range(40):
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))
                answered[reply.replica] += 1
        assert answered == {addresses[0]: 30, addresses[1]: 10}

    with_mesh(check)


def test_the_weighted_alias_names_the_same_policy() -> None:
    client = live.GrpcClient(endpoints=["127.0.0.1:1", "127.0.0.1:2"], policy="weighted", weights=[2, 1])
    assert client.balancer_config.policy == "weighted_round_robin"


def test_a_key_keeps_every_pattern_on_its_replica_under_consistent_hash() -> None:
    async def check(replicas: list[Replica]) -> None:
        async with live.GrpcClient(endpoints=[r.address for r in replicas], policy="consistent_hash") as client:
            homes = set()
            for n in range(12):
                key = f"user-{n}"
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=key), key=key)
                events = [e async for e in client.StreamEvents(mesh_pb2.StreamRequest(count=1), key=key)]
                summary = await client.CollectMetrics(metrics(), key=key)
                answers = [m async for m in client.Chat(chat(), key=key)]
                assert {events[0].replica, summary.replica, answers[0].replica} == {reply.replica}
                homes.add(reply.replica)
            assert len(homes) == 2  # twelve keys do not all land on one of two replicas

    with_mesh(check)


def test_policies_give_the_client_a_replica_breaker() -> None:
    observer = Observer()
    opened: list[BreakerChanged] = []
    attempts: list[AttemptFinished] = []
    observer.subscribe(BreakerChanged, opened.append)
    observer.subscribe(AttemptFinished, attempts.append)
    breaker = BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=50, wait_duration_in_open=60)

    async def check(replicas: list[Replica]) -> None:
        replicas[0].faults.error_rate = 1.0  # UNAVAILABLE on every call, health still SERVING
        policies = CallPolicies(replica_breaker=breaker, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))
        async with live.GrpcClient(
            endpoints=[r.address for r in replicas], policies=policies, observer=observer
        ) as client:
            for n in range(20):
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))
                assert reply.replica == replicas[1].address  # retried off the failing replica, then kept off it
        assert [(b.scope, b.target, b.state) for b in opened] == [("replica", replicas[0].address, "OPEN")]
        # The failing replica saw the breaker's window of calls; the open breaker kept the rest away.
        assert sum(a.endpoint == replicas[0].address for a in attempts) == 4

    with_mesh(check)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"weights": [3]}, "weights: 1 entries for 2 endpoints", id="length"),
        pytest.param({"weights": [3, 0]}, "weights[1]: must be a positive integer", id="zero"),
        pytest.param(
            {"weights": [1, 1], "discovery": FileDiscovery(Path("endpoints.txt"))},
            "weights: a discovered endpoint has no weight",
            id="discovery",
        ),
        pytest.param(
            {"policies": CallPolicies(), "retry_policy": RetryPolicy()},
            "policies: give either policies or retry_policy and hedging_policy",
            id="policies-and-retry",
        ),
        pytest.param(
            {"policies": CallPolicies(), "hedging_policy": HedgingPolicy()},
            "policies: give either policies or retry_policy and hedging_policy",
            id="policies-and-hedging",
        ),
        pytest.param({"policy": "fastest"}, "policy: expected one of round_robin", id="policy"),
    ],
)
def test_bad_client_options_are_one_line_naming_the_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        live.GrpcClient(endpoints=["127.0.0.1:1", "127.0.0.1:2"], **options)
    assert str(error.value).startswith("GrpcClient ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)
