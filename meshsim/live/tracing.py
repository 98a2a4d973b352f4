"""Traces: OpenTelemetry spans for live calls, named and linked as gRPC's own OpenTelemetry plugin does.

gRFC A72's shape: a caller's call is a span (`Sent.pkg.Service/Method`) with a child per
attempt (`Attempt.pkg.Service/Method`, kind CLIENT: its number, whether it is a retry or
a hedge, the endpoint picked, the status), and a server's span (`Recv.pkg.Service/Method`,
kind SERVER) is the child of the attempt that reached it, through W3C `traceparent` and
`tracestate` in the attempt's metadata. In the proxy the call span is the server span
of the call it received, so one trace holds a call's whole path, retries included.
Attributes follow OpenTelemetry's RPC conventions (`rpc.system`, `rpc.service`,
`rpc.method`, `rpc.grpc.status_code`, `server.address`).

Configured the standard way, and off unless asked: an OTLP endpoint
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or
`OTEL_TRACES_EXPORTER=otlp|console` turns it on; `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` keeps it off; the SDK reads the sampler
(`OTEL_TRACES_SAMPLER`), the service name and the batch settings itself. A proxy
config's `[tracing]` table (`TracingConfig`) says the same in the file; a variable
that is set wins over it, so one deployment can change what the file says. Off, a
call pays one attribute read.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status
from opentelemetry.trace import StatusCode as SpanStatus

from meshsim.core.status import StatusCode
from meshsim.live.around_calls import around
from meshsim.live.config import TracingConfig
from meshsim.live.status import from_grpc
from meshsim.runtime.transport import OnDone

_ON = ("otlp", "console")
# Health probes and reflection: a probe every second per caller per replica would bury the calls.
_UNTRACED = ("/grpc.health.", "/grpc.reflection.")


def tracing_refused(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables say no traces, whatever else asks for them."""
    env = os.environ if environ is None else environ
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return disabled or env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables ask for traces."""
    env = os.environ if environ is None else environ
    if tracing_refused(env):
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() in _ON:
        return True
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class Tracing:
    """One process's tracer: its provider, and the exporter the variables name.

    The SDK and the exporter are imported here, not with the module: a process that does
    not trace (the default) does not pay their 150 ms of imports at start-up."""

    def __init__(self, service_name: str, exporter: Any = None, config: TracingConfig | None = None) -> None:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio  # noqa: PLC0415

        config = config or TracingConfig()
        if exporter is None:
            exporter = _exporter(config.endpoint)
        # The variables, when set, win over the file and the default: OTEL_TRACES_SAMPLER is the SDK's
        # own default sampler, and Resource.create reads OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES)
        # only for the attributes it is not given.
        sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBasedTraceIdRatio(config.sample_ratio)
        named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        attributes = {} if named else {"service.name": config.service_name or service_name}
        self.provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("meshsim")

    @classmethod
    def from_environment(cls, service_name: str, config: TracingConfig | None = None) -> Tracing | None:
        """A tracer when the variables (or, failing them, `config` with an endpoint) ask for one."""
        if tracing_refused():
            return None
        by_file = config is not None and config.enabled and config.endpoint is not None
        return cls(service_name, config=config) if tracing_requested() or by_file else None

    def shutdown(self) -> None:
        """Send what is buffered and stop (at the end of the process)."""
        self.provider.shutdown()

    def received(self, method: str, metadata: Sequence[tuple[str, Any]], peer: str = "") -> CallTrace:
        """A call a server (or the proxy) received: its span, the child of the caller's attempt."""
        parent = propagate.extract(_Carrier(metadata))
        span = self.tracer.start_span(
            f"Recv.{method.lstrip('/')}", context=parent, kind=SpanKind.SERVER, attributes=_rpc(method)
        )
        if peer:
            span.set_attribute("client.address", peer)
        return CallTrace(self.tracer, span, method)

    def sent(self, method: str) -> CallTrace:
        """A call a client makes: its span, the child of whatever span the caller has open."""
        span = self.tracer.start_span(f"Sent.{method.lstrip('/')}", kind=SpanKind.CLIENT, attributes=_rpc(method))
        return CallTrace(self.tracer, span, method)


class CallTrace:
    """One call's span and its attempts' (a retry starts after the last attempt ended; a hedge while
    one is still out)."""

    def __init__(self, tracer: trace.Tracer, span: Span, method: str) -> None:
        self._tracer = tracer
        self.span = span
        self._method = method
        self._context = trace.set_span_in_context(span)
        self._attempts = 0
        self._out = 0
        self._ended = False

    @property
    def trace_id(self) -> str:
        return f"{self.span.get_span_context().trace_id:032x}"

    @property
    def span_id(self) -> str:
        return f"{self.span.get_span_context().span_id:016x}"

    def attempt(self, endpoint: str, on_done: OnDone) -> tuple[OnDone, tuple[tuple[str, str], ...]]:
        """An attempt on `endpoint`: `on_done` wrapped to end its span, and the metadata carrying it."""
        self._attempts += 1
        kind = "first" if self._attempts == 1 else ("hedge" if self._out else "retry")
        self._out += 1
        attributes = {**_rpc(self._method), "server.address": endpoint, "meshsim.attempt": self._attempts}
        attributes["meshsim.attempt.kind"] = kind
        span = self._tracer.start_span(
            f"Attempt.{self._method.lstrip('/')}", context=self._context, kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span, otel_context.Context()))

        def done(status: StatusCode, pushback: int | None) -> None:
            self._out -= 1
            _end(span, status)
            on_done(status, pushback)

        return done, tuple(carrier.items())

    def end(self, status: StatusCode, details: str = "") -> None:
        """The call ended with `status` (once; later ends change nothing)."""
        if self._ended:
            return
        self._ended = True
        _end(self.span, status, details)


def _end(span: Span, status: StatusCode, details: str = "") -> None:
    span.set_attribute("rpc.grpc.status_code", int(status))
    if status is not StatusCode.OK:
        span.set_status(Status(SpanStatus.ERROR, details or status.name))
    span.end()


def _rpc(method: str) -> dict[str, Any]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class _Carrier(dict[str, str]):
    """gRPC metadata as the propagator reads it (text keys only; binary `-bin` ones are not for it)."""

    def __init__(self, metadata: Sequence[tuple[str, Any]]) -> None:
        super().__init__((key, value) for key, value in metadata if isinstance(value, str))


def _exporter(endpoint: str | None) -> Any:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    variables = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if endpoint is None or any(os.environ.get(name) for name in variables):
        return OTLPSpanExporter()
    return OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))


class ServerTracing(grpc.aio.ServerInterceptor):
    """Server spans for a grpc.aio server (`meshsim serve`'s replicas): one per call, the child of
    the attempt that sent it."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(_UNTRACED):
            return handler
        metadata = tuple(details.invocation_metadata or ())
        tracing = self._tracing

        def begin(context: grpc.aio.ServicerContext) -> Callable[[BaseException | None], None]:
            call = tracing.received(method, metadata, context.peer())
            return lambda error: call.end(_code_of(context, error))

        return around(handler, begin)


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> StatusCode:
    """The status a served call ended with: what the servicer set or aborted with, else what its end
    means (its deadline or its caller gone, an unexpected error)."""
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        return from_grpc(code)
    if error is None:
        return StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        return StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else StatusCode.CANCELLED
    return StatusCode.UNKNOWN


def spans_of(call: CallTrace | None) -> Iterator[tuple[str, str]]:
    """The trace and span ids a log line about this call carries (none without tracing)."""
    if call is not None:
        yield "trace_id", call.trace_id
        yield "span_id", call.span_id
