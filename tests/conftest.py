from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.scenario_files import Files

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))

MINIMAL = """\
schema = "meshsim/v1"
seed = 1
duration = "5s"

[[service]]
name = "api"
replicas = 3

[[client]]
name = "c"
rate = 100
"""


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[[str], Path]:
    """Write scenario text (dedented) to a file and return its path."""
    counter = iter(range(1000))

    def write(text: str) -> Path:
        path = tmp_path / f"scenario{next(counter)}.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """Writes scenario files under tmp_path and loads them (tests/scenario_files.py)."""
    return Files(tmp_path)


@pytest.fixture
def bad(files: Files) -> Callable[..., str]:
    """bad(**parts): the error message (without the file prefix) of scenario_text(**parts)."""
    return files.error


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`meshsim ARGS` in a subprocess (with `env` added to this one's), its output unbuffered so that
    tests can read its first lines."""
    return subprocess.Popen(
        [sys.executable, "-m", "meshsim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def meshsim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`meshsim ARGS` run to its end, with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "meshsim", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def start_proxy(config: Path) -> tuple[subprocess.Popen[str], str]:
    """`meshsim live CONFIG` in a subprocess: the process, and the address it listens on once it says."""
    live = start("live", str(config))
    assert live.stdout is not None
    return live, live.stdout.readline().split(" on ")[1].split(" to ")[0]


def serve_replicas(count: int, *options: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`meshsim serve` with `count` replicas on ports the OS picks: the process and their addresses."""
    serve = start("serve", "--port", "0", "--replicas", str(count), "--grace", "0s", *options)
    assert serve.stdout is not None
    return serve, [serve.stdout.readline().split(" on ")[1].split(" ")[0].strip() for _ in range(count)]


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then wait (reading and closing its pipes); kill if it will not stop."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`meshsim live` in front of two `meshsim serve` replicas, all real processes; yields its address."""
    serve, replicas = serve_replicas(2)
    live = None
    try:
        config = tmp_path_factory.mktemp("live") / "mesh.toml"
        endpoints = ", ".join(f'"{r}"' for r in replicas)
        config.write_text(f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = [{endpoints}]\n', encoding="utf-8")
        live, address = start_proxy(config)
        yield address
    finally:
        for process in (live, serve):
            if process is not None:
                stop(process)
