"""Discovery feeding the proxy's balancer: a watched endpoints file, DNS A records and SRV records,
each changed while calls flow through a real proxy to real replicas."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.events import DiscoveryFailed, MembershipChanged
from meshsim.core.health import HealthConfig
from meshsim.demo.server import Replica, stop_replicas
from meshsim.demo.servicer import ServerFaults
from meshsim.live import bridge
from meshsim.live.config import Cluster, Discovery, DnsDiscovery, FileDiscovery, ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.dns_server import DnsServer

pytestmark = pytest.mark.slow

HEALTH = HealthConfig(interval=0.1, timeout=0.5)


class Seen:
    def __init__(self) -> None:
        self.changes: list[MembershipChanged] = []
        self.failures: list[DiscoveryFailed] = []
        self.observer = Observer()
        self.observer.subscribe(MembershipChanged, self.changes.append)
        self.observer.subscribe(DiscoveryFailed, self.failures.append)


async def answered_by(stub: Any, calls: int = 6) -> set[str]:
    replies = [
        await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5)) for n in range(calls)
    ]
    return {reply.replica for reply in replies}


async def until_answered_by(stub: Any, expected: set[str]) -> None:
    """Calls until they land on exactly `expected` (discovery works on its interval)."""
    with trio.fail_after(5):
        while await answered_by(stub) != expected:  # noqa: ASYNC110 - polls replies, not an event
            await trio.sleep(0.05)


async def start_replica(host: str = "127.0.0.1", port: int = 0) -> Replica:
    replica = Replica(host, port, ServerFaults())
    await bridge.wait(replica.start())
    return replica


Discover = Callable[[list[Replica], trio.Nursery], Awaitable[Discovery]]
Check = Callable[[Any, list[Replica]], Awaitable[None]]


def with_proxy(discover: Discover, check: Check, same_port: bool = False) -> Seen:
    """Two replicas (on 127.0.0.1 and, with `same_port`, 127.0.0.2 on the same port), a proxy whose
    one cluster `discover(replicas, nursery)` finds, then `check(stub, replicas)`."""
    seen = Seen()

    async def main() -> None:
        first = await start_replica()
        replicas = [first]
        try:
            replicas.append(await start_replica("127.0.0.2", first.port) if same_port else await start_replica())
            async with trio.open_nursery() as nursery:
                discovery = await discover(replicas, nursery)
                config = ProxyConfig(clusters=(Cluster(MESH_SERVICE, discovery=discovery),), health=HEALTH)
                async with Proxy(config, seen.observer) as proxy:
                    channel = grpc.aio.insecure_channel(proxy.address)
                    try:
                        await check(mesh_pb2_grpc.MeshServiceStub(channel), replicas)
                    finally:
                        await bridge.wait(channel.close())
                nursery.cancel_scope.cancel()
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    return seen


def replace(path: Path, text: str) -> None:
    """Write the whole file at once, as a deploy tool should (a reader never sees half of it)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def test_a_watched_file_moves_calls_between_replicas(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.txt"

    async def discover(replicas: list[Replica], nursery: trio.Nursery) -> Discovery:
        endpoints.write_text(f"{replicas[0].address}\n", encoding="utf-8")
        return FileDiscovery(endpoints, interval=0.05)

    async def check(stub: Any, replicas: list[Replica]) -> None:
        first, second = (r.address for r in replicas)
        await until_answered_by(stub, {first})
        replace(endpoints, f"# the new deploy\n{second}\n")
        await until_answered_by(stub, {second})
        replace(endpoints, f"{first}\n{second}\n")
        await until_answered_by(stub, {first, second})
        # A half-written or emptied file changes nothing.
        replace(endpoints, "not-an-endpoint\n")
        await trio.sleep(0.3)
        assert await answered_by(stub) == {first, second}
        replace(endpoints, "")
        await trio.sleep(0.3)
        assert await answered_by(stub) == {first, second}

    seen = with_proxy(discover, check)
    assert [(len(c.added), len(c.removed)) for c in seen.changes] == [(1, 0), (1, 1), (1, 0)]
    assert {f.error for f in seen.failures} >= {
        f"ValueError: {endpoints}:1: expected host:port, got 'not-an-endpoint'",
        "found no endpoints",
    }


def test_dns_a_records_are_re_resolved() -> None:
    server = DnsServer()
    name = "replicas.mesh.test."

    async def discover(replicas: list[Replica], nursery: trio.Nursery) -> Discovery:
        # Two replicas on one port at two loopback addresses: the A records tell them apart.
        server.zone[(name, "A")] = ["127.0.0.1"]
        await nursery.start(server.serve)
        return DnsDiscovery(name, port=replicas[0].port, interval=0.05, nameservers=(server.address,))

    async def check(stub: Any, replicas: list[Replica]) -> None:
        await until_answered_by(stub, {replicas[0].address})
        server.zone[(name, "A")] = ["127.0.0.2"]
        await until_answered_by(stub, {replicas[1].address})
        del server.zone[(name, "A")]  # the name is gone: keep the endpoints there are
        await trio.sleep(0.3)
        assert await answered_by(stub) == {replicas[1].address}

    seen = with_proxy(discover, check, same_port=True)
    assert seen.failures
    assert all(f.source == f"dns:{name}:{seen.changes[0].added[0].split(':')[1]}" for f in seen.failures)
    assert all("NXDOMAIN" in f.error for f in seen.failures)


def test_srv_records_give_each_replica_its_port() -> None:
    server = DnsServer()
    service = "_grpc._tcp.mesh.test."

    async def discover(replicas: list[Replica], nursery: trio.Nursery) -> Discovery:
        server.zone[("replica.mesh.test.", "A")] = ["127.0.0.1"]
        server.zone[(service, "SRV")] = [f"0 5 {r.port} replica.mesh.test." for r in replicas]
        await nursery.start(server.serve)
        return DnsDiscovery(service, srv=True, interval=0.05, nameservers=(server.address,))

    async def check(stub: Any, replicas: list[Replica]) -> None:
        await until_answered_by(stub, {r.address for r in replicas})
        server.zone[(service, "SRV")] = [f"0 5 {replicas[1].port} replica.mesh.test."]
        await until_answered_by(stub, {replicas[1].address})

    seen = with_proxy(discover, check)
    assert [(len(c.added), len(c.removed)) for c in seen.changes] == [(2, 0), (0, 1)]


def test_grpc_client_follows_a_watched_file(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.txt"
    answered: list[set[str]] = []

    async def main() -> None:
        first, second = await start_replica(), await start_replica()
        endpoints.write_text(f"{first.address}\n", encoding="utf-8")
        client = live.GrpcClient(discovery=FileDiscovery(endpoints, interval=0.05), health=HEALTH)
        try:
            async with client:

                async def replicas() -> set[str]:
                    replies = [await client.Process(mesh_pb2.ProcessRequest(request_id=str(n))) for n in range(4)]
                    return {reply.replica for reply in replies}

                answered.append(await replicas())
                replace(endpoints, f"{second.address}\n")
                with trio.fail_after(5):
                    while (now := await replicas()) != {second.address}:  # noqa: ASYNC110 - polls replies
                        await trio.sleep(0.05)
                answered.append(now)
        finally:
            await bridge.wait(stop_replicas([first, second], 0))
        assert answered == [{first.address}, {second.address}]

    live.run(main)
