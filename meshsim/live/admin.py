"""The admin endpoint of a long-running process (`meshsim live`, `meshsim serve`): one ASGI app.

    GET    /metrics        Prometheus text format
    GET    /healthz        200 while the process runs (a liveness probe)
    GET    /ready          200 when it can take calls, else 503 (a readiness probe)
    GET    /clusters       every endpoint: health, ejection, breaker, calls in flight, weight (JSON)
    GET    /config         the effective config, secrets left out (JSON)
    GET    /faults         the active faults (JSON)
    POST   /faults         add one (a JSON object: core/chaos.py); 201 with the fault
    DELETE /faults         clear them all
    DELETE /faults/ID      clear one

Envoy's admin and Toxiproxy's API are the models. Answers are JSON, errors too:
`{"error": "...", "field": "rate"}` with 400 for a request that cannot be read, 404 for
a path or fault that is not there, 405 for a method a path does not take.

With a token (required when listening beyond loopback: `check_listen`), every path
but the two probes needs `Authorization: Bearer TOKEN`; without it a request gets 401
and changes nothing. The probes stay open because a Kubernetes httpGet probe sends no
credentials and they tell no more than whether the process is up.

The app is served by hypercorn on the process's own loop: Trio beside the proxy's
actors, asyncio beside `meshsim serve`'s replicas.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import hypercorn.config
import hypercorn.trio
import prometheus_client
import trio

from meshsim.core.addresses import join_host_port, split_host_port
from meshsim.core.chaos import ChaosRequestError, FaultBoard
from meshsim.core.errors import ConfigError

logger = logging.getLogger(__name__)

TOKEN_ENVIRONMENT = "MESHSIM_ADMIN_TOKEN"
# A fault request is a few hundred bytes; nothing an admin endpoint takes is near this.
MAX_BODY = 64 * 1024
_PROBES = frozenset({"/healthz", "/ready"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class AdminSource(Protocol):
    """What a process shows on its admin endpoint."""

    registry: prometheus_client.CollectorRegistry
    board: FaultBoard

    def ready(self) -> bool: ...

    def clusters(self) -> dict[str, Any]: ...

    def effective_config(self) -> dict[str, Any]: ...


def check_listen(listen: str, token: str | None, flag: str) -> None:
    """Refuse to listen beyond loopback without a token (ConfigError naming `flag`)."""
    host, _ = split_host_port(listen)
    if token:
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"{flag}: listening on {listen}, beyond loopback, needs a token "
            f"(--admin-token or {TOKEN_ENVIRONMENT}): the admin API can add faults"
        )


class _Refused(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class AdminApp:
    """The ASGI app; `source` is the process it shows."""

    def __init__(self, source: AdminSource, token: str | None = None) -> None:
        self.source = source
        self.token = token or None

    # Any: hypercorn types the ASGI messages as TypedDicts, which a plain dict is not.
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body, content_type = await self._answer(scope, receive)
        except _Refused as refused:
            error: dict[str, Any] = {"error": refused.message}
            if refused.field is not None:
                error["field"] = refused.field
            status, body, content_type = refused.status, _json(error), "application/json"
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="meshsim"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, str]:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        if path not in _PROBES:
            self._authorise(scope)
        source = self.source
        if path == "/metrics":
            _only(method, "GET")
            return 200, prometheus_client.generate_latest(source.registry), prometheus_client.CONTENT_TYPE_LATEST
        if path == "/healthz":
            _only(method, "GET")
            return 200, _json({"alive": True}), "application/json"
        if path == "/ready":
            _only(method, "GET")
            ready = source.ready()
            return (200 if ready else 503), _json({"ready": ready}), "application/json"
        if path == "/clusters":
            _only(method, "GET")
            return 200, _json(source.clusters()), "application/json"
        if path == "/config":
            _only(method, "GET")
            return 200, _json(source.effective_config()), "application/json"
        if path == "/faults":
            return await self._faults(method, receive)
        if path.startswith("/faults/"):
            _only(method, "DELETE")
            fault = source.board.remove(path.removeprefix("/faults/"))
            if fault is None:
                raise _Refused(404, f"no active fault {path.removeprefix('/faults/')!r}")
            return 200, _json({"cleared": [fault.to_json(source.board.now())]}), "application/json"
        raise _Refused(404, f"no such path {path!r}: try /metrics, /ready, /healthz, /clusters, /config, /faults")

    async def _faults(self, method: str, receive: Receive) -> tuple[int, bytes, str]:
        board = self.source.board
        if method == "GET":
            now = board.now()
            return 200, _json({"faults": [fault.to_json(now) for fault in board.active]}), "application/json"
        if method == "DELETE":
            now = board.now()
            return 200, _json({"cleared": [fault.to_json(now) for fault in board.clear()]}), "application/json"
        _only(method, "POST")
        body = await _body(receive)
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            raise _Refused(400, "the body is not JSON") from None
        try:
            fault = board.add(request)
        except ChaosRequestError as error:
            raise _Refused(400, error.message, error.field) from None
        return 201, _json({"fault": fault.to_json(board.now())}), "application/json"

    def _authorise(self, scope: Scope) -> None:
        if self.token is None:
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self.token.encode()):
            raise _Refused(401, "a bearer token is required (Authorization: Bearer TOKEN)")


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise _Refused(405, f"{method} is not allowed here; {allowed} is")


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refused(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _Refused(400, f"the body is over {MAX_BODY // 1024} KiB")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _json(value: object) -> bytes:
    return json.dumps(value, indent=1, sort_keys=False, default=str).encode() + b"\n"


async def serve_admin(app: AdminApp, listen: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on `listen` ("host:port", port 0 for any) under Trio until cancelled; started with
    the address it got, so that `await nursery.start(serve_admin, app, listen)` returns it."""
    config, address = http_config(listen)
    task_status.started(address)
    await hypercorn.trio.serve(app, config)


def http_config(listen: str) -> tuple[hypercorn.config.Config, str]:
    """A hypercorn config serving on a socket bound here, and the address it got.

    Binding here makes a taken address a plain OSError at once (hypercorn binds inside
    nested nurseries and reports it in exception groups) and tells port 0's choice.
    """
    host, _, port = listen.rpartition(":")
    family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)  # accepting (queued) from now, before hypercorn's first turn
    except OSError:
        listener.close()
        raise
    bound = join_host_port(host.strip("[]"), listener.getsockname()[1])
    config = hypercorn.config.Config()
    config.bind = [f"fd://{listener.detach()}"]  # hypercorn owns the socket from here
    config.accesslog = None
    config.errorlog = None
    return config, bound
