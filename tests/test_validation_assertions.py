"""Scenario validation of [[assert]]: metrics, operators, values and scopes.

Every rejection names the file, the key path and the problem, in one line; each error test
writes a small valid scenario with one part made wrong (tests/scenario_files.py) and checks the
whole message after the `FILE: ` prefix, so a test states only what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meshsim.core.scenario import METRICS
from tests.scenario_files import CHECK, DROP, Files, Table, merged


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
