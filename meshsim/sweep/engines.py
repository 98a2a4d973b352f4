"""Where a sweep's runs happen: a local process pool (the default), or a Dask cluster (`--cluster`).

Both hand back each run's `RunFigures` as it finishes, in any order (the driver puts
them back in order), and both keep only a window of runs in flight rather than all of
them: a million queued runs would cost memory for nothing, and `--until-fail` can then
stop submitting at the first failure instead of cancelling a mountain of work.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from meshsim import __version__
from meshsim.core.errors import StartupError
from meshsim.core.sweep import RunFigures
from meshsim.sweep.job import Job, ScenarioSource, meshsim_version, run_job
from meshsim.sweep.pool import simulation_pool

if TYPE_CHECKING:
    from distributed import Client


class _Future(Protocol):
    """A future of concurrent.futures or of Dask: all the window needs of either."""

    def result(self) -> RunFigures: ...


F = TypeVar("F", bound=_Future)
Runs = Generator[RunFigures, None, None]
Wanted = Callable[[int], bool]
"""Whether the run at an index still counts (with --until-fail, none after a known failure)."""

_WINDOW_PER_WORKER = 4  # runs in flight per worker: enough that none waits for its next run


class EngineFailed(Exception):
    """The engine itself failed, not a run: a worker process died (exit 3, meshsim's own failure) or
    the cluster could no longer be reached (exit 2)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Engine(Protocol):
    @property
    def description(self) -> str:
        """What ran the sweep, for the summary's first line."""
        ...

    def outcomes(self, source: ScenarioSource, jobs: Sequence[Job], wanted: Wanted) -> Runs:
        """Each wanted job's figures as it finishes; closing the iterator cancels the rest."""
        ...


class LocalPool:
    """Worker processes on this machine (one per core by default); one worker runs in this process."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    @property
    def description(self) -> str:
        return f"{self.workers} local worker{'s' if self.workers != 1 else ''}"

    def outcomes(self, source: ScenarioSource, jobs: Sequence[Job], wanted: Wanted) -> Runs:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                if wanted(job.index):
                    yield run_job(source, job)
            return
        try:
            with simulation_pool(min(self.workers, len(jobs))) as pool:
                yield from _windowed(
                    jobs,
                    wanted,
                    self.workers * _WINDOW_PER_WORKER,
                    lambda job: pool.submit(run_job, source, job),
                    lambda running: wait(running, return_when=FIRST_COMPLETED).done,
                )
        except BrokenExecutor as error:
            raise EngineFailed(
                f"a worker process died during the sweep (killed, or out of memory?): {error}", 3
            ) from None


def _windowed(
    jobs: Sequence[Job],
    wanted: Wanted,
    window: int,
    submit: Callable[[Job], F],
    first_done: Callable[[set[F]], Iterable[F]],
    cancel: Callable[[set[F]], object] | None = None,
) -> Runs:
    """Keep `window` runs in flight, handing back each as it finishes (`first_done` waits for at
    least one of the futures, of concurrent.futures or of Dask, which have the same shape)."""
    queue = iter(jobs)
    running: set[F] = set()

    def refill() -> None:
        while len(running) < window:
            job = next((j for j in queue if wanted(j.index)), None)
            if job is None:
                return
            running.add(submit(job))

    try:
        refill()
        while running:
            done = list(first_done(running))
            running.difference_update(done)
            # Several at once (a batch): hand them back in order, which changes nothing but the progress bar.
            yield from sorted((future.result() for future in done), key=lambda run: run.index)
            refill()
    finally:
        # Only the runs in flight are held (a finished run's future is dropped, and with it a
        # cluster's copy of its result): those are what a stop cancels.
        if running and cancel is not None:
            cancel(running)


_ADDRESS = re.compile(r"(tcp|tls)://[^\s/]+:\d{1,5}")


class DaskCluster:
    """A Dask distributed cluster's workers, reached through its scheduler (`tcp://HOST:8786`)."""

    def __init__(self, address: str, connect_timeout: float = 10.0, workers_timeout: float = 30.0) -> None:
        if not _ADDRESS.fullmatch(address):
            raise ValueError(f"expected a scheduler address like tcp://HOST:8786, got {address!r}")
        self.address = address
        self._connect_timeout = connect_timeout
        self._workers_timeout = workers_timeout
        self._threads = 0

    @property
    def description(self) -> str:
        return f"Dask {self.address} ({self._threads} worker thread{'s' if self._threads != 1 else ''})"

    def outcomes(self, source: ScenarioSource, jobs: Sequence[Job], wanted: Wanted) -> Runs:
        # Imported here: Dask takes a second to import, which a local sweep need not pay.
        import distributed  # noqa: PLC0415

        client = self._connect()
        try:
            self._threads = sum(client.nthreads().values())
            # The scenario's text goes to each worker once, not once per run.
            (shipped,) = client.scatter([source], broadcast=True, hash=False)

            def submit(job: Job) -> Any:
                return client.submit(run_job, shipped, job, pure=False)

            def first_done(running: set[Any]) -> set[Any]:
                # distributed.wait asks for the current client; this one is not the process's default.
                with client.as_current():
                    done: set[Any] = distributed.wait(list(running), return_when="FIRST_COMPLETED").done
                return done

            yield from _windowed(
                jobs,
                wanted,
                max(self._threads, 1) * _WINDOW_PER_WORKER,
                submit,
                first_done,
                # Not waited for: cancel only asks the scheduler to drop the runs in flight.
                cancel=lambda running: client.cancel(list(running)),
            )
        except distributed.KilledWorker as error:
            # Dask gives up on a run after its workers died running it a few times: the run kills them.
            raise EngineFailed(f"--cluster {self.address}: a run kept killing the Dask workers: {error}", 3) from None
        except (OSError, TimeoutError) as error:  # CommClosedError is an OSError
            raise EngineFailed(
                f"--cluster {self.address}: lost the Dask scheduler during the sweep: {type(error).__name__}: {error}",
                2,
            ) from None
        finally:
            client.close()

    def _connect(self) -> Client:
        try:
            from distributed import Client  # noqa: PLC0415
        except ImportError:
            raise StartupError("--cluster needs Dask: pip install 'distributed'") from None
        try:
            client = Client(self.address, timeout=self._connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise StartupError(f"--cluster {self.address}: cannot reach the Dask scheduler: {error}") from None
        try:
            client.wait_for_workers(1, timeout=self._workers_timeout)
            _check_versions(client)
        except TimeoutError:
            client.close()
            raise StartupError(
                f"--cluster {self.address}: no worker joined in {self._workers_timeout:g} s "
                "(start some with: dask worker tcp://HOST:8786 --nthreads 1)"
            ) from None
        except BaseException:
            client.close()
            raise
        return client


def _check_versions(client: Client) -> None:
    """Every worker must run this meshsim: another version could simulate differently."""
    try:
        versions: dict[str, str] = client.run(meshsim_version)
    except Exception as error:
        raise StartupError(
            f"the Dask workers cannot run meshsim ({type(error).__name__}: {error}): install meshsim {__version__} "
            "where they run"
        ) from None
    for worker, version in sorted(versions.items()):
        if version != __version__:
            raise StartupError(f"Dask worker {worker} runs meshsim {version}, this is {__version__}: install the same")
