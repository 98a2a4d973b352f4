"""Scenario files: every rejection names the file, the key path and the problem, in one line.

Each error test writes a small valid scenario with one part made wrong (see `scenario_text`)
and checks the whole message after the `FILE: ` prefix, so a test states only what is wrong.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.core.calls import Pattern
from meshsim.core.distributions import Constant, Empirical, Exponential, LogNormal, Normal, Uniform
from meshsim.core.health import HealthConfig
from meshsim.core.pickers import POLICIES, BalancerConfig
from meshsim.core.scenario import (
    METRICS,
    AssertionConfig,
    ClientConfig,
    FaultAction,
    FaultConfig,
    KeyDistribution,
    Scenario,
    ScenarioError,
    ServiceConfig,
)
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import HealthStatus, StatusCode
from tests.conftest import ROOT, SCENARIOS

# --------------------------------------------------------------------------- helpers

DROP: Final[Any] = object()
"""An override value that removes the key instead of setting it."""

BASE: Final[Mapping[str, Any]] = {
    "schema": "meshsim/v1",
    "duration": "10s",
    "service": [{"name": "api", "replicas": 3}],
    "client": [{"name": "web", "rate": 100}],
}
"""The minimal valid scenario every test starts from: 10 s, api/0..api/2, one open-loop client."""

KILL: Final[Mapping[str, Any]] = {"at": "1s", "action": "kill", "target": "api/0"}
CHECK: Final[Mapping[str, Any]] = {"metric": "success_rate", "op": ">=", "value": 0.99}

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

Table = Mapping[str, Any]


def toml_value(value: Any) -> str:
    """Just enough TOML for the tests: scalars, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: Table) -> str:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not is_table_array(v)]
    for key, value in data.items():
        if is_table_array(value):
            for table in value:
                lines += ["", f"[[{toml_key(key)}]]"]
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def merged(base: Table, overrides: Table | None) -> dict[str, Any]:
    result = dict(base)
    for key, value in (overrides or {}).items():
        if value is DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def scenario_text(
    *,
    top: Table | None = None,
    service: Table | None = None,
    client: Table | None = None,
    faults: Sequence[Table] = (),
    asserts: Sequence[Table] = (),
) -> str:
    """BASE with `service`/`client` merged into the first [[service]]/[[client]], the given
    [[fault]]s and [[assert]]s added, then `top` merged at the top level (DROP removes a key)."""
    data = copy.deepcopy(dict(BASE))
    data["service"] = [merged(data["service"][0], service)]
    data["client"] = [merged(data["client"][0], client)]
    if faults:
        data["fault"] = [dict(f) for f in faults]
    if asserts:
        data["assert"] = [dict(a) for a in asserts]
    return to_toml(merged(data, top))


class Files:
    """Writes scenario files under tmp_path and loads them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._names: Iterator[int] = iter(range(10_000))

    def write(self, text: str, name: str | None = None) -> Path:
        path = self.root / (name or f"scenario{next(self._names)}.toml")
        path.write_text(text, encoding="utf-8")
        return path

    def load(self, **parts: Any) -> Scenario:
        return load_scenario(self.write(scenario_text(**parts)))

    def error_of(self, path: Path) -> str:
        """The message loading `path` fails with, minus its `PATH: ` prefix (which is checked)."""
        with pytest.raises(ScenarioError) as caught:
            load_scenario(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: "), message
        assert "\n" not in message
        return message.removeprefix(f"{path}: ")

    def error(self, **parts: Any) -> str:
        return self.error_of(self.write(scenario_text(**parts)))

    def text_error(self, text: str) -> str:
        return self.error_of(self.write(text))


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def bad(files: Files) -> Callable[..., str]:
    """bad(**parts): the error message (without the file prefix) of scenario_text(**parts)."""
    return files.error


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


# --------------------------------------------------------------------------- services


@pytest.mark.parametrize(
    "top",
    [pytest.param({"service": DROP}, id="missing"), pytest.param({"service": []}, id="empty")],
)
def test_a_scenario_needs_a_service(bad: Callable[..., str], top: Table) -> None:
    assert bad(top=top) == "service: a scenario needs at least one [[service]]"


@pytest.mark.parametrize(
    ("value", "got"),
    [pytest.param("api", "a string", id="string"), pytest.param([1, 2], "an array", id="array-of-numbers")],
)
def test_service_must_be_an_array_of_tables(bad: Callable[..., str], value: Any, got: str) -> None:
    assert bad(top={"service": value}) == f"service: expected [[service]] tables, got {got}"


def test_duplicate_service_name(bad: Callable[..., str]) -> None:
    services = [{"name": "api"}, {"name": "db"}, {"name": "api"}]
    message = bad(top={"service": services}, client={"target": "api"})
    assert message == "service[2].name: duplicate name 'api'"


@pytest.mark.parametrize(
    ("service", "message"),
    [
        pytest.param({"name": DROP}, "service[0].name: is required", id="name-missing"),
        pytest.param({"name": "api/v2"}, "service[0].name: must not contain '/' or ':', got 'api/v2'", id="slash"),
        pytest.param({"name": "a:b"}, "service[0].name: must not contain '/' or ':', got 'a:b'", id="colon"),
        pytest.param({"replicas": "3"}, "service[0].replicas: expected an integer, got a string '3'", id="rep-str"),
        pytest.param({"replicas": 2.0}, "service[0].replicas: expected an integer, got a number 2.0", id="rep-flt"),
        pytest.param({"replicas": 0}, "service[0].replicas: must be at least 1, got 0", id="replicas-zero"),
        pytest.param({"error_rate": 1.5}, "service[0].error_rate: must be at most 1, got 1.5", id="rate-high"),
        pytest.param({"error_rate": -0.1}, "service[0].error_rate: must be at least 0, got -0.1", id="rate-low"),
        pytest.param(
            {"error_rate": True}, "service[0].error_rate: expected a number, got true or false True", id="rate-bool"
        ),
        pytest.param(
            {"error_rate": "5%"}, "service[0].error_rate: expected a number, got a string '5%'", id="rate-str"
        ),
        pytest.param(
            {"error_rate": float("nan")}, "service[0].error_rate: expected a number, got a number nan", id="nan"
        ),
        pytest.param(
            {"error_status": "BROKEN"},
            "service[0].error_status: expected a gRPC status code like \"UNAVAILABLE\", got 'BROKEN'",
            id="status-name",
        ),
        pytest.param(
            {"error_status": 99},
            'service[0].error_status: expected a gRPC status code like "UNAVAILABLE", got 99',
            id="status-number",
        ),
        pytest.param({"capacity": 0}, "service[0].capacity: must be at least 1, got 0", id="capacity-zero"),
        pytest.param(
            {"capacity": "64"}, "service[0].capacity: expected an integer, got a string '64'", id="capacity-str"
        ),
        pytest.param(
            {"queue_limit": 10},
            "service[0].queue_limit: needs capacity: without a capacity nothing ever queues",
            id="queue-without-capacity",
        ),
        pytest.param(
            {"capacity": 4, "queue_limit": -1}, "service[0].queue_limit: must be at least 0, got -1", id="queue-neg"
        ),
        pytest.param({"weights": [1, 2]}, "service[0].weights: has 2 entries for 3 replicas", id="weights-short"),
        pytest.param({"weights": [1, 2, 3, 4]}, "service[0].weights: has 4 entries for 3 replicas", id="weights-long"),
        pytest.param(
            {"weights": [1, -1, 1]},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got [1, -1, 1]",
            id="weights-negative",
        ),
        pytest.param(
            {"weights": [1, True, 1]},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got [1, True, 1]",
            id="weights-bool",
        ),
        pytest.param(
            {"weights": [1.5, 1, 1]},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got [1.5, 1, 1]",
            id="weights-float",
        ),
        pytest.param(
            {"weights": "1,2,3"},
            "service[0].weights: expected an array of integers from 0 to 1,000,000, got '1,2,3'",
            id="weights-string",
        ),
        pytest.param(
            {"weight": 2, "weights": [1, 1, 1]},
            "service[0].weight: give either weight or weights, not both",
            id="weight-and-weights",
        ),
        pytest.param({"weight": -1}, "service[0].weight: must be at least 0, got -1", id="weight-negative"),
        pytest.param(
            {"probe_latency": "quick"},
            "service[0].probe_latency: expected a duration like \"10s\", got 'quick'",
            id="probe-latency",
        ),
        pytest.param({"replica": 3}, "service[0].replica: unknown key (did you mean 'replicas'?)", id="unknown"),
        pytest.param({"capcity": 3}, "service[0].capcity: unknown key (did you mean 'capacity'?)", id="capcity"),
    ],
)
def test_bad_service(bad: Callable[..., str], service: Table, message: str) -> None:
    assert bad(service=service) == message


def test_second_service_is_named_by_index(bad: Callable[..., str]) -> None:
    services = [{"name": "api"}, {"name": "db", "replicas": -2}]
    message = bad(top={"service": services}, client={"target": "api"})
    assert message == "service[1].replicas: must be at least 1, got -2"


def test_weights_vs_replicas_uses_the_default_replica_count(bad: Callable[..., str]) -> None:
    assert bad(service={"replicas": DROP, "weights": [1, 1]}) == "service[0].weights: has 2 entries for 1 replicas"


def test_error_status_ok_is_rejected_like_an_injected_error(files: Files) -> None:
    """A service whose errors are status OK injects no errors at all (meshsim/sim/replica.py
    turns them into successes). The errors fault rejects OK; the service should too."""
    path = files.write(scenario_text(service={"error_rate": 0.5, "error_status": "OK"}))
    assert files.error_of(path).startswith("service[0].error_status: ")


# --------------------------------------------------------------------------- latency distributions


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        pytest.param("ten", ": expected a duration like \"10s\", got 'ten'", id="string"),
        pytest.param(True, ': expected a duration like "10s", got True', id="bool"),
        pytest.param(["10ms"], ": expected a duration like \"10s\", got ['10ms']", id="array"),
        pytest.param({}, ".dist: is required", id="no-dist"),
        pytest.param(
            {"dist": "gamma"},
            ".dist: expected one of constant, uniform, exponential, normal, lognormal, empirical, got 'gamma'",
            id="unknown-dist",
        ),
        pytest.param({"dist": "constant"}, ".value: is required", id="constant-value"),
        pytest.param(
            {"dist": "constant", "value": "5 msec"},
            ".value: expected a duration like \"10s\", got '5 msec'",
            id="constant-value-bad",
        ),
        pytest.param({"dist": "uniform", "high": "5ms"}, ".low: is required", id="uniform-low"),
        pytest.param({"dist": "uniform", "low": "5ms"}, ".high: is required", id="uniform-high"),
        pytest.param(
            {"dist": "uniform", "low": "5ms", "high": "1ms"}, ".high: must not be below low (5ms)", id="high-below-low"
        ),
        pytest.param({"dist": "exponential"}, ".mean: is required", id="exponential-mean"),
        pytest.param(
            {"dist": "exponential", "mean": -1}, '.mean: expected a duration like "10s", got -1', id="mean-negative"
        ),
        pytest.param({"dist": "normal", "mean": "10ms"}, ".stddev: is required", id="normal-stddev"),
        pytest.param({"dist": "normal", "stddev": "1ms"}, ".mean: is required", id="normal-mean"),
        pytest.param(
            {"dist": "lognormal", "median": "0ms", "sigma": 0.5},
            ".median: must be greater than 0s, got '0ms'",
            id="lognormal-median-zero",
        ),
        pytest.param(
            {"dist": "lognormal", "median": 0, "sigma": 0.5},
            ".median: must be greater than 0s, got 0",
            id="lognormal-median-zero-number",
        ),
        pytest.param({"dist": "lognormal", "median": "20ms"}, ".sigma: is required", id="lognormal-sigma"),
        pytest.param(
            {"dist": "lognormal", "median": "20ms", "sigma": -0.1},
            ".sigma: must be at least 0, got -0.1",
            id="lognormal-sigma-negative",
        ),
        pytest.param(
            {"dist": "lognormal", "median": "20ms", "sigma": "0.4"},
            ".sigma: expected a number, got a string '0.4'",
            id="lognormal-sigma-string",
        ),
        pytest.param(
            {"dist": "constant", "value": "5ms", "sigma": 0.3}, ".sigma: unknown key", id="key-of-another-dist"
        ),
        pytest.param(
            {"dist": "lognormal", "median": "20ms", "sigma": 0.4, "sigmaa": 1},
            ".sigmaa: unknown key (did you mean 'sigma'?)",
            id="misspelt-key",
        ),
    ],
)
def test_bad_latency(bad: Callable[..., str], latency: Any, message: str) -> None:
    assert bad(service={"latency": latency}) == "service[0].latency" + message


@pytest.mark.parametrize(
    ("latency", "message"),
    [
        pytest.param({"dist": "empirical", "weights": [1]}, "bounds: is required", id="no-bounds"),
        pytest.param({"dist": "empirical", "bounds": ["1ms"]}, "weights: is required", id="no-weights"),
        pytest.param(
            {"dist": "empirical", "bounds": [], "weights": []},
            "bounds: expected an array of 1 to 10,000 durations (bucket upper edges)",
            id="bounds-empty",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": "10ms", "weights": [1]},
            "bounds: expected an array of 1 to 10,000 durations (bucket upper edges)",
            id="bounds-not-array",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "x"], "weights": [1, 1]},
            "bounds[1]: expected a duration like \"10s\", got 'x'",
            id="bound-not-duration",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["5ms", "5ms"], "weights": [1, 1]},
            "bounds: must be strictly increasing",
            id="bounds-equal",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["5ms", "10ms", "8ms"], "weights": [1, 1, 1]},
            "bounds: must be strictly increasing",
            id="bounds-decreasing",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms", "3ms"], "weights": [1, 1]},
            "weights: expected an array of 3 numbers, one per bucket",
            id="weights-length",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms"], "weights": 1},
            "weights: expected an array of 1 numbers, one per bucket",
            id="weights-not-array",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [0, 0]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-zero-sum",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [2, -1]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-negative",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [1, "1"]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-string",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms", "2ms"], "weights": [1, True]},
            "weights: must be non-negative numbers with a positive sum",
            id="weights-bool",
        ),
        pytest.param(
            {"dist": "empirical", "bounds": ["1ms"], "weights": [1], "buckets": 1},
            "buckets: unknown key",
            id="unknown-key",
        ),
    ],
)
def test_bad_empirical_latency(bad: Callable[..., str], latency: Table, message: str) -> None:
    assert bad(service={"latency": latency}) == f"service[0].latency.{message}"


def test_empirical_weights_must_be_finite(files: Files) -> None:
    """Every other number in a scenario must be finite (`_Table.number`); an infinite bucket
    weight is accepted and then samples wrongly: with weights [inf, 1] every draw lands in
    the second bucket, since the cumulative weights are [inf, inf]."""
    path = files.write(scenario_text(service={"latency": {"dist": "empirical", "bounds": [1, 2], "weights": []}}))
    path.write_text(path.read_text().replace("weights = []", "weights = [inf, 1]"), encoding="utf-8")
    assert files.error_of(path).startswith("service[0].latency.weights: ")


def test_message_latency_is_checked_like_latency(bad: Callable[..., str]) -> None:
    message = bad(service={"message_latency": {"dist": "uniform", "low": "2ms", "high": "1ms"}})
    assert message == "service[0].message_latency.high: must not be below low (2ms)"


# --------------------------------------------------------------------------- balancer and health


@pytest.mark.parametrize(
    ("balancer", "message"),
    [
        pytest.param(
            {"policy": "fastest"},
            f"balancer.policy: expected one of {', '.join(POLICIES)}, got 'fastest'",
            id="policy",
        ),
        pytest.param({"ring_size": 0}, "balancer.ring_size: must be at least 1, got 0", id="ring-size"),
        pytest.param({"choices": 0}, "balancer.choices: must be at least 1, got 0", id="choices"),
        pytest.param({"choices": 2.5}, "balancer.choices: expected an integer, got a number 2.5", id="choices-float"),
        pytest.param({"polcy": "p2c"}, "balancer.polcy: unknown key (did you mean 'policy'?)", id="unknown"),
        pytest.param("p2c", "balancer: expected a table, got a string 'p2c'", id="not-a-table"),
    ],
)
def test_bad_balancer(bad: Callable[..., str], balancer: Any, message: str) -> None:
    assert bad(top={"balancer": balancer}) == message


@pytest.mark.parametrize(
    ("health", "message"),
    [
        pytest.param({"enabled": "yes"}, "health.enabled: expected true or false, got a string 'yes'", id="enabled"),
        pytest.param({"enabled": 1}, "health.enabled: expected true or false, got an integer 1", id="enabled-int"),
        pytest.param({"interval": "0s"}, "health.interval: must be at least 1ms, got '0s'", id="interval-zero"),
        pytest.param(
            {"interval": "often"}, "health.interval: expected a duration like \"10s\", got 'often'", id="interval"
        ),
        pytest.param({"timeout": 0}, "health.timeout: must be greater than 0s, got 0", id="timeout-zero"),
        pytest.param(
            {"unhealthy_threshold": 0}, "health.unhealthy_threshold: must be at least 1, got 0", id="unhealthy"
        ),
        pytest.param(
            {"healthy_threshold": "2"},
            "health.healthy_threshold: expected an integer, got a string '2'",
            id="healthy-string",
        ),
        pytest.param({"jitter": 1.5}, "health.jitter: must be at most 1, got 1.5", id="jitter-high"),
        pytest.param({"jitter": -0.5}, "health.jitter: must be at least 0, got -0.5", id="jitter-low"),
        pytest.param({"service": ""}, "health.service: expected a non-empty string, got a string ''", id="service"),
        pytest.param(
            {"unhealthy_treshold": 2},
            "health.unhealthy_treshold: unknown key (did you mean 'unhealthy_threshold'?)",
            id="treshold",
        ),
        pytest.param([1], "health: expected a table, got an array [1]", id="not-a-table"),
    ],
)
def test_bad_health(bad: Callable[..., str], health: Any, message: str) -> None:
    assert bad(top={"health": health}) == message


# --------------------------------------------------------------------------- clients


@pytest.mark.parametrize(
    "top", [pytest.param({"client": DROP}, id="missing"), pytest.param({"client": []}, id="empty")]
)
def test_a_scenario_needs_a_client(bad: Callable[..., str], top: Table) -> None:
    assert bad(top=top) == "client: a scenario needs at least one [[client]] to send calls"


def test_duplicate_client_name(bad: Callable[..., str]) -> None:
    clients = [{"name": "web", "rate": 1}, {"name": "web", "concurrency": 1}]
    assert bad(top={"client": clients}) == "client[1].name: duplicate name 'web'"


def test_client_target_is_required_when_there_are_several_services(bad: Callable[..., str]) -> None:
    assert bad(top={"service": [{"name": "api"}, {"name": "db"}]}) == "client[0].target: is required"


def test_client_target_must_name_a_service(bad: Callable[..., str]) -> None:
    services = [{"name": "api"}, {"name": "db"}]
    assert bad(top={"service": services}, client={"target": "cache"}) == (
        "client[0].target: expected one of api, db, got 'cache'"
    )


EXACTLY_ONE = "client[0]: give exactly one of rate (open loop, calls/s) or concurrency (closed loop)"


@pytest.mark.parametrize(
    ("client", "message"),
    [
        pytest.param({"name": DROP}, "client[0].name: is required", id="name"),
        pytest.param({"target": "db"}, "client[0].target: expected one of api, got 'db'", id="target-unknown"),
        pytest.param({"concurrency": 4}, EXACTLY_ONE, id="rate-and-concurrency"),
        pytest.param({"rate": DROP}, EXACTLY_ONE, id="neither"),
        pytest.param({"rate": 0}, "client[0].rate: must be greater than 0, got 0", id="rate-zero"),
        pytest.param({"rate": -5.5}, "client[0].rate: must be greater than 0, got -5.5", id="rate-negative"),
        pytest.param({"rate": "100/s"}, "client[0].rate: expected a number, got a string '100/s'", id="rate-str"),
        pytest.param({"rate": True}, "client[0].rate: expected a number, got true or false True", id="rate-bool"),
        pytest.param(
            {"rate": DROP, "concurrency": 0}, "client[0].concurrency: must be at least 1, got 0", id="concurrency"
        ),
        pytest.param(
            {"rate": DROP, "concurrency": 2.5},
            "client[0].concurrency: expected an integer, got a number 2.5",
            id="concurrency-float",
        ),
        pytest.param(
            {"think_time": "10ms"},
            "client[0].think_time: only applies to a closed-loop client (concurrency)",
            id="think-time-open-loop",
        ),
        pytest.param(
            {"rate": DROP, "concurrency": 2, "think_time": "soon"},
            "client[0].think_time: expected a duration like \"10s\", got 'soon'",
            id="think-time-bad",
        ),
        pytest.param({"deadline": "0ms"}, "client[0].deadline: must be greater than 0s, got '0ms'", id="deadline"),
        pytest.param({"start": "10s"}, "client[0].start: 10s is not before the end of the run", id="start-at-end"),
        pytest.param({"start": "1m"}, "client[0].start: 60s is not before the end of the run", id="start-after"),
        pytest.param(
            {"stop": "11s"}, "client[0].stop: must be after start and at most the duration (10s)", id="stop-late"
        ),
        pytest.param(
            {"start": "5s", "stop": "2s"},
            "client[0].stop: must be after start and at most the duration (10s)",
            id="stop-before-start",
        ),
        pytest.param(
            {"start": "5s", "stop": "5s"},
            "client[0].stop: must be after start and at most the duration (10s)",
            id="stop-at-start",
        ),
        pytest.param(
            {"stop": "0s"}, "client[0].stop: must be after start and at most the duration (10s)", id="stop-zero"
        ),
        pytest.param(
            {"patterns": {"unary": 0, "bidi": 0.0}},
            "client[0].patterns: needs at least one pattern with a positive weight",
            id="patterns-all-zero",
        ),
        pytest.param(
            {"patterns": {}},
            "client[0].patterns: needs at least one pattern with a positive weight",
            id="patterns-empty",
        ),
        pytest.param(
            {"patterns": {"unray": 1}}, "client[0].patterns.unray: unknown key (did you mean 'unary'?)", id="unray"
        ),
        pytest.param(
            {"patterns": {"unary": 1, "bidi": -1}},
            "client[0].patterns.bidi: must be at least 0, got -1",
            id="pattern-negative",
        ),
        pytest.param(
            {"patterns": "unary"}, "client[0].patterns: expected a table, got a string 'unary'", id="patterns-str"
        ),
        pytest.param({"messages": 0}, "client[0].messages: must be at least 1, got 0", id="messages"),
        pytest.param(
            {"keys": {"dist": "normal", "count": 10}},
            "client[0].keys.dist: expected one of uniform, zipf, got 'normal'",
            id="keys-dist",
        ),
        pytest.param({"keys": {"count": 10}}, "client[0].keys.dist: is required", id="keys-no-dist"),
        pytest.param({"keys": {"dist": "uniform"}}, "client[0].keys.count: is required", id="keys-no-count"),
        pytest.param(
            {"keys": {"dist": "uniform", "count": 0}}, "client[0].keys.count: must be at least 1, got 0", id="count"
        ),
        pytest.param(
            {"keys": {"dist": "zipf", "count": 10, "exponent": 0}},
            "client[0].keys.exponent: must be greater than 0, got 0",
            id="zipf-exponent",
        ),
        pytest.param(
            {"keys": {"dist": "uniform", "count": 10, "exponent": 1.1}},
            "client[0].keys.exponent: applies to a zipf key distribution only",
            id="exponent-on-uniform",
        ),
        pytest.param(
            {"keys": {"dist": "zipf", "count": 10, "exponant": 1.1}},
            "client[0].keys.exponant: unknown key (did you mean 'exponent'?)",
            id="exponant",
        ),
        pytest.param({"deadlin": "1s"}, "client[0].deadlin: unknown key (did you mean 'deadline'?)", id="unknown"),
    ],
)
def test_bad_client(bad: Callable[..., str], client: Table, message: str) -> None:
    assert bad(client=client) == message


# --------------------------------------------------------------------------- faults


def fault(**changes: Any) -> dict[str, Any]:
    return merged(KILL, changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"at": "ten"}, "fault[0].at: expected a duration like \"10s\", got 'ten'", id="at-word"),
        pytest.param({"at": DROP}, "fault[0].at: is required", id="at-missing"),
        pytest.param({"at": "10s"}, "fault[0].at: 10s is not before the end of the run (10s)", id="at-end"),
        pytest.param({"at": "30s"}, "fault[0].at: 30s is not before the end of the run (10s)", id="at-after"),
        pytest.param({"for": "0s"}, "fault[0].for: must be greater than 0s, got '0s'", id="for-zero"),
        pytest.param({"for": "long"}, "fault[0].for: expected a duration like \"10s\", got 'long'", id="for-word"),
        pytest.param({"action": DROP}, "fault[0].action: is required", id="action-missing"),
        pytest.param(
            {"action": "explode"},
            f"fault[0].action: expected one of {', '.join(a.value for a in FaultAction)}, got 'explode'",
            id="action-unknown",
        ),
        pytest.param({"target": DROP}, "fault[0].target: is required", id="target-missing"),
        pytest.param(
            {"target": "db"},
            "fault[0].target: no service or replica named 'db' (services: api; replicas like api/0)",
            id="unknown-service",
        ),
        pytest.param(
            {"target": "api/3"},
            "fault[0].target: no service or replica named 'api/3' (services: api; replicas like api/0)",
            id="replica-out-of-range",
        ),
        pytest.param(
            {"target": "api/-1"},
            "fault[0].target: no service or replica named 'api/-1' (services: api; replicas like api/0)",
            id="replica-negative",
        ),
        pytest.param({"taget": "api/1"}, "fault[0].taget: unknown key (did you mean 'target'?)", id="unknown-key"),
        pytest.param(
            {"action": "latency", "add": "0s"},
            "fault[0]: a latency fault needs add (a duration) or multiply (a factor)",
            id="latency-zero-add",
        ),
        pytest.param(
            {"action": "latency", "multiply": 1},
            "fault[0]: a latency fault needs add (a duration) or multiply (a factor)",
            id="latency-multiply-one",
        ),
        pytest.param(
            {"action": "latency", "multiply": -2}, "fault[0].multiply: must be at least 0, got -2", id="multiply-neg"
        ),
        pytest.param(
            {"action": "latency", "add": "slow"},
            "fault[0].add: expected a duration like \"10s\", got 'slow'",
            id="add-word",
        ),
        pytest.param({"action": "errors"}, "fault[0].rate: is required", id="errors-rate-missing"),
        pytest.param(
            {"action": "errors", "rate": 0}, "fault[0].rate: must be greater than 0, got 0", id="errors-rate-zero"
        ),
        pytest.param(
            {"action": "errors", "rate": 1.5}, "fault[0].rate: must be at most 1, got 1.5", id="errors-rate-high"
        ),
        pytest.param(
            {"action": "errors", "rate": "30%"},
            "fault[0].rate: expected a number, got a string '30%'",
            id="errors-rate-string",
        ),
        pytest.param(
            {"action": "errors", "rate": 0.5, "status": "OK"},
            "fault[0].status: an injected error cannot be OK",
            id="errors-status-ok",
        ),
        pytest.param(
            {"action": "errors", "rate": 0.5, "status": 0},
            "fault[0].status: an injected error cannot be OK",
            id="errors-status-0",
        ),
        pytest.param(
            {"action": "errors", "rate": 0.5, "status": "BROKEN"},
            "fault[0].status: expected a gRPC status code like \"UNAVAILABLE\", got 'BROKEN'",
            id="errors-status-unknown",
        ),
        pytest.param(
            {"action": "health", "status": "SERVING"},
            "fault[0].status: expected one of NOT_SERVING, SERVICE_UNKNOWN, got 'SERVING'",
            id="health-serving",
        ),
        pytest.param(
            {"action": "health", "status": "TIMEOUT"},
            "fault[0].status: expected one of NOT_SERVING, SERVICE_UNKNOWN, got 'TIMEOUT'",
            id="health-timeout",
        ),
        pytest.param({"action": "partition"}, "fault[0].client: is required", id="partition-no-client"),
        pytest.param(
            {"action": "partition", "client": "mobile"},
            "fault[0].client: expected one of web, got 'mobile'",
            id="partition-unknown-client",
        ),
    ],
)
def test_bad_fault(bad: Callable[..., str], changes: Table, message: str) -> None:
    assert bad(faults=[fault(**changes)]) == message


ALLOWED_PARAMS = {
    "kill": set(),
    "latency": {"add", "multiply"},
    "errors": {"rate", "status"},
    "blackhole": set(),
    "health": {"status"},
    "partition": {"client"},
}
PARAM_VALUES = {"add": "5ms", "multiply": 2, "rate": 0.5, "status": "INTERNAL", "client": "web"}


@pytest.mark.parametrize(
    ("action", "param"),
    [(action, param) for action, allowed in ALLOWED_PARAMS.items() for param in PARAM_VALUES if param not in allowed],
)
def test_fault_parameter_that_does_not_apply_to_the_action(bad: Callable[..., str], action: str, param: str) -> None:
    message = bad(faults=[fault(action=action, **{param: PARAM_VALUES[param]})])
    assert message == f"fault[0].{param}: does not apply to a {action} fault"


def test_fault_target_lists_every_service(bad: Callable[..., str]) -> None:
    services = [{"name": "db", "replicas": 2}, {"name": "api"}]
    message = bad(top={"service": services}, client={"target": "api"}, faults=[fault(target="db/2")])
    assert message == "fault[0].target: no service or replica named 'db/2' (services: api, db; replicas like db/0)"


def test_second_fault_is_named_by_index(bad: Callable[..., str]) -> None:
    assert bad(faults=[fault(), fault(at="-1s")]) == "fault[1].at: expected a duration like \"10s\", got '-1s'"


def test_partition_client_must_be_one_of_several(bad: Callable[..., str]) -> None:
    clients = [{"name": "web", "rate": 10}, {"name": "batch", "concurrency": 2}]
    message = bad(top={"client": clients}, faults=[fault(action="partition", client="mobile")])
    assert message == "fault[0].client: expected one of web, batch, got 'mobile'"


# --------------------------------------------------------------------------- assertions


def check(**changes: Any) -> dict[str, Any]:
    return merged(CHECK, changes)


SCOPE_FORMS = 'expected "run", "service:NAME", "replica:NAME/N" or "client:NAME", got'


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"metric": "throughput"},
            f"assert[0].metric: expected one of {', '.join(METRICS)}, got 'throughput'",
            id="metric",
        ),
        pytest.param({"metric": DROP}, "assert[0].metric: is required", id="metric-missing"),
        pytest.param({"op": "=>"}, "assert[0].op: expected one of <, <=, >, >=, ==, !=, got '=>'", id="op-unknown"),
        pytest.param({"op": DROP}, "assert[0].op: is required", id="op-missing"),
        pytest.param({"value": DROP}, "assert[0].value: is required", id="value-missing"),
        pytest.param({"value": "high"}, "assert[0].value: expected a number, got a string 'high'", id="value-str"),
        pytest.param(
            {"value": "99ms"}, "assert[0].value: expected a number, got a string '99ms'", id="duration-not-latency"
        ),
        pytest.param({"value": False}, "assert[0].value: expected a number, got true or false False", id="value-bool"),
        pytest.param(
            {"metric": "latency.p99", "value": "fast"},
            "assert[0].value: expected a duration like \"10s\", got 'fast'",
            id="latency-value-word",
        ),
        pytest.param(
            {"metric": "latency.p99", "value": -1},
            "assert[0].value: must be at least 0, got -1",
            id="latency-value-negative",
        ),
        pytest.param(
            {"metric": "latency.max", "value": True},
            "assert[0].value: expected a number, got true or false True",
            id="latency-value-bool",
        ),
        pytest.param({"scope": "global"}, f"assert[0].scope: {SCOPE_FORMS} 'global'", id="scope-unknown"),
        pytest.param({"scope": "service:"}, f"assert[0].scope: {SCOPE_FORMS} 'service:'", id="scope-no-name"),
        pytest.param({"scope": "replica"}, f"assert[0].scope: {SCOPE_FORMS} 'replica'", id="scope-kind-only"),
        pytest.param({"scope": "run:api"}, f"assert[0].scope: {SCOPE_FORMS} 'run:api'", id="scope-run-with-name"),
        pytest.param({"scope": "service:db"}, "assert[0].scope: no service named 'db'", id="scope-service"),
        pytest.param({"scope": "replica:api/3"}, "assert[0].scope: no replica named 'api/3'", id="scope-replica"),
        pytest.param({"scope": "replica:api"}, "assert[0].scope: no replica named 'api'", id="scope-replica-svc"),
        pytest.param({"scope": "client:mobile"}, "assert[0].scope: no client named 'mobile'", id="scope-client"),
        pytest.param(
            {"scope": 3}, "assert[0].scope: expected a non-empty string, got an integer 3", id="scope-not-string"
        ),
        pytest.param({"window": "0s"}, 'assert[0].window: expected ["FROM", "TO"], got \'0s\'', id="window-str"),
        pytest.param({"window": ["0s"]}, 'assert[0].window: expected ["FROM", "TO"], got [\'0s\']', id="window-one"),
        pytest.param(
            {"window": ["0s", "1s", "2s"]},
            "assert[0].window: expected [\"FROM\", \"TO\"], got ['0s', '1s', '2s']",
            id="window-three",
        ),
        pytest.param(
            {"window": ["x", "5s"]},
            "assert[0].window[0]: expected a duration like \"10s\", got 'x'",
            id="window-from-bad",
        ),
        pytest.param(
            {"window": ["1s", True]},
            'assert[0].window[1]: expected a duration like "10s", got True',
            id="window-to-bad",
        ),
        pytest.param(
            {"window": ["5s", "2s"]}, "assert[0].window: needs FROM < TO <= duration (10s)", id="window-reversed"
        ),
        pytest.param(
            {"window": ["3s", "3s"]}, "assert[0].window: needs FROM < TO <= duration (10s)", id="window-empty"
        ),
        pytest.param(
            {"window": ["0s", "11s"]}, "assert[0].window: needs FROM < TO <= duration (10s)", id="window-past-end"
        ),
        pytest.param({"name": 3}, "assert[0].name: expected a non-empty string, got an integer 3", id="name"),
        pytest.param({"scop": "run"}, "assert[0].scop: unknown key (did you mean 'scope'?)", id="unknown-key"),
    ],
)
def test_bad_assertion(bad: Callable[..., str], changes: Table, message: str) -> None:
    assert bad(asserts=[check(**changes)]) == message


def test_second_assertion_is_named_by_index(bad: Callable[..., str]) -> None:
    assert bad(asserts=[check(), check(op="~")]) == ("assert[1].op: expected one of <, <=, >, >=, ==, !=, got '~'")


@pytest.mark.parametrize(
    ("metric", "value", "milliseconds"),
    [
        ("latency.p99", "150ms", 150.0),
        ("latency.p50", "1.5s", 1500.0),
        ("latency.p90", "250us", 0.25),
        ("latency.p999", "2m", 120_000.0),
        ("latency.mean", "60ms", 60.0),
        ("latency.max", "1s", 1000.0),
        ("latency.p99", 150, 150.0),
        ("latency.p99", 12.5, 12.5),
    ],
)
def test_latency_assertion_values_are_milliseconds(files: Files, metric: str, value: Any, milliseconds: float) -> None:
    (assertion,) = files.load(asserts=[check(metric=metric, op="<", value=value)]).assertions
    assert assertion.value == pytest.approx(milliseconds, rel=1e-12)
    assert isinstance(assertion.value, float)
    assert assertion.name == f"{metric} < {milliseconds:g}"


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.path == path
    assert scenario.name == path.stem
    assert scenario.services
    assert scenario.clients
    assert scenario.assertions


def test_there_are_shipped_scenarios() -> None:
    assert len(SCENARIOS) >= 8


def test_defaults(files: Files) -> None:
    path = files.write(scenario_text(), name="minimal.toml")
    scenario = load_scenario(path)
    assert scenario.path == path
    assert scenario.name == "minimal"
    assert scenario.description == ""
    assert scenario.seed == 1
    assert scenario.duration == 10.0
    assert scenario.drain == 10.0
    assert scenario.balancer == BalancerConfig(policy="round_robin", ring_size=1024, choices=2)
    assert scenario.health == HealthConfig(
        enabled=True,
        interval=1.0,
        timeout=0.5,
        unhealthy_threshold=3,
        healthy_threshold=2,
        jitter=0.0,
        service=None,
    )
    assert scenario.services == (
        ServiceConfig(
            name="api",
            replicas=3,
            latency=Constant(0.010),
            message_latency=Constant(0.0),
            error_rate=0.0,
            error_status=StatusCode.UNAVAILABLE,
            capacity=None,
            queue_limit=None,
            weights=(1, 1, 1),
            probe_latency=0.001,
        ),
    )
    assert scenario.clients == (
        ClientConfig(
            name="web",
            target="api",
            rate=100.0,
            concurrency=None,
            think_time=0.0,
            deadline=None,
            start=0.0,
            stop=None,
            mix=((Pattern.UNARY, 1.0),),
            messages=10,
            keys=None,
        ),
    )
    assert scenario.faults == ()
    assert scenario.assertions == ()


def test_defaults_of_optional_parts(files: Files) -> None:
    scenario = files.load(
        top={"balancer": {}, "health": {}},
        service={"replicas": DROP},
        faults=[KILL],
        asserts=[CHECK],
    )
    assert scenario.balancer == BalancerConfig()
    assert scenario.health == HealthConfig()
    assert scenario.services[0].replicas == 1
    assert scenario.services[0].weights == (1,)
    assert scenario.faults == (
        FaultConfig(
            index=0,
            at=1.0,
            duration=None,
            action=FaultAction.KILL,
            target="api/0",
            add=0.0,
            multiply=1.0,
            rate=0.0,
            status=StatusCode.UNAVAILABLE,
            health=HealthStatus.NOT_SERVING,
            client=None,
        ),
    )
    assert scenario.assertions == (
        AssertionConfig(
            name="success_rate >= 0.99",
            metric="success_rate",
            op=">=",
            value=0.99,
            scope="run",
            scope_name=None,
            window=None,
        ),
    )


def test_every_key_is_read_into_the_model(files: Files) -> None:
    services = [
        {
            "name": "api",
            "replicas": 2,
            "latency": {"dist": "uniform", "low": "5ms", "high": "25ms"},
            "message_latency": "2ms",
            "error_rate": 0.01,
            "error_status": "internal",
            "capacity": 8,
            "queue_limit": 0,
            "weights": [1, 0],
            "probe_latency": "3ms",
        },
        {"name": "db", "replicas": 3, "weight": 2, "latency": 0.5},
    ]
    clients = [
        {
            "name": "batch",
            "target": "db",
            "concurrency": 4,
            "think_time": "100ms",
            "deadline": "2s",
            "start": "1s",
            "stop": "9s",
            "patterns": {"unary": 0, "server_stream": 1, "bidi": 3},
            "messages": 5,
            "keys": {"dist": "zipf", "count": 100, "exponent": 1.2},
        },
        {"name": "web", "target": "api", "rate": 50.5, "keys": {"dist": "uniform", "count": 7}},
    ]
    scenario = files.load(
        top={
            "name": "everything",
            "description": "all of it",
            "seed": 0,
            "duration": 10,
            "drain": "0s",
            "service": services,
            "client": clients,
            "balancer": {"policy": "p2c", "ring_size": 64, "choices": 3},
            "health": {
                "enabled": False,
                "interval": "250ms",
                "timeout": "100ms",
                "unhealthy_threshold": 1,
                "healthy_threshold": 4,
                "jitter": 0.25,
                "service": "grpc.health.v1.Health",
            },
        },
        faults=[
            {"at": "0s", "for": "1s", "action": "latency", "target": "api", "add": "5ms", "multiply": 2},
            {"at": "2s", "action": "errors", "target": "db/2", "rate": 1, "status": 13},
            {"at": "3s", "action": "health", "target": "db/0", "status": "SERVICE_UNKNOWN"},
            {"at": "4s", "action": "partition", "target": "api/1", "client": "batch"},
            {"at": "5s", "action": "blackhole", "target": "db"},
            {"at": "6s", "action": "health", "target": "db/1"},
        ],
        asserts=[
            {"metric": "requests", "op": "!=", "value": 0, "scope": "replica:db/2", "window": ["1s", "10s"]},
            {"metric": "errors", "op": "<", "value": 3, "scope": "service:db", "name": "few errors"},
            {"metric": "key_affinity", "op": "==", "value": 1, "scope": "client:web", "window": [0, 2.5]},
        ],
    )
    assert (scenario.name, scenario.description, scenario.seed) == ("everything", "all of it", 0)
    assert (scenario.duration, scenario.drain) == (10.0, 0.0)
    assert scenario.balancer == BalancerConfig(policy="p2c", ring_size=64, choices=3)
    assert scenario.health == HealthConfig(
        enabled=False,
        interval=0.25,
        timeout=0.1,
        unhealthy_threshold=1,
        healthy_threshold=4,
        jitter=0.25,
        service="grpc.health.v1.Health",
    )

    api, db = scenario.services
    assert api == ServiceConfig(
        name="api",
        replicas=2,
        latency=Uniform(0.005, 0.025),
        message_latency=Constant(0.002),
        error_rate=0.01,
        error_status=StatusCode.INTERNAL,
        capacity=8,
        queue_limit=0,
        weights=(1, 0),
        probe_latency=0.003,
    )
    assert (db.latency, db.weights) == (Constant(0.5), (2, 2, 2))
    assert scenario.service("db") is db

    batch, web = scenario.clients
    assert batch == ClientConfig(
        name="batch",
        target="db",
        rate=None,
        concurrency=4,
        think_time=0.1,
        deadline=2.0,
        start=1.0,
        stop=9.0,
        mix=((Pattern.SERVER_STREAM, 1.0), (Pattern.BIDI, 3.0)),
        messages=5,
        keys=KeyDistribution("zipf", 100, 1.2),
    )
    assert (web.rate, web.concurrency, web.keys) == (50.5, None, KeyDistribution("uniform", 7, 1.0))

    latency, errors, health, partition, blackhole, default_health = scenario.faults
    assert (latency.index, latency.at, latency.duration, latency.action) == (0, 0.0, 1.0, FaultAction.LATENCY)
    assert (latency.target, latency.add, latency.multiply) == ("api", 0.005, 2.0)
    assert (errors.index, errors.action, errors.rate, errors.status) == (
        1,
        FaultAction.ERRORS,
        1.0,
        StatusCode.INTERNAL,
    )
    assert (health.action, health.health) == (FaultAction.HEALTH, HealthStatus.SERVICE_UNKNOWN)
    assert (partition.action, partition.client, partition.target) == (FaultAction.PARTITION, "batch", "api/1")
    assert (blackhole.action, blackhole.target, blackhole.duration) == (FaultAction.BLACKHOLE, "db", None)
    assert default_health.health is HealthStatus.NOT_SERVING

    replica, service, client = scenario.assertions
    assert (replica.scope, replica.scope_name, replica.window) == ("replica", "db/2", (1.0, 10.0))
    assert (replica.name, replica.scope_label, replica.value) == ("requests != 0 [replica:db/2]", "replica:db/2", 0.0)
    assert (service.name, service.scope_label) == ("few errors", "service:db")
    assert (client.scope, client.scope_name, client.window) == ("client", "web", (0.0, 2.5))


@pytest.mark.parametrize(
    ("latency", "expected"),
    [
        ("20ms", Constant(0.020)),
        (0.02, Constant(0.02)),
        ({"dist": "constant", "value": "7ms"}, Constant(0.007)),
        ({"dist": "uniform", "low": "5ms", "high": "5ms"}, Uniform(0.005, 0.005)),
        ({"dist": "exponential", "mean": "10ms"}, Exponential(0.010)),
        ({"dist": "exponential", "mean": 0}, Exponential(0.0)),
        ({"dist": "normal", "mean": "20ms", "stddev": "5ms"}, Normal(0.020, 0.005)),
        ({"dist": "lognormal", "median": "15ms", "sigma": 0}, LogNormal(0.015, 0.0)),
        (
            {"dist": "empirical", "bounds": ["1ms", "10ms", 0.1], "weights": [5, 0, 1.5]},
            Empirical((0.001, 0.010, 0.1), (5.0, 0.0, 1.5)),
        ),
    ],
)
def test_latency_distributions(files: Files, latency: Any, expected: object) -> None:
    assert files.load(service={"latency": latency}).services[0].latency == expected


@pytest.mark.parametrize(
    ("status", "code"), [("UNAVAILABLE", 14), ("internal", 13), (8, 8), ("4", 4), (" aborted ", 10)]
)
def test_error_status_spellings(files: Files, status: Any, code: int) -> None:
    assert files.load(service={"error_status": status}).services[0].error_status == StatusCode(code)


def test_duration_units(files: Files) -> None:
    scenario = files.load(
        top={"duration": "2h", "drain": "1.5s"},
        client={"deadline": "250ms", "start": "1m", "stop": "90m"},
        service={"probe_latency": "100us"},
    )
    assert scenario.duration == 7200.0
    assert scenario.drain == 1.5
    assert scenario.clients[0].deadline == pytest.approx(0.25)
    assert (scenario.clients[0].start, scenario.clients[0].stop) == (60.0, 5400.0)
    assert scenario.services[0].probe_latency == pytest.approx(1e-4)


def test_think_time_zero_is_allowed_on_an_open_loop_client(files: Files) -> None:
    assert files.load(client={"think_time": "0s"}).clients[0].think_time == 0.0


def test_latency_fault_with_multiply_only_and_zero_add(files: Files) -> None:
    (fault_config,) = files.load(faults=[fault(action="latency", add="0s", multiply=0.5)]).faults
    assert (fault_config.add, fault_config.multiply) == (0.0, 0.5)
    assert fault_config.describe() == "x0.5"


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


def test_health_fault_status_is_case_insensitive(files: Files) -> None:
    text = scenario_text(
        faults=[{"at": "1s", "action": "health", "target": "api/0", "status": "service_unknown"}],
    )
    assert load_scenario(files.write(text)).faults[0].health.value == "SERVICE_UNKNOWN"


def test_misspelt_breaker_table_is_named(bad: Callable[..., str]) -> None:
    assert bad(top={"circuit_breaker": {"node": {"window_size": 5}}}) == ("circuit_breaker.node: unknown key")
