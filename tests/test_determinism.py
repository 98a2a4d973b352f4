"""Same scenario and seed: byte-identical JSON report, in any process, with any PYTHONHASHSEED."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meshsim.core.scenario_loader import load_scenario
from meshsim.sim.runner import run_scenario
from tests.conftest import ROOT


def report_from_subprocess(scenario: str, hash_seed: str, *extra: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, "-m", "meshsim", "run", scenario, "--quiet", "--json", "-", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["scenarios/failover.toml", "scenarios/faults_tour.toml"])
def test_json_report_is_byte_identical_across_processes(scenario: str) -> None:
    first = report_from_subprocess(scenario, "1")
    second = report_from_subprocess(scenario, "4242")
    assert first == second
    assert b'"schema": "meshsim/report/v1"' in first


DIGESTS = """
import hashlib, pathlib
from meshsim.core.scenario_loader import load_scenario
from meshsim.sim.runner import run_scenario
for path in sorted(pathlib.Path("scenarios").glob("*.toml")):
    print(path.name, hashlib.sha256(run_scenario(load_scenario(path)).to_json().encode()).hexdigest())
"""


@pytest.mark.slow
def test_every_shipped_scenario_replays_byte_for_byte_across_processes() -> None:
    outputs = []
    for hash_seed in ("0", "987"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", DIGESTS], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300
        )
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == len(list((ROOT / "scenarios").glob("*.toml")))


def test_same_seed_same_report_in_process() -> None:
    scenario = load_scenario(ROOT / "scenarios/faults_tour.toml")
    assert run_scenario(scenario).to_json() == run_scenario(scenario).to_json()


def test_another_seed_gives_another_run() -> None:
    scenario = load_scenario(ROOT / "scenarios/failover.toml")
    assert run_scenario(scenario).to_json() != run_scenario(scenario.with_seed(scenario.seed + 1)).to_json()


def test_progress_reporting_does_not_change_the_run() -> None:
    scenario = load_scenario(ROOT / "scenarios/failover.toml")
    seen: list[float] = []
    watched = run_scenario(scenario, progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] >= scenario.duration
    assert watched.to_json() == run_scenario(scenario).to_json()
