"""mTLS: every peer that should be turned away is, rotation drops no call, and tools we did not write agree.

Certificates are made by meshsim.tls.authority into tmp_path, servers are real grpc.aio
servers on 127.0.0.1, and the TLS checks use Python's ssl module and grpcurl.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
import trio
from cryptography import x509

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.health import HealthConfig
from meshsim.demo.server import Replica, ServeConfig, ServeError, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.live.config import Cluster, MtlsConfig, ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.tls import authority
from meshsim.tls.material import TlsError, TlsFiles
from tests.conftest import serve_replicas, start, start_proxy, stop
from tests.messages import chat, metrics
from tests.test_interop_grpcurl import GRPCURL

pytestmark = pytest.mark.slow


@attrs.frozen
class Pair:
    cert: bytes
    key: bytes


def read_pair(directory: Path, role: str) -> Pair:
    return Pair((directory / f"{role}.pem").read_bytes(), (directory / f"{role}-key.pem").read_bytes())


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    authority.init_directory(tmp_path / "certs")
    return tmp_path / "certs"


def serial_of(pem_or_der: bytes) -> int:
    if pem_or_der.startswith(b"-----"):
        return x509.load_pem_x509_certificate(pem_or_der).serial_number
    return x509.load_der_x509_certificate(pem_or_der).serial_number


def handshake(address: str, certs: Path, *, client_cert: bool = True, maximum: ssl.TLSVersion | None = None) -> Any:
    """A TLS handshake with Python's ssl module (offering h2, as gRPC does): (version, server cert DER)."""
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client_cert:
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client-key.pem"))
    if maximum is not None:
        context.maximum_version = maximum
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        version, der = tls.version(), tls.getpeercert(binary_form=True)
        # TLS 1.3 refuses a client's certificate (or its absence) after the handshake; a server
        # that accepted us speaks first (HTTP/2 SETTINGS), one that did not sends an alert or hangs up.
        if not tls.recv(1):
            raise ssl.SSLError("the server closed the connection after the handshake")
        return version, der


def with_tls_replica(certs: Path, check: Callable[[Replica], Awaitable[None]]) -> None:
    async def main() -> None:
        (replica,) = await bridge.wait(start_replicas(ServeConfig(port=0, tls=TlsFiles.in_dir(certs, "server"))))
        try:
            await check(replica)
        finally:
            await bridge.wait(stop_replicas([replica], 0))

    live.run(main)


async def call_process(channel: grpc.aio.Channel) -> mesh_pb2.ProcessResponse:
    stub = mesh_pb2_grpc.MeshServiceStub(channel)
    try:
        reply: mesh_pb2.ProcessResponse = await bridge.wait(
            stub.Process(mesh_pb2.ProcessRequest(request_id="r"), timeout=5)
        )
        return reply
    finally:
        await bridge.wait(channel.close())


# --- peers turned away ------------------------------------------------------------------------


def client_credentials(certs: Path, kind: str, tmp_path: Path) -> tuple[grpc.ChannelCredentials | None, list[Any]]:
    ca = (certs / "ca.pem").read_bytes()
    own = read_pair(certs, "client")
    if kind == "good":
        return grpc.ssl_channel_credentials(ca, own.key, own.cert), []
    if kind == "no client certificate":
        return grpc.ssl_channel_credentials(ca), []
    if kind == "a client certificate from another CA":
        other = tmp_path / "other"
        authority.init_directory(other)
        stranger = read_pair(other, "client")
        return grpc.ssl_channel_credentials(ca, stranger.key, stranger.cert), []
    if kind == "an expired client certificate":
        now = datetime.now(UTC)
        expired = authority.issue_client(
            authority.load_ca(certs),
            validity=authority.Validity(now - timedelta(days=30), now - timedelta(days=1)),
        )
        return grpc.ssl_channel_credentials(ca, expired.key_pem, expired.cert_pem), []
    if kind == "a server whose name does not match":
        return grpc.ssl_channel_credentials(ca, own.key, own.cert), [("grpc.ssl_target_name_override", "wrong.example")]
    assert kind == "a plaintext client"
    return None, []


REFUSED = [
    "no client certificate",
    "a client certificate from another CA",
    "an expired client certificate",
    "a server whose name does not match",
    "a plaintext client",
]


@pytest.mark.parametrize("kind", ["good", *REFUSED])
def test_the_handshake_turns_away_every_peer_it_should(certs: Path, tmp_path: Path, kind: str) -> None:
    credentials, options = client_credentials(certs, kind, tmp_path)
    outcome: list[grpc.StatusCode] = []

    async def check(replica: Replica) -> None:
        if credentials is None:
            channel = grpc.aio.insecure_channel(replica.address)
        else:
            channel = grpc.aio.secure_channel(replica.address, credentials, options=options)
        try:
            await call_process(channel)
        except grpc.aio.AioRpcError as error:
            outcome.append(error.code())
        else:
            outcome.append(grpc.StatusCode.OK)
        assert replica.servicer is not None
        assert replica.servicer.calls == (1 if kind == "good" else 0)

    with_tls_replica(certs, check)
    assert outcome == [grpc.StatusCode.OK if kind == "good" else grpc.StatusCode.UNAVAILABLE]


def test_tls_is_1_2_or_later_and_the_client_certificate_is_demanded(certs: Path) -> None:
    async def check(replica: Replica) -> None:
        version, _ = await trio.to_thread.run_sync(lambda: handshake(replica.address, certs))
        assert version in ("TLSv1.2", "TLSv1.3")
        version, _ = await trio.to_thread.run_sync(
            lambda: handshake(replica.address, certs, maximum=ssl.TLSVersion.TLSv1_2)
        )
        assert version == "TLSv1.2"
        # Without a certificate the server refuses: in TLS 1.2 during the handshake, in 1.3 just after.
        for maximum in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with pytest.raises(ssl.SSLError):
                await trio.to_thread.run_sync(
                    lambda maximum=maximum: handshake(replica.address, certs, client_cert=False, maximum=maximum)
                )

    with_tls_replica(certs, check)


# --- bad files are start-up errors --------------------------------------------------------------


def test_a_bad_certificate_is_a_start_up_error_naming_the_file(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    authority.init_directory(other)
    (certs / "server-key.pem").write_bytes((other / "server-key.pem").read_bytes())

    async def main() -> None:
        with pytest.raises(ServeError) as refused:
            await bridge.wait(start_replicas(ServeConfig(port=0, tls=TlsFiles.in_dir(certs, "server"))))
        assert str(refused.value).startswith(str(certs / "server-key.pem"))
        assert "does not belong to the certificate" in str(refused.value)

    live.run(main)


def test_the_commands_refuse_missing_certificates(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    serve = start("serve", "--port", "0", "--cert-dir", str(empty))
    _, err = serve.communicate(timeout=60)
    assert serve.returncode == 2
    assert str(empty / "ca.pem") in err
    config = tmp_path / "mesh.toml"
    config.write_text(f'[proxy]\nendpoints = ["127.0.0.1:1"]\n[mtls]\ncert_dir = "{empty}"\n', encoding="utf-8")
    proxy = start("live", str(config))
    _, err = proxy.communicate(timeout=60)
    assert proxy.returncode == 2
    assert f"{config}: {empty}" in err


# --- the proxy: mTLS on both sides, rotation under load ---------------------------------------


# How long old connections drain after a rotation in these tests (30 s by default): each test
# rotates twice, several drains apart, and runs on past the last one, so that the old
# connections are closed while calls and health watches are still going.
DRAIN = 1.0


def test_rotation_under_load_through_the_proxy_drops_no_call(certs: Path) -> None:
    failures: list[str] = []
    done: dict[str, int] = {"calls": 0}
    serials: list[int] = []

    async def main() -> None:
        replicas = await bridge.wait(
            start_replicas(ServeConfig(port=0, replicas=2, tls=TlsFiles.in_dir(certs, "server")))
        )
        config = ProxyConfig(
            clusters=(Cluster(MESH_SERVICE, tuple(r.address for r in replicas), tls=True),),
            listen="127.0.0.1:0",
            health=HealthConfig(interval=0.2, timeout=0.5),
            mtls=attrs.evolve(MtlsConfig.in_dir(certs), drain=DRAIN),
        )
        ca, own = (certs / "ca.pem").read_bytes(), read_pair(certs, "client")
        try:
            async with Proxy(config) as proxy:

                async def load() -> None:
                    channel = grpc.aio.secure_channel(
                        proxy.address, grpc.ssl_channel_credentials(ca, own.key, own.cert)
                    )
                    stub = mesh_pb2_grpc.MeshServiceStub(channel)
                    try:
                        while True:
                            try:
                                await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id="p"), timeout=5))
                                await bridge.wait(_collect(stub.StreamEvents(mesh_pb2.StreamRequest(count=2))))
                                await bridge.wait(stub.CollectMetrics(metrics(), timeout=5))
                                await bridge.wait(_collect(stub.Chat(chat(), timeout=5)))
                            except grpc.aio.AioRpcError as error:
                                failures.append(f"{error.code()}: {error.details()}")
                            done["calls"] += 4
                    finally:
                        await bridge.wait(channel.close())

                async def presented() -> int:
                    _, der = await trio.to_thread.run_sync(lambda: handshake(proxy.address, certs))
                    return serial_of(der)

                async with trio.open_nursery() as nursery:
                    for _ in range(2):
                        nursery.start_soon(load)
                    serials.append(await presented())
                    for _ in range(2):
                        await trio.sleep(3 * DRAIN)
                        authority.rotate_directory(certs)
                        new = serial_of((certs / "server.pem").read_bytes())
                        assert await presented() == new
                        serials.append(new)
                    # The proxy's channels to the replicas move to the new pair, and the old ones
                    # close under their health watches.
                    await trio.sleep(3 * DRAIN)
                    nursery.cancel_scope.cancel()
                assert replicas[0].certificates is not None and replicas[0].certificates.loads == 3
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    assert failures == []
    assert done["calls"] > 40
    assert len(set(serials)) == 3


async def _collect(call: Any) -> list[Any]:
    return [message async for message in call]


# --- grpcurl ------------------------------------------------------------------------------------


def test_grpcurl_calls_through_the_mtls_proxy_and_is_refused_without_a_certificate(certs: Path, tmp_path: Path) -> None:
    assert GRPCURL is not None
    serve, (replica,) = serve_replicas(1, "--cert-dir", str(certs))
    proxy = None
    try:
        config = tmp_path / "mesh.toml"
        config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = ["{replica}"]\n[mtls]\ncert_dir = "{certs}"\n',
            encoding="utf-8",
        )
        proxy, address = start_proxy(config)
        tls = ["-cacert", str(certs / "ca.pem"), "-servername", "localhost"]
        mine = ["-cert", str(certs / "client.pem"), "-key", str(certs / "client-key.pem")]
        request = ["-d", '{"request_id": "grpcurl"}', address, "mesh.v1.MeshService/Process"]
        called = subprocess.run(
            [GRPCURL, *tls, *mine, *request], capture_output=True, text=True, timeout=60, check=False
        )
        assert called.returncode == 0, called.stderr
        assert '"request_id": "grpcurl"' in called.stdout
        refused = subprocess.run([GRPCURL, *tls, *request], capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0
        assert "Failed to dial target host" in refused.stderr  # the handshake was refused
    finally:
        for process in (proxy, serve):
            if process is not None:
                stop(process)


def test_grpc_client_speaks_mtls_and_refuses_bad_files_at_once(certs: Path, tmp_path: Path) -> None:
    replies: list[str] = []

    async def check(replica: Replica) -> None:
        client = live.GrpcClient(endpoints=[replica.address], tls=TlsFiles.in_dir(certs, "client"))
        async with client:
            for n in range(3):
                reply = await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))
                replies.append(reply.replica)
            events = [e async for e in client.StreamEvents(mesh_pb2.StreamRequest(count=2))]
            assert len(events) == 2

    with_tls_replica(certs, check)
    assert len(replies) == 3
    with pytest.raises(TlsError, match=r"nowhere/ca\.pem: no such file"):
        live.GrpcClient(endpoints=["127.0.0.1:1"], tls=TlsFiles.in_dir(tmp_path / "nowhere", "client"))


def test_grpc_client_outlives_rotations_and_their_drains(certs: Path) -> None:
    failures: list[str] = []
    replies: list[str] = []

    async def check(replica: Replica) -> None:
        client = live.GrpcClient(
            endpoints=[replica.address],
            tls=TlsFiles.in_dir(certs, "client"),
            health=HealthConfig(interval=0.2, timeout=0.5),
            rotation_drain=DRAIN,
        )
        async with client:

            async def load() -> None:
                while True:
                    try:
                        replies.append((await client.Process(mesh_pb2.ProcessRequest(request_id="r"))).replica)
                    except live.RpcError as error:
                        failures.append(str(error))
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(load)
                for _ in range(2):
                    await trio.sleep(3 * DRAIN)
                    authority.rotate_directory(certs)
                await trio.sleep(3 * DRAIN)  # past the second drain: the old channels are closed
                nursery.cancel_scope.cancel()
            # Still watching health on the new channels: the replica is in use.
            assert client.channel.balancer.endpoints[0].healthy

    with_tls_replica(certs, check)
    assert failures == []
    assert len(replies) > 100
