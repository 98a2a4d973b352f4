"""Worker processes for simulations: spawned, deaf to Ctrl-C, and stopped at once when not finishing.

A simulation is pure computation, so a pool that will not be waited for (an early stop, Ctrl-C, a
dead worker) terminates its workers rather than letting them finish runs nobody wants. Sweeps and
replays both run their simulations here.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor


@contextlib.contextmanager
def simulation_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """`workers` processes; waited for if the block ends normally, terminated if it raises.

    Spawned, not forked: a progress bar's or spinner's thread must not be copied mid-write."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts)
    finished = False
    try:
        yield pool
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop_now(pool)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Drop the runs queued and running. The executor has no public way to terminate its processes
    (shutdown(cancel_futures=True) still waits for the running runs and for those already handed to
    a worker), hence its private `_processes`."""
    processes = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)


def _ignore_interrupts() -> None:
    # Ctrl-C is the parent's to handle (it stops the pool); without this every worker prints a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
