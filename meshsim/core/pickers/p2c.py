"""p2c: power of two choices."""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


class PowerOfTwoPicker:
    """Power of two choices: sample `choices` distinct endpoints, keep the least loaded."""

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random, choices: int = 2) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng
        self._choices = min(choices, len(self._endpoints))

    def pick(self, key: str | None) -> Endpoint | None:
        if self._choices == 1:
            return self._endpoints[self._rng.randrange(len(self._endpoints))]
        sampled = self._rng.sample(self._endpoints, self._choices)
        best = sampled[0]
        for candidate in sampled[1:]:
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best


POLICY = LbPolicy(
    "p2c",
    lambda inputs: PowerOfTwoPicker(inputs.endpoints, inputs.rng, inputs.config.choices),
    "the less loaded of `choices` replicas sampled at random",
)
