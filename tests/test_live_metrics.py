"""Prometheus metrics from a live proxy: scraped over real HTTP while real calls flow."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.errors import ConfigError, StartupError
from meshsim.core.health import HealthConfig
from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig, load_live_config
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc

pytestmark = pytest.mark.slow

PROCESS = f"/{MESH_SERVICE}/Process"


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics: every sample by name and labels."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs.items()))


def test_the_proxy_counts_calls_times_them_and_reports_health_and_connections() -> None:
    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=2)))
        config = ProxyConfig.for_service(
            MESH_SERVICE,
            tuple(r.address for r in replicas),
            health=HealthConfig(interval=0.1, timeout=0.5, unhealthy_threshold=1),
            metrics_listen="127.0.0.1:0",
        )
        try:
            async with Proxy(config) as proxy:
                channel = grpc.aio.insecure_channel(proxy.address)
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                try:
                    for n in range(4):
                        await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5))
                    with pytest.raises(grpc.aio.AioRpcError):
                        await bridge.wait(channel.unary_unary(f"/{MESH_SERVICE}/Nope")(b"", timeout=5))
                finally:
                    await bridge.wait(channel.close())
                seen = await trio.to_thread.run_sync(scrape, proxy.metrics_address)
                call = {"client": "proxy", "service": MESH_SERVICE}
                assert seen[("grpc_requests_total", labels(**call, method=PROCESS, code="OK"))] == 4
                nope = labels(**call, method=f"/{MESH_SERVICE}/Nope", code="UNIMPLEMENTED")
                assert seen[("grpc_requests_total", nope)] == 1
                assert seen[("grpc_request_duration_seconds_count", labels(**call, method=PROCESS))] == 4
                for replica in replicas:
                    at = labels(**call, endpoint=replica.address)
                    assert seen[("grpc_endpoint_health", at)] == 1
                    assert seen[("grpc_active_connections", at)] == 1
                await bridge.wait(replicas[0].stop(0))
                down = labels(**call, endpoint=replicas[0].address)
                with trio.fail_after(5):
                    while (await trio.to_thread.run_sync(scrape, proxy.metrics_address))[  # noqa: ASYNC110 - polls
                        ("grpc_endpoint_health", down)
                    ] != 0:
                        await trio.sleep(0.05)
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)


def test_metrics_config_in_both_layouts(tmp_path: Path) -> None:
    toml = tmp_path / "mesh.toml"
    toml.write_text('[proxy]\nendpoints = ["127.0.0.1:1"]\n[metrics]\nlisten = "0.0.0.0:9100"\n', encoding="utf-8")
    assert load_live_config(toml).metrics_listen == "0.0.0.0:9100"
    yaml = tmp_path / "mesh.yaml"
    yaml.write_text("services:\n  - port: 50051\nmetrics: {}\n", encoding="utf-8")
    assert load_live_config(yaml).metrics_listen == "127.0.0.1:9090"
    toml.write_text('[proxy]\nendpoints = ["127.0.0.1:1"]\n[metrics]\nlisten = "nine"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r'metrics\.listen: expected "host:port"'):
        load_live_config(toml)


def test_a_busy_metrics_port_is_a_clear_error() -> None:
    async def main() -> Any:
        with trio.socket.socket() as busy:
            await busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            config = ProxyConfig.for_service(MESH_SERVICE, ("127.0.0.1:1",), metrics_listen=f"127.0.0.1:{port}")
            with pytest.raises(StartupError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
                async with Proxy(config):
                    pass

    live.run(main)
