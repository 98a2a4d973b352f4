"""Chaos on demo replicas (`meshsim serve`): what each fault kind does to one replica.

    kill       the replica's server stops (connections break, calls in flight fail) and
               starts again on the same port when the fault ends; the others go on
    latency    each matching call's time is multiplied, then lengthened
    errors     a share of matching calls fail with the status, after their time
    blackhole  matching calls (and, with no method, health probes) are held until it ends
    health     grpc.health.v1 answers NOT_SERVING (or SERVICE_UNKNOWN) while calls are served

A target is a replica by name (`api/1`) or address, or the service (`api`: all of
them). A partition cuts one client from a replica, which a server cannot do to its
callers: add it in the caller (the proxy).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from meshsim.core.chaos import ChaosFault, ChaosScope
from meshsim.core.faults import Conditions, conditions_of

KINDS = ("kill", "latency", "errors", "blackhole", "health")
WHY_NOT = {"partition": "a replica cannot cut one caller off; add a partition in the proxy instead"}


class ReplicaFaults:
    """The faults active on one replica, as its servicer and health service consult them per call."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._per_call: list[ChaosFault] = []
        self._held: dict[str, asyncio.Event] = {}  # a blackhole's id: set when it ends
        self._probes_held: set[str] = set()

    @property
    def active(self) -> bool:
        return bool(self._per_call)

    def add(self, fault: ChaosFault) -> None:
        self._per_call.append(fault)
        if fault.action == "blackhole":
            self._held[fault.id] = asyncio.Event()
            if fault.match.method is None:
                self._probes_held.add(fault.id)

    def remove(self, fault: ChaosFault) -> None:
        if fault in self._per_call:
            self._per_call.remove(fault)
        lifted = self._held.pop(fault.id, None)
        if lifted is not None:
            lifted.set()
        self._probes_held.discard(fault.id)

    def draw(self, method: str) -> tuple[Conditions, list[asyncio.Event], list[str]]:
        """The conditions one call of `method` meets (each fault drawn by its share), the blackholes
        holding it, and the kinds that acted on it already (an error acts only if its rate's draw,
        made later, says so)."""
        rng = self._rng
        drawn = [fault for fault in self._per_call if fault.match.matches(method, (), rng)]
        held = [self._held[fault.id] for fault in drawn if fault.id in self._held]
        acted = [fault.action for fault in drawn if fault.action != "errors"]
        return conditions_of([fault.effect for fault in drawn]), held, acted

    async def probe_admitted(self) -> None:
        """Wait out the blackholes that hold health probes."""
        while self._probes_held:
            await self._held[next(iter(self._probes_held))].wait()


def scope(replicas: Sequence[tuple[str, str]], service: str) -> ChaosScope:
    """What `meshsim serve` takes: `replicas` are (name, address) pairs of the service `service`."""
    names = {name for name, _ in replicas} | {address for _, address in replicas}

    def check_target(target: str, action: str) -> str | None:
        if target == service or target in names:
            return None
        known = ", ".join(name for name, _ in replicas)
        return f"no replica {target!r} here: {service} (every replica), {known}, or an address"

    return ChaosScope(KINDS, headers=False, check_target=check_target, why_not=WHY_NOT)
