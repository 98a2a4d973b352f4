"""The `meshsim live` config: where the proxy listens, the services behind it, and the mesh policies.

Two layouts give the same `ProxyConfig`. TOML uses the scenario file's vocabulary, so a
policy tried in the simulator is copied into the proxy unchanged:

    [proxy]
    listen = "127.0.0.1:50050"
    service = "mesh.v1.MeshService"
    endpoints = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]

    [balancer]
    policy = "least_connections"

    [retry]
    max_attempts = 3

YAML (`.yaml`/`.yml`) takes the layout users of similar meshes already have
(`services`, `load_balancer`, `retry_policy`, `mtls`, `connection_pool`); see
docs/live.md. Either way an unknown key is an error naming it, never ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from meshsim.core.addresses import is_address, is_ipv6, join_host_port
from meshsim.core.breaker import ConcurrencyLimit
from meshsim.core.call_log import DEFAULT_MAX_BYTES, MAX_MAX_BYTES, MIN_MAX_BYTES, RecordConfig, parse_size
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.config import MAX_WEIGHT, Table, check_depth, optional_table, read_text, shown, toml_table
from meshsim.core.errors import ConfigError
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import OutlierConfig
from meshsim.core.pickers import POLICIES, BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.policy_config import (
    read_balancer,
    read_hash_header,
    read_health,
    read_outlier,
    read_policies,
    read_preset,
    read_retry,
)

# gRPC's default per-call retry buffer (grpc.per_rpc_retry_buffer_size).
RETRY_BUFFER_BYTES = 256 * 1024


@attrs.frozen
class Keepalive:
    """HTTP/2 keepalive pings, on the proxy's channels to replicas and on its listener."""

    time: float
    timeout: float = 20.0
    permit_without_calls: bool = False


@attrs.frozen
class MtlsConfig:
    """Mutual TLS: the CA both ends trust, the proxy's server pair for its listener and its client
    pair for replicas. `in_dir` is the layout `meshsim certs init` writes."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # After a rotation, how long calls may go on over connections opened with the old pair.
    drain: float = 30.0

    @classmethod
    def in_dir(cls, cert_dir: Path) -> MtlsConfig:
        return cls(
            ca=cert_dir / "ca.pem",
            server_cert=cert_dir / "server.pem",
            server_key=cert_dir / "server-key.pem",
            client_cert=cert_dir / "client.pem",
            client_key=cert_dir / "client-key.pem",
        )


@attrs.frozen
class DnsDiscovery:
    """Re-resolve a DNS name every `interval`: A/AAAA records with a fixed port, or (`srv`) SRV
    records giving each target its port. No nameservers: the system resolver (A/AAAA only)."""

    name: str
    port: int | None = None
    srv: bool = False
    interval: float = 30.0
    nameservers: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return f"srv:{self.name}" if self.srv else f"dns:{self.name}:{self.port}"


@attrs.frozen
class FileDiscovery:
    """Read "host:port" lines (blank lines and # comments aside) from a file every `interval`."""

    path: Path
    interval: float = 1.0

    @property
    def source(self) -> str:
        return f"file:{self.path}"


Discovery = DnsDiscovery | FileDiscovery


@attrs.frozen
class Cluster:
    """The replicas of one gRPC service behind the proxy: a fixed list, or where to discover them
    (then `endpoints`, if any, are used until the first resolution). `weights`: one per endpoint,
    in order (none: all 1), for the policies that weigh (weighted_round_robin, consistent_hash)."""

    service: str
    endpoints: tuple[str, ...] = ()
    name: str = ""
    tls: bool = False
    discovery: Discovery | None = None
    weights: tuple[int, ...] = ()

    def __attrs_post_init__(self) -> None:
        # A file's weights are checked as they are read, naming the file; this is for code.
        problem = weights_problem(self.endpoints, self.weights, self.discovery)
        if problem is not None:
            raise ProxyConfigError(f"cluster {self.label}: {problem[0]}: {problem[1]}")

    @property
    def label(self) -> str:
        return self.name or self.service

    @property
    def weight_of(self) -> dict[str, int]:
        """Each endpoint's weight, by address (Upstream's form; one not in it weighs 1)."""
        return dict(zip(self.endpoints, self.weights, strict=False))


def weights_problem(
    endpoints: Sequence[str], weights: Sequence[object], discovery: object = None
) -> tuple[str, str] | None:
    """What is wrong with `weights` for `endpoints`: the key to name (`weights`, `weights[1]`) and
    the problem, or None. No weights at all is fine: every endpoint weighs 1."""
    if not weights:
        return None
    if discovery is not None:
        return "weights", "a discovered endpoint has no weight (weights go with a fixed endpoints list)"
    if len(weights) != len(endpoints):
        return "weights", f"{len(weights)} entries for {len(endpoints)} endpoints"
    for index, weight in enumerate(weights):
        if type(weight) is not int or not 1 <= weight <= MAX_WEIGHT:
            return f"weights[{index}]", f"must be a positive integer (at most {MAX_WEIGHT:,}), got {shown(weight)}"
    repeated = next((e for n, e in enumerate(endpoints) if e in endpoints[:n]), None)
    if repeated is not None:
        return "weights", f"{repeated} is listed twice in endpoints; a weight belongs to one endpoint"
    return None


@attrs.frozen
class ProxyConfig:
    clusters: tuple[Cluster, ...]
    listen: str = "127.0.0.1:0"
    balancer: BalancerConfig = attrs.field(factory=BalancerConfig)
    health: HealthConfig = attrs.field(factory=lambda: HealthConfig(interval=1.0, timeout=0.5))
    policies: CallPolicies = attrs.field(factory=CallPolicies)
    outlier: OutlierConfig | None = None
    retry_buffer: int = RETRY_BUFFER_BYTES
    keepalive: Keepalive | None = None
    max_message_bytes: int | None = None
    idle_timeout: float | None = None
    # How long calls in flight may take to finish when the proxy stops.
    shutdown_grace: float = 5.0
    # Share the listening port with other processes (SO_REUSEPORT), as gRPC servers do unless told not to.
    reuse_port: bool = False
    # Calls one client connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS;
    # gRPC's own default is unbounded).
    max_concurrent_streams: int = 100
    # Calls in progress from one client address, over all its connections (None: no share).
    max_requests_per_client: int | None = None
    # The request metadata a call may carry, counted as HTTP/2 does (name + value + 32 per
    # entry); gRPC's default grpc.max_metadata_size.
    max_metadata_bytes: int = 8192
    mtls: MtlsConfig | None = None
    # Where Prometheus scrapes /metrics ("host:port"), or nowhere.
    metrics_listen: str | None = None
    name: str = "proxy"
    # Where every call through the proxy is recorded, for `meshsim replay` (docs/replay.md).
    record: RecordConfig | None = None
    # OpenTelemetry traces (live/tracing.py): the OTEL_* variables, when set, win over it.
    tracing: TracingConfig | None = None

    @classmethod
    def for_service(
        cls, service: str, endpoints: Sequence[str], weights: Sequence[int] = (), **options: Any
    ) -> ProxyConfig:
        """One service behind the proxy (the common case); `weights`, if any, one per endpoint."""
        return cls(clusters=(Cluster(service, tuple(endpoints), weights=tuple(weights)),), **options)


@attrs.frozen
class TracingConfig:
    """`[tracing]`: where spans go (an OTLP/gRPC endpoint, "http://collector:4317"), the share of
    traces sampled (by trace id, following the caller's decision: parentbased_traceidratio),
    and the service name."""

    endpoint: str | None = None
    sample_ratio: float = 1.0
    service_name: str | None = None
    enabled: bool = True


class ProxyConfigError(ConfigError):
    """A proxy config is invalid; the message names the file and the key path."""


def load_live_config(path: str | Path) -> ProxyConfig:
    path = Path(path)
    text = read_text(path, ProxyConfigError)
    if path.suffix in (".yaml", ".yml"):
        return _from_yaml(path, text)
    return _from_toml(toml_table(path, text, ProxyConfigError))


# --- TOML ----------------------------------------------------------------------------


def _from_toml(top: Table) -> ProxyConfig:
    preset = read_preset(top)
    proxy = top.table("proxy")
    listen = _address(proxy, "listen", "127.0.0.1:50050")
    clusters: list[Cluster] = []
    if proxy.has("cluster"):
        for table in proxy.tables("cluster"):
            discovery = _discovery(table)
            endpoints = _endpoints(table, "endpoints", required=discovery is None)
            clusters.append(
                Cluster(
                    service=table.string("service"),
                    endpoints=endpoints,
                    name=table.string("name", ""),
                    discovery=discovery,
                    weights=_weights(table, endpoints, discovery),
                )
            )
            table.done()
        if any(proxy.has(key) for key in ("service", "endpoints", "discovery", "weights")):
            proxy.fail("cluster", "give either service and endpoints or [[proxy.cluster]] tables, not both")
        if not clusters:
            proxy.fail("cluster", "needs at least one [[proxy.cluster]]")
    else:
        discovery = _discovery(proxy)
        endpoints = _endpoints(proxy, "endpoints", required=discovery is None)
        clusters.append(
            Cluster(
                proxy.string("service", MESH_SERVICE),
                endpoints,
                discovery=discovery,
                weights=_weights(proxy, endpoints, discovery),
            )
        )
    _unique_services(proxy, clusters)
    keepalive = optional_table(
        proxy,
        "keepalive",
        lambda t: Keepalive(
            time=t.duration("time", positive=True),
            timeout=t.duration("timeout", 20.0, positive=True),
            permit_without_calls=t.boolean("permit_without_calls", False),
        ),
    )
    mtls, upstream_tls = None, False
    mtls_table = top.table("mtls", None)
    if mtls_table is not None:
        # One switch for both sides by default: a mesh that wants mTLS wants it to the replicas too.
        upstream_tls = mtls_table.boolean("upstream", True)
        mtls = _mtls(mtls_table)
        mtls_table.done()
    if mtls is not None and upstream_tls:
        clusters = [attrs.evolve(cluster, tls=True) for cluster in clusters]
    config = ProxyConfig(
        clusters=tuple(clusters),
        listen=listen,
        balancer=read_balancer(top.table("balancer", None), preset),
        health=read_health(top.table("health", None), preset),
        outlier=read_outlier(top.table("outlier_detection", None), preset),
        policies=read_policies(top, methods=None, preset=preset),
        retry_buffer=proxy.integer("retry_buffer", RETRY_BUFFER_BYTES, minimum=0),
        max_message_bytes=proxy.integer("max_message_bytes", None, minimum=1),
        idle_timeout=proxy.duration("idle_timeout", None, positive=True),
        shutdown_grace=proxy.duration("shutdown_grace", 5.0),
        reuse_port=proxy.boolean("reuse_port", False),
        max_concurrent_streams=proxy.integer("max_concurrent_streams", 100, minimum=1),
        max_requests_per_client=proxy.integer("max_requests_per_client", None, minimum=1),
        max_metadata_bytes=proxy.integer("max_metadata_bytes", 8192, minimum=1024),
        keepalive=keepalive,
        mtls=mtls,
        metrics_listen=optional_table(top, "metrics", _metrics),
        record=optional_table(top, "record", _record),
        tracing=optional_table(top, "tracing", _tracing),
    )
    proxy.done()
    top.done()
    return config


# --- YAML ----------------------------------------------------------------------------

# The seed's algorithm names, and the spellings of other meshes, for meshsim's policies
# (GrpcClient's `policy` takes them too).
ALGORITHMS = {name: name for name in POLICIES} | {
    "least_conn": "least_connections",
    "least_request": "least_connections",
    "weighted": "weighted_round_robin",
    "power_of_two_choices": "p2c",
    "ring_hash": "consistent_hash",
    "ewma": "peak_ewma",
}


class _NoAliases(yaml.SafeLoader):
    """YAML without aliases: a few hundred bytes of nested aliases expand to gigabytes (a "billion
    laughs"), and a config has no need of them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in a meshsim config", event.start_mark
            )
        return super().compose_node(parent, index)


def _from_yaml(path: Path, text: str) -> ProxyConfig:
    try:
        data = yaml.load(text, Loader=_NoAliases)  # a SafeLoader, without aliases
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or error
        raise ProxyConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise ProxyConfigError(f"{path}: not valid YAML: a number with thousands of digits") from None
    except RecursionError:
        raise ProxyConfigError(f"{path}: mappings or lists nested too deeply") from None
    if not isinstance(data, dict):
        raise ProxyConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    check_depth(path, data, ProxyConfigError)
    top = Table(path, data, error=ProxyConfigError)
    clusters = []
    for table in top.tables("services"):
        host = table.string("host", "127.0.0.1")
        discovery = _discovery(table)
        if discovery is not None or table.has("endpoints"):
            if table.has("port") or table.has("replicas"):
                table.fail("endpoints", "give either endpoints (or discovery) or port and replicas, not both")
            endpoints = _endpoints(table, "endpoints", required=discovery is None)
        else:
            port = table.integer("port", minimum=1)
            replicas = table.integer("replicas", 1, minimum=1)
            if port + replicas - 1 > 65535:
                table.fail("replicas", f"ports {port}..{port + replicas - 1} run past 65535")
            # The replicas `meshsim serve --port P --replicas N` starts: consecutive ports.
            endpoints = tuple(join_host_port(host, port + n) for n in range(replicas))
        clusters.append(
            Cluster(
                service=table.string("grpc_service", MESH_SERVICE),
                endpoints=endpoints,
                name=table.string("name", ""),
                tls=table.boolean("use_tls", False),
                discovery=discovery,
                weights=_weights(table, endpoints, discovery),
            )
        )
        table.done()
    if not clusters:
        top.fail("services", "needs at least one service")
    _unique_services(top, clusters, key="services")
    proxy = top.table("proxy", None)
    listen = "127.0.0.1:50050" if proxy is None else _address(proxy, "listen", "127.0.0.1:50050")
    listener = {}
    if proxy is not None:
        listener = {
            "reuse_port": proxy.boolean("reuse_port", False),
            "max_concurrent_streams": proxy.integer("max_concurrent_streams", 100, minimum=1),
            "max_requests_per_client": proxy.integer("max_requests_per_client", None, minimum=1),
            "max_metadata_bytes": proxy.integer("max_metadata_bytes", 8192, minimum=1024),
        }
        proxy.done()
    balancer, health = BalancerConfig(), HealthConfig(interval=1.0, timeout=0.5)
    lb = top.table("load_balancer", None)
    if lb is not None:
        algorithm = lb.choice("algorithm", sorted(ALGORITHMS), "round_robin")
        balancer = BalancerConfig(policy=ALGORITHMS[algorithm], hash_header=read_hash_header(lb))
        health = attrs.evolve(
            health,
            interval=lb.duration("health_check_interval", health.interval, positive=True),
            timeout=lb.duration("health_check_timeout", health.timeout, positive=True),
        )
        lb.done()
    retry_table = top.table("retry_policy", None)
    policies = CallPolicies(retry=None if retry_table is None else read_retry(retry_table, None))
    pool = top.table("connection_pool", None)
    idle_timeout = None
    if pool is not None:
        policies = attrs.evolve(
            policies,
            limits=ConcurrencyLimit(
                max_requests=pool.integer("max_connections", 1024, minimum=1),
                max_pending=pool.integer("max_pending", 1024, minimum=0),
                max_requests_per_endpoint=pool.integer("max_connections_per_endpoint", None, minimum=1),
            ),
        )
        idle_timeout = pool.duration("idle_timeout", None, positive=True)
        pool.done()
    mtls = optional_table(top, "mtls", _mtls)
    metrics_listen = optional_table(top, "metrics", _metrics)
    record = optional_table(top, "record", _record)
    tracing = optional_table(top, "tracing", _tracing)
    for index, cluster in enumerate(clusters):
        if cluster.tls and mtls is None:
            top.fail(
                f"services[{index}].use_tls", "needs mtls (enabled, with the cert_dir whose CA signs the replicas)"
            )
    top.done()
    return ProxyConfig(
        clusters=tuple(clusters),
        listen=listen,
        balancer=balancer,
        health=health,
        policies=policies,
        idle_timeout=idle_timeout,
        mtls=mtls,
        metrics_listen=metrics_listen,
        record=record,
        tracing=tracing,
        **listener,
    )


# --- shared ----------------------------------------------------------------------------


def _metrics(table: Table) -> str:
    """`[metrics] listen = "host:port"` (the seed's port, 9090, by default)."""
    return _address(table, "listen", "127.0.0.1:9090")


def _tracing(table: Table) -> TracingConfig:
    """`[tracing] endpoint = "http://collector:4317"`, `sample_ratio` (0 to 1), `service_name`,
    `enabled`: traces to an OTLP/gRPC collector (docs/observability.md)."""
    endpoint = table.string("endpoint", None)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        table.fail("endpoint", f'expected "http://HOST:PORT" or "https://HOST:PORT", got {shown(endpoint)}')
    return TracingConfig(
        endpoint=endpoint,
        sample_ratio=table.number("sample_ratio", 1.0, minimum=0.0, maximum=1.0),
        service_name=table.string("service_name", None),
        enabled=table.boolean("enabled", True),
    )


def _record(table: Table) -> RecordConfig:
    """`[record] path = "calls.rec"` (relative to the config file), `max_bytes` (bytes, or "512MiB"),
    `max_calls`: every call through the proxy, recorded for `meshsim replay`."""
    raw_path = table.string("path")
    path = Path(raw_path)
    max_bytes = DEFAULT_MAX_BYTES
    if table.has("max_bytes"):
        raw = table.raw("max_bytes")
        try:
            max_bytes = parse_size(raw)
        except ValueError:
            table.fail("max_bytes", f'expected a number of bytes or a size like "512MiB", got {shown(raw)}')
        if not MIN_MAX_BYTES <= max_bytes <= MAX_MAX_BYTES:
            table.fail("max_bytes", f"must be from 64KiB to 1TiB ({MIN_MAX_BYTES:,} to {MAX_MAX_BYTES:,} bytes)")
    return RecordConfig(
        path=path if path.is_absolute() else table.file.parent / path,
        max_bytes=max_bytes,
        max_calls=table.integer("max_calls", None, minimum=1, maximum=2**62),
    )


def _mtls(table: Table) -> MtlsConfig | None:
    """`enabled`, `cert_dir` (default "certs"), and any file named on its own; paths are relative to
    the config file."""

    def path(key: str, default: Path) -> Path:
        value = table.raw(key, None)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            table.fail(key, f"expected a file path, got {shown(value)}")
        found = Path(value)
        return found if found.is_absolute() else table.file.parent / found

    enabled = table.boolean("enabled", True)
    base = MtlsConfig.in_dir(path("cert_dir", Path("certs")))
    config = MtlsConfig(
        ca=path("ca", base.ca),
        server_cert=path("server_cert", base.server_cert),
        server_key=path("server_key", base.server_key),
        client_cert=path("client_cert", base.client_cert),
        client_key=path("client_key", base.client_key),
        drain=table.duration("drain", 30.0),
    )
    return config if enabled else None


def _address(table: Table, key: str, default: str) -> str:
    value: str = table.string(key, default)
    if not is_address(value):
        table.fail(key, f'expected "host:port", got {shown(value)}')
    return value


def _endpoints(table: Table, key: str, required: bool = True) -> tuple[str, ...]:
    raw = table.raw(key) if required else table.raw(key, [])
    if not required and raw == []:
        return ()
    if not isinstance(raw, list) or not raw:
        table.fail(key, f'expected a non-empty array of "host:port" strings, got {shown(raw)}')
    for index, item in enumerate(raw):
        if not is_address(item):
            table.fail(f"{key}[{index}]", f'expected "host:port", got {shown(item)}')
    return tuple(raw)


def _weights(table: Table, endpoints: tuple[str, ...], discovery: Discovery | None) -> tuple[int, ...]:
    """`weights = [3, 1]`: one positive integer per endpoint, in order (none: all 1)."""
    if not table.has("weights"):
        return ()
    raw = table.raw("weights")
    if not isinstance(raw, list) or not raw:
        table.fail("weights", f"expected an array of positive integers, got {shown(raw)}")
    problem = weights_problem(endpoints, raw, discovery)
    if problem is not None:
        table.fail(*problem)
    return tuple(raw)


def _discovery(parent: Table) -> Discovery | None:
    """`discovery = { dns = NAME, port = P }`, `{ srv = NAME }` or `{ file = PATH }`, each with `interval`
    (and, for DNS, `nameservers = ["host:port"]`)."""
    table = parent.table("discovery", None)
    if table is None:
        return None
    kinds = [kind for kind in ("dns", "srv", "file") if table.has(kind)]
    if len(kinds) != 1:
        table.fail(None, "needs exactly one of dns, srv or file")
    discovery: Discovery
    if kinds[0] == "file":
        path = Path(table.string("file"))
        discovery = FileDiscovery(
            path if path.is_absolute() else table.file.parent / path,
            interval=table.duration("interval", 1.0, positive=True),
        )
    else:
        srv = kinds[0] == "srv"
        nameservers = table.raw("nameservers", [])
        if not isinstance(nameservers, list) or not all(
            isinstance(n, str) and (is_address(n) or (n and ":" not in n) or is_ipv6(n)) for n in nameservers
        ):
            table.fail("nameservers", f'expected an array of "host" or "host:port" strings, got {shown(nameservers)}')
        if srv and not nameservers:
            table.fail("nameservers", "SRV records need a nameserver to ask (the system resolver has no SRV)")
        discovery = DnsDiscovery(
            name=table.string(kinds[0]),
            port=None if srv else table.integer("port", minimum=1),
            srv=srv,
            interval=table.duration("interval", 30.0, positive=True),
            nameservers=tuple(nameservers),
        )
    table.done()
    return discovery


def _unique_services(table: Table, clusters: list[Cluster], key: str = "cluster") -> None:
    seen: set[str] = set()
    for cluster in clusters:
        if cluster.service in seen:
            table.fail(
                key,
                f"two entries serve {cluster.service}; calls are routed by gRPC service name, "
                "so give each its own (`grpc_service` in YAML, `service` in TOML)",
            )
        seen.add(cluster.service)
