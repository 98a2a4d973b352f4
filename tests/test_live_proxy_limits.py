"""What one caller can take from the proxy, and what the proxy answers itself.

Bounded streams per connection and a share of calls per client; request metadata over
the limit refused with its size; learnt method shapes bounded; reflection answered by
the proxy without a turn of the balancer, and its own health described with every
replica down. The hostile callers speak raw HTTP/2 (the h2 package), which lets them
ignore what the proxy advertises, as an attacker would.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.health import HealthConfig
from meshsim.demo.server import Replica, ServeConfig, start_replicas, stop_replicas
from meshsim.demo.servicer import ServerFaults
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from tests.test_interop_grpcurl import GRPCURL

pytestmark = pytest.mark.slow

HEALTH = HealthConfig(interval=0.1, timeout=0.5)


def through_proxy(
    check: Callable[[Proxy, list[Replica]], Awaitable[None]], replicas: int = 2, latency: float = 0.0, **options: Any
) -> None:
    async def main() -> None:
        serve = ServeConfig(port=0, replicas=replicas, faults=ServerFaults(latency=latency))
        started = await bridge.wait(start_replicas(serve))
        config = ProxyConfig.for_service(MESH_SERVICE, tuple(r.address for r in started), health=HEALTH, **options)
        try:
            async with Proxy(config) as proxy:
                await check(proxy, started)
        finally:
            await bridge.wait(stop_replicas(started, 0))

    live.run(main)


class RawClient:
    """An HTTP/2 client that sends whatever it is told, limits or not (blocking; run it in a thread)."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.address = address
        self.socket = socket.create_connection((host, int(port)), timeout=10)
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.connection = h2.connection.H2Connection(config)
        self.connection.initiate_connection()
        self.socket.sendall(self.connection.data_to_send())
        self.remote_settings: dict[int, int] = {}
        self.answers: dict[int, dict[bytes, bytes]] = {}
        self.resets: dict[int, int] = {}

    def call(self, stream: int, metadata: list[tuple[str, str]], path: str = f"/{MESH_SERVICE}/Process") -> None:
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.address),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *metadata,
        ]
        self.connection.send_headers(stream, headers)
        self.connection.send_data(stream, b"\x00\x00\x00\x00\x00", end_stream=True)  # an empty message
        self.socket.sendall(self.connection.data_to_send())

    def read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            data = self.socket.recv(65536)
            if not data:
                return
            for event in self.connection.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    self.remote_settings.update({k: v.new_value for k, v in event.changed_settings.items()})
                elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    self.answers.setdefault(event.stream_id, {}).update(dict(event.headers))
                elif isinstance(event, h2.events.StreamReset):
                    self.resets[event.stream_id] = event.error_code
            self.socket.sendall(self.connection.data_to_send())

    def close(self) -> None:
        self.socket.close()


def test_metadata_over_the_limit_is_refused_saying_why() -> None:
    """A caller that ignores the advertised header list size gets RESOURCE_EXHAUSTED with the sizes,
    not "no replica available" (which is what a replica's bare refusal used to become)."""
    answers: dict[str, dict[bytes, bytes]] = {}

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        def send() -> None:
            client = RawClient(proxy.address)
            try:
                for stream, count in ((1, 10), (3, 1000), (5, 10_000)):
                    client.call(stream, [(f"x-header-{n}", "v") for n in range(count)])
                    client.read_until(lambda s=stream: b"grpc-status" in client.answers.get(s, {}))
                    answers[str(count)] = client.answers[stream]
            finally:
                client.close()

        await trio.to_thread.run_sync(send)

    through_proxy(check)
    assert answers["10"][b"grpc-status"] == b"0"
    message = answers["1000"].get(b"grpc-message", b"").decode()
    assert answers["1000"][b"grpc-status"] == b"8"  # RESOURCE_EXHAUSTED
    assert re.fullmatch(r"meshsim: the request metadata is \d{5} bytes, over the proxy's limit of 8192", message)
    # Far over the limit, gRPC itself refuses the headers (its hard limit guards the proxy's memory).
    assert answers["10000"][b"grpc-status"] == b"8"


def test_one_connection_gets_a_bounded_number_of_streams() -> None:
    """The proxy advertises max_concurrent_streams, and a client that opens more anyway has them
    refused, so one connection cannot hold thousands of calls (and the memory they cost)."""
    seen: dict[str, Any] = {}

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        def flood() -> None:
            client = RawClient(proxy.address)
            try:
                client.read_until(lambda: h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS in client.remote_settings)
                seen["advertised"] = client.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
                # The proxy's own limit is what h2 would enforce on us: lift it, as an attacker would.
                limits = client.connection.remote_settings
                limits[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
                limits.acknowledge()
                streams = list(range(1, 2 * 40, 2))
                for stream in streams:
                    client.call(stream, [])
                client.read_until(
                    lambda: all(s in client.resets or b"grpc-status" in client.answers.get(s, {}) for s in streams)
                )
                seen["refused"] = sum(1 for s in streams if s in client.resets)
                seen["answered"] = sum(1 for s in streams if client.answers.get(s, {}).get(b"grpc-status") == b"0")
            finally:
                client.close()

        await trio.to_thread.run_sync(flood)

    through_proxy(check, latency=0.5, max_concurrent_streams=16)
    assert seen["advertised"] == 16
    assert seen["answered"] == 16
    assert seen["refused"] == 40 - 16


def test_a_client_over_its_share_is_refused_and_the_others_are_not() -> None:
    """With max_requests_per_client, a client holding its share of slow calls gets RESOURCE_EXHAUSTED
    for the next one, while a client at another address is still served."""
    outcomes: dict[str, list[str]] = {"greedy": [], "other": []}

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        port = proxy.address.rsplit(":", 1)[1]

        async def calls(who: str, address: str, count: int) -> None:
            channel = grpc.aio.insecure_channel(address)
            stub = mesh_pb2_grpc.MeshServiceStub(channel)

            async def one() -> None:
                try:
                    await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(), timeout=5))
                    outcomes[who].append("OK")
                except grpc.aio.AioRpcError as error:
                    outcomes[who].append(f"{error.code().name}: {error.details()}")

            try:
                async with trio.open_nursery() as nursery:
                    for _ in range(count):
                        nursery.start_soon(one)
                        await trio.sleep(0.05)
            finally:
                await bridge.wait(channel.close())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(calls, "greedy", f"127.0.0.1:{port}", 4)
            await trio.sleep(0.1)
            nursery.start_soon(calls, "other", f"[::1]:{port}", 2)

    through_proxy(check, latency=0.6, listen="localhost:0", max_requests_per_client=2)
    assert sorted(outcomes["greedy"])[:2] == ["OK", "OK"]
    refused = [o for o in outcomes["greedy"] if o != "OK"]
    assert len(refused) == 2 and all(o.startswith("RESOURCE_EXHAUSTED: meshsim: this client has 2") for o in refused)
    assert outcomes["other"] == ["OK", "OK"]


def test_made_up_service_names_do_not_grow_the_proxy_or_reach_the_replicas() -> None:
    """Every call to an unknown service used to add an entry and send the replica a reflection call."""
    asked: list[str] = []

    class Counting(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            asked.append(details.method)
            return await continuation(details)

    took: list[float] = []

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        channel = grpc.aio.insecure_channel(proxy.address)
        started = trio.current_time()
        try:
            for n in range(400):
                with pytest.raises(grpc.aio.AioRpcError) as unknown:
                    await bridge.wait(channel.unary_unary(f"/made.up{n}.Service/Method")(b"", timeout=5))
                assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            took.append(trio.current_time() - started)
            await bridge.wait(channel.close())

    async def main() -> None:
        server = grpc.aio.server(interceptors=(Counting(),))
        from grpc_reflection.v1alpha import reflection

        reflection.enable_server_reflection((reflection.SERVICE_NAME,), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await bridge.wait(server.start())
        config = ProxyConfig.for_service(MESH_SERVICE, (f"127.0.0.1:{port}",), health=HealthConfig(enabled=False))
        try:
            async with Proxy(config) as proxy:
                await check(proxy, [])
                assert proxy.shapes.services_asked <= proxy.shapes.limit
        finally:
            await bridge.wait(server.stop(0))

    live.run(main)
    reflection_calls = [m for m in asked if "ServerReflection" in m]
    # One at start-up (the routed service), then at most ten a second for names it does not route.
    assert len(reflection_calls) <= 2 + 10 * (took[0] + 1), (len(reflection_calls), took)


async def grpcurl(*args: str) -> tuple[int, str, str]:
    assert GRPCURL is not None
    done = await trio.run_process([GRPCURL, "-plaintext", *args], capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_grpcurl_calls_are_balanced_because_reflection_takes_no_turn() -> None:
    """grpcurl asks reflection before every call; answered by the proxy itself, those questions no
    longer shift round robin, so a grpcurl loop alternates between the replicas."""
    answered: list[str] = []

    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        for n in range(6):
            code, out, err = await grpcurl(
                "-d", json.dumps({"request_id": str(n)}), proxy.address, f"{MESH_SERVICE}/Process"
            )
            assert code == 0, err
            answered.append(json.loads(out)["replica"])

    through_proxy(check)
    assert len(set(answered)) == 2 and answered.count(answered[0]) == 3, answered


def test_reflection_and_health_answer_with_every_replica_down() -> None:
    async def check(proxy: Proxy, replicas: list[Replica]) -> None:
        code, described, err = await grpcurl(proxy.address, "describe", MESH_SERVICE)
        assert code == 0, err
        await bridge.wait(stop_replicas(replicas, 0))
        with trio.fail_after(5):
            while proxy.balancers[0].picker.pick(None) is not None:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.05)
        code, out, err = await grpcurl("-d", '{"service": ""}', proxy.address, "grpc.health.v1.Health/Check")
        assert code == 0, err
        assert json.loads(out)["status"] == "NOT_SERVING"
        code, listed, err = await grpcurl(proxy.address, "list")
        assert code == 0, err
        assert {MESH_SERVICE, "grpc.health.v1.Health"} <= set(listed.split())
        code, again, err = await grpcurl(proxy.address, "describe", MESH_SERVICE)  # as the proxy last heard it
        assert code == 0, err
        assert again == described

    through_proxy(check)
