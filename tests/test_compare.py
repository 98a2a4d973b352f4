"""`meshsim compare`: two reports of one scenario side by side, exit 1 when they disagree."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from meshsim.cli import main
from tests.conftest import ROOT


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def report(tmp_path: Path, name: str, scenario: str, *options: str) -> Path:
    path = tmp_path / f"{name}.json"
    code, _, _ = invoke("run", str(ROOT / "scenarios" / scenario), "--quiet", "--json", str(path), *options)
    assert code in (0, 1)
    return path


def test_two_seeds_of_one_scenario_are_the_same(tmp_path: Path) -> None:
    a = report(tmp_path, "a", "failover.toml")
    b = report(tmp_path, "b", "failover.toml", "--seed", "5")
    code, out, _ = invoke("compare", str(a), str(b))
    assert code == 0, out
    assert "compare failover  A sim seed 42  vs  B sim seed 5" in out
    assert "api/1" in out and "out 10." in out  # when the killed replica left rotation
    assert out.rstrip().endswith("the same")
    assert max(len(line) for line in out.splitlines()) <= 80


def test_a_verdict_that_differs_exits_1_naming_it(tmp_path: Path) -> None:
    a = report(tmp_path, "a", "least_connections.toml")
    changed = json.loads(a.read_text())
    changed["assertions"][0]["passed"] = False  # as a run under another policy would
    b = tmp_path / "b.json"
    b.write_text(json.dumps(changed))
    code, out, _ = invoke("compare", str(a), str(b))
    assert code == 1
    assert f"differ: verdict of {changed['assertions'][0]['name']!r}" in out


def test_a_figure_outside_its_tolerance_exits_1(tmp_path: Path) -> None:
    a = report(tmp_path, "a", "failover.toml")
    slower = json.loads(a.read_text())
    slower["latency_ms"]["p50"] *= 1.3
    slower["latency_ms"]["p99"] *= 1.4
    b = tmp_path / "b.json"
    b.write_text(json.dumps(slower))
    code, out, _ = invoke("compare", str(a), str(b))
    assert code == 1 and "p50 ms (off by more than 20% and 5 ms)" in out
    code, out, _ = invoke("compare", str(a), str(b), "--tolerance", "p50=35%", "--tolerance", "p99=0.05")
    assert code == 1 and "p99 ms (off by more than 5% and 5 ms)" in out and "p50" not in out.splitlines()[-1]


def test_a_file_that_is_no_report_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    code, _, err = invoke("compare", str(bad), str(bad))
    assert code == 2
    assert err.strip() == f'error: {bad}: not a meshsim report (schema "meshsim/report/v1")'
    code, _, err = invoke("compare", str(tmp_path / "missing.json"), str(bad))
    assert code == 2 and err.strip().endswith("missing.json: no such file")


def test_a_partition_of_one_client_shows_in_the_replica_table(tmp_path: Path) -> None:
    # faults_tour cuts "batch" from api/3 for 20-30 s while "web" keeps it: the table follows
    # the client that saw the change, whichever reported first.
    a = report(tmp_path, "a", "faults_tour.toml")
    code, out, _ = invoke("compare", str(a), str(a))
    assert code == 0
    (row,) = [line for line in out.splitlines() if line.startswith(" api/3")]
    assert "out 20.0 in 30.0" in row


def test_a_replica_in_from_the_start_shows_its_first_change(
    tmp_path: Path, write_scenario: Callable[[str], Path]
) -> None:
    path = write_scenario(
        """
schema = "meshsim/v1"
duration = "6s"

[[service]]
name = "api"
replicas = 2

[health]
initial_state = "healthy"

[[client]]
name = "c"
rate = 20

[[fault]]
at = "2s"
for = "2s"
action = "kill"
target = "api/0"
"""
    )
    a = tmp_path / "a.json"
    code, _, _ = invoke("run", str(path), "--quiet", "--json", str(a))
    assert code == 0
    _, out, _ = invoke("compare", str(a), str(a))
    (row,) = [line for line in out.splitlines() if line.startswith(" api/0")]
    assert "out 2.0 in 4." in row


def test_a_few_milliseconds_apart_is_within_whatever_the_share(tmp_path: Path) -> None:
    # A live call pays gRPC's own few milliseconds: 10 ms simulated against 12.1 ms live
    # is 21 % apart and the same service time.
    a = report(tmp_path, "a", "failover.toml")
    simulated = json.loads(a.read_text())
    simulated["latency_ms"]["p50"] = 10.0
    played = json.loads(a.read_text())
    played["latency_ms"]["p50"] = 12.1
    for name, data in (("sim", simulated), ("live", played)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    sim, live = str(tmp_path / "sim.json"), str(tmp_path / "live.json")
    code, out, _ = invoke("compare", sim, live)
    assert code == 0, out
    assert "±20%/5ms ok" in out
    code, out, _ = invoke("compare", sim, live, "--latency-slack", "0")
    assert code == 1 and "p50 ms (off by more than 20%)" in out
    code, out, _ = invoke("compare", sim, live, "--latency-slack", "1")
    assert code == 1 and "p50 ms (off by more than 20% and 1 ms)" in out
