"""Load-balancing pickers: immutable views of the ready endpoints that choose one per call.

A balancer publishes a new picker whenever the set of pickable endpoints changes;
a call asks the current picker synchronously. Counters inside a picker (the round
robin position, smooth-WRR weights) are the picker's own and start afresh with
every new picker, as in gRPC.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol

import attrs

from meshsim.core.endpoint import Endpoint

POLICIES = (
    "round_robin",
    "random",
    "weighted_round_robin",
    "least_connections",
    "p2c",
    "consistent_hash",
)


class Picker(Protocol):
    def pick(self, key: str | None) -> Endpoint | None:
        """The endpoint for a call with hash key `key`, or None when nothing is pickable."""
        ...


@attrs.frozen
class BalancerConfig:
    policy: str = "round_robin"
    ring_size: int = 1024
    choices: int = 2


class EmptyPicker:
    """No endpoint is ready: every call fails fast with UNAVAILABLE."""

    def pick(self, key: str | None) -> Endpoint | None:
        return None


class RoundRobinPicker:
    def __init__(self, endpoints: Sequence[Endpoint], start: int = 0) -> None:
        self._endpoints = tuple(endpoints)
        self._next = start % len(self._endpoints)

    def pick(self, key: str | None) -> Endpoint | None:
        endpoint = self._endpoints[self._next]
        self._next = (self._next + 1) % len(self._endpoints)
        return endpoint


class RandomPicker:
    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng

    def pick(self, key: str | None) -> Endpoint | None:
        return self._endpoints[self._rng.randrange(len(self._endpoints))]


class SmoothWeightedPicker:
    """nginx's smooth weighted round robin: exact proportions, interleaved rather than bursty."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._weights = [max(0, e.weight) for e in self._endpoints]
        self._total = sum(self._weights)
        self._current = [0] * len(self._endpoints)

    def pick(self, key: str | None) -> Endpoint | None:
        if self._total == 0:
            return None
        best = 0
        current = self._current
        for i, weight in enumerate(self._weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self._endpoints[best]


class LeastConnectionsPicker:
    """Fewest calls in flight; ties go to the first tied endpoint after a rotating start.

    The rotation makes the tie-break deterministic and still spreads an idle cluster's
    calls evenly instead of piling them on the first endpoint.
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        self._start = 0

    def pick(self, key: str | None) -> Endpoint | None:
        endpoints = self._endpoints
        count = len(endpoints)
        start = self._start
        self._start = (start + 1) % count
        best = endpoints[start]
        for offset in range(1, count):
            candidate = endpoints[(start + offset) % count]
            if candidate.in_flight < best.in_flight:
                best = candidate
        return best


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


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class RingHashPicker:
    """Envoy's ring hash: each endpoint owns points on a ring in proportion to its weight.

    A key goes to the first point clockwise of its hash, so when one of N endpoints
    leaves only the keys it owned (about 1/N) move. Calls without a key hash to a
    fixed point, which is what a single-key client would see.
    """

    def __init__(self, endpoints: Sequence[Endpoint], ring_size: int) -> None:
        total_weight = sum(max(0, e.weight) for e in endpoints) or 1
        points: list[tuple[int, int]] = []
        for position, endpoint in enumerate(endpoints):
            share = max(1, round(ring_size * max(0, endpoint.weight) / total_weight))
            for replica in range(share):
                points.append((stable_hash(f"{endpoint.name}_{replica}"), position))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [endpoints[p] for _, p in points]

    def pick(self, key: str | None) -> Endpoint | None:
        point = bisect.bisect_left(self._hashes, stable_hash(key or ""))
        if point == len(self._hashes):
            point = 0
        return self._owners[point]


def build_picker(config: BalancerConfig, endpoints: Sequence[Endpoint], rng: random.Random) -> Picker:
    """The picker for `config.policy` over `endpoints` (already filtered to the pickable ones)."""
    if not endpoints:
        return EmptyPicker()
    policy = config.policy
    if policy == "round_robin":
        return RoundRobinPicker(endpoints, start=rng.randrange(len(endpoints)))
    if policy == "random":
        return RandomPicker(endpoints, rng)
    if policy == "weighted_round_robin":
        return SmoothWeightedPicker(endpoints)
    if policy == "least_connections":
        return LeastConnectionsPicker(endpoints)
    if policy == "p2c":
        return PowerOfTwoPicker(endpoints, rng, config.choices)
    if policy == "consistent_hash":
        return RingHashPicker(endpoints, config.ring_size)
    raise ValueError(f"unknown balancer policy {policy!r}")
