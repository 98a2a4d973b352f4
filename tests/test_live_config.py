"""The `meshsim live` config in both layouts: TOML in the scenario vocabulary, and the seed's YAML."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest

from meshsim.core.breaker import ConcurrencyLimit
from meshsim.core.errors import ConfigError
from meshsim.core.status import StatusCode
from meshsim.live.config import (
    Cluster,
    DnsDiscovery,
    FileDiscovery,
    Keepalive,
    MtlsConfig,
    ProxyConfig,
    TracingConfig,
    load_live_config,
)
from meshsim.live.proxy import grpc_options
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from tests.conftest import serve_replicas, start_proxy, stop

# The layout of the seed description, unchanged.
SEED_YAML = """\
services:
  - name: mesh-service-1
    port: 50051
    replicas: 3
    use_tls: true
load_balancer:
  algorithm: round_robin
  health_check_interval: 30
retry_policy:
  max_attempts: 3
  initial_backoff: 1.0
  max_backoff: 60.0
  backoff_multiplier: 2.0
  retryable_status_codes: [UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED]
mtls:
  enabled: true
  cert_dir: certs
connection_pool:
  max_connections: 1000
  max_connections_per_endpoint: 100
  idle_timeout: 300
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_seed_yaml_layout_reads_into_the_mesh_vocabulary(tmp_path: Path) -> None:
    config = load_live_config(write(tmp_path, "mesh.yaml", SEED_YAML))
    assert config.clusters == (
        Cluster(
            service="mesh.v1.MeshService",
            endpoints=("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"),
            name="mesh-service-1",
            tls=True,
        ),
    )
    assert config.balancer.policy == "round_robin"
    assert config.health.interval == 30.0
    retry = config.policies.retry
    assert retry is not None
    assert (retry.max_attempts, retry.initial_backoff, retry.max_backoff, retry.backoff_multiplier) == (3, 1, 60, 2)
    assert retry.retryable_status_codes == {
        StatusCode.UNAVAILABLE,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.RESOURCE_EXHAUSTED,
    }
    assert config.policies.limits == ConcurrencyLimit(max_requests=1000, max_requests_per_endpoint=100)
    assert config.idle_timeout == 300.0
    assert config.mtls == MtlsConfig.in_dir(tmp_path / "certs")  # relative to the config file


def test_the_toml_layout_takes_every_policy_table_and_the_connection_settings(tmp_path: Path) -> None:
    config = load_live_config(
        write(
            tmp_path,
            "mesh.toml",
            """
[proxy]
listen = "127.0.0.1:6000"
service = "shop.v1.Orders"
endpoints = ["127.0.0.1:7001", "127.0.0.1:7002"]
retry_buffer = 1024
max_message_bytes = 8388608
idle_timeout = "5m"
shutdown_grace = "2s"
keepalive = { time = "30s", timeout = "5s" }

[balancer]
policy = "p2c"

[retry]
max_attempts = 4
methods = ["PlaceOrder", "/shop.v1.Orders/GetOrder"]

[hedging]
max_attempts = 2
methods = ["ListOrders"]

[circuit_breaker.service]
window_size = 10
minimum_calls = 5

[concurrency_limit]
max_requests = 50
max_requests_per_endpoint = 10

[outlier_detection.consecutive_failures]
threshold = 3
""",
        )
    )
    assert config.clusters == (Cluster("shop.v1.Orders", ("127.0.0.1:7001", "127.0.0.1:7002")),)
    assert config.listen == "127.0.0.1:6000"
    assert (config.retry_buffer, config.max_message_bytes, config.idle_timeout, config.shutdown_grace) == (
        1024,
        8388608,
        300.0,
        2.0,
    )
    assert config.keepalive == Keepalive(time=30.0, timeout=5.0)
    assert config.balancer.policy == "p2c"
    assert config.policies.retry is not None and config.policies.retry.methods == (
        "PlaceOrder",
        "/shop.v1.Orders/GetOrder",
    )
    assert config.policies.hedging is not None and config.policies.hedging.methods == ("ListOrders",)
    assert config.policies.service_breaker is not None
    assert config.policies.limits == ConcurrencyLimit(max_requests=50, max_requests_per_endpoint=10)
    assert config.outlier is not None and config.outlier.consecutive_failures is not None


def test_the_connection_settings_become_grpc_arguments() -> None:
    config = ProxyConfig.for_service(
        "s", ("127.0.0.1:1",), keepalive=Keepalive(time=30.0, timeout=5.0), max_message_bytes=1024, idle_timeout=60.0
    )
    channel = dict(grpc_options(config, listener=False))
    assert channel["grpc.keepalive_time_ms"] == 30000
    assert channel["grpc.keepalive_timeout_ms"] == 5000
    assert channel["grpc.max_receive_message_length"] == 1024
    assert channel["grpc.client_idle_timeout_ms"] == 60000
    server = dict(grpc_options(config, listener=True))
    assert server["grpc.http2.min_ping_interval_without_data_ms"] == 30000
    assert "grpc.client_idle_timeout_ms" not in server


def test_several_services_each_get_a_cluster(tmp_path: Path) -> None:
    config = load_live_config(
        write(
            tmp_path,
            "mesh.toml",
            """
[[proxy.cluster]]
name = "orders"
service = "shop.v1.Orders"
endpoints = ["127.0.0.1:7001"]

[[proxy.cluster]]
service = "shop.v1.Payments"
endpoints = ["127.0.0.1:7101", "127.0.0.1:7102"]
""",
        )
    )
    assert [(c.label, len(c.endpoints)) for c in config.clusters] == [("orders", 1), ("shop.v1.Payments", 2)]


def test_discovery_in_either_layout(tmp_path: Path) -> None:
    toml = load_live_config(
        write(
            tmp_path,
            "mesh.toml",
            """
[proxy]
discovery = { srv = "_grpc._tcp.orders.internal", nameservers = ["10.0.0.2", "127.0.0.1:5353"], interval = "10s" }
""",
        )
    )
    assert toml.clusters[0].endpoints == ()
    assert toml.clusters[0].discovery == DnsDiscovery(
        "_grpc._tcp.orders.internal", srv=True, interval=10.0, nameservers=("10.0.0.2", "127.0.0.1:5353")
    )
    yaml = load_live_config(
        write(
            tmp_path,
            "mesh.yaml",
            "services:\n"
            "  - name: orders\n"
            "    discovery: {dns: orders.internal, port: 50051}\n"
            "  - grpc_service: shop.v1.Payments\n"
            "    discovery: {file: payments.txt}\n",
        )
    )
    assert [c.discovery for c in yaml.clusters] == [
        DnsDiscovery("orders.internal", port=50051),
        FileDiscovery(tmp_path / "payments.txt"),
    ]


def test_weights_and_the_hash_header_in_either_layout(tmp_path: Path) -> None:
    top = load_live_config(
        write(
            tmp_path,
            "top.toml",
            """
[proxy]
endpoints = ["127.0.0.1:7001", "127.0.0.1:7002"]
weights = [3, 1]

[balancer]
policy = "consistent_hash"
hash_header = "x-user-id"
""",
        )
    )
    assert top.clusters == (Cluster("mesh.v1.MeshService", ("127.0.0.1:7001", "127.0.0.1:7002"), weights=(3, 1)),)
    assert (top.balancer.policy, top.balancer.hash_header) == ("consistent_hash", "x-user-id")
    clusters = load_live_config(
        write(
            tmp_path,
            "clusters.toml",
            """
[[proxy.cluster]]
service = "shop.v1.Orders"
endpoints = ["127.0.0.1:7001", "127.0.0.1:7002"]
weights = [1, 2]

[[proxy.cluster]]
service = "shop.v1.Payments"
endpoints = ["127.0.0.1:7101"]
""",
        )
    )
    assert [c.weights for c in clusters.clusters] == [(1, 2), ()]
    yaml = load_live_config(
        write(
            tmp_path,
            "mesh.yaml",
            "services:\n"
            "  - endpoints: [127.0.0.1:7001, 127.0.0.1:7002]\n"
            "    weights: [3, 1]\n"
            "  - grpc_service: shop.v1.Payments\n"
            "    port: 7101\n"
            "    replicas: 3\n"
            "    weights: [1, 1, 2]\n"
            "load_balancer:\n"
            "  algorithm: ring_hash\n"
            "  hash_header: x-user-id\n",
        )
    )
    assert [c.weights for c in yaml.clusters] == [(3, 1), (1, 1, 2)]
    assert (yaml.balancer.policy, yaml.balancer.hash_header) == ("consistent_hash", "x-user-id")


def test_tracing_is_read_in_either_layout(tmp_path: Path) -> None:
    toml = write(
        tmp_path,
        "mesh.toml",
        '[proxy]\nendpoints = ["a:1"]\n[tracing]\nendpoint = "http://127.0.0.1:4317"\nsample_ratio = 0.25\n',
    )
    assert load_live_config(toml).tracing == TracingConfig(endpoint="http://127.0.0.1:4317", sample_ratio=0.25)
    yaml = write(tmp_path, "mesh.yaml", "services:\n  - port: 50051\ntracing:\n  service_name: edge\n")
    assert load_live_config(yaml).tracing == TracingConfig(service_name="edge")
    assert load_live_config(write(tmp_path, "none.toml", '[proxy]\nendpoints = ["a:1"]\n')).tracing is None


def test_for_service_takes_weights_and_checks_them() -> None:
    config = ProxyConfig.for_service("mesh.v1.MeshService", ("127.0.0.1:7001", "127.0.0.1:7002"), weights=(3, 1))
    assert config.clusters[0].weights == (3, 1)
    with pytest.raises(ConfigError, match="weights: 1 entries for 2 endpoints"):
        ProxyConfig.for_service("mesh.v1.MeshService", ("127.0.0.1:7001", "127.0.0.1:7002"), weights=(3,))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "typo.yaml",
            SEED_YAML.replace("retry_policy:", "retry_polcy:"),
            "retry_polcy: unknown key (did you mean 'retry_policy'?)",
        ),
        ("syntax.yaml", "services:\n  - name: [a\n", "not valid YAML at line 3, column 1"),
        ("top.yaml", "- a\n- b\n", "expected a mapping at the top level, got list"),
        (
            "tls.yaml",
            "services:\n  - port: 50051\n    use_tls: true\n",
            "services[0].use_tls: needs mtls",
        ),
        (
            "twice.yaml",
            "services:\n  - port: 50051\n  - port: 50061\n",
            "services: two entries serve mesh.v1.MeshService",
        ),
        (
            "algorithm.yaml",
            "services:\n  - port: 50051\nload_balancer:\n  algorithm: fastest\n",
            "load_balancer.algorithm: expected one of",
        ),
        (
            "ports.yaml",
            "services:\n  - port: 65535\n    replicas: 2\n",
            "services[0].replicas: ports 65535..65536 run past 65535",
        ),
        (
            "pool.yaml",
            "services:\n  - port: 50051\nconnection_pool:\n  max_connections: 0\n",
            "connection_pool.max_connections: must be at least 1",
        ),
        ("endpoint.toml", '[proxy]\nendpoints = ["localhost"]\n', 'proxy.endpoints[0]: expected "host:port"'),
        (
            "both.toml",
            '[proxy]\nendpoints = ["a:1"]\n[[proxy.cluster]]\nservice = "s"\nendpoints = ["a:2"]\n',
            "proxy.cluster: give either service and endpoints or [[proxy.cluster]] tables, not both",
        ),
        (
            "keepalive.toml",
            '[proxy]\nendpoints = ["a:1"]\nkeepalive = { timeout = "5s" }\n',
            "proxy.keepalive.time: is required",
        ),
        ("unknown.toml", '[proxy]\nendpoints = ["a:1"]\n[retyr]\n', "retyr: unknown key (did you mean 'retry'?)"),
        (
            "kinds.toml",
            '[proxy]\ndiscovery = { dns = "a", file = "b" }\n',
            "proxy.discovery: needs exactly one of dns, srv or file",
        ),
        ("port.toml", '[proxy]\ndiscovery = { dns = "a" }\n', "proxy.discovery.port: is required"),
        (
            "srv.toml",
            '[proxy]\ndiscovery = { srv = "_grpc._tcp.a" }\n',
            "proxy.discovery.nameservers: SRV records need a nameserver",
        ),
        (
            "nameserver.toml",
            '[proxy]\ndiscovery = { dns = "a", port = 1, nameservers = ["a:b:c:d:e"] }\n',
            "proxy.discovery.nameservers: expected an array",
        ),
        (
            "weights.toml",
            '[proxy]\nendpoints = ["a:1", "a:2"]\nweights = [1]\n',
            "proxy.weights: 1 entries for 2 endpoints",
        ),
        (
            "weight-zero.toml",
            '[proxy]\nendpoints = ["a:1", "a:2"]\nweights = [1, 0]\n',
            "proxy.weights[1]: must be a positive integer (at most 1,000,000), got 0",
        ),
        (
            "weight-type.toml",
            '[proxy]\nendpoints = ["a:1"]\nweights = 3\n',
            "proxy.weights: expected an array of positive integers, got 3",
        ),
        (
            "weights-discovery.toml",
            '[proxy]\ndiscovery = { file = "e.txt" }\nweights = [1]\n',
            "proxy.weights: a discovered endpoint has no weight",
        ),
        (
            "weights-twice.toml",
            '[proxy]\nendpoints = ["a:1", "a:1"]\nweights = [1, 2]\n',
            "proxy.weights: a:1 is listed twice in endpoints; a weight belongs to one endpoint",
        ),
        (
            "cluster-weights.toml",
            '[[proxy.cluster]]\nservice = "s"\nendpoints = ["a:1"]\nweights = [1, 2]\n',
            "proxy.cluster[0].weights: 2 entries for 1 endpoints",
        ),
        (
            "weights.yaml",
            "services:\n  - port: 50051\n    replicas: 2\n    weights: [2, -1]\n",
            "services[0].weights[1]: must be a positive integer (at most 1,000,000), got -1",
        ),
        (
            "hash-header.toml",
            '[proxy]\nendpoints = ["a:1"]\n[balancer]\nhash_header = "X-User"\n',
            "balancer.hash_header: expected a lowercase header name",
        ),
        (
            "hash-header.yaml",
            "services:\n  - port: 50051\nload_balancer:\n  hash_header: session-bin\n",
            "load_balancer.hash_header: a binary header (-bin) cannot be a hash key",
        ),
        (
            "tracing.toml",
            '[proxy]\nendpoints = ["a:1"]\n[tracing]\nendpoint = "collector:4317"\n',
            'tracing.endpoint: expected "http://HOST:PORT" or "https://HOST:PORT"',
        ),
        (
            "tracing.yaml",
            "services:\n  - port: 50051\ntracing:\n  sample_ratio: 2\n",
            "tracing.sample_ratio: must be at most 1",
        ),
    ],
)
def test_a_bad_config_is_one_line_naming_file_and_key(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as error:
        load_live_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_the_live_command_runs_a_yaml_config(tmp_path: Path) -> None:
    serve, replicas = serve_replicas(2)
    live = None
    try:
        config = write(
            tmp_path,
            "mesh.yaml",
            "services:\n"
            "  - name: demo\n"
            f"    endpoints: [{', '.join(replicas)}]\n"
            "load_balancer:\n"
            "  algorithm: least_connections\n"
            "  health_check_interval: 1\n"
            "retry_policy:\n"
            "  max_attempts: 3\n"
            "  initial_backoff: 0.01\n"
            "proxy:\n"
            "  listen: 127.0.0.1:0\n"
            "metrics:\n"
            "  listen: 127.0.0.1:0\n",
        )
        live, address = start_proxy(config)
        assert live.stdout is not None
        metrics = live.stdout.readline().removeprefix("metrics on ").strip()
        with grpc.insecure_channel(address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            answered = {stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5).replica for n in range(6)}
        assert answered <= set(replicas) and answered
        with urllib.request.urlopen(metrics, timeout=5) as response:
            scraped = response.read().decode()
        assert 'grpc_requests_total{client="proxy",code="OK",method="/mesh.v1.MeshService/Process"' in scraped
    finally:
        for process in (live, serve):
            if process is not None:
                stop(process)
