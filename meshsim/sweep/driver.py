"""A sweep from start to end: the jobs in (combination, seed) order, an engine to run them, the
runs gathered back into that order."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path

from meshsim.core.scenario import Scenario
from meshsim.core.scenario_loader import parse_scenario
from meshsim.core.sweep import MAX_RUNS, Collector, Combination, RunFigures, SweepResult
from meshsim.sweep.engines import Engine
from meshsim.sweep.job import Job, ScenarioSource

Progress = Callable[[RunFigures, int, int], None]
"""Called as each run comes back, with the runs in so far and how many the sweep needs."""


class SweepCrashed(Exception):
    """The simulator failed on a run: a bug in meshsim, told apart from a failed assertion."""

    def __init__(self, run: RunFigures, combination: Combination) -> None:
        super().__init__(run.error)
        self.run = run
        self.combination = combination


def check(source: ScenarioSource, combinations: tuple[Combination, ...], seeds: tuple[int, ...]) -> Scenario:
    """Every combination checked as a file is, here and before any run, so that a bad `--set`
    value is one line and exit 2 rather than a worker's failure; the first combination's scenario."""
    if len(combinations) * len(seeds) > MAX_RUNS:
        raise ValueError(f"{len(combinations):,} combinations of {len(seeds):,} seeds: more than {MAX_RUNS:,} runs")
    # One at a time, keeping only the first: a list of a million combinations' scenarios would not fit.
    first = parse_scenario(source.text, Path(source.path), combinations[0].assignments)
    for combination in itertools.islice(combinations, 1, None):
        parse_scenario(source.text, Path(source.path), combination.assignments)
    return first


def run_sweep(
    source: ScenarioSource,
    name: str,
    seeds: tuple[int, ...],
    combinations: tuple[Combination, ...],
    engine: Engine,
    until_fail: bool = False,
    progress: Progress | None = None,
) -> SweepResult:
    collector = Collector(seeds, combinations, until_fail)
    jobs = [
        Job(number * len(seeds) + position, seed, combination)
        for number, combination in enumerate(combinations)
        for position, seed in enumerate(seeds)
    ]
    received = 0
    with contextlib.closing(engine.outcomes(source, jobs, collector.wanted)) as outcomes:
        for run in outcomes:
            if not collector.wanted(run.index):
                continue  # finished after a failure or crash that comes before it: dropped
            collector.add(run)
            received += 1
            if progress is not None:
                progress(run, received, collector.needed)
            if collector.done:
                break
    # Reported in order, as failures are: the first crash, once every run before it is in, whatever
    # the number of workers (and not at all when --until-fail met a failing run before it).
    crashed = collector.crashed
    if crashed is not None:
        raise SweepCrashed(crashed, combinations[crashed.index // len(seeds)])
    return collector.result(source.path, name)
