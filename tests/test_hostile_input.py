"""Hostile files: each refused in one line naming the file and key, exit 2, in bounded time and memory.

The cases a fuzzing of the loaders found are reproduced one by one through the command
line; then hypothesis mutates the shipped scenarios and the documented proxy configs
(TOML and YAML) and checks that every file is either accepted or refused in one line,
never a traceback; and scenarios at the edges of every range are run to their end.
"""

from __future__ import annotations

import math
import resource
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshsim.cli import main
from meshsim.core.errors import ConfigError
from meshsim.core.scenario_loader import load_scenario
from meshsim.live.config import load_live_config
from tests.conftest import MINIMAL, ROOT, SCENARIOS
from tests.test_shipped_scenarios import assert_accounts_add_up, run_counting

BIG = "1" + "0" * 400

PROXY_TOML = """\
[proxy]
listen = "127.0.0.1:50050"
endpoints = ["127.0.0.1:50051", "127.0.0.1:50052"]
shutdown_grace = "5s"

[health]
interval = "1s"

[retry]
max_attempts = 3
"""

PROXY_YAML = """\
services:
  - name: mesh
    port: 50051
    replicas: 2
load_balancer:
  algorithm: round_robin
  health_check_interval: 1
retry_policy:
  max_attempts: 3
  initial_backoff: 0.1
proxy:
  listen: 127.0.0.1:50050
"""


def scenario_with(**replace: str) -> str:
    """MINIMAL with lines replaced (key = new text) or added to the table that holds them."""
    text = MINIMAL
    for key, value in replace.items():
        lines = [line for line in text.splitlines() if line.split(" = ")[0] == key]
        if lines:
            text = text.replace(lines[0], f"{key} = {value}")
        else:
            text += f"\n{key} = {value}\n" if "." not in key else ""
    return text


# (file name, text, the key the one line must name)
CASES: list[tuple[str, str, str]] = [
    ("deep-array.toml", MINIMAL + "x = " + "[" * 1000 + "]" * 1000 + "\n", "nested too deeply"),
    ("deep-table.toml", MINIMAL + "x = " + "{a=" * 400 + "1" + "}" * 400 + "\n", "nested too deeply"),
    ("deep-list.yaml", "services: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
    ("big-rate.toml", scenario_with(rate=BIG), "client[0].rate: is too large a number"),
    ("big-duration.toml", scenario_with(duration=BIG), "duration: expected a duration"),
    (
        "negative-error-rate.toml",
        MINIMAL.replace("replicas = 3", f"replicas = 3\nerror_rate = -{BIG}"),
        "service[0].error_rate: is too large a number",
    ),
    ("big-grace.toml", PROXY_TOML.replace('"5s"', BIG), "proxy.shutdown_grace: expected a duration"),
    (
        "big-interval.yaml",
        PROXY_YAML.replace("health_check_interval: 1", f"health_check_interval: {BIG}"),
        "load_balancer.health_check_interval: expected a duration",
    ),
    ("replicas-2-63.toml", scenario_with(replicas="9223372036854775808"), "service[0].replicas: must be at most"),
    ("replicas-1e18.toml", scenario_with(replicas="1000000000000000000"), "service[0].replicas: must be at most"),
    ("replicas-1e7.toml", scenario_with(replicas="10000000"), "service[0].replicas: must be at most 10,000"),
    ("superscript-port.toml", PROXY_TOML.replace("127.0.0.1:50051", "127.0.0.1:²"), "proxy.endpoints[0]"),
    ("arabic-port.toml", PROXY_TOML.replace("127.0.0.1:50051", "127.0.0.1:\u0661\u0662\u0663"), "proxy.endpoints[0]"),
    ("arabic-duration.toml", scenario_with(duration='"\u0661\u0660s"'), "duration: expected a duration"),
    ("int-key.yaml", PROXY_YAML + "5: x\n", "5: a key must be a name"),
    ("empty.toml", "", "the file is empty"),
    ("empty.yaml", "\n\n", "the file is empty"),
    ("typo.toml", PROXY_TOML.replace("endpoints =", "endpoint ="), "proxy.endpoints: is required (is 'endpoint'"),
    (
        "sigma.toml",
        MINIMAL.replace("replicas = 3", 'replicas = 3\nlatency = { dist = "lognormal", median = "10ms", sigma = 700 }'),
        "service[0].latency.sigma: must be at most 10",
    ),
    ("zipf.toml", MINIMAL + 'keys = { dist = "zipf", count = 1000, exponent = 1000 }\n', "client[0].keys.exponent"),
    (
        "multiplier.toml",
        MINIMAL + "\n[retry]\nbackoff_multiplier = 1e308\n",
        "retry.backoff_multiplier: must be at most",
    ),
    ("rate-1e9.toml", scenario_with(rate="1e9"), "client[0].rate: must be at most"),
    ("calls.toml", scenario_with(rate="1000000", duration='"60s"'), "client[0]: would start about 60,000,000 calls"),
    ("keys.toml", MINIMAL + 'keys = { dist = "uniform", count = 100000000 }\n', "client[0].keys.count"),
    ("ring.toml", MINIMAL + "\n[balancer]\nring_size = 100000000\n", "balancer.ring_size: must be at most"),
    ("messages.toml", scenario_with(messages="1000000000"), "client[0].messages: must be at most"),
    (
        "closed-loop.toml",
        MINIMAL.replace("rate = 100", 'concurrency = 10\ndeadline = "1us"'),
        "client[0]: would start about",
    ),
    (
        "no-time.toml",
        MINIMAL.replace("replicas = 3", 'replicas = 3\nlatency = "0s"').replace("rate = 100", "concurrency = 1"),
        "client[0]: a closed loop whose calls take no time",
    ),
    ("health-1us.toml", MINIMAL + '\n[health]\ninterval = "1us"\n', "health.interval: must be at least 1ms"),
    (
        "outlier-1us.toml",
        MINIMAL + '\n[outlier_detection]\ninterval = "1us"\n[outlier_detection.consecutive_failures]\n',
        "outlier_detection.interval: must be at least 1ms",
    ),
    ("long.toml", scenario_with(duration="1e9"), "duration: must be at most"),
    (
        "alias-bomb.yaml",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
        "services: [{endpoints: *h}]\n",
        "aliases (*name) are not accepted",
    ),
]


@pytest.mark.parametrize(("name", "text", "says"), CASES, ids=[c[0] for c in CASES])
def test_each_hostile_file_is_one_line_and_exit_2(tmp_path: Path, name: str, text: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    assert says in lines[0], lines[0]
    assert len(lines[0]) < 400


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alias-bomb.yaml", "replicas-1e18.toml", "deep-array.toml"])
def test_the_worst_files_are_refused_in_bounded_memory(tmp_path: Path, name: str) -> None:
    """In a process allowed 1 GiB, through `meshsim run` as a user would meet them."""
    text = next(text for case, text, _ in CASES if case == name)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    command = "live" if name.endswith(".yaml") else "run"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        [sys.executable, "-m", "meshsim", command, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("text", [PROXY_TOML, PROXY_YAML], ids=["toml", "yaml"])
def test_validate_checks_proxy_configs_too(tmp_path: Path, text: str) -> None:
    path = tmp_path / ("mesh.yaml" if text is PROXY_YAML else "mesh.toml")
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok: {path} (proxy config: listens on 127.0.0.1:50050")


def test_a_simulator_failure_exits_3_with_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the file's fault, not a failed assertion: a bug, with its own exit code and one line."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ExceptionGroup("trio", [ZeroDivisionError("a bug in meshsim")])

    monkeypatch.setattr("meshsim.sim.runner.run_scenario", broken)
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios/failover.toml")], catch_exceptions=False)
    assert result.exit_code == 3
    (line,) = result.stderr.splitlines()
    assert "the simulator failed (seed 42): ZeroDivisionError: a bug in meshsim" in line


def test_a_large_run_says_what_it_will_cost_first(tmp_path: Path) -> None:
    path = tmp_path / "large.toml"
    path.write_text(scenario_with(rate="250000", duration='"5s"'), encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 0
    assert "about 1,250,000 calls" in result.stdout


# --- fuzzing the loaders ---------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.integers(),
    st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(
        ["10s", "1us", "0s", "\u0661\u0660s", "1e9s", "-5ms", "5 m", "UNAVAILABLE", "127.0.0.1:\u00b2", "a:1", ""]
    ),
    st.lists(st.integers(-3, 3), max_size=3),
    st.just({}),
    st.just([]),
    st.recursive(st.integers(0, 2), lambda inner: st.lists(inner, max_size=2), max_leaves=40),
)


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """A document with a few keys replaced by hostile values, removed, misspelt or added."""
    document = _copy(document)
    for _ in range(draw(st.integers(1, 4))):
        picked = _pick_key(draw, document)
        if picked is None:
            break  # every table was emptied
        parent, key = picked
        action = draw(st.sampled_from(["replace", "replace", "delete", "misspell", "add"]))
        if action == "replace":
            parent[key] = draw(HOSTILE)
        elif action == "delete":
            del parent[key]
        elif action == "misspell":
            parent[key[:-1] or "x"] = parent.pop(key)
        else:
            parent[draw(st.sampled_from([f"{key}s", "unknown", "rate", "interval", "sigma"]))] = draw(HOSTILE)
    return document


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _pick_key(draw: st.DrawFn, document: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    tables: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value:
                tables.append(value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(document)
    if not tables:
        return None
    parent = draw(st.sampled_from(tables))
    return parent, draw(st.sampled_from(sorted(parent)))


def to_toml(document: dict[str, Any]) -> str:
    """TOML with every value inline (`service = [{...}]` is `[[service]]`); None is left out."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in document.items() if v is not None)


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else _toml_string(key)


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"


SHIPPED = [tomllib.loads(path.read_text(encoding="utf-8")) for path in SCENARIOS]
PROXIES = [tomllib.loads(PROXY_TOML)]
YAMLS = [yaml.safe_load(PROXY_YAML)]


def assert_one_line_or_valid(load: Callable[[Path], object], path: Path) -> None:
    try:
        load(path)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(f"{path}: "), message
        assert len(message) < 600, message


def fuzz(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))


@fuzz(500)
@given(st.data())
def test_mutated_files_are_valid_or_refused_in_one_line(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["scenario", "proxy-toml", "proxy-yaml"]))
    _check_mutation(data, kind)


@pytest.mark.slow
@fuzz(5000)
@given(st.data())
def test_thousands_of_mutated_files_are_valid_or_refused_in_one_line(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["scenario", "scenario", "proxy-toml", "proxy-yaml"]))
    _check_mutation(data, kind)


def _check_mutation(data: st.DataObject, kind: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        if kind == "scenario":
            document = data.draw(mutated(data.draw(st.sampled_from(SHIPPED))))
            path = Path(directory) / "fuzzed.toml"
            path.write_text(to_toml(document), encoding="utf-8")
            assert_one_line_or_valid(load_scenario, path)
        elif kind == "proxy-toml":
            path = Path(directory) / "fuzzed.toml"
            path.write_text(to_toml(data.draw(mutated(PROXIES[0]))), encoding="utf-8")
            assert_one_line_or_valid(load_live_config, path)
        else:
            path = Path(directory) / "fuzzed.yaml"
            path.write_text(yaml.safe_dump(data.draw(mutated(YAMLS[0]))), encoding="utf-8")
            assert_one_line_or_valid(load_live_config, path)


# --- every accepted scenario at the edges of the ranges finishes ---------------------------------

LATENCIES = [
    '{ dist = "lognormal", median = "1ms", sigma = 10 }',
    '{ dist = "normal", mean = "1ms", stddev = "1h" }',
    '{ dist = "exponential", mean = "1us" }',
    '"0s"',
    '{ dist = "uniform", low = "0s", high = "168h" }',
]
CLIENTS = [
    "rate = 2000",
    'concurrency = 4\nthink_time = "1ms"',
    'concurrency = 50\ndeadline = "1ms"',
    'rate = 500\nkeys = { dist = "zipf", count = 1000000, exponent = 10 }',
    'rate = 200\npatterns = { bidi = 1 }\nmessages = 100000\ndeadline = "100ms"',
]
POLICIES = [
    "",
    '[retry]\nmax_attempts = 100\nbackoff_multiplier = 100\ninitial_backoff = "1us"\nmax_backoff = "1us"',
    '[hedging]\nmax_attempts = 100\nhedging_delay = "0s"',
    '[circuit_breaker.replica]\nwindow_type = "time"\nwindow_size = 86400\nminimum_calls = 1',
    '[health]\ninterval = "1ms"\ntimeout = "1us"',
    '[outlier_detection]\ninterval = "1ms"\n[outlier_detection.consecutive_failures]\nthreshold = 1',
]
BALANCERS = ["round_robin", "consistent_hash", "peak_ewma", "p2c"]


def edge_scenario(latency: str, client: str, policies: str, balancer: str, replicas: int) -> str:
    """A short run with other values at (or near) the ends of their documented ranges."""
    return (
        'schema = "meshsim/v1"\nseed = 3\nduration = "2s"\ndrain = "1s"\n\n'
        f'[[service]]\nname = "api"\nreplicas = {replicas}\nlatency = {latency}\nerror_rate = 0.1\n\n'
        f'[balancer]\npolicy = "{balancer}"\nring_size = 65536\n\n'
        f'[[client]]\nname = "c"\n{client}\n\n{policies}\n'
    )


def run_if_accepted(text: str, tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    try:
        scenario = load_scenario(path)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    report, started, finished = run_counting(scenario)
    assert started == finished  # every call started ended, with a status
    assert_accounts_add_up(report)


@pytest.mark.parametrize("index", range(6))
def test_scenarios_at_the_edges_of_the_ranges_finish(tmp_path: Path, index: int) -> None:
    """Each latency, client and policy at its edge at least once (the slow test mixes them)."""
    text = edge_scenario(
        LATENCIES[index % len(LATENCIES)],
        CLIENTS[index % len(CLIENTS)],
        POLICIES[index % len(POLICIES)],
        BALANCERS[index % len(BALANCERS)],
        3,
    )
    run_if_accepted(text, tmp_path)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(LATENCIES),
    st.sampled_from(CLIENTS),
    st.sampled_from(POLICIES),
    st.sampled_from(BALANCERS),
    st.sampled_from([1, 3, 20]),
)
def test_mixed_scenarios_at_the_edges_of_the_ranges_finish(
    latency: str, client: str, policies: str, balancer: str, replicas: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        run_if_accepted(edge_scenario(latency, client, policies, balancer, replicas), Path(directory))
