"""`meshsim sweep`: seeds and --set values expanded into runs, the runs gathered back in (combination,
seed) order whatever order they finish in, and the summary, JSON and exit codes of the command."""

from __future__ import annotations

import gc
import itertools
import json
import random
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.core.overrides import Assignment, parse_set
from meshsim.core.sweep import Collector, Combination, RunFigures, Spread, combinations, parse_seeds, reproduce
from meshsim.sweep import driver
from meshsim.sweep import job as job_module
from meshsim.sweep.driver import SweepCrashed, run_sweep
from meshsim.sweep.engines import LocalPool, Runs, Wanted
from meshsim.sweep.job import Job, ScenarioSource, run_job

# Exponential latency with a mean of 10 ms has a median of 6.9 ms: with 40 calls a run, about half
# the seeds see a p50 under 7 ms and pass. Each run takes a few milliseconds.
COIN = """\
schema = "meshsim/v1"
name = "coin"
seed = 1
duration = "2s"

[[service]]
name = "api"
replicas = 2
latency = { dist = "exponential", mean = "10ms" }

[[client]]
name = "c"
rate = 20

[[assert]]
name = "half the calls within 7ms"
metric = "latency.p50"
op = "<"
value = 7
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def coin(write_scenario: Callable[[str], Path]) -> Path:
    return write_scenario(COIN)


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("7", (7,)),
        ("1-5", (1, 2, 3, 4, 5)),
        ("10-12,1,3-4", (1, 3, 4, 10, 11, 12)),
        ("0", (0,)),
    ],
)
def test_seeds_are_ranges_and_lists(text: str, seeds: tuple[int, ...]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("one", "expected seeds like 1-1000"),
        ("5-1", "empty range"),
        ("1-3,2", "seed 2 is given twice"),
        ("1-2000000", "at most 1,000,000 seeds"),
        ("", "expected seeds like"),
    ],
)
def test_bad_seeds_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)


def test_every_combination_of_the_set_values_the_first_key_slowest() -> None:
    expanded = combinations([parse_set("balancer.policy=round_robin,p2c"), parse_set("retry.max_attempts=2,3,4")])
    assert [c.label for c in expanded] == [
        "balancer.policy=round_robin retry.max_attempts=2",
        "balancer.policy=round_robin retry.max_attempts=3",
        "balancer.policy=round_robin retry.max_attempts=4",
        "balancer.policy=p2c retry.max_attempts=2",
        "balancer.policy=p2c retry.max_attempts=3",
        "balancer.policy=p2c retry.max_attempts=4",
    ]
    assert combinations([]) == (Combination(),)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["balancer.policy=p2c", "balancer.policy=random"], "balancer.policy is set twice"),
        (["seed=1,2"], "seed is what --seeds sweeps"),
    ],
)
def test_bad_combinations_say_why(sets: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        combinations([parse_set(s) for s in sets])


def test_the_reproducing_command_quotes_for_a_shell() -> None:
    combination = Combination((Assignment("balancer.policy", "p2c"), Assignment("name", '"two words"')))
    command = reproduce("my scenarios/a.toml", 17, combination)
    assert command == "meshsim run 'my scenarios/a.toml' --seed 17 --set balancer.policy=p2c --set 'name=\"two words\"'"


def test_spread_uses_observed_values_and_skips_runs_without_calls() -> None:
    spread = Spread.of([float(v) for v in range(1, 101)] + [float("nan")])
    assert spread.values() == (1.0, 5.0, 50.0, 95.0, 100.0)


def figures(index: int, passed: bool = True) -> RunFigures:
    return RunFigures(index, index, () if passed else ("x",), 1, 1.0, 1.0, 1.0, 1.0)


def test_the_collector_orders_runs_and_stops_at_the_first_failure_in_order() -> None:
    seeds, expanded = (1, 2, 3), (Combination(), Combination((Assignment("balancer.policy", "p2c"),)))
    collector = Collector(seeds, expanded, until_fail=True)
    for index in (5, 4, 0):
        collector.add(figures(index, passed=index != 4))
    assert not collector.done and collector.needed == 5
    collector.add(figures(2, passed=False))  # an earlier failure than the first seen
    assert collector.needed == 3 and not collector.wanted(3)
    collector.add(figures(1))
    assert collector.done
    result = collector.result("a.toml", "a")
    assert [len(c.runs) for c in result.combinations] == [3, 0]
    assert result.stopped_early and result.failed == 1


class Shuffled:
    """An engine that runs in this process but hands runs back in a shuffled order, as a pool of
    many workers may: the result must not notice."""

    description = "shuffled"

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def outcomes(self, source: ScenarioSource, jobs: Sequence[Job], wanted: Wanted) -> Runs:
        runs = [run_job(source, job) for job in jobs]
        self._random.shuffle(runs)
        yield from (run for run in runs if wanted(run.index))


@pytest.mark.parametrize("until_fail", [False, True])
def test_the_result_does_not_depend_on_the_order_runs_finish_in(coin: Path, until_fail: bool) -> None:
    source = ScenarioSource(str(coin), coin.read_text())
    seeds = parse_seeds("1-8")
    expanded = combinations([parse_set("balancer.policy=round_robin,p2c")])
    results = [
        run_sweep(source, "coin", seeds, expanded, engine, until_fail).to_json()
        for engine in (LocalPool(1), Shuffled(1), Shuffled(2), Shuffled(3))
    ]
    assert len(set(results)) == 1
    document = json.loads(results[0])
    assert document["stopped_early"] == until_fail


class Delivered:
    """An engine that hands back the runs given, in the order given, as workers finishing in that order would."""

    description = "delivered"

    def __init__(self, runs: Sequence[RunFigures]) -> None:
        self._runs = runs
        self.handed = 0

    def outcomes(self, source: ScenarioSource, jobs: Sequence[Job], wanted: Wanted) -> Runs:
        for run in self._runs:
            self.handed += 1
            yield run


def crashed(index: int) -> RunFigures:
    return attrs.evolve(figures(index), error="ZeroDivisionError: boom")


def outcome(runs: Sequence[RunFigures], until_fail: bool) -> str:
    """What the sweep of seeds 0-3 ends with: the crash it reports, or the seeds that failed."""
    try:
        result = run_sweep(
            ScenarioSource("a.toml", ""), "a", (0, 1, 2, 3), (Combination(),), Delivered(runs), until_fail
        )
    except SweepCrashed as crash:
        return f"crash {crash.run.seed}"
    return f"failed {[run.seed for c in result.combinations for run in c.failures]}"


@pytest.mark.parametrize("until_fail", [False, True])
def test_a_crash_is_reported_in_order_whatever_order_the_runs_finish_in(until_fail: bool) -> None:
    runs = [figures(0), crashed(1), figures(2), crashed(3)]
    outcomes = {outcome([runs[i] for i in order], until_fail) for order in itertools.permutations(range(4))}
    assert outcomes == {"crash 1"}


def test_with_until_fail_an_earlier_failure_wins_over_a_later_crash() -> None:
    runs = [figures(0), figures(1, passed=False), figures(2), crashed(3)]
    outcomes = {outcome([runs[i] for i in order], True) for order in itertools.permutations(range(4))}
    assert outcomes == {"failed [1]"}
    # Without --until-fail the sweep runs on past the failure, and the crash is still a crash.
    assert {outcome([runs[i] for i in order], False) for order in itertools.permutations(range(4))} == {"crash 3"}


def test_a_crash_waits_for_the_runs_before_it() -> None:
    engine = Delivered([crashed(2), figures(3), figures(0), figures(1)])
    with pytest.raises(SweepCrashed):
        run_sweep(ScenarioSource("a.toml", ""), "a", (0, 1, 2, 3), (Combination(),), engine)
    assert engine.handed == 4  # run 3 is dropped, but 0 and 1 (after it) were waited for


def test_checking_keeps_only_the_first_combinations_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    class Parsed:
        pass

    alive: list[weakref.ref[Parsed]] = []

    def parse(text: str, path: Path, assignments: tuple[Assignment, ...]) -> Parsed:
        gc.collect()
        assert sum(ref() is not None for ref in alive) <= 1  # the first, not every one so far
        parsed = Parsed()
        alive.append(weakref.ref(parsed))
        return parsed

    monkeypatch.setattr(driver, "parse_scenario", parse)
    expanded = combinations([parse_set(f"retry.max_attempts={','.join(map(str, range(1, 21)))}")])
    first = driver.check(ScenarioSource("a.toml", ""), expanded, (1,))
    assert first is alive[0]() and len(alive) == 20


def test_sweep_prints_the_failing_seeds_their_commands_and_the_spread(
    coin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    target = tmp_path / "sweep.json"
    code, out, _ = invoke(
        "sweep", str(coin), "--seeds", "1-12", "--set", "balancer.policy=round_robin,p2c", "--workers", "1",
        "--json", str(target),
    )  # fmt: skip
    assert code == 1
    document = json.loads(target.read_text())
    assert document["schema"] == "meshsim/sweep/v1"
    assert document["seeds"] == "1-12"
    assert [c["set"] for c in document["combinations"]] == [
        {"balancer.policy": "round_robin"},
        {"balancer.policy": "p2c"},
    ]
    first = document["combinations"][0]
    assert first["runs"] == 12
    assert 0 < len(first["failed"]) < 12
    assert first["passed"] + len(first["failed"]) == 12
    assert [run["seed"] for run in first["by_seed"]] == list(range(1, 13))
    assert set(first["figures"]) == {"success_rate", "p50", "p99", "p999"}
    assert set(first["figures"]["p99"]) == {"min", "p5", "median", "p95", "max"}
    failing = first["failed"][0]
    assert failing["assertions"] == ["half the calls within 7ms"]
    assert failing["command"] == f"meshsim run {coin} --seed {failing['seed']} --set balancer.policy=round_robin"
    assert failing["command"] in out
    assert f"balancer.policy=round_robin: {first['passed']} passed, {len(first['failed'])} failed" in out
    assert "coin: 12 seeds x 2 combinations, 24 runs\n" in out
    assert " s on 1 local worker\n" in out
    assert f"FAILED: {document['failed']} of 24 runs failed" in out
    # The commands are never cut or wrapped (people copy them); every other line fits 80 columns.
    lines = [line for line in out.splitlines() if "meshsim run" not in line]
    assert max(len(line) for line in lines) <= 80
    assert any(line.split()[:2] == ["p99.9", "ms"] for line in lines)


def test_the_command_reproduces_the_failing_run(coin: Path, tmp_path: Path) -> None:
    target = tmp_path / "sweep.json"
    invoke(
        "sweep", str(coin), "--seeds", "1-6", "--set", "balancer.policy=p2c", "--workers", "1", "--json", str(target)
    )
    failing = json.loads(target.read_text())["combinations"][0]["failed"][0]
    arguments = failing["command"].split()[1:]
    code, out, _ = invoke(*arguments, "--quiet")
    assert code == 1
    assert failing["command"] in out


def test_a_passing_sweep_exits_0_and_json_can_go_to_stdout(coin: Path) -> None:
    code, out, err = invoke("sweep", str(coin), "--seeds", "2,6", "--workers", "1", "--json", "-")
    assert code == 0, err
    document = json.loads(out)
    assert document["failed"] == 0 and document["runs"] == 2
    assert document["combinations"][0]["set"] == {}
    assert "PASSED: all 2 runs" in err


def test_until_fail_stops_at_the_first_failing_run(coin: Path) -> None:
    code, out, err = invoke("sweep", str(coin), "--seeds", "1-40", "--workers", "1", "--until-fail", "--json", "-")
    assert code == 1
    document = json.loads(out)
    (combination,) = document["combinations"]
    assert document["stopped_early"]
    assert [failed["seed"] for failed in combination["failed"]] == [combination["by_seed"][-1]["seed"]]
    assert all(run["passed"] for run in combination["by_seed"][:-1])
    assert "stopped at the first failing run" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--seeds", "ten"], "--seeds: expected seeds like 1-1000 or 1,5,9, got 'ten'"),
        (["--set", "balancer.policy"], "--set: expected KEY=VALUE"),
        (["--set", "balancer.policy=p2c,nope"], "balancer.policy: expected one of"),
        (["--set", "balancer.polcy=p2c"], "balancer.polcy: unknown key (did you mean 'policy'?)"),
        (["--set", "seed=1,2"], "--set: seed is what --seeds sweeps"),
        (["--workers", "0"], "'--workers': 0 is not in the range"),
        (["--workers", "two"], "'--workers': 'two' is not a valid integer"),
        (["--workers", "2", "--cluster", "tcp://127.0.0.1:8786"], "--workers: a cluster's workers are its own"),
        (["--cluster", "localhost"], "--cluster: expected a scheduler address like tcp://HOST:8786"),
        (["--seeds", "1-1000000", "--set", "balancer.policy=p2c,random"], "--seeds: 2 combinations of 1,000,000"),
        (["--frobnicate"], "No such option '--frobnicate'"),
        (["--json", "/nonexistent/dir/sweep.json"], "--json /nonexistent/dir/sweep.json: there is no directory"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(coin: Path, arguments: list[str], message: str) -> None:
    code, _, err = invoke("sweep", str(coin), *arguments)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke("sweep", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "nope.toml: no such file" in err


def test_a_simulator_failure_exits_3_naming_the_seed(coin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(scenario: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(job_module, "run_scenario", broken)
    code, _, err = invoke("sweep", str(coin), "--seeds", "4-5", "--workers", "1", "--set", "balancer.policy=p2c")
    assert code == 3
    assert "the simulator failed (seed 4): RuntimeError: boom" in err
    assert f"meshsim run {coin} --seed 4 --set balancer.policy=p2c" in err


class FakeClient:
    """What `_check_versions` asks of a Dask client: each worker's answer to a function."""

    def __init__(self, answers: dict[str, str] | Exception) -> None:
        self._answers = answers

    def run(self, function: Callable[[], str]) -> dict[str, str]:
        if isinstance(self._answers, Exception):
            raise self._answers
        return self._answers


def test_a_cluster_must_run_the_same_meshsim() -> None:
    from meshsim import __version__
    from meshsim.core.errors import StartupError
    from meshsim.sweep.engines import _check_versions

    _check_versions(FakeClient({"tcp://10.0.0.1:1": __version__}))  # type: ignore[arg-type]
    with pytest.raises(StartupError, match=r"Dask worker tcp://10\.0\.0\.2:1 runs meshsim 0\.0\.1, this is "):
        _check_versions(FakeClient({"tcp://10.0.0.1:1": __version__, "tcp://10.0.0.2:1": "0.0.1"}))  # type: ignore[arg-type]
    with pytest.raises(StartupError, match="the Dask workers cannot run meshsim"):
        _check_versions(FakeClient(ModuleNotFoundError("No module named 'meshsim'")))  # type: ignore[arg-type]
