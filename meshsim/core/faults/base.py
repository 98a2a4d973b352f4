"""What a fault kind is: its own keys, how it reads them, and what it does to a replica.

A fault does not act on a replica itself: each active fault adds its effect to the
replica's `Conditions`, folded afresh from the active faults (in the order they were
applied) whenever one begins or ends. The simulated replica reads its conditions, and
a live one can read the same: a new kind needs no change to either as long as it is
made of these effects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs

from meshsim.core.config import Table
from meshsim.core.status import HealthStatus, StatusCode


@attrs.define
class Conditions:
    """What the faults active on a replica make of it."""

    down: bool = False  # connections refused, calls in service fail
    blackholed: bool = False  # accepts calls and probes, answers none
    add: float = 0.0  # seconds added to every service time
    multiply: float = 1.0  # service times multiplied by this
    # (share, status, pushback ms) of calls failed after their service time, in the order applied
    errors: list[tuple[float, StatusCode, int | None]] = attrs.Factory(list)
    health: HealthStatus | None = None  # what health probes answer instead of SERVING
    cut_from: set[str] = attrs.Factory(set)  # clients partitioned from it


class Effect(Protocol):
    """A fault's parameters, as read from its [[fault]] table."""

    def describe(self) -> str:
        """A few words for the report's fault table ("+100ms x2", "30% INTERNAL")."""
        ...

    def affect(self, conditions: Conditions) -> None:
        """Add this fault's effect to a replica's conditions."""
        ...


@attrs.frozen
class FaultContext:
    """What a fault's keys may be checked against."""

    clients: tuple[str, ...]


@attrs.frozen
class FaultKind:
    """A kind of fault: the `action` a [[fault]] table names, the keys it takes besides `at`, `for`,
    `action` and `target`, and how it reads them (failing on the table, naming the key)."""

    name: str
    keys: tuple[str, ...]
    read: Callable[[Table, FaultContext], Effect]
    summary: str
