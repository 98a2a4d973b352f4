"""Scenario files as a whole: reading them, the top-level keys, and `meshsim validate`.

Every rejection names the file, the key path and the problem, in one line; each error test
writes a small valid scenario with one part made wrong (tests/scenario_files.py) and checks the
whole message after the `FILE: ` prefix, so a test states only what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.core.errors import ConfigError, MeshsimError
from meshsim.core.scenario import ScenarioError
from meshsim.core.scenario_loader import load_scenario
from tests.conftest import ROOT, SCENARIOS
from tests.scenario_files import CHECK, DROP, KILL, Files, Table, fault, scenario_text


def test_the_helper_builds_a_valid_minimal_scenario(files: Files) -> None:
    text = scenario_text()
    assert text == (
        'schema = "meshsim/v1"\nduration = "10s"\n\n'
        '[[service]]\nname = "api"\nreplicas = 3\n\n'
        '[[client]]\nname = "web"\nrate = 100\n'
    )
    scenario = files.load()
    assert [s.name for s in scenario.services] == ["api"]
    assert [c.name for c in scenario.clients] == ["web"]


# --------------------------------------------------------------------------- reading the file


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    assert str(caught.value) == f"{path}: no such file"
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, MeshsimError)


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: cannot read: ")


def test_invalid_utf8_cannot_be_read(files: Files, tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'schema = "meshsim/v1"\nname = "caf\xe9"\n')
    assert files.error_of(path) == "not UTF-8 text (byte 33)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param('schema = "meshsim/v1"\nname = \n', "Invalid value (at line 2, column 8)", id="no-value"),
        pytest.param(
            'schema = "meshsim/v1"\nseed = 1\nseed = 2\n', "Cannot overwrite a value (at line 3, column 9)", id="dup"
        ),
        pytest.param(
            'schema = "meshsim/v1"\n[[service]\n',
            "Expected ']]' at the end of an array declaration (at line 2, column 10)",
            id="header",
        ),
    ],
)
def test_invalid_toml(files: Files, text: str, problem: str) -> None:
    assert files.text_error(text) == f"not valid TOML: {problem}"


# --------------------------------------------------------------------------- top level


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        pytest.param(DROP, 'schema: is required: a scenario file starts with schema = "meshsim/v1"', id="missing"),
        pytest.param("meshsim/v2", "schema: expected \"meshsim/v1\", got 'meshsim/v2'", id="other-version"),
        pytest.param(1, 'schema: expected "meshsim/v1", got 1', id="number"),
    ],
)
def test_schema(bad: Callable[..., str], schema: Any, message: str) -> None:
    assert bad(top={"schema": schema}) == message


def test_schema_is_checked_before_anything_else(files: Files) -> None:
    assert files.text_error('schema = "meshsim/v0"\nduration = "soon"\n') == (
        "schema: expected \"meshsim/v1\", got 'meshsim/v0'"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        pytest.param("servcie", [{"name": "db"}], "servcie: unknown key (did you mean 'service'?)", id="servcie"),
        pytest.param("faults", [dict(KILL)], "faults: unknown key (did you mean 'fault'?)", id="faults"),
        pytest.param("seeed", 3, "seeed: unknown key (did you mean 'seed'?)", id="seeed"),
        pytest.param("helth", {"enabled": False}, "helth: unknown key (did you mean 'health'?)", id="helth"),
        pytest.param("frobnicate", 1, "frobnicate: unknown key", id="no-suggestion"),
    ],
)
def test_unknown_top_level_key(bad: Callable[..., str], key: str, value: Any, message: str) -> None:
    assert bad(top={key: value}) == message


@pytest.mark.parametrize(
    ("top", "message"),
    [
        pytest.param({"name": ""}, "name: expected a non-empty string, got a string ''", id="name-empty"),
        pytest.param({"name": 3}, "name: expected a non-empty string, got an integer 3", id="name-int"),
        pytest.param(
            {"description": True},
            "description: expected a non-empty string, got true or false True",
            id="description-bool",
        ),
        pytest.param({"seed": "7"}, "seed: expected an integer, got a string '7'", id="seed-string"),
        pytest.param({"seed": 1.5}, "seed: expected an integer, got a number 1.5", id="seed-float"),
        pytest.param({"seed": True}, "seed: expected an integer, got true or false True", id="seed-bool"),
        pytest.param({"seed": -1}, "seed: must be at least 0, got -1", id="seed-negative"),
        pytest.param({"duration": DROP}, "duration: is required", id="duration-missing"),
        pytest.param({"duration": "ten"}, "duration: expected a duration like \"10s\", got 'ten'", id="dur-word"),
        pytest.param({"duration": "10 sec"}, "duration: expected a duration like \"10s\", got '10 sec'", id="unit"),
        pytest.param({"duration": "-5s"}, "duration: expected a duration like \"10s\", got '-5s'", id="negative"),
        pytest.param({"duration": -5}, 'duration: expected a duration like "10s", got -5', id="negative-number"),
        pytest.param({"duration": True}, 'duration: expected a duration like "10s", got True', id="duration-bool"),
        pytest.param({"duration": [10]}, 'duration: expected a duration like "10s", got [10]', id="duration-array"),
        pytest.param({"duration": "0s"}, "duration: must be greater than 0s, got '0s'", id="duration-zero"),
        pytest.param({"duration": 0}, "duration: must be greater than 0s, got 0", id="duration-zero-number"),
        pytest.param({"drain": "a while"}, "drain: expected a duration like \"10s\", got 'a while'", id="drain"),
    ],
)
def test_bad_top_level_value(bad: Callable[..., str], top: Table, message: str) -> None:
    assert bad(top=top) == message


def test_misspelt_breaker_table_is_named(bad: Callable[..., str]) -> None:
    assert bad(top={"circuit_breaker": {"node": {"window_size": 5}}}) == ("circuit_breaker.node: unknown key")


# --------------------------------------------------------------------------- meshsim validate


def invoke(*args: str, columns: str = "500") -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": columns}).invoke(main, ["validate", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok(files: Files) -> None:
    path = files.write(scenario_text(faults=[KILL], asserts=[CHECK, CHECK]))
    code, out, err = invoke(str(path))
    assert code == 0
    assert err == ""
    assert out.startswith(f"ok: {path} (1 service(s), 3 replica(s), 1 client(s), 1 fault(s), 2 assertion(s); about ")


def test_validate_bad_file_exits_2_with_one_line(files: Files) -> None:
    path = files.write(scenario_text(faults=[fault(at="ten")]))
    code, out, err = invoke(str(path))
    assert code == 2
    assert out == ""
    assert err == f"error: {path}: fault[0].at: expected a duration like \"10s\", got 'ten'\n"


def test_validate_reports_every_file(files: Files, tmp_path: Path) -> None:
    good = files.write(scenario_text())
    bad = files.write(scenario_text(service={"replicas": 0}))
    code, out, err = invoke(str(good), str(tmp_path / "missing.toml"), str(bad), str(good))
    assert code == 2
    summary = f"ok: {good} (1 service(s), 3 replica(s), 1 client(s), 0 fault(s), 0 assertion(s); about 1,000 calls)"
    assert out.splitlines() == [summary] * 2
    assert err.splitlines() == [
        f"error: {tmp_path / 'missing.toml'}: no such file",
        f"error: {bad}: service[0].replicas: must be at least 1, got 0",
    ]


def test_validate_shipped_scenarios() -> None:
    code, out, err = invoke(*(str(path) for path in SCENARIOS))
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert [line.split(" ")[1] for line in lines] == [str(path) for path in SCENARIOS]
    assert all(line.startswith("ok: ") and line.endswith(" calls)") for line in lines)
    assert f"ok: {ROOT / 'scenarios/faults_tour.toml'} (1 service(s), 4 replica(s), 2 client(s)" in out


def test_validate_needs_a_file() -> None:
    code, _, err = invoke()
    assert code == 2
    assert "Missing argument 'FILES...'" in err


def test_validate_prints_the_message_verbatim(files: Files) -> None:
    """The message goes through rich markup (meshsim/cli/app.py, display_error), which eats
    `[service]` as a style tag: the user reads "expected [] tables"."""
    path = files.write(scenario_text(top={"service": "api"}))
    code, _, err = invoke(str(path))
    assert code == 2
    assert err == f"error: {path}: service: expected [[service]] tables, got a string\n"


def test_validate_ok_line_is_not_wrapped_on_a_narrow_console(files: Files) -> None:
    """Error lines are printed with soft_wrap and stay whole at any width; the ok line is
    hard-wrapped at the console width (80 columns when output is not a terminal), which
    splits the path in CI logs and defeats `grep ok:`."""
    path = files.write(scenario_text())
    code, out, _ = invoke(str(path), columns="80")
    assert code == 0
    assert out.startswith(f"ok: {path} (1 service(s), 3 replica(s), 1 client(s), 0 fault(s), 0 assertion(s); about ")


def test_validate_survives_markup_in_user_values(files: Files) -> None:
    """Same cause: a value that looks like a closing rich tag makes display_error raise
    rich.errors.MarkupError, so the command dies with a traceback and exit 1 (which for
    `meshsim run` means "an assertion failed") instead of exit 2 and the message."""
    path = files.write(scenario_text(faults=[fault(target="[/x]")]))
    code, _, err = invoke(str(path))
    assert code == 2
    assert err == (
        f"error: {path}: fault[0].target: no service or replica named '[/x]' (services: api; replicas like api/0)\n"
    )
