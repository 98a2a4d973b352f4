"""Several services behind one proxy: calls routed by service name, health and reflection for all of them.

The second service, demo.v2.Echo, is described at run time (a FileDescriptorProto added
to the default pool) and served by a generic handler, so it is a real gRPC service
with reflection that meshsim's own replicas know nothing about. grpcurl lists,
describes and calls both through the proxy.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
import trio
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.health import HealthConfig
from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.live.config import Cluster, ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2
from tests.test_interop_grpcurl import GRPCURL

pytestmark = pytest.mark.slow

ECHO = "demo.v2.Echo"


def describe_echo() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(ECHO)
        return
    except KeyError:
        pass
    echo = descriptor_pb2.FileDescriptorProto(
        name="demo/v2/echo.proto", package="demo.v2", dependency=["meshsim/pb/v1/mesh.proto"], syntax="proto3"
    )
    service = echo.service.add(name="Echo")
    service.method.add(name="Say", input_type=".mesh.v1.ProcessRequest", output_type=".mesh.v1.ProcessResponse")
    pool.Add(echo)


class EchoHandler(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method != f"/{ECHO}/Say":
            return None

        async def say(request: mesh_pb2.ProcessRequest, context: Any) -> mesh_pb2.ProcessResponse:
            return mesh_pb2.ProcessResponse(request_id=request.request_id, result="echo", replica="echo")

        return grpc.unary_unary_rpc_method_handler(
            say,
            request_deserializer=mesh_pb2.ProcessRequest.FromString,
            response_serializer=mesh_pb2.ProcessResponse.SerializeToString,
        )


async def start_echo(with_reflection: bool = True) -> tuple[grpc.aio.Server, str]:
    describe_echo()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((EchoHandler(),))
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    if with_reflection:
        reflection.enable_server_reflection((ECHO, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await checks.set(ECHO, health_pb2.HealthCheckResponse.SERVING)
    return server, f"127.0.0.1:{port}"


async def grpcurl(*args: str) -> str:
    assert GRPCURL is not None
    done = await trio.run_process([GRPCURL, "-plaintext", *args], capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return str(done.stdout.decode())


def test_two_services_behind_one_proxy_with_health_and_reflection_for_both() -> None:
    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0)))
        echo, echo_address = await bridge.wait(start_echo())
        config = ProxyConfig(
            clusters=(
                Cluster(MESH_SERVICE, (replicas[0].address,), name="mesh"),
                Cluster(ECHO, (echo_address,), name="echo"),
            ),
            health=HealthConfig(interval=0.1, timeout=0.5),
        )
        try:
            async with Proxy(config) as proxy:
                listed = (await grpcurl(proxy.address, "list")).split()
                assert set(listed) >= {MESH_SERVICE, ECHO, "grpc.health.v1.Health"}
                assert "rpc Say" in await grpcurl(proxy.address, "describe", ECHO)
                assert "rpc Chat" in await grpcurl(proxy.address, "describe", MESH_SERVICE)
                said = json.loads(await grpcurl("-d", '{"request_id": "a"}', proxy.address, f"{ECHO}/Say"))
                assert said["replica"] == "echo"
                processed = json.loads(
                    await grpcurl("-d", '{"request_id": "b"}', proxy.address, f"{MESH_SERVICE}/Process")
                )
                assert processed["replica"] == replicas[0].address
                for service in (ECHO, MESH_SERVICE, ""):
                    checked = await grpcurl(
                        "-d", json.dumps({"service": service}), proxy.address, "grpc.health.v1.Health/Check"
                    )
                    assert json.loads(checked)["status"] == "SERVING"
                await bridge.wait(echo.stop(0))
                # The echo replica is gone: its service goes NOT_SERVING, and so does the proxy as a whole.
                with trio.fail_after(5):
                    while True:
                        checked = await grpcurl(
                            "-d", json.dumps({"service": ECHO}), proxy.address, "grpc.health.v1.Health/Check"
                        )
                        if json.loads(checked)["status"] == "NOT_SERVING":
                            break
                        await trio.sleep(0.05)
        finally:
            await bridge.wait(echo.stop(0))
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)


def test_unary_methods_are_learnt_from_reflection_and_the_rest_go_as_streams() -> None:
    """Process (unary, with reflection) is forwarded as unary; Chat as a stream; a service without
    reflection has every method forwarded as a stream, which carries a unary call just as well."""

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0)))
        echo, echo_address = await bridge.wait(start_echo(with_reflection=False))
        config = ProxyConfig(
            clusters=(Cluster(MESH_SERVICE, (replicas[0].address,)), Cluster(ECHO, (echo_address,))),
            health=HealthConfig(interval=0.1, timeout=0.5),
        )
        try:
            async with Proxy(config) as proxy:
                assert proxy.shapes.is_unary(f"/{MESH_SERVICE}/Process")
                assert not proxy.shapes.is_unary(f"/{MESH_SERVICE}/Chat")
                assert not proxy.shapes.is_unary(f"/{MESH_SERVICE}/StreamEvents")
                for _ in range(2):  # the first call asks for reflection, the second finds none was had
                    assert await say(proxy.address) == "echo"
                assert not proxy.shapes.is_unary(f"/{ECHO}/Say")
        finally:
            await bridge.wait(echo.stop(0))
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)


async def say(address: str) -> str:
    """demo.v2.Echo/Say through the proxy from a stub on raw bytes; the replica that answered."""
    channel = grpc.aio.insecure_channel(address)
    try:
        request = mesh_pb2.ProcessRequest(request_id="a").SerializeToString()
        raw = await bridge.wait(channel.unary_unary(f"/{ECHO}/Say")(request, timeout=5))
    finally:
        await bridge.wait(channel.close())
    return str(mesh_pb2.ProcessResponse.FromString(raw).replica)
