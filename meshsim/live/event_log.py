"""What a live caller's mesh does, as log lines: a listener on the event bus.

Health verdicts, ejections and returns, breaker transitions, panic mode, discovery's
results and failures: each a line an operator can read (`api: replica 127.0.0.1:50052
is out: health check NOT_SERVING`) with its facts as fields for the JSON form
(cli/logs.py). And, opt-in, a sampled access log: one line per call with its method,
status, replica, attempts, duration and trace ids (Envoy's access log, sampled as
Linkerd's tap is not).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import attrs

from meshsim.core.events import (
    BreakerChanged,
    DiscoveryFailed,
    EndpointEjected,
    EndpointReturned,
    HealthChanged,
    MembershipChanged,
    PanicChanged,
    RequestFinished,
)
from meshsim.live.tracing import CallTrace, spans_of
from meshsim.runtime.observer import Observer

mesh_log = logging.getLogger("meshsim.mesh")
access_log = logging.getLogger("meshsim.access")


def log_mesh_events(observer: Observer) -> None:
    """Log every change of a caller's view of its replicas that `observer` carries."""
    observer.subscribe(HealthChanged, _Health())
    observer.subscribe(EndpointEjected, _ejected)
    observer.subscribe(EndpointReturned, _returned)
    observer.subscribe(BreakerChanged, _breaker)
    observer.subscribe(PanicChanged, _panic)
    observer.subscribe(MembershipChanged, _membership)
    observer.subscribe(DiscoveryFailed, _discovery_failed)


def _log(level: int, message: str, **fields: Any) -> None:
    mesh_log.log(level, message, extra={"fields": fields})


class _Health:
    """A replica let in by its first checks is how every start goes (debug); one coming back after
    it was out is news (info); one going out is a warning."""

    def __init__(self) -> None:
        self._been_out: set[tuple[str, str]] = set()

    def __call__(self, event: HealthChanged) -> None:
        replica = (event.client, event.endpoint)
        if event.healthy:
            level = logging.INFO if replica in self._been_out else logging.DEBUG
            _log(level, f"{event.client}: {event.endpoint} is in: health checks pass", **_facts(event))
        else:
            self._been_out.add(replica)
            reason = event.last_probe.value
            _log(logging.WARNING, f"{event.client}: {event.endpoint} is out: health check {reason}", **_facts(event))


def _ejected(event: EndpointEjected) -> None:
    _log(
        logging.WARNING,
        f"{event.client}: {event.endpoint} ejected by {event.detector} for {event.duration:g}s",
        **_facts(event),
    )


def _returned(event: EndpointReturned) -> None:
    _log(logging.INFO, f"{event.client}: {event.endpoint} returned from ejection", **_facts(event))


def _breaker(event: BreakerChanged) -> None:
    level = logging.WARNING if event.state == "OPEN" else logging.INFO
    _log(level, f"{event.client}: {event.scope} breaker for {event.target} is {event.state}", **_facts(event))


def _panic(event: PanicChanged) -> None:
    if event.panic:
        message = f"{event.client}: too few replicas of {event.service} are usable: panic mode, calls go to all"
    else:
        message = f"{event.client}: enough replicas of {event.service} are usable again: panic mode over"
    _log(logging.WARNING if event.panic else logging.INFO, message, **_facts(event))


def _membership(event: MembershipChanged) -> None:
    parts = []
    if event.added:
        parts.append("added " + ", ".join(event.added))
    if event.removed:
        parts.append("removed " + ", ".join(event.removed))
    _log(logging.INFO, f"{event.client}: discovery {'; '.join(parts) or 'found no change'}", **_facts(event))


def _discovery_failed(event: DiscoveryFailed) -> None:
    message = f"{event.client}: discovery from {event.source} failed ({event.error}); keeping the replicas it had"
    _log(logging.WARNING, message, **_facts(event))


def _facts(event: Any) -> dict[str, Any]:
    """The event's own fields, for the JSON form (its time is the line's)."""
    facts = attrs.asdict(event, value_serializer=lambda _, __, value: getattr(value, "name", value))
    facts.pop("at", None)
    return {"event": type(event).__name__, **facts}


class AccessLog:
    """One line per call for a `share` of the calls (0: off), with the call's trace ids."""

    def __init__(self, share: float, rng: random.Random | None = None) -> None:
        self.share = share
        self._rng = rng or random.Random()

    def __call__(self, event: RequestFinished, trace: CallTrace | None = None) -> None:
        if not self.share or (self.share < 1.0 and self._rng.random() >= self.share):
            return
        milliseconds = (event.finished - event.started) * 1e3
        fields: dict[str, Any] = {
            "method": event.method,
            "status": event.status.name,
            "endpoint": event.endpoint,
            "attempts": event.attempts,
            "duration_ms": round(milliseconds, 3),
            "client": event.client,
            **dict(spans_of(trace)),
        }
        where = event.endpoint or "no replica"
        access_log.info(
            f"{event.method} {event.status.name} {milliseconds:.1f}ms {where} attempts={event.attempts}",
            extra={"fields": fields},
        )
