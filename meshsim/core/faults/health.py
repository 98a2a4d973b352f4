"""health: the replica answers its health probes NOT_SERVING (or SERVICE_UNKNOWN) while it serves."""

from __future__ import annotations

import attrs

from meshsim.core.config import Table, shown
from meshsim.core.faults.base import Conditions, FaultContext, FaultKind
from meshsim.core.status import HealthStatus


@attrs.frozen
class Health:
    status: HealthStatus = HealthStatus.NOT_SERVING

    def describe(self) -> str:
        return self.status.value

    def affect(self, conditions: Conditions) -> None:
        conditions.health = self.status  # the latest applied wins


def read(table: Table, context: FaultContext) -> Health:
    raw = table.raw("status", "NOT_SERVING")
    status = raw.upper() if isinstance(raw, str) else raw
    if status not in ("NOT_SERVING", "SERVICE_UNKNOWN"):
        table.fail("status", f"expected one of NOT_SERVING, SERVICE_UNKNOWN, got {shown(raw)}")
    return Health(HealthStatus(status))


KIND = FaultKind("health", ("status",), read, "health probes answer NOT_SERVING while calls are served")
