"""The command line: exit codes, reports, reproduction hints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.core.errors import ConfigError
from tests.conftest import MINIMAL, ROOT

FAILOVER = str(ROOT / "scenarios/failover.toml")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_passes_and_prints_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = invoke("run", FAILOVER)
    assert code == 0
    for part in ("Latency", "Over time", "Replicas", "Faults", "Health timeline", "Assertions", "PASSED failover"):
        assert part in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out  # wrapped where it must be, never cut


def test_run_writes_the_json_report(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    code, _, _ = invoke("run", FAILOVER, "--quiet", "--json", str(target))
    assert code == 0
    report = json.loads(target.read_text())
    assert report["schema"] == "meshsim/report/v1"
    assert report["scenario"] == "failover"
    assert report["seed"] == 42
    assert report["duration_s"] == 40.0
    assert set(report["totals"]) >= {"requests", "ok", "failed", "by_status"}
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "p999", "mean", "max"}
    assert [e["name"] for e in report["endpoints"]] == ["api/0", "api/1", "api/2"]
    assert set(report["endpoints"][0]) >= {"name", "requests", "by_status", "latency_ms", "health_transitions"}
    assert report["faults"][0]["action"] == "kill"
    assert all(set(a) >= {"name", "passed", "observed", "expected"} for a in report["assertions"])
    assert report["timeline"]["buckets"]
    assert report["totals"]["requests"] == sum(b["requests"] for b in report["timeline"]["buckets"])


def test_seed_option_overrides_the_scenario_seed() -> None:
    code, out, _ = invoke("run", FAILOVER, "--quiet", "--seed", "5", "--json", "-")
    assert code == 0
    assert json.loads(out)["seed"] == 5


def test_failing_assertion_exits_1_with_the_reproducing_command(
    write_scenario: Callable[[str], Path],
) -> None:
    path = write_scenario(
        MINIMAL
        + """
[[assert]]
name = "impossible"
metric = "requests"
op = ">"
value = 1000000
"""
    )
    code, out, _ = invoke("run", str(path), "--seed", "3")
    assert code == 1
    assert "FAILED impossible" in out
    assert f"reproduce with: meshsim run {path} --seed 3" in out


def test_invalid_scenario_exits_2_with_one_line(write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(MINIMAL + '\n[[fault]]\nat = "ten"\naction = "kill"\ntarget = "api/0"\n')
    code, out, err = invoke("run", str(path))
    assert code == 2
    assert out == ""
    assert err.strip() == f"error: {path}: fault[0].at: expected a duration like \"10s\", got 'ten'"


def test_missing_file_and_usage_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("run", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "no such file" in err
    code, _, _ = invoke("run")
    assert code == 2
    code, _, _ = invoke("run", FAILOVER, "--seed", "-1")
    assert code == 2


def test_unwritable_json_path_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("run", FAILOVER, "--quiet", "--json", str(tmp_path / "missing-dir" / "r.json"))
    assert code == 2
    assert "cannot write the JSON report" in err


def test_a_scenario_too_busy_to_play_live_is_refused_before_it_starts() -> None:
    code, _, err = invoke("run", str(ROOT / "scenarios" / "p2c.toml"), "--live")
    assert code == 2
    assert err.strip().endswith(
        "asks for about 1,000 calls a second; this machine carries about 400 live (--force to try anyway)"
    )


def test_clients_one_after_another_do_not_add_up_against_the_live_limit(
    write_scenario: Callable[[str], Path],
) -> None:
    from meshsim.core.scenario_loader import load_scenario
    from meshsim.stage.runner import check_load

    clients = "".join(
        f'\n[[client]]\nname = "c{n}"\nrate = 300\nstart = "{n * 5}s"\nstop = "{n * 5 + 5}s"\n' for n in range(2)
    )
    head = 'schema = "meshsim/v1"\nduration = "10s"\n\n[[service]]\nname = "api"\nreplicas = 2\n'
    assert check_load(load_scenario(write_scenario(head + clients))) == pytest.approx(300, rel=0.05)
    overlapping = clients.replace('start = "5s"', 'start = "4s"')
    with pytest.raises(ConfigError, match="about 600 calls a second"):
        check_load(load_scenario(write_scenario(head + overlapping)))
