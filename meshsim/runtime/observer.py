"""The event bus: typed events in, synchronous listeners out.

Listeners run inline, in subscription order, and must not block: one that needs to
do I/O (a dashboard socket, an exporter) puts the event on its own actor's mailbox.
Inline delivery keeps the order of events the order things happened, which the
deterministic report depends on, and costs the call path one dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

E = TypeVar("E")


class Observer:
    def __init__(self) -> None:
        self._listeners: dict[type, list[Callable[[Any], None]]] = {}

    def subscribe(self, event_type: type[E], listener: Callable[[E], None]) -> None:
        self._listeners.setdefault(event_type, []).append(listener)

    def emit(self, event: object) -> None:
        for listener in self._listeners.get(type(event), ()):
            listener(event)

    def wants(self, event_type: type) -> bool:
        """Whether anyone listens, so producers can skip building events nobody reads."""
        return bool(self._listeners.get(event_type))
