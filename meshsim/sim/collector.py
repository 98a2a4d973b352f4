"""The cyclic garbage collector during a simulation: told what is there to stay.

A simulated mesh builds its replicas, endpoints, checkers and random streams once and
keeps them for the whole run; the calls that come and go are freed by reference
counting (they make no cycles). Left as it is, the collector still walks every
long-lived object at each full collection, and at 10,000 replicas that was half the
run's time. So once the mesh is built, what exists is frozen (`gc.freeze()`: kept out
of every collection), and the young generation is collected less often, since it holds
little garbage. Both are undone when the run ends. Collection never changes what a
run computes, only when memory is returned, so reports are unaffected.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Allocations between young collections while a simulation runs (CPython's default: 700).
YOUNG_THRESHOLD = 20_000


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """For the length of a run: a rarer young collection; `settled()` freezes what exists."""
    previous = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    gc.set_threshold(YOUNG_THRESHOLD, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        if not frozen_before:  # a process that froze its own objects keeps them (and ours) frozen
            gc.unfreeze()


def settled() -> None:
    """The mesh is built: keep every object that exists now out of the collections to come."""
    gc.freeze()
