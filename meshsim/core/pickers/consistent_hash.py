"""consistent_hash: a ring hash over every configured replica."""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers.base import LbPolicy


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


POLICY = LbPolicy(
    "consistent_hash",
    lambda inputs: RingHashPicker(inputs.endpoints, inputs.config.ring_size, inputs.universe),
    "a ring hash: a key stays on its replica while that replica is usable",
    keyed=True,
)
