"""`meshsim sweep` on real worker processes: a local pool of two, and a Dask scheduler with two
workers on loopback, each giving the same bytes of JSON as one worker in this process."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from distributed import KilledWorker
from distributed.comm.core import CommClosedError

from meshsim.core.errors import StartupError
from meshsim.sweep import engines
from meshsim.sweep.engines import DaskCluster, EngineFailed
from meshsim.sweep.job import ScenarioSource
from tests.test_sweep import COIN, invoke

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))
SWEEP = ["--seeds", "1-8", "--set", "balancer.policy=round_robin,p2c"]


@pytest.fixture
def coin(tmp_path: Path) -> Path:
    path = tmp_path / "coin.toml"
    path.write_text(COIN, encoding="utf-8")
    return path


def started(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    # Dask's statistical profiler samples the running thread every 10 ms, which slows a simulation
    # by half: docs/sweeps.md says to switch it off on workers, as here.
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    with log.open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def address_from(scheduler_file: Path, scheduler: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            pytest.fail(f"the Dask scheduler exited: {log.read_text()}")
        try:
            return str(json.loads(scheduler_file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    pytest.fail(f"the Dask scheduler wrote no address in 30 s: {log.read_text()}")


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler on an OS-chosen loopback port and two single-threaded worker processes."""
    scheduler_file = tmp_path / "scheduler.json"
    processes = [
        started(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(scheduler_file)],
            tmp_path / "scheduler.log",
        )
    ]  # fmt: skip
    try:
        address = address_from(scheduler_file, processes[0], tmp_path / "scheduler.log")
        for n in (1, 2):
            processes.append(
                started(
                    [DASK, "worker", address, "--name", f"w{n}", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                     "--host", "127.0.0.1", "--local-directory", str(tmp_path / f"w{n}")],
                    tmp_path / f"w{n}.log",
                )
            )  # fmt: skip
        # Both workers in before the sweep starts, so that its runs are shared between two processes.
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=30)
        yield address
    finally:
        # Killed, not asked to stop: a Dask worker's graceful close can take seconds, and nothing
        # of theirs outlives the test.
        for process in reversed(processes):
            process.kill()
        for process in processes:
            process.wait(timeout=10)


def sweep_json(coin: Path, tmp_path: Path, name: str, *engine: str) -> tuple[str, list[str]]:
    target = tmp_path / f"{name}.json"
    code, out, err = invoke("sweep", str(coin), *SWEEP, *engine, "--json", str(target))
    assert code == 1, err  # some seeds fail COIN's assertion, by design
    lines = out.splitlines()
    return target.read_text(), [lines[0], *lines[2:]]  # the second line says what ran it, and how fast


def test_a_dask_cluster_gives_the_same_sweep_as_the_local_pool(coin: Path, tmp_path: Path, dask_cluster: str) -> None:
    local, local_summary = sweep_json(coin, tmp_path, "local", "--workers", "1")
    cluster, cluster_summary = sweep_json(coin, tmp_path, "cluster", "--cluster", dask_cluster)
    assert cluster == local
    assert cluster_summary == local_summary
    document = json.loads(cluster)
    assert document["runs"] == 16 and 0 < document["failed"] < 16


def test_one_local_worker_or_two_give_the_same_sweep(coin: Path, tmp_path: Path) -> None:
    one, one_summary = sweep_json(coin, tmp_path, "one", "--workers", "1")
    two, two_summary = sweep_json(coin, tmp_path, "two", "--workers", "2")
    assert two == one
    assert two_summary == one_summary
    first = invoke("sweep", str(coin), *SWEEP, "--workers", "1", "--until-fail", "--json", "-")
    second = invoke("sweep", str(coin), *SWEEP, "--workers", "2", "--until-fail", "--json", "-")
    assert first[0] == second[0] == 1
    assert first[1] == second[1]
    assert json.loads(first[1])["stopped_early"]


def test_an_unreachable_scheduler_is_a_startup_error(coin: Path) -> None:
    # Port 1 on loopback: nothing listens there.
    engine = DaskCluster("tcp://127.0.0.1:1", connect_timeout=1.0)
    with pytest.raises(StartupError, match=r"--cluster tcp://127\.0\.0\.1:1: cannot reach the Dask scheduler"):
        next(engine.outcomes(ScenarioSource(str(coin), COIN), [], lambda index: True))


# Long enough that no run finishes while a test looks at its workers (it stops them first).
ENDLESS = COIN.replace('duration = "2s"', 'duration = "100000s"')


def kill_a_worker_when_they_run(how: Callable[[list[multiprocessing.process.BaseProcess]], None]) -> threading.Thread:
    """A thread that waits for the pool's worker processes to start their runs, then does `how`."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(multiprocessing.active_children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # past the spawned interpreters' start-up, into the runs
        how(multiprocessing.active_children())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_killed_worker_is_one_line_and_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "endless.toml"
    path.write_text(ENDLESS, encoding="utf-8")
    watcher = kill_a_worker_when_they_run(lambda children: os.kill(children[0].pid or 0, signal.SIGKILL))
    started_at = time.monotonic()
    code, _, err = invoke("sweep", str(path), "--seeds", "1-4", "--workers", "2")
    watcher.join()
    assert code == 3
    assert err.startswith("error: a worker process died during the sweep")
    assert len(err.strip().splitlines()) == 1
    assert time.monotonic() - started_at < 30
    assert no_children_within(5.0)


def test_ctrl_c_stops_the_running_runs_at_once(tmp_path: Path) -> None:
    path = tmp_path / "endless.toml"
    path.write_text(ENDLESS, encoding="utf-8")
    main_thread = threading.main_thread().ident or 0
    interrupted_at: list[float] = []

    def interrupt(children: object) -> None:
        interrupted_at.append(time.monotonic())
        signal.pthread_kill(main_thread, signal.SIGINT)

    watcher = kill_a_worker_when_they_run(interrupt)
    code, _, err = invoke("sweep", str(path), "--seeds", "1-8", "--workers", "2")
    watcher.join()
    assert (code, err.strip()) == (130, "error: interrupted")
    assert time.monotonic() - interrupted_at[0] < 5  # not the runs' hours
    assert no_children_within(5.0)


class LostClient:
    """What DaskCluster.outcomes asks of a client before its runs go wrong."""

    def nthreads(self) -> dict[str, int]:
        return {"tcp://10.0.0.1:1": 1}

    def scatter(self, data: list[object], broadcast: bool, hash: bool) -> list[object]:
        return data

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (KilledWorker("run", SimpleNamespace(address="tcp://10.0.0.1:1"), 3), 3, "a run kept killing the Dask workers"),  # type: ignore[arg-type]
        (CommClosedError("in <TCP (closed)>: Stream is closed"), 2, "lost the Dask scheduler during the sweep"),
        (TimeoutError("timed out"), 2, "lost the Dask scheduler during the sweep: TimeoutError"),
    ],
)
def test_a_cluster_failing_mid_sweep_is_one_line_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, error: Exception, code: int, message: str
) -> None:
    def failing(*arguments: object, **options: object) -> Iterator[object]:
        raise error
        yield  # a generator, as _windowed is

    monkeypatch.setattr(engines, "_windowed", failing)
    cluster = DaskCluster("tcp://127.0.0.1:8786")
    monkeypatch.setattr(cluster, "_connect", LostClient)
    with pytest.raises(EngineFailed) as failed:
        list(cluster.outcomes(ScenarioSource("a.toml", ""), [], lambda index: True))
    assert failed.value.code == code
    assert str(failed.value).startswith(f"--cluster tcp://127.0.0.1:8786: {message}")


def no_children_within(seconds: float) -> bool:
    """Whether every child process is gone within `seconds` (a terminated worker takes a moment to be
    reaped; one left running for good is the failure)."""
    deadline = time.monotonic() + seconds
    while multiprocessing.active_children():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
