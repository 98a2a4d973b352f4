"""Traces across a call's whole path: GrpcClient, the proxy, a replica, received by a real OTLP/gRPC
receiver (opentelemetry-proto's TraceService) on loopback; the proxy's logs carry the trace ids."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from meshsim import GrpcClient, RetryPolicy, live
from meshsim.live.config import TracingConfig
from meshsim.live.tracing import Tracing, tracing_requested
from meshsim.pb.v1.mesh_pb2 import ProcessRequest
from tests.conftest import start, stop

pytestmark = pytest.mark.slow

UNAVAILABLE = 14


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: every span it is sent, with the service that sent it."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, trace_pb2.Span]] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self._lock:
            for resource_spans in request.resource_spans:
                names = [a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"]
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((names[0], span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of(self, service: str) -> list[trace_pb2.Span]:
        with self._lock:
            return [span for name, span in self.spans if name == service]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    found = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield found, f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def attribute(span: trace_pb2.Span, key: str) -> Any:
    for found in span.attributes:
        if found.key == key:
            value = found.value
            return value.string_value or value.int_value
    return None


def test_the_standard_variables_turn_tracing_on_and_off() -> None:
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert not tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"})
    assert not tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})


def test_one_trace_holds_a_retried_call_from_client_to_replica(receiver: tuple[Receiver, str], tmp_path: Path) -> None:
    found, endpoint = receiver
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{endpoint}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    serve = start("serve", "--port", "0", "--replicas", "2", "--grace", "0s", env=env)
    live_process = None
    try:
        assert serve.stdout is not None
        replicas = [serve.stdout.readline().split(" on ")[1].split(" ")[0].strip() for _ in range(2)]
        config = tmp_path / "mesh.toml"
        config.write_text(
            f"""\
[proxy]
listen = "127.0.0.1:0"
service = "mesh.v1.MeshService"
endpoints = ["{replicas[0]}", "{replicas[1]}"]

[retry]
max_attempts = 3
initial_backoff = "5ms"
previous_hosts = true

[metrics]
listen = "127.0.0.1:0"
""",
            encoding="utf-8",
        )
        live_process = start("--log-format", "json", "live", str(config), "--access-log", "1", env=env)
        assert live_process.stdout is not None
        proxy = live_process.stdout.readline().split(" on ")[1].split(" to ")[0]
        admin = live_process.stdout.readline().removeprefix("metrics on ").strip().removesuffix("/metrics")
        # Every attempt on the first replica fails in the proxy, so a call picked to it is retried.
        fault = {"action": "errors", "target": replicas[0], "rate": 1.0, "status": "UNAVAILABLE", "for": "30s"}
        request = urllib.request.Request(admin + "/faults", data=json.dumps(fault).encode(), method="POST")
        urllib.request.urlopen(request, timeout=5).close()

        tracing = Tracing("shop", exporter=OTLPSpanExporter(endpoint=endpoint, insecure=True))

        async def calls() -> None:
            async with GrpcClient(
                "mesh.v1.MeshService", endpoints=[proxy], retry_policy=RetryPolicy(max_attempts=2), tracing=tracing
            ) as client:
                for index in range(4):
                    await client.Process(ProcessRequest(request_id=f"r{index}"))

        live.run(calls)
        tracing.shutdown()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(found.of("api")) < 4:
            time.sleep(0.1)
    finally:
        logged = ""
        if live_process is not None:
            live_process.send_signal(signal.SIGTERM)
            _, logged = live_process.communicate(timeout=15)
        stop(serve)

    proxy_spans = found.of("proxy")
    retried = [
        span
        for span in proxy_spans
        if span.name == "Recv.mesh.v1.MeshService/Process"
        and len([a for a in proxy_spans if a.parent_span_id == span.span_id and a.name.startswith("Attempt.")]) == 2
    ]
    assert retried, [span.name for span in proxy_spans]
    call = retried[0]
    attempts = sorted(
        (a for a in proxy_spans if a.parent_span_id == call.span_id), key=lambda a: attribute(a, "meshsim.attempt")
    )
    assert [attribute(a, "meshsim.attempt.kind") for a in attempts] == ["first", "retry"]
    assert [attribute(a, "server.address") for a in attempts] == replicas
    assert attribute(attempts[0], "rpc.grpc.status_code") == UNAVAILABLE
    assert attempts[0].status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert attribute(attempts[1], "rpc.grpc.status_code") == 0
    assert call.kind == trace_pb2.Span.SPAN_KIND_SERVER

    # Up the path: the client's attempt span is the proxy's parent, its call span the root.
    client_spans = {span.span_id: span for span in found.of("shop")}
    client_attempt = client_spans[call.parent_span_id]
    assert client_attempt.name == "Attempt.mesh.v1.MeshService/Process"
    assert client_spans[client_attempt.parent_span_id].name == "Sent.mesh.v1.MeshService/Process"
    # Down the path: the replica's span is the child of the attempt that reached it.
    (replica_span,) = [span for span in found.of("api") if span.parent_span_id == attempts[1].span_id]
    assert replica_span.name == "Recv.mesh.v1.MeshService/Process"
    assert {span.trace_id for span in (call, *attempts, client_attempt, replica_span)} == {call.trace_id}

    # The proxy's access log line for that call carries its trace id.
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "meshsim.access"]
    assert any(line["trace_id"] == call.trace_id.hex() and line["attempts"] == 2 for line in access), access
    assert any(line.get("event") == "started" and line["tracing"] for line in lines)


def test_a_configs_tracing_table_turns_tracing_on_unless_the_variables_say_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    assert Tracing.from_environment("proxy", TracingConfig()) is None  # no endpoint: nowhere to send
    assert Tracing.from_environment("proxy", TracingConfig(endpoint="http://127.0.0.1:4317", enabled=False)) is None
    tracing = Tracing.from_environment("proxy", TracingConfig(endpoint="http://127.0.0.1:4317", sample_ratio=0.5))
    assert tracing is not None
    assert "0.5" in tracing.provider.sampler.get_description()
    tracing.shutdown()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Tracing.from_environment("proxy", TracingConfig(endpoint="http://127.0.0.1:4317")) is None


def test_the_service_name_variable_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge")
    tracing = Tracing("proxy", exporter=InMemorySpanExporter())
    assert tracing.provider.resource.attributes["service.name"] == "edge"
    tracing.shutdown()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    tracing = Tracing("proxy", exporter=InMemorySpanExporter())
    assert tracing.provider.resource.attributes["service.name"] == "proxy"
    tracing.shutdown()
