"""A seed sweep's model: which runs it asks for, what each run hands back, and what the runs add up to.

A sweep runs every combination of its `--set` values with every seed. Each run is
deterministic given its seed, so a sweep's result is a function of the scenario, the
combinations and the seeds alone: runs are kept in (combination, seed) order whatever
order they finish in, and `--until-fail` stops at the first failing run in that order,
not the first to finish. That is what lets a pool of any size, or a cluster, give
the same bytes of JSON. A run hands back only its verdict and key figures
(`RunFigures`), never its whole report, so a cluster's traffic stays small.
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from meshsim.core.measurements import percentile
from meshsim.core.overrides import Assignment
from meshsim.core.report import Report

SWEEP_SCHEMA = "meshsim/sweep/v1"
MAX_SEEDS = 1_000_000
MAX_RUNS = 1_000_000  # combinations times seeds: days of a large machine's time already
MAX_SEED = 2**63 - 1  # as a scenario's `seed` key
FIGURES = (
    ("success_rate", "success rate"),
    ("p50", "p50 ms"),
    ("p99", "p99 ms"),
    ("p999", "p99.9 ms"),
)
"""The figures a sweep keeps of each run, and what the summary calls them."""


def parse_seeds(text: str) -> tuple[int, ...]:
    """`1-1000`, `7` or `1-10,20,30-40`, ascending; ValueError with the reason otherwise."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise ValueError(f"expected seeds like 1-1000 or 1,5,9, got {text!r}") from None
        if low < 0 or high > MAX_SEED:
            raise ValueError(f"seeds are from 0 to {MAX_SEED}, got {part.strip()!r}")
        if high < low:
            raise ValueError(f"{part.strip()!r} is an empty range: write the smaller seed first")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS:,} seeds, got more in {text!r}")
        seeds.extend(range(low, high + 1))
    ordered = sorted(seeds)
    for before, after in itertools.pairwise(ordered):
        if before == after:
            raise ValueError(f"seed {after} is given twice in {text!r}")
    return tuple(ordered)


@attrs.frozen
class Combination:
    """One value of each `--set` key: the scenario as one row of the sweep runs it."""

    assignments: tuple[Assignment, ...] = ()

    @property
    def label(self) -> str:
        return " ".join(str(a) for a in self.assignments) or "as written"

    @property
    def settings(self) -> dict[str, str]:
        return {a.key: a.text for a in self.assignments}


def combinations(sets: Sequence[tuple[Assignment, ...]]) -> tuple[Combination, ...]:
    """Every combination of the values of each `--set`, the first key's values varying slowest (as
    the flags were given); ValueError when a key is set twice or there are too many."""
    keys = [values[0].key for values in sets]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            raise ValueError(f"{key} is set twice: give its values in one --set {key}=V1,V2")
        if key == "seed":
            raise ValueError("seed is what --seeds sweeps: give the seeds there")
    if math.prod(len(values) for values in sets) > MAX_RUNS:
        raise ValueError(f"the --set values make more than {MAX_RUNS:,} combinations")
    return tuple(Combination(tuple(chosen)) for chosen in itertools.product(*sets))


def reproduce(path: str, seed: int, combination: Combination) -> str:
    """The command that runs one run of a sweep again, for a POSIX shell."""
    flags = "".join(f" {a.flag}" for a in combination.assignments)
    return f"meshsim run {shlex.quote(path)} --seed {seed}{flags}"


@attrs.frozen
class RunFigures:
    """What one run hands back: its verdict, the assertions it failed and its key figures (or the
    error that stopped the simulator, a bug in meshsim)."""

    index: int
    """The run's place in (combination, seed) order."""
    seed: int
    failed: tuple[str, ...]
    requests: int
    success_rate: float
    p50: float
    p99: float
    p999: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failed and self.error is None

    def figure(self, name: str) -> float:
        return float(getattr(self, name))


def figures_of(index: int, report: Report) -> RunFigures:
    latency = report.totals.latency
    return RunFigures(
        index=index,
        seed=report.seed,
        failed=tuple(a.config.name for a in report.assertions if not a.passed),
        requests=report.totals.requests,
        success_rate=report.totals.success_rate,
        p50=latency.p50,
        p99=latency.p99,
        p999=latency.p999,
    )


@attrs.frozen
class Spread:
    """How a figure is spread across seeds: nearest-rank percentiles (observed values, so the same
    runs give the same spread to the bit); NaN when no run had calls."""

    minimum: float
    p5: float
    median: float
    p95: float
    maximum: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        ordered = sorted(v for v in values if not math.isnan(v))
        if not ordered:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(ordered[0], percentile(ordered, 5), percentile(ordered, 50), percentile(ordered, 95), ordered[-1])

    def values(self) -> tuple[float, float, float, float, float]:
        return (self.minimum, self.p5, self.median, self.p95, self.maximum)


SPREAD_COLUMNS = ("min", "p5", "median", "p95", "max")


@attrs.frozen
class CombinationResult:
    combination: Combination
    runs: tuple[RunFigures, ...]

    @property
    def failures(self) -> tuple[RunFigures, ...]:
        return tuple(run for run in self.runs if not run.passed)

    def spread(self, figure: str) -> Spread:
        return Spread.of(run.figure(figure) for run in self.runs)


@attrs.frozen
class SweepResult:
    path: str
    """The scenario file as the user named it (what the reproducing commands say)."""
    name: str
    seeds: tuple[int, ...]
    combinations: tuple[CombinationResult, ...]
    until_fail: bool = False

    @property
    def runs(self) -> int:
        return sum(len(c.runs) for c in self.combinations)

    @property
    def failed(self) -> int:
        return sum(len(c.failures) for c in self.combinations)

    @property
    def stopped_early(self) -> bool:
        return self.runs < len(self.seeds) * len(self.combinations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SWEEP_SCHEMA,
            "scenario": self.name,
            "path": self.path,
            "seeds": _ranges(self.seeds),
            "until_fail": self.until_fail,
            "stopped_early": self.stopped_early,
            "runs": self.runs,
            "failed": self.failed,
            "combinations": [self._combination(c) for c in self.combinations],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def _combination(self, result: CombinationResult) -> dict[str, Any]:
        combination = result.combination
        return {
            "set": combination.settings,
            "runs": len(result.runs),
            "passed": len(result.runs) - len(result.failures),
            "failed": [
                {
                    "seed": run.seed,
                    "assertions": list(run.failed),
                    "command": reproduce(self.path, run.seed, combination),
                }
                for run in result.failures
            ],
            "figures": {
                name: dict(zip(SPREAD_COLUMNS, (_rounded(name, v) for v in result.spread(name).values()), strict=True))
                for name, _ in FIGURES
            },
            "by_seed": [
                {
                    "seed": run.seed,
                    "passed": run.passed,
                    "requests": run.requests,
                    **{name: _rounded(name, run.figure(name)) for name, _ in FIGURES},
                }
                for run in result.runs
            ],
        }


def _rounded(figure: str, value: float) -> float | None:
    """As the report rounds: ratios to 6 places, milliseconds to 3; null for NaN."""
    if math.isnan(value):
        return None
    return round(value, 6 if figure == "success_rate" else 3)


def _ranges(seeds: Sequence[int]) -> str:
    """Seeds as --seeds takes them (`1-200`), however many there are."""
    parts = []
    for _, run in itertools.groupby(enumerate(seeds), key=lambda pair: pair[1] - pair[0]):
        block = [seed for _, seed in run]
        parts.append(str(block[0]) if len(block) == 1 else f"{block[0]}-{block[-1]}")
    return ",".join(parts)


class Collector:
    """Gathers runs as they finish, in any order, into (combination, seed) order; with `until_fail`,
    done once every run before the first failure in that order is in, and keeps only those.

    A run the simulator crashed on ends the sweep too, but in order as well: it is `crashed` only
    once every run before it is in (and, with `until_fail`, only if no earlier run failed), so
    which run is reported does not depend on which finished first."""

    def __init__(self, seeds: tuple[int, ...], combinations: tuple[Combination, ...], until_fail: bool) -> None:
        self._seeds = seeds
        self._combinations = combinations
        self._until_fail = until_fail
        self._runs: dict[int, RunFigures] = {}
        self._first_failure = len(seeds) * len(combinations)
        self._first_crash = self._first_failure
        self._in_order = 0  # runs 0 .. _in_order - 1 are all in

    @property
    def total(self) -> int:
        return len(self._seeds) * len(self._combinations)

    def add(self, run: RunFigures) -> None:
        self._runs[run.index] = run
        if self._until_fail and not run.passed:
            self._first_failure = min(self._first_failure, run.index)
        if run.error is not None:
            self._first_crash = min(self._first_crash, run.index)
        while self._in_order in self._runs:
            self._in_order += 1

    @property
    def needed(self) -> int:
        """How many runs the result is made of (all of them, or up to the first failure or crash)."""
        return min(self.total, self._first_failure + 1, self._first_crash + 1)

    @property
    def crashed(self) -> RunFigures | None:
        """The first run in order that the simulator crashed on, once every run before it is in."""
        if self.done and self._first_crash < self.needed:
            return self._runs[self._first_crash]
        return None

    @property
    def done(self) -> bool:
        return self._in_order >= self.needed

    def wanted(self, index: int) -> bool:
        """Whether the run at `index` still counts (one after a known failure does not, with until_fail)."""
        return index < self.needed

    def result(self, path: str, name: str) -> SweepResult:
        per_combination: list[list[RunFigures]] = [[] for _ in self._combinations]
        for index in range(self.needed):
            if index in self._runs:
                per_combination[index // len(self._seeds)].append(self._runs[index])
        return SweepResult(
            path=path,
            name=name,
            seeds=self._seeds,
            combinations=tuple(
                CombinationResult(combination, tuple(runs))
                for combination, runs in zip(self._combinations, per_combination, strict=True)
            ),
            until_fail=self._until_fail,
        )
