"""blackhole: the replica takes calls and probes and answers none (a hung process, a lost route)."""

from __future__ import annotations

import attrs

from meshsim.core.config import Table
from meshsim.core.faults.base import Conditions, FaultContext, FaultKind


@attrs.frozen
class Blackhole:
    def describe(self) -> str:
        return ""

    def affect(self, conditions: Conditions) -> None:
        conditions.blackholed = True


def read(table: Table, context: FaultContext) -> Blackhole:
    return Blackhole()


KIND = FaultKind("blackhole", (), read, "calls and probes are held unanswered until their deadline")
