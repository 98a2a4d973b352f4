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
        # event type -> its one listener's form that takes the event's fields, while it is the only
        # one. Producers on a hot path may read it directly (`directs.get(...)`), without `direct()`.
        self.directs: dict[type, Callable[..., None]] = {}

    def subscribe(self, event_type: type[E], listener: Callable[[E], None]) -> None:
        self._listeners.setdefault(event_type, []).append(listener)
        self.directs.pop(event_type, None)

    def subscribe_direct(self, event_type: type[E], listener: Callable[[E], None], fields: Callable[..., None]) -> None:
        """Subscribe `listener`, which also comes as `fields(*the event's fields)`: while it is the only
        listener, a producer on a hot path may call that instead of building the event (`direct`)."""
        listeners = self._listeners.setdefault(event_type, [])
        listeners.append(listener)
        if len(listeners) == 1:
            self.directs[event_type] = fields
        else:
            self.directs.pop(event_type, None)

    def direct(self, event_type: type) -> Callable[..., None] | None:
        """The only listener's fields form, or None (no listener, several, or one without it)."""
        return self.directs.get(event_type)

    def emit(self, event: object) -> None:
        for listener in self._listeners.get(type(event), ()):
            listener(event)

    def wants(self, event_type: type) -> bool:
        """Whether anyone listens, so producers can skip building events nobody reads."""
        return bool(self._listeners.get(event_type))
