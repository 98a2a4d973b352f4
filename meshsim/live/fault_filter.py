"""Chaos in the proxy: Envoy's fault filter on calls, and faults on single upstream endpoints.

A fault whose target is a service (a cluster's gRPC service name, or `*` for every
call) acts on calls as they arrive, before any balancing, as Envoy's HTTP fault
filter does: `errors` aborts a share of them with its status (`rate`, Envoy's
`abort.percentage`), `latency` delays a share (`add`, Envoy's `fixed_delay`), each
optionally only for one `method` and for calls carrying a `header`. Aborted calls
never reach a replica and end with the status, as a recorded call like any other.

A fault whose target is an upstream endpoint (its address) acts on the attempts the
proxy sends it, so the mesh's policies meet it as they would a failing replica:
`kill` treats it as dead (attempts refused, probes unanswered, its Watch broken:
it leaves rotation, and retries carry its calls elsewhere), `partition` does the
same for one of the proxy's clients (a cluster), `latency` delays attempts and
`errors` fails a share of them with the status without sending them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from meshsim.core.chaos import ChaosFault, ChaosRequestError, ChaosScope
from meshsim.core.faults import Conditions, conditions_of
from meshsim.core.status import StatusCode
from meshsim.live.bridge import Home
from meshsim.runtime.transport import AttemptHandle, EndpointGone, OnDone

if TYPE_CHECKING:
    from meshsim.live.upstream import Upstream

KINDS = ("kill", "latency", "errors", "partition")
WHY_NOT = {
    "blackhole": "the proxy delays (latency) or aborts (errors) calls; hold a replica's calls with a "
    "blackhole on the replica itself",
    "health": "the proxy does not answer for a replica's health; flip it on the replica, or kill the endpoint here",
}
EVERY_SERVICE = "*"

_log = logging.getLogger(__name__)


class FaultFilter:
    """The faults active in one proxy, consulted by every call and every attempt."""

    def __init__(self, upstreams: Sequence[Upstream], rng: random.Random) -> None:
        self._upstreams = list(upstreams)
        self._rng = rng
        self._calls: list[ChaosFault] = []
        self._endpoints: dict[str, list[ChaosFault]] = {}
        # Told of each call or attempt a fault acted on, by kind (a metric).
        self.on_injected: Callable[[str], None] = lambda kind: None

    # --- the board's side ------------------------------------------------------------------

    def scope(self) -> ChaosScope:
        services = {u.service for u in self._upstreams}
        clients = tuple(u.label for u in self._upstreams)

        def check_target(target: str, action: str) -> str | None:
            if self._is_service(target):
                if action in ("kill", "partition"):
                    return f"a {action} fault acts on an endpoint (an address), not on a service"
                return None
            if any(target in _endpoints(u) for u in self._upstreams):
                return None
            known = ", ".join(sorted(services))
            return f"no service or endpoint {target!r} here: {EVERY_SERVICE}, {known}, or an endpoint's address"

        return ChaosScope(KINDS, headers=True, clients=clients, check_target=check_target, why_not=WHY_NOT)

    def apply(self, fault: ChaosFault) -> None:
        if fault.action == "latency" and getattr(fault.effect, "multiply", 1.0) != 1.0:
            raise ChaosRequestError("multiply", "the proxy adds a delay (add); it cannot stretch a service time")
        if self._is_service(fault.target):
            self._calls.append(fault)
            return
        self._endpoints.setdefault(fault.target, []).append(fault)
        self._cut(fault.target)

    def clear(self, fault: ChaosFault) -> None:
        if fault in self._calls:
            self._calls.remove(fault)
            return
        faults = self._endpoints.get(fault.target, [])
        if fault in faults:
            faults.remove(fault)
        if not faults:
            self._endpoints.pop(fault.target, None)
        self._cut(fault.target)

    def _is_service(self, target: str) -> bool:
        return target == EVERY_SERVICE or any(target == u.service for u in self._upstreams)

    def _cut(self, endpoint: str) -> None:
        """Cut each cluster's transport from `endpoint` while a kill, or a partition of that cluster,
        lasts: every cluster's, listed or not, so that an endpoint discovery drops during the fault
        and brings back after it is not left cut."""
        conditions = conditions_of([fault.effect for fault in self._endpoints.get(endpoint, ())])
        for upstream in self._upstreams:
            upstream.transport.cut_off(endpoint, conditions.down or upstream.label in conditions.cut_from)

    # --- calls ------------------------------------------------------------------------------

    def on_call(self, method: str, metadata: Sequence[tuple[str, Any]]) -> CallFault | None:
        """What the faults do to a call arriving (None: nothing), each drawn by its share, in the
        order they were added."""
        if not self._calls:
            return None
        service = method[1:].split("/", 1)[0]
        drawn = [
            fault.effect
            for fault in self._calls
            if fault.target in (EVERY_SERVICE, service) and fault.match.matches(method, metadata, self._rng)
        ]
        return self._decide(conditions_of(drawn))

    # --- attempts ---------------------------------------------------------------------------

    def on_attempt(self, endpoint: str, method: str, metadata: Sequence[tuple[str, Any]]) -> CallFault | None:
        """What the faults on `endpoint` do to an attempt of `method` (None: nothing)."""
        faults = self._endpoints.get(endpoint)
        if not faults:
            return None
        drawn = [fault.effect for fault in faults if fault.match.matches(method, metadata, self._rng)]
        return self._decide(conditions_of(drawn))

    def _decide(self, conditions: Conditions) -> CallFault | None:
        """The delay and the error (drawn by its rate) `conditions` make of one call or attempt."""
        failed = None
        for rate, status, pushback in conditions.errors:
            if self._rng.random() < rate:
                failed = (status, pushback)
                self.on_injected("errors")
                break
        if conditions.add:
            self.on_injected("latency")
        if failed is None and not conditions.add:
            return None
        return CallFault(conditions.add, *(failed or (None, None)))

    def faulted_attempt(
        self,
        fault: CallFault,
        deadline_at: float | None,
        send: Callable[[float | None, OnDone], AttemptHandle],
        on_done: OnDone,
        home: Home,
    ) -> AttemptHandle:
        """An attempt under `fault`: held back by its delay, then failed with its status or sent
        (`send(timeout, on_done)`, which finds the endpoint's channel as it is then)."""

        def sending(timeout: float | None, on_done: OnDone) -> AttemptHandle:
            if fault.status is not None:
                return InjectedAttempt(fault.status, fault.pushback, on_done, home)
            return send(timeout, on_done)

        if fault.delay > 0:
            return DelayedAttempt(fault.delay, deadline_at, sending, on_done, home)
        return sending(None if deadline_at is None else max(0.0, deadline_at - home.now()), on_done)


@attrs.frozen
class CallFault:
    """What faults do to one call or attempt: a delay first, then perhaps a status in the replica's place."""

    delay: float = 0.0
    status: StatusCode | None = None
    pushback: int | None = None


def _endpoints(upstream: Upstream) -> set[str]:
    return {endpoint.name for endpoint in upstream.balancer.endpoints}


class InjectedAttempt:
    """An attempt a fault answers in the replica's place: it ends with the fault's status (and
    pushback), soon."""

    def __init__(self, status: StatusCode, pushback: int | None, on_done: OnDone, home: Home) -> None:
        self._on_done: OnDone | None = on_done
        home.later(self._finish, status, pushback)

    def _finish(self, status: StatusCode, pushback: int | None = None) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(status, pushback)

    def cancel(self, status: StatusCode) -> None:
        self._finish(status)


class DelayedAttempt:
    """An attempt a fault holds back before it is sent: `send(timeout)` starts the real one."""

    def __init__(
        self,
        delay: float,
        deadline_at: float | None,
        send: Callable[[float | None, OnDone], AttemptHandle],
        on_done: OnDone,
        home: Home,
    ) -> None:
        self._on_done: OnDone | None = on_done
        self._deadline_at = deadline_at
        self._send = send
        self._home = home
        self._sent: AttemptHandle | None = None
        if deadline_at is not None:  # the deadline ends a held attempt on time
            delay = max(0.0, min(delay, deadline_at - home.now()))
        self._waiting = home.launch(asyncio.sleep(delay), self._go)

    def _go(self, waited: asyncio.Future[None]) -> None:
        if self._on_done is None or waited.cancelled():
            return
        on_done = self._on_done
        timeout = None if self._deadline_at is None else self._deadline_at - self._home.now()
        if timeout is not None and timeout <= 0:
            self._finish(StatusCode.DEADLINE_EXCEEDED)
            return
        try:
            self._sent = self._send(timeout, on_done)
        except EndpointGone:
            self._finish(StatusCode.UNAVAILABLE)  # cut off or removed while the attempt was held
        except Exception:
            _log.exception("an attempt held by a fault could not be sent")
            self._finish(StatusCode.INTERNAL)

    def _finish(self, status: StatusCode) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(status, None)

    def cancel(self, status: StatusCode) -> None:
        if self._sent is not None:
            self._sent.cancel(status)
            return
        self._waiting.cancel()
        self._home.later(self._finish, status)
