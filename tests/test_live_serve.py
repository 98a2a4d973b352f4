"""`meshsim serve`: real grpc.aio replicas on 127.0.0.1, called by real gRPC clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from meshsim.core.status import StatusCode
from meshsim.demo.metrics import ServerMetrics
from meshsim.demo.server import Replica, ServeConfig, ServeError, start_replicas, stop_replicas
from meshsim.demo.servicer import ServerFaults
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from tests.conftest import ROOT, meshsim, serve_replicas, stop
from tests.messages import chat, metrics

Check = Callable[[list[Replica]], Awaitable[None]]


def with_replicas(check: Check, replicas: int = 1, faults: ServerFaults | None = None) -> None:
    async def main() -> None:
        config = ServeConfig(port=0, replicas=replicas, faults=faults or ServerFaults())
        started = await start_replicas(config)
        try:
            await check(started)
        finally:
            await stop_replicas(started, 0)

    asyncio.run(main())


def test_all_four_patterns() -> None:
    async def check(replicas: list[Replica]) -> None:
        address = replicas[0].address
        async with grpc.aio.insecure_channel(address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            reply = await stub.Process(mesh_pb2.ProcessRequest(request_id="req-123", data="test data"))
            assert (reply.request_id, reply.result, reply.replica) == ("req-123", "processed 9 bytes", address)
            events = [e async for e in stub.StreamEvents(mesh_pb2.StreamRequest(stream_id="s", event_types=["a", "b"]))]
            assert [(e.event_type, e.sequence) for e in events] == [("a", 0), ("b", 1)]
            many = [e async for e in stub.StreamEvents(mesh_pb2.StreamRequest(stream_id="s", count=5))]
            assert len(many) == 5
            summary = await stub.CollectMetrics(metrics())
            assert (summary.count, summary.sum, summary.min, summary.max, summary.mean) == (3, 9.0, 1.0, 6.0, 3.0)
            answers = [m.message async for m in stub.Chat(chat())]
            assert answers == ["echo: Message 0", "echo: Message 1", "echo: Message 2"]

    with_replicas(check)


def test_replicas_get_their_own_ports_and_health_and_reflection() -> None:
    async def check(replicas: list[Replica]) -> None:
        assert len({r.port for r in replicas}) == 3
        for replica in replicas:
            async with grpc.aio.insecure_channel(replica.address) as channel:
                probe = health_pb2_grpc.HealthStub(channel)
                for service in ("", "mesh.v1.MeshService"):
                    answer = await probe.Check(health_pb2.HealthCheckRequest(service=service))
                    assert answer.status == health_pb2.HealthCheckResponse.SERVING
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await probe.Check(health_pb2.HealthCheckRequest(service="no.Such"))
                assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    with_replicas(check, replicas=3)


def test_reflection_lists_and_describes_the_services() -> None:
    replicas: list[Replica] = []

    async def check(started: list[Replica]) -> None:
        replicas.extend(started)
        # The reflection client is synchronous; run it beside the server's loop.
        names, method_names = await asyncio.to_thread(describe, started[0].address)
        assert {"mesh.v1.MeshService", "grpc.health.v1.Health"} <= set(names)
        assert method_names == ["Process", "StreamEvents", "CollectMetrics", "Chat"]

    with_replicas(check)


def describe(address: str) -> tuple[list[str], list[str]]:
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        names = list(database.get_services())
        pool = DescriptorPool(database)
        service = pool.FindServiceByName("mesh.v1.MeshService")
        return names, [m.name for m in service.methods]


def test_injected_errors_and_latency() -> None:
    async def failing(replicas: list[Replica]) -> None:
        async with grpc.aio.insecure_channel(replicas[0].address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Process(mesh_pb2.ProcessRequest(request_id="x"))
            assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "error injected by" in (failed.value.details() or "")

    with_replicas(failing, faults=ServerFaults(error_rate=1.0, error_status=StatusCode.RESOURCE_EXHAUSTED))

    async def slow(replicas: list[Replica]) -> None:
        async with grpc.aio.insecure_channel(replicas[0].address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await stub.Process(mesh_pb2.ProcessRequest(request_id="x"), timeout=0.05)
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    with_replicas(slow, faults=ServerFaults(latency=2.0))


def test_the_server_sees_the_callers_deadline() -> None:
    async def check(replicas: list[Replica]) -> None:
        async with grpc.aio.insecure_channel(replicas[0].address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            reply = await stub.Process(mesh_pb2.ProcessRequest(request_id="d"), timeout=5.0)
            # grpc-timeout travels rounded up to its unit, so the server may see a hair more than 5 s.
            assert 0.0 < reply.deadline_remaining_s <= 5.05
            unbounded = await stub.Process(mesh_pb2.ProcessRequest(request_id="n"))
            assert unbounded.deadline_remaining_s == 0.0

    with_replicas(check)


@pytest.mark.slow
def test_shutdown_goes_not_serving_then_lets_calls_in_flight_finish() -> None:
    async def main() -> None:
        [replica] = await start_replicas(ServeConfig(port=0, faults=ServerFaults(latency=0.5)))
        async with grpc.aio.insecure_channel(replica.address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            in_flight = asyncio.ensure_future(stub.Process(mesh_pb2.ProcessRequest(request_id="slow")))
            await asyncio.sleep(0.1)
            stopping = asyncio.ensure_future(replica.stop(grace=5.0))
            second = await watch.read()
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            reply = await in_flight
            assert reply.request_id == "slow"
            await stopping
            watch.cancel()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Process(mesh_pb2.ProcessRequest(request_id="late"), timeout=1.0)
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    asyncio.run(main())


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
                await start_replicas(ServeConfig(port=port))

        asyncio.run(main())


@pytest.mark.slow
def test_serve_command_runs_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "meshsim", "serve", "--port", "0", "--replicas", "2", "--grace", "1s"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        addresses = [process.stdout.readline().split(" on ")[1].strip() for _ in range(2)]

        async def call() -> list[str]:
            replies = []
            for address in addresses:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = mesh_pb2_grpc.MeshServiceStub(channel)
                    reply = await stub.Process(mesh_pb2.ProcessRequest(request_id="cli"), timeout=5)
                    replies.append(reply.replica)
            return replies

        assert asyncio.run(call()) == addresses
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert out.strip().endswith("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_serve_rejects_bad_options() -> None:
    for args, message in (
        (["--latency", "soon"], 'expected a duration like "50ms"'),
        (["--error-status", "NOPE"], "unknown gRPC status"),
        (["--error-status", "OK"], "cannot be OK"),
    ):
        result = meshsim("serve", *args)
        assert result.returncode == 2
        assert message in result.stderr


def test_replicas_count_every_pattern_by_status_and_report_health() -> None:
    server_metrics = ServerMetrics()

    async def main() -> None:
        replicas = await start_replicas(ServeConfig(port=0, replicas=2), server_metrics)
        replicas[1].faults.error_rate = 1.0
        try:
            for replica in replicas:
                async with grpc.aio.insecure_channel(replica.address) as channel:
                    stub = mesh_pb2_grpc.MeshServiceStub(channel)
                    for attempt in (
                        stub.Process(mesh_pb2.ProcessRequest()),
                        _drain(stub.StreamEvents(mesh_pb2.StreamRequest(count=2))),
                        stub.CollectMetrics(metrics()),
                    ):
                        with contextlib.suppress(grpc.aio.AioRpcError):  # replica 1 fails them all
                            await attempt
            samples = [
                f'grpc_requests_total{{code="{code}",method="/mesh.v1.MeshService/{method}",'
                f'replica="{replica.address}",service="mesh.v1.MeshService"}} 1.0'
                for method in ("Process", "StreamEvents", "CollectMetrics")
                for replica, code in ((replicas[0], "OK"), (replicas[1], "UNAVAILABLE"))
            ]
            # The interceptor counts a call after its answer has gone out, so the caller may get
            # there first: scrape until every call is counted, for a few seconds at most.
            scraped = await scrape_until(server_metrics, samples, within=5.0)
            healthy = f'grpc_endpoint_health{{replica="{replicas[0].address}",service="mesh.v1.MeshService"}} 1.0'
            assert healthy in scraped
        finally:
            await stop_replicas(replicas, 0)
        stopped = f'grpc_endpoint_health{{replica="{replicas[0].address}",service="mesh.v1.MeshService"}} 0.0'
        assert stopped in server_metrics.exposition().decode()

    asyncio.run(main())


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def scrape_until(server_metrics: ServerMetrics, samples: list[str], within: float) -> str:
    """The replicas' exposition once it has every sample; fails naming those missing after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        scraped = server_metrics.exposition().decode()
        missing = [sample for sample in samples if sample not in scraped]
        if not missing:
            return scraped
        assert loop.time() < deadline, f"not counted within {within} s: {missing}\n{scraped}"
        await asyncio.sleep(0.01)


@pytest.mark.slow
def test_serve_command_serves_metrics() -> None:
    process, (replica,) = serve_replicas(1, "--metrics", "127.0.0.1:0")
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().removeprefix("metrics on ").strip()
        with grpc.insecure_channel(replica) as channel:
            mesh_pb2_grpc.MeshServiceStub(channel).Process(mesh_pb2.ProcessRequest(), timeout=5)
        with urllib.request.urlopen(endpoint, timeout=5) as response:
            scraped = response.read().decode()
        assert f'code="OK",method="/mesh.v1.MeshService/Process",replica="{replica}"' in scraped
    finally:
        stop(process)
    refused = meshsim("serve", "--metrics", "nine")
    assert refused.returncode == 2
    assert "--metrics" in refused.stderr


@pytest.mark.slow
def test_a_port_held_by_another_grpc_server_is_refused() -> None:
    """gRPC servers set SO_REUSEPORT, so a port another gRPC server holds can be bound again unless
    meshsim turns that off: then calls would land on either process."""

    async def main() -> None:
        holder = grpc.aio.server()
        port = holder.add_insecure_port("127.0.0.1:0")
        await holder.start()
        try:
            with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
                await start_replicas(ServeConfig(port=port))
            result = await asyncio.to_thread(meshsim, "serve", "--port", str(port))
            assert result.returncode == 2, result.stdout
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
            # Asked for, sharing works (as SO_REUSEPORT does for a pool of processes).
            (shared,) = await start_replicas(ServeConfig(port=port, reuse_port=True))
            await stop_replicas([shared], 0)
        finally:
            await holder.stop(0)

    asyncio.run(main())
