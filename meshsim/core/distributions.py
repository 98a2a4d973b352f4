"""Latency distributions a simulated replica samples its service time from."""

from __future__ import annotations

import bisect
import math
import random
from typing import Protocol

import attrs

_LONGEST = 86_400.0  # seconds: no simulated call lasts longer


class Distribution(Protocol):
    """Something that draws a non-negative number of seconds from a seeded generator."""

    def sample(self, rng: random.Random) -> float: ...

    def describe(self) -> str: ...

    @property
    def expected(self) -> float:
        """The mean of the draws (what a run's cost is estimated from)."""
        ...


@attrs.frozen
class Constant:
    value: float

    def sample(self, rng: random.Random) -> float:
        return self.value

    @property
    def expected(self) -> float:
        return self.value

    def describe(self) -> str:
        return f"constant {self.value * 1e3:g}ms"


@attrs.frozen
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    @property
    def expected(self) -> float:
        return (self.low + self.high) / 2

    def describe(self) -> str:
        return f"uniform {self.low * 1e3:g}-{self.high * 1e3:g}ms"


@attrs.frozen
class Exponential:
    mean: float

    @property
    def expected(self) -> float:
        return self.mean

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

    @property
    def expected(self) -> float:
        """The mean of the draws, which the truncation at zero raises above `mean`."""
        if self.stddev == 0:
            return max(0.0, self.mean)
        a = self.mean / self.stddev
        pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + math.erf(a / math.sqrt(2)))
        return self.mean * cdf + self.stddev * pdf

    def describe(self) -> str:
        return f"normal {self.mean * 1e3:g}±{self.stddev * 1e3:g}ms"


@attrs.frozen
class LogNormal:
    """Parametrised by its median (what people read off dashboards) and the sigma of ln(x)."""

    median: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        # Capped at a day: with a wide sigma a draw can overflow a float, and no call lasts that long.
        try:
            return min(rng.lognormvariate(math.log(self.median), self.sigma), _LONGEST)
        except OverflowError:
            return _LONGEST

    @property
    def expected(self) -> float:
        exponent = self.sigma * self.sigma / 2
        return _LONGEST if exponent > 700 else min(self.median * math.exp(exponent), _LONGEST)

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

    @property
    def expected(self) -> float:
        edges = (0.0, *self.bounds)
        middle = sum(w * (lo + hi) / 2 for w, lo, hi in zip(self.weights, edges, self.bounds, strict=False))
        return middle / self._cumulative[-1]

    def sample(self, rng: random.Random) -> float:
        point = rng.random() * self._cumulative[-1]
        index = min(bisect.bisect_right(self._cumulative, point), len(self.bounds) - 1)
        low = self.bounds[index - 1] if index else 0.0
        return rng.uniform(low, self.bounds[index])

    def describe(self) -> str:
        return f"empirical {len(self.bounds)} buckets up to {self.bounds[-1] * 1e3:g}ms"
