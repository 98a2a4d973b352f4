"""Seeded scheduling and fast-forward: the one place meshsim touches Trio's private API.

Seeded scheduling. Trio shuffles the order in which tasks woken in the same batch
run, on purpose, so that code cannot come to depend on it. A simulator must replay
exactly, so while a simulation runs we switch on the deterministic mode Trio keeps
for Hypothesis and pytest-trio (`_ALLOW_DETERMINISTIC_SCHEDULING`: each batch sorted
by task creation order, then shuffled by `_r`) and seed `_r` from the scenario seed.
The previous state is restored afterwards.

Fast-forward. The completion queue may fire its timers without a scheduler pass
per instant while every other task is blocked and no other deadline comes first;
it asks `MockFastForward` whether that is so and moves the mock clock itself.

`tests/test_scheduler.py` checks that these names still exist and still have these
effects; the trio range in pyproject.toml is pinned for the same reason.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sized

import trio.testing
from trio._core import _run


def available() -> bool:
    return hasattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING") and isinstance(getattr(_run, "_r", None), random.Random)


@contextlib.contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    if not available():
        raise RuntimeError(
            "this trio version no longer offers seeded scheduling "
            "(trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING / _r); install a trio version in the pinned range"
        )
    previous_flag = _run._ALLOW_DETERMINISTIC_SCHEDULING
    previous_state = _run._r.getstate()
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _run._r.seed(f"meshsim-scheduler/{seed}")
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = previous_flag  # type: ignore[misc]
        _run._r.setstate(previous_state)


class MockFastForward:
    """Lets the timer queue advance a MockClock while nothing else in the run could notice."""

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self._clock = clock

    def horizon(self) -> float:
        """The earliest deadline any task is waiting for (inf when none)."""
        return _run.GLOBAL_RUN_CONTEXT.runner.deadlines.next_deadline()

    def others_runnable(self) -> bool:
        return bool(_run.GLOBAL_RUN_CONTEXT.runner.runq)

    def run_queue(self) -> Sized:
        return _run.GLOBAL_RUN_CONTEXT.runner.runq

    def jump_to(self, when: float) -> None:
        """Move virtual time forward to `when` (never back)."""
        clock = self._clock
        # With rate 0 the mock clock reads exactly its virtual base; jump() adds to it, and this is
        # jump() without its frame (once a timer fired): the same addition, so the same floats.
        now = clock._virtual_base
        if when > now:
            clock._virtual_base = now + (when - now)
