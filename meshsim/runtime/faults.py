"""The fault injector actor: plays a scenario's fault timeline at its times, virtual or wall.

What a fault is applied to is the backend's: simulated replicas, or real ones on
loopback (a live run); each is a `FaultTarget`. Ties are resolved in a documented
order, not by the scheduler: at one instant, faults that end are cleared first, then
faults that begin are applied, each group in file order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from meshsim.core.events import FaultApplied, FaultCleared
from meshsim.core.scenario import FaultConfig
from meshsim.runtime.observer import Observer


class FaultTarget(Protocol):
    """A replica a fault can be applied to (and cleared from)."""

    def apply(self, fault: FaultConfig) -> None: ...

    def clear(self, fault: FaultConfig) -> None: ...


_CLEAR, _APPLY = 0, 1


class FaultInjector:
    name = "faults"

    def __init__(
        self, faults: Sequence[FaultConfig], targets: Callable[[str], Sequence[FaultTarget]], observer: Observer
    ) -> None:
        """`targets(target)`: the replicas a fault's target names (a replica, or a service's all)."""
        self._targets = targets
        self._observer = observer
        steps = []
        for fault in faults:
            steps.append((fault.at, _APPLY, fault.index, fault))
            if fault.duration is not None:
                steps.append((fault.at + fault.duration, _CLEAR, fault.index, fault))
        self._steps = sorted(steps, key=lambda s: (s[0], s[1], s[2]))

    async def run(self) -> None:
        for at, kind, _, fault in self._steps:
            await trio.sleep_until(at)
            if kind == _APPLY:
                self._set(fault, True)
                self._observer.emit(FaultApplied(at, fault.index, fault.action, fault.target, fault.describe()))
            else:
                self._set(fault, False)
                self._observer.emit(FaultCleared(at, fault.index, fault.action, fault.target))

    def _set(self, fault: FaultConfig, active: bool) -> None:
        for replica in self._targets(fault.target):
            if active:
                replica.apply(fault)
            else:
                replica.clear(fault)
