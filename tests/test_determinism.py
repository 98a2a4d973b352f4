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
