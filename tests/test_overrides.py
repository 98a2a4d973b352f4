"""`--set KEY=VALUE`: overrides made to the parsed TOML, so that the loader refuses a bad value as
it refuses one written in the file, naming the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.core.overrides import Assignment, parse_set, parse_value
from meshsim.core.scenario import ScenarioError
from meshsim.core.scenario_loader import load_scenario
from tests.conftest import MINIMAL, ROOT

RETRY_STORM = ROOT / "scenarios/retry_storm.toml"


def overridden(*arguments: str) -> tuple[Assignment, ...]:
    return tuple(assignment for argument in arguments for assignment in parse_set(argument))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ('"p2c"', "p2c"),
        ("p2c", "p2c"),
        ("250ms", "250ms"),
        ('["UNAVAILABLE", "INTERNAL"]', ["UNAVAILABLE", "INTERNAL"]),
        ("{ dist = 'constant', value = '5ms' }", {"dist": "constant", "value": "5ms"}),
    ],
)
def test_a_value_is_toml_when_it_is_toml_and_a_string_otherwise(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_values_split_on_commas_outside_brackets_and_quotes() -> None:
    assert [a.text for a in parse_set('retry.retryable_status_codes=["A","B"],["C"]')] == ['["A","B"]', '["C"]']
    assert [a.text for a in parse_set('name="a,b",c')] == ['"a,b"', "c"]
    assert [a.text for a in parse_set("balancer.policy=round_robin, p2c")] == ["round_robin", "p2c"]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("balancer.policy", "expected KEY=VALUE"),
        ("=p2c", "expected KEY=VALUE"),
        ("balancer..policy=p2c", "expected a dotted key path"),
        ("service[x].replicas=2", "expected a dotted key path"),
        ("balancer.policy=p2c,,random", "a value is empty"),
        ("balancer.policy=p2c,p2c", "given twice"),
    ],
)
def test_bad_set_syntax_says_why(argument: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_set(argument)


def test_overrides_change_the_scenario() -> None:
    scenario = load_scenario(
        RETRY_STORM,
        overridden("balancer.policy=p2c", "retry.max_attempts=2", "service[0].replicas=6", "health.interval=2s"),
    )
    assert scenario.balancer.policy == "p2c"
    assert scenario.policies.retry is not None
    assert scenario.policies.retry.max_attempts == 2
    assert scenario.services[0].replicas == 6
    assert scenario.health.interval == 2.0
    # The file itself is untouched, and loads as written.
    assert load_scenario(RETRY_STORM).balancer.policy == "round_robin"


def test_a_table_the_file_lacks_is_made(write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(MINIMAL)
    scenario = load_scenario(path, overridden("retry.max_attempts=3"))
    assert scenario.policies.retry is not None
    assert scenario.policies.retry.max_attempts == 3


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            "balancer.policy=nope",
            "balancer.policy: expected one of round_robin, random, weighted_round_robin, least_connections, p2c, "
            "consistent_hash, peak_ewma, got 'nope' (--set balancer.policy=nope)",
        ),
        (
            "retry.max_atempts=3",
            "retry.max_atempts: unknown key (did you mean 'max_attempts'?) (--set retry.max_atempts=3)",
        ),
        (
            "retry.max_attempts=many",
            "retry.max_attempts: expected an integer, got a string 'many' (--set retry.max_attempts=many)",
        ),
        (
            "health.interval=soon",
            "health.interval: expected a duration like \"10s\", got 'soon' (--set health.interval=soon)",
        ),
        (
            "service.replicas=3",
            "service.replicas: service is an array of tables: name one, as in service[0] (--set service.replicas=3)",
        ),
        (
            "servce[0].replicas=3",
            "servce[0].replicas: unknown key (did you mean 'service'?) (--set servce[0].replicas=3)",
        ),
        (
            "service[0].replicas[1]=3",
            "service[0].replicas[1]: service[0].replicas is not an array, so it has no [1] "
            "(--set service[0].replicas[1]=3)",
        ),
        (
            "service[4].replicas=3",
            "service[4].replicas: the file has 1 service entries, so no service[4] (--set service[4].replicas=3)",
        ),
        (
            "balancer.policy.name=x",
            "balancer.policy.name: balancer.policy is not a table, so it has no keys to set "
            "(--set balancer.policy.name=x)",
        ),
        ("duration=5s", "fault[0].at: 10s is not before the end of the run (5s) (with --set duration=5s)"),
    ],
)
def test_a_bad_override_is_a_scenario_error_naming_the_key(argument: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        load_scenario(RETRY_STORM, overridden(argument))
    assert str(error.value) == f"{RETRY_STORM}: {message}"


def test_run_takes_set_and_says_it_in_the_reproducing_command(write_scenario: Callable[[str], Path]) -> None:
    path = write_scenario(
        MINIMAL
        + """
[[assert]]
name = "every call reaches round robin's first replica"
metric = "success_rate"
op = "<"
value = 0.5
"""
    )
    result = CliRunner().invoke(main, ["run", str(path), "--quiet", "--set", "balancer.policy=p2c"])
    assert result.exit_code == 1
    assert f"reproduce with: meshsim run {path} --seed 1 --set balancer.policy=p2c" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "balancer.policy=p2c,random"], "--set balancer.policy=p2c,random: one value per key"),
        (["--set", "balancer.policy=nope"], "balancer.policy: expected one of"),
        (["--set", "nonsense"], "--set: expected KEY=VALUE"),
        (["--set", "seed=2", "--set", "seed=3"], "--set: seed is set twice"),
    ],
)
def test_run_refuses_a_bad_set_in_one_line(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["run", str(RETRY_STORM), "--quiet", *arguments])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
