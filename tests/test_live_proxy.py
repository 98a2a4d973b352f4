"""The proxy: real gRPC clients (plain grpc.aio stubs) through meshsim to real replicas."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshsim import live
from meshsim.core.health import HealthConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.demo.server import Replica, ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from tests.conftest import meshsim, serve_replicas, start, stop
from tests.messages import chat, metrics

FAST_HEALTH = HealthConfig(interval=0.1, timeout=0.5, unhealthy_threshold=1, healthy_threshold=1)


def through_proxy(check: Callable[[Proxy, list[Replica]], Awaitable[None]], replicas: int = 2, **options: Any) -> None:
    async def main() -> None:
        started = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=replicas)))
        config = ProxyConfig.for_service(
            service="mesh.v1.MeshService", endpoints=tuple(r.address for r in started), health=FAST_HEALTH, **options
        )
        try:
            async with Proxy(config) as proxy:
                await check(proxy, started)
        finally:
            await bridge.wait(stop_replicas(started, 0))

    live.run(main)


def test_all_four_patterns_pass_through_and_calls_are_balanced() -> None:
    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                seen = set()
                for n in range(4):
                    reply = await stub.Process(mesh_pb2.ProcessRequest(request_id=f"r{n}", data="abc"), timeout=5)
                    assert reply.request_id == f"r{n}"
                    # The deadline reached the replica (grpc-timeout is coarse: a few ms either way).
                    assert 4.0 < reply.deadline_remaining_s < 5.1
                    seen.add(reply.replica)
                assert seen == {r.address for r in replicas}
                events = [e.sequence async for e in stub.StreamEvents(mesh_pb2.StreamRequest(count=3))]
                assert events == [0, 1, 2]
                summary = await stub.CollectMetrics(metrics())
                assert (summary.count, summary.sum) == (3, 9.0)
                answers = [m.message async for m in stub.Chat(chat())]
                assert answers == ["echo: Message 0", "echo: Message 1", "echo: Message 2"]

        await bridge.wait(client())

    through_proxy(check)


def test_status_details_and_metadata_pass_through() -> None:
    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        for replica in replicas:
            replica.faults.error_rate = 1.0

        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.Process(mesh_pb2.ProcessRequest(request_id="x"), metadata=(("x-trace", "abc"),))
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "error injected by" in (failed.value.details() or "")
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await channel.unary_unary("/no.Such/Method")(b"")
                assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED

        await bridge.wait(client())

    through_proxy(check)


@pytest.mark.slow
def test_a_dead_replica_is_routed_around_and_health_is_served() -> None:
    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        await bridge.wait(replicas[0].stop(0))
        await trio.sleep(0.5)

        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                for n in range(6):
                    reply = await stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5)
                    assert reply.replica == replicas[1].address
                probe = health_pb2_grpc.HealthStub(channel)
                answer = await probe.Check(health_pb2.HealthCheckRequest(service="mesh.v1.MeshService"))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING

        await bridge.wait(client())
        await bridge.wait(replicas[1].stop(0))
        await trio.sleep(0.5)

        async def all_down() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                probe = health_pb2_grpc.HealthStub(channel)
                answer = await probe.Check(health_pb2.HealthCheckRequest(service=""))
                assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await mesh_pb2_grpc.MeshServiceStub(channel).Process(mesh_pb2.ProcessRequest(), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        await bridge.wait(all_down())

    through_proxy(check)


def test_a_client_cancelling_cancels_the_replica_call() -> None:
    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        for replica in replicas:
            replica.faults.latency = 5.0

        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                call = mesh_pb2_grpc.MeshServiceStub(channel).Process(mesh_pb2.ProcessRequest(request_id="c"))
                await trio_free_sleep(0.2)
                call.cancel()

        await bridge.wait(client())
        (balancer,) = proxy.balancers
        with trio.fail_after(3):
            while any(e.in_flight for e in balancer.endpoints):  # noqa: ASYNC110 - counters, not events
                await trio.sleep(0.02)

    through_proxy(check)


def test_weights_share_the_proxy_s_calls_three_to_one() -> None:
    answered: Counter[str] = Counter()
    addresses: list[str] = []

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        addresses.extend(r.address for r in replicas)

        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                for n in range(40):
                    reply = await stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5)
                    answered[reply.replica] += 1

        await bridge.wait(client())

    through_proxy(check, balancer=BalancerConfig(policy="weighted_round_robin"), weights=(3, 1))
    assert answered == {addresses[0]: 30, addresses[1]: 10}


def test_consistent_hash_keys_calls_by_the_hash_header() -> None:
    homes: defaultdict[str, set[str]] = defaultdict(set)
    unkeyed: set[str] = set()

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                for n in range(12):
                    user = (("x-user-id", f"user-{n}"),)
                    for _ in range(3):
                        reply = await stub.Process(mesh_pb2.ProcessRequest(), metadata=user, timeout=5)
                        homes[f"user-{n}"].add(reply.replica)
                    # A stream is forwarded on the other path (as a stream): the same header, the same replica.
                    events = [e async for e in stub.StreamEvents(mesh_pb2.StreamRequest(count=1), metadata=user)]
                    homes[f"user-{n}"].add(events[0].replica)
                for _ in range(20):  # no header: a random key each, so these spread
                    reply = await stub.Process(mesh_pb2.ProcessRequest(), timeout=5)
                    unkeyed.add(reply.replica)

        await bridge.wait(client())

    through_proxy(check, balancer=BalancerConfig(policy="consistent_hash", hash_header="x-user-id"))
    assert all(len(replicas) == 1 for replicas in homes.values())
    assert len(set().union(*homes.values())) == 2  # twelve users do not all live on one of two replicas
    assert len(unkeyed) == 2


def test_consistent_hash_without_a_hash_header_spreads_calls() -> None:
    answered: set[str] = set()

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        async def client() -> None:
            async with grpc.aio.insecure_channel(proxy.address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                for _ in range(20):
                    reply = await stub.Process(mesh_pb2.ProcessRequest(), timeout=5)
                    answered.add(reply.replica)
                    events = [e async for e in stub.StreamEvents(mesh_pb2.StreamRequest(count=1))]
                    answered.add(events[0].replica)

        await bridge.wait(client())

    through_proxy(check, balancer=BalancerConfig(policy="consistent_hash"))
    assert len(answered) == 2  # not every call hashed to one point


async def trio_free_sleep(seconds: float) -> None:
    """Sleep on the asyncio side (this coroutine runs as an asyncio task)."""
    await asyncio.sleep(seconds)


@pytest.mark.slow
def test_live_command_proxies_until_sigterm(proxy: str) -> None:
    with grpc.insecure_channel(proxy) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        answered = {stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5).replica for n in range(4)}
    assert len(answered) == 2  # both replicas behind the proxy took calls


@pytest.mark.slow
def test_live_command_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    serve, (replica,) = serve_replicas(1)
    try:
        config = tmp_path / "mesh.toml"
        config.write_text(f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = ["{replica}"]\n', encoding="utf-8")
        live = start("live", str(config))
        assert live.stdout is not None
        assert live.stdout.readline().startswith("proxying mesh.v1.MeshService on 127.0.0.1:")
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=30)
        assert live.returncode == 0, err
        assert out.strip().endswith("stopped")
    finally:
        stop(serve)


@pytest.mark.slow
def test_live_command_rejects_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[proxy]\nendpoints = []\n", encoding="utf-8")
    result = meshsim("live", str(config))
    assert result.returncode == 2
    assert f'{config}: proxy.endpoints: expected a non-empty array of "host:port" strings' in result.stderr


@pytest.mark.slow
def test_a_busy_listen_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "busy.toml"
        config.write_text(f'[proxy]\nlisten = "127.0.0.1:{port}"\nendpoints = ["127.0.0.1:1"]\n', encoding="utf-8")
        result = meshsim("live", str(config))
    assert result.returncode == 2
    assert f"the proxy cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_listen_port_held_by_another_grpc_server_is_a_clear_error(tmp_path: Path) -> None:
    """gRPC servers set SO_REUSEPORT: without turning it off, a second proxy would start on a
    port a gRPC server holds and take half of its calls."""

    async def main() -> None:
        holder = grpc.aio.server()
        port = holder.add_insecure_port("127.0.0.1:0")
        await holder.start()
        try:
            config = tmp_path / "taken.toml"
            config.write_text(f'[proxy]\nlisten = "127.0.0.1:{port}"\nendpoints = ["127.0.0.1:1"]\n', encoding="utf-8")
            result = await asyncio.to_thread(meshsim, "live", str(config))
            assert result.returncode == 2
            assert f"the proxy cannot listen on 127.0.0.1:{port}" in result.stderr
            assert "Traceback" not in result.stderr
        finally:
            await holder.stop(0)

    asyncio.run(main())


@pytest.mark.slow
@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:", ":50050", "127.0.0.1:99999", "127.0.0.1:١٢٣"])
def test_a_listen_flag_that_is_no_address_is_refused_as_in_the_config(tmp_path: Path, listen: str) -> None:
    """gRPC takes "localhost" alone as port 443: the flag is checked as the config's `listen` is."""
    config = tmp_path / "mesh.toml"
    config.write_text('[proxy]\nendpoints = ["127.0.0.1:1"]\n', encoding="utf-8")
    result = meshsim("live", str(config), "--listen", listen)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f'Error: Invalid value for --listen: expected "host:port", got {listen!r}'
    )
