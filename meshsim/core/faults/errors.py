"""errors: a share of the replica's calls fail with a status (and a pushback, if asked)."""

from __future__ import annotations

import attrs

from meshsim.core.config import MAX_PUSHBACK_MS, Table
from meshsim.core.faults.base import Conditions, FaultContext, FaultKind
from meshsim.core.status import StatusCode


@attrs.frozen
class Errors:
    rate: float
    status: StatusCode = StatusCode.UNAVAILABLE
    pushback_ms: int | None = None

    def describe(self) -> str:
        return f"{self.rate:.0%} {self.status.name}"

    def affect(self, conditions: Conditions) -> None:
        conditions.errors.append((self.rate, self.status, self.pushback_ms))


def read(table: Table, context: FaultContext) -> Errors:
    rate = table.number("rate", above=0.0, maximum=1.0)
    status = table.status("status", StatusCode.UNAVAILABLE)
    if status is StatusCode.OK:
        table.fail("status", "an injected error cannot be OK")
    pushback_ms = table.integer("pushback_ms", None, minimum=-MAX_PUSHBACK_MS, maximum=MAX_PUSHBACK_MS)
    return Errors(rate, status, pushback_ms)


KIND = FaultKind("errors", ("rate", "status", "pushback_ms"), read, "a share of calls fail with a status")
