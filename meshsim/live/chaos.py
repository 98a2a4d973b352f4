"""A live process's fault board: faults time out on the asyncio loop, and each is a log line and a metric.

Both processes that take faults (the proxy, `meshsim serve`) run an asyncio loop, so
a fault's end is an asyncio timer whichever loop the admin endpoint's request came in
on (Trio runs as asyncio's guest, on the same thread). The timer belongs to the
process, not to the request: a fault clears itself whoever added it and whatever
became of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshsim.core.chaos import ChaosFault, ChaosScope, FaultBoard
from meshsim.core.metric_names import ACTION, FAULTS_ACTIVE, FAULTS_APPLIED, FAULTS_CLEARED, FAULTS_INJECTED, REASON

logger = logging.getLogger("meshsim.chaos")


class ChaosMetrics:
    """The fault counters and gauge of one process."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.applied = prometheus_client.Counter(
            FAULTS_APPLIED, "Chaos faults applied, by kind.", [ACTION], registry=registry
        )
        self.cleared = prometheus_client.Counter(
            FAULTS_CLEARED,
            "Chaos faults cleared, by kind and why: expired, deleted (one) or cleared (all).",
            [ACTION, REASON],
            registry=registry,
        )
        self.injected = prometheus_client.Counter(
            FAULTS_INJECTED, "Calls (or attempts) a chaos fault acted on, by kind.", [ACTION], registry=registry
        )
        self._active = _Active()
        registry.register(self._active)

    def watch(self, board: FaultBoard) -> None:
        self._active.board = board


class _Active(Collector):
    def __init__(self) -> None:
        self.board: FaultBoard | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(FAULTS_ACTIVE, "Chaos faults active now, by kind.", labels=[ACTION])
        counts = Counter(fault.action for fault in (self.board.active if self.board else ()))
        for action, count in sorted(counts.items()):
            gauge.add_metric([action], float(count))
        yield gauge


def fault_board(
    scope: ChaosScope,
    registry: prometheus_client.CollectorRegistry,
    apply: Callable[[ChaosFault], None],
    clear: Callable[[ChaosFault], None],
    where: str,
) -> tuple[FaultBoard, ChaosMetrics]:
    """A board whose faults `apply` and `clear` act on the process (`where` names it in log lines)."""
    loop = asyncio.get_running_loop()
    metrics = ChaosMetrics(registry)

    def facts(fault: ChaosFault, event: str, **more: str) -> dict[str, object]:
        return {"fields": {"event": event, **fault.to_json(loop.time()), "process": where, **more}}

    def applied(fault: ChaosFault) -> None:
        apply(fault)  # may refuse it (ChaosRequestError): then nothing was applied
        metrics.applied.labels(fault.action).inc()
        logger.warning("%s: fault applied: %s", where, fault.describe(), extra=facts(fault, "fault_applied"))

    def cleared(fault: ChaosFault, reason: str) -> None:
        try:
            clear(fault)
        finally:
            metrics.cleared.labels(fault.action, reason).inc()
            info = facts(fault, "fault_cleared", reason=reason)
            logger.warning("%s: fault cleared (%s): %s", where, reason, fault.describe(), extra=info)

    board = FaultBoard(scope, loop.time, loop.call_later, applied, cleared)
    metrics.watch(board)
    return board, metrics
