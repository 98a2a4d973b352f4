"""Load-balancing pickers: immutable views of the ready endpoints that choose one per call.

A balancer publishes a new picker whenever the set of pickable endpoints changes;
a call asks the current picker synchronously. Counters inside a picker (the round
robin position, smooth-WRR weights) are the picker's own and start afresh with
every new picker, as in gRPC.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from meshsim.core.endpoint import Endpoint
from meshsim.core.ewma import PeakEwmaConfig

POLICIES = (
    "round_robin",
    "random",
    "weighted_round_robin",
    "least_connections",
    "p2c",
    "consistent_hash",
    "peak_ewma",
)


class Picker(Protocol):
    def pick(self, key: str | None) -> Endpoint | None:
        """The endpoint for a call with hash key `key`, or None when nothing is pickable."""
        ...


@attrs.frozen
class BalancerConfig:
    """`panic_threshold` is Envoy's: when fewer than that percentage of the endpoints are
    healthy and not ejected, balance over all of them. 0 (gRPC's behaviour) never panics."""

    policy: str = "round_robin"
    ring_size: int = 1024
    choices: int = 2
    panic_threshold: float = 0.0
    ewma: PeakEwmaConfig = attrs.field(factory=PeakEwmaConfig)


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


class PeakEwmaPicker:
    """Finagle's and Linkerd's Peak-EWMA: power of two choices on cost = latency estimate x (in flight + 1)."""

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random, now: Callable[[], float]) -> None:
        self._endpoints = tuple(endpoints)
        self._rng = rng
        self._now = now

    def _cost(self, endpoint: Endpoint, now: float) -> float:
        assert endpoint.latency is not None, "peak_ewma needs endpoints with latency estimates"
        return endpoint.latency.estimate(now) * (endpoint.in_flight + 1)

    def pick(self, key: str | None) -> Endpoint | None:
        if len(self._endpoints) == 1:
            return self._endpoints[0]
        first, second = self._rng.sample(self._endpoints, 2)
        now = self._now()
        return second if self._cost(second, now) < self._cost(first, now) else first


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class RingHashPicker:
    """A ring hash: each endpoint owns points on a ring in proportion to its weight.

    The ring is built over the whole configured set (`universe`), and a key goes to
    the first point clockwise of its hash whose owner is pickable, as gRPC's
    ring_hash walks the ring to a READY subchannel. So when one of N endpoints
    becomes unusable only the keys it owned (about 1/N) move, and they come back
    when it does. Calls without a key hash to a fixed point, as a single-key client
    would.
    """

    def __init__(
        self, endpoints: Sequence[Endpoint], ring_size: int, universe: Sequence[Endpoint] | None = None
    ) -> None:
        members = list(universe) if universe is not None else list(endpoints)
        members += [e for e in endpoints if e not in members]
        self._hashes, positions = _ring(tuple((e.name, e.weight) for e in members), ring_size)
        pickable = {id(e) for e in endpoints}
        self._owners = [members[p] for p in positions]
        usable = [id(e) in pickable for e in members]
        self._usable = [usable[p] for p in positions]

    def pick(self, key: str | None) -> Endpoint | None:
        count = len(self._hashes)
        point = bisect.bisect_left(self._hashes, stable_hash(key or ""))
        usable = self._usable
        for step in range(count):
            index = (point + step) % count
            if usable[index]:
                return self._owners[index]
        return None


@functools.lru_cache(maxsize=16)
def _ring(members: tuple[tuple[str, int], ...], ring_size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ring's points (sorted hashes) and the position in `members` of each point's owner.

    Kept: a balancer publishes a new picker at every health change, and hashing a ring of a
    million points each time costs seconds, while only which owners are usable changed.
    """
    total_weight = sum(max(0, weight) for _, weight in members) or 1
    points: list[tuple[int, int]] = []
    for position, (name, weight) in enumerate(members):
        if weight <= 0:
            continue
        share = max(1, round(ring_size * weight / total_weight))
        points.extend((stable_hash(f"{name}_{replica}"), position) for replica in range(share))
    points.sort()
    return tuple(h for h, _ in points), tuple(p for _, p in points)


def _no_clock() -> float:
    raise RuntimeError("peak_ewma needs a clock: pass build_picker(..., now=...)")


def build_picker(
    config: BalancerConfig,
    endpoints: Sequence[Endpoint],
    rng: random.Random,
    now: Callable[[], float] = _no_clock,
    universe: Sequence[Endpoint] | None = None,
) -> Picker:
    """The picker for `config.policy` over `endpoints` (already filtered to the pickable ones).

    `now` reads the current time (only peak_ewma needs it); `universe` is every
    configured endpoint, usable or not (only consistent_hash needs it, to keep its
    ring stable while endpoints come and go).
    """
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
        return RingHashPicker(endpoints, config.ring_size, universe)
    if policy == "peak_ewma":
        return PeakEwmaPicker(endpoints, rng, now)
    raise ValueError(f"unknown balancer policy {policy!r}")
