"""round_robin: each usable replica in turn, from a random start."""

from __future__ import annotations

from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class RoundRobinPicker:
    def __init__(self, endpoints: Sequence[Endpoint], start: int = 0) -> None:
        self._endpoints = tuple(endpoints)
        self._next = start % len(self._endpoints)

    def pick(self, key: str | None) -> Endpoint | None:
        endpoint = self._endpoints[self._next]
        self._next = (self._next + 1) % len(self._endpoints)
        return endpoint


POLICY = LbPolicy(
    "round_robin",
    lambda inputs: RoundRobinPicker(inputs.endpoints, start=inputs.rng.randrange(len(inputs.endpoints))),
    "each usable replica in turn, from a random starting point; weights are ignored",
)
