"""One run of a sweep, as a worker does it: in a process of the local pool, or on a Dask worker.

A worker gets the scenario's text (once: `ScenarioSource`), a combination of `--set`
values and a seed, and hands back `RunFigures`: a few numbers, never a whole report.
The file need not exist where the worker runs; its path is only a name in messages.
"""

from __future__ import annotations

import functools
import math
import threading
from pathlib import Path

import attrs

from meshsim import __version__
from meshsim.core.scenario import Scenario
from meshsim.core.scenario_loader import parse_scenario
from meshsim.core.sweep import Combination, RunFigures, figures_of
from meshsim.sim.runner import run_scenario

# Trio's seeded scheduling is process-wide state (sim/scheduler.py): two runs at once in one
# process, as a Dask worker with several threads would start, would each disturb the other's order.
_ONE_RUN_AT_A_TIME = threading.Lock()


@attrs.frozen
class ScenarioSource:
    path: str
    text: str


@attrs.frozen
class Job:
    index: int
    """The run's place in (combination, seed) order."""
    seed: int
    combination: Combination


@functools.lru_cache(maxsize=16)
def _scenario(source: ScenarioSource, combination: Combination) -> Scenario:
    # A worker runs many seeds of each combination: read the file once for them all.
    return parse_scenario(source.text, Path(source.path), combination.assignments)


def run_job(source: ScenarioSource, job: Job) -> RunFigures:
    """Run one (combination, seed); an exception is handed back as the run's error, so that both
    engines report a simulator failure the same way (it is a bug in meshsim, exit 3)."""
    try:
        scenario = _scenario(source, job.combination).with_seed(job.seed)
        with _ONE_RUN_AT_A_TIME:
            report = run_scenario(scenario)
        return figures_of(job.index, report)
    except Exception as error:
        cause: BaseException = error
        while isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        nan = math.nan
        return RunFigures(job.index, job.seed, (), 0, nan, nan, nan, nan, error=f"{type(cause).__name__}: {cause}")


def meshsim_version() -> str:
    """What a worker has installed: a cluster's workers must run the same meshsim as the caller."""
    return __version__
