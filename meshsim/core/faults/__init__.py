"""Fault kinds: what a scenario's [[fault]] can do to a replica.

Each kind is a module of this package with a `KIND` (`base.FaultKind`): its keys, how it
reads and checks them, its description, and its effect on a replica's `Conditions`.
KINDS below is the one place a kind is added (docs/architecture.md has the recipe).
"""

from __future__ import annotations

from meshsim.core.faults import blackhole, errors, health, kill, latency, partition
from meshsim.core.faults.base import Conditions as Conditions
from meshsim.core.faults.base import Effect as Effect
from meshsim.core.faults.base import FaultContext as FaultContext
from meshsim.core.faults.base import FaultKind as FaultKind

KINDS: dict[str, FaultKind] = {
    kind.name: kind for kind in (kill.KIND, latency.KIND, errors.KIND, blackhole.KIND, health.KIND, partition.KIND)
}


def conditions_of(effects: list[Effect]) -> Conditions:
    """A replica's conditions under `effects`, the active faults' in the order they were applied."""
    conditions = Conditions()
    for effect in effects:
        effect.affect(conditions)
    return conditions
