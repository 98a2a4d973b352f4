"""random: a usable replica uniformly at random."""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class RandomPicker:
    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng

    def pick(self, key: str | None) -> Endpoint | None:
        return self._endpoints[self._rng.randrange(len(self._endpoints))]


POLICY = LbPolicy(
    "random",
    lambda inputs: RandomPicker(inputs.endpoints, inputs.rng),
    "a usable replica uniformly at random; weights are ignored",
)
