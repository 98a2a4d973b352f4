"""kill: the replica's process dies; it refuses connections and fails the calls it had."""

from __future__ import annotations

import attrs

from meshsim.core.config import Table
from meshsim.core.faults.base import Conditions, FaultContext, FaultKind


@attrs.frozen
class Kill:
    def describe(self) -> str:
        return ""

    def affect(self, conditions: Conditions) -> None:
        conditions.down = True


def read(table: Table, context: FaultContext) -> Kill:
    return Kill()


KIND = FaultKind("kill", (), read, "the replica dies: connections refused, calls it holds fail UNAVAILABLE")
