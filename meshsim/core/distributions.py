"""Latency distributions a simulated replica samples its service time from."""

from __future__ import annotations

import bisect
import math
import random
from typing import Protocol

import attrs


class Distribution(Protocol):
    """Something that draws a non-negative number of seconds from a seeded generator."""

    def sample(self, rng: random.Random) -> float: ...

    def describe(self) -> str: ...


@attrs.frozen
class Constant:
    value: float

    def sample(self, rng: random.Random) -> float:
        return self.value

    def describe(self) -> str:
        return f"constant {self.value * 1e3:g}ms"


@attrs.frozen
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def describe(self) -> str:
        return f"uniform {self.low * 1e3:g}-{self.high * 1e3:g}ms"


@attrs.frozen
class Exponential:
    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0

    def describe(self) -> str:
        return f"exponential mean {self.mean * 1e3:g}ms"


@attrs.frozen
class Normal:
    """Truncated at zero: a latency is never negative."""

    mean: float
    stddev: float

    def sample(self, rng: random.Random) -> float:
        return max(0.0, rng.gauss(self.mean, self.stddev))

    def describe(self) -> str:
        return f"normal {self.mean * 1e3:g}±{self.stddev * 1e3:g}ms"


@attrs.frozen
class LogNormal:
    """Parametrised by its median (what people read off dashboards) and the sigma of ln(x)."""

    median: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)

    def describe(self) -> str:
        return f"lognormal median {self.median * 1e3:g}ms sigma {self.sigma:g}"


@attrs.frozen
class Empirical:
    """A histogram: `bounds[i]` is a bucket's upper edge, `weights[i]` its share.

    A draw picks a bucket by weight, then a point uniformly inside it; the first
    bucket starts at zero. This is how recorded latencies are replayed.
    """

    bounds: tuple[float, ...]
    weights: tuple[float, ...]
    _cumulative: tuple[float, ...] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        total = 0.0
        cumulative = []
        for weight in self.weights:
            total += weight
            cumulative.append(total)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    def sample(self, rng: random.Random) -> float:
        point = rng.random() * self._cumulative[-1]
        index = min(bisect.bisect_right(self._cumulative, point), len(self.bounds) - 1)
        low = self.bounds[index - 1] if index else 0.0
        return rng.uniform(low, self.bounds[index])

    def describe(self) -> str:
        return f"empirical {len(self.bounds)} buckets up to {self.bounds[-1] * 1e3:g}ms"
