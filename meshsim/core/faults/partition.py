"""partition: one client is cut from the replica; its calls and probes find no route."""

from __future__ import annotations

import attrs

from meshsim.core.config import Table
from meshsim.core.faults.base import Conditions, FaultContext, FaultKind


@attrs.frozen
class Partition:
    client: str

    def describe(self) -> str:
        return f"from client {self.client}"

    def affect(self, conditions: Conditions) -> None:
        conditions.cut_from.add(self.client)


def read(table: Table, context: FaultContext) -> Partition:
    return Partition(table.choice("client", context.clients))


KIND = FaultKind("partition", ("client",), read, "one client's connections to the replica are refused")
