"""Attempts each replica received over a run's time: the report's "calls per replica" chart.

The JSON report's timeline counts every attempt of a bucket together; which replica
took them is in the run's events only, so `ReplicaLoad` listens beside the report's
recorder (it changes nothing in the run: listeners are called in order, synchronously)
and counts attempts per replica per whole second of their start. `buckets` folds the
seconds into the report's own buckets, whole seconds wide (core/report_builder.py),
the last one taking what started after the run's end (the drain), as the report does.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshsim.core.events import AttemptFinished
from meshsim.core.recording import EventBus


class ReplicaLoad:
    def __init__(self) -> None:
        self._seconds: dict[str, dict[int, int]] = {}

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(AttemptFinished, self.on_attempt)

    def on_attempt(self, event: AttemptFinished) -> None:
        if event.endpoint is None:
            return  # not sent: no replica took it
        seconds = self._seconds.setdefault(event.endpoint, {})
        second = max(0, int(event.started))
        seconds[second] = seconds.get(second, 0) + 1

    def buckets(self, replicas: Sequence[str], width: float, slots: int) -> dict[str, list[int]]:
        """Attempts per bucket of `width` seconds (`slots` of them) for each of `replicas`, in their order."""
        step = max(1, round(width))
        counts = {}
        for name in replicas:
            row = [0] * slots
            for second, attempts in self._seconds.get(name, {}).items():
                row[min(second // step, slots - 1)] += attempts
            counts[name] = row
        return counts
