"""latency: every service time (and probe answer) of the replica is multiplied, then lengthened."""

from __future__ import annotations

import attrs

from meshsim.core.config import Table
from meshsim.core.faults.base import Conditions, FaultContext, FaultKind


@attrs.frozen
class Latency:
    add: float = 0.0
    multiply: float = 1.0

    def describe(self) -> str:
        parts = []
        if self.add:
            parts.append(f"+{self.add * 1e3:g}ms")
        if self.multiply != 1.0:
            parts.append(f"x{self.multiply:g}")
        return " ".join(parts)

    def affect(self, conditions: Conditions) -> None:
        conditions.add += self.add
        conditions.multiply *= self.multiply


def read(table: Table, context: FaultContext) -> Latency:
    add = table.duration("add", 0.0)
    multiply = table.number("multiply", 1.0, minimum=0.0, maximum=1000.0)
    if add == 0.0 and multiply == 1.0:
        table.fail(None, "a latency fault needs add (a duration) or multiply (a factor)")
    return Latency(add, multiply)


KIND = FaultKind("latency", ("add", "multiply"), read, "service times x multiply + add")
