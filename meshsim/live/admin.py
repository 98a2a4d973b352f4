"""The admin endpoint of a long-running process (`meshsim live`, `meshsim serve`): one ASGI app.

    GET    /dashboard      the web dashboard: services and replicas, live (HTML; `/` leads here)
    GET    /events         what the dashboard draws, once a second (server-sent events)
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
credentials and they tell no more than whether the process is up. A browser sends no
such header when it opens a page, nor does EventSource, so the dashboard's GETs (`/`,
`/dashboard`, `/events`) also take the token as `?token=`: it then shows in the
address bar and the browser's history, which is why nothing that changes the process
takes it so (the page asks for no referrer, so it does not leave in a Referer either).

The dashboard's numbers (dashboard/sampler.py) are sampled once a second for as long as
the server runs (in its ASGI lifespan task), so a page opened after an incident draws
the minutes before it; one sampler per app, shared by every page, and at most
`MAX_STREAMS` pages at once.

The app is served by hypercorn on the process's own loop: Trio beside the proxy's
actors, asyncio beside `meshsim serve`'s replicas.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import hypercorn.config
import hypercorn.trio
import prometheus_client
import sniffio
import trio

from meshsim.core.addresses import join_host_port, split_host_port
from meshsim.core.chaos import ChaosRequestError, FaultBoard
from meshsim.core.errors import ConfigError
from meshsim.dashboard import stream
from meshsim.dashboard.page import live_page
from meshsim.dashboard.sampler import Sampler
from meshsim.dashboard.tally import tally

logger = logging.getLogger(__name__)

TOKEN_ENVIRONMENT = "MESHSIM_ADMIN_TOKEN"
# A fault request is a few hundred bytes; nothing an admin endpoint takes is near this.
MAX_BODY = 64 * 1024
_PROBES = frozenset({"/healthz", "/ready"})
# The pages a browser opens: they take the token from the query too (a browser cannot send the header).
_PAGES = frozenset({"/", "/dashboard", "/events"})
# Pages watching at once: each is an open connection and a JSON encoding a second.
MAX_STREAMS = 16
# Seconds a stopping server gives the requests in progress (http_config).
GRACE = 0.5
_PATHS = "/dashboard, /events, /metrics, /ready, /healthz, /clusters, /config, /faults"

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


@attrs.frozen
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _json_answer(value: object, status: int = 200) -> _Answer:
    return _Answer(status, _json(value))


# The page's own CSP is in its <meta>; these keep it out of caches and other sites' frames.
_PAGE_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
)


class AdminApp:
    """The ASGI app; `source` is the process it shows."""

    def __init__(self, source: AdminSource, token: str | None = None, sampler: Sampler | None = None) -> None:
        """`sampler`: the dashboard's, with its pace (one a second unless a test wants it faster)."""
        self.source = source
        self.token = token or None
        self.sampler = sampler if sampler is not None else Sampler()
        self._streams = 0

    # Any: hypercorn types the ASGI messages as TypedDicts, which a plain dict is not.
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            if _path(scope) == "/events":
                await self._events(scope, receive, send)
                return
            answer = await self._answer(scope, receive)
        except _Refused as refused:
            error: dict[str, Any] = {"error": refused.message}
            if refused.field is not None:
                error["field"] = refused.field
            answer = _json_answer(error, refused.status)
        headers = [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
            *answer.headers,
        ]
        if answer.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="meshsim"'))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _answer(self, scope: Scope, receive: Receive) -> _Answer:
        path = _path(scope)
        method = scope["method"]
        if path not in _PROBES:
            self._authorise(scope)
        source = self.source
        if path == "/dashboard":
            _only(method, "GET")
            return _Answer(200, live_page(), "text/html; charset=utf-8", _PAGE_HEADERS)
        if path == "/":
            _only(method, "GET")
            # Where `meshsim serve` and `meshsim live` say the admin endpoint is: the dashboard, token and all.
            query = scope.get("query_string", b"")
            location = b"dashboard" + (b"?" + query if query else b"")
            return _Answer(307, b"", "text/plain", ((b"location", location),))
        if path == "/metrics":
            _only(method, "GET")
            return _Answer(
                200, prometheus_client.generate_latest(source.registry), prometheus_client.CONTENT_TYPE_LATEST
            )
        if path == "/healthz":
            _only(method, "GET")
            return _json_answer({"alive": True})
        if path == "/ready":
            _only(method, "GET")
            ready = source.ready()
            return _json_answer({"ready": ready}, 200 if ready else 503)
        if path == "/clusters":
            _only(method, "GET")
            return _json_answer(source.clusters())
        if path == "/config":
            _only(method, "GET")
            return _json_answer(source.effective_config())
        if path == "/faults":
            return await self._faults(method, receive)
        if path.startswith("/faults/"):
            _only(method, "DELETE")
            fault = source.board.remove(path.removeprefix("/faults/"))
            if fault is None:
                raise _Refused(404, f"no active fault {path.removeprefix('/faults/')!r}")
            return _json_answer({"cleared": [fault.to_json(source.board.now())]})
        raise _Refused(404, f"no such path {path!r}: try {_PATHS}")

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The dashboard's stream: a hello with the history, then a sample a second until the page goes.

        Refusals (401, 405, 503) are raised before the response starts, so they are answered as any.
        """
        self._authorise(scope)
        _only(scope["method"], "GET")
        if self._streams >= MAX_STREAMS:
            raise _Refused(503, f"{MAX_STREAMS} dashboards are watching already; close one")
        self._streams += 1
        try:
            self._sample()
            headers = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),  # a reverse proxy in front must not hold the stream back
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": stream.hello(self.sampler), "more_body": True})
            sent = self.sampler.latest
            said = False
            while not await _disconnected(receive, self.sampler.interval):
                try:
                    latest = self._sample()
                except Exception:
                    # The stream goes on with what it had: the page keeps its last figures.
                    if not said:
                        logger.warning("the dashboard cannot read this process's figures", exc_info=True)
                        said = True
                    continue
                if latest is not sent:
                    await send({"type": "http.response.body", "body": stream.sample(latest), "more_body": True})
                    sent = latest
        finally:
            self._streams -= 1

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Start-up and shutdown, as hypercorn asks; in between, a sample each interval for the dashboard."""
        failed = False
        while True:
            message = await _receive_within(receive, self.sampler.interval)
            if message is None:
                try:
                    self._sample()
                except Exception:
                    # Said once: a source that cannot be read now will say so again on every page.
                    if not failed:
                        logger.exception("the dashboard cannot sample this process")
                    failed = True
            elif message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _sample(self) -> dict[str, Any]:
        """The newest sample, taken now if the last one is about an interval old (any page may ask)."""
        sampler = self.sampler
        now = time.monotonic()
        latest = sampler.latest
        if latest is not None and not sampler.due(now):
            return latest
        source = self.source
        board = source.board
        faults = [fault.to_json(board.now()) for fault in board.active]
        return sampler.add(now, tally(source.registry), source.clusters(), faults, source.ready())

    async def _faults(self, method: str, receive: Receive) -> _Answer:
        board = self.source.board
        if method == "GET":
            now = board.now()
            return _json_answer({"faults": [fault.to_json(now) for fault in board.active]})
        if method == "DELETE":
            now = board.now()
            return _json_answer({"cleared": [fault.to_json(now) for fault in board.clear()]})
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
        return _json_answer({"fault": fault.to_json(board.now())}, 201)

    def _authorise(self, scope: Scope) -> None:
        if self.token is None:
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
        scheme, _, credential = given.partition(b" ")
        expected = self.token.encode()
        if scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), expected):
            return
        if _path(scope) in _PAGES and scope["method"] == "GET":
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if any(hmac.compare_digest(value.encode(), expected) for value in query.get("token", ())):
                return
        raise _Refused(401, "a bearer token is required (Authorization: Bearer TOKEN)")


def _path(scope: Scope) -> str:
    path: str = scope["path"]
    return path.rstrip("/") or "/"


async def _disconnected(receive: Receive, seconds: float) -> bool:
    """Whether the client goes away within `seconds` (hypercorn says so with http.disconnect)."""
    message = await _receive_within(receive, seconds)
    return message is not None and message["type"] == "http.disconnect"


async def _receive_within(receive: Receive, seconds: float) -> dict[str, Any] | None:
    """The next ASGI message, or None if none comes within `seconds`.

    The app runs on Trio beside the proxy and on asyncio beside `meshsim serve`: the wait
    is written for whichever library is running it (hypercorn's receive is a channel or a
    queue on either, which a timeout leaves as it was).
    """
    if sniffio.current_async_library() == "trio":
        with trio.move_on_after(seconds):
            return await receive()
        return None
    try:
        async with asyncio.timeout(seconds):
            return await receive()
    except TimeoutError:
        return None


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
    # What a stopping process waits for answers in progress: an admin answer takes milliseconds, but
    # a dashboard's stream never ends by itself and would hold the process for hypercorn's 3 s.
    config.graceful_timeout = GRACE
    return config, bound
