"""Scenario validation of [[fault]]: times, actions, targets and the parameters each action takes.

Every rejection names the file, the key path and the problem, in one line; each error test
writes a small valid scenario with one part made wrong (tests/scenario_files.py) and checks the
whole message after the `FILE: ` prefix, so a test states only what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from meshsim.core.faults import KINDS
from meshsim.core.scenario_loader import load_scenario
from tests.scenario_files import DROP, Files, Table, fault, scenario_text


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
            f"fault[0].action: expected one of {', '.join(KINDS)}, got 'explode'",
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


def test_health_fault_status_is_case_insensitive(files: Files) -> None:
    text = scenario_text(
        faults=[{"at": "1s", "action": "health", "target": "api/0", "status": "service_unknown"}],
    )
    assert load_scenario(files.write(text)).faults[0].effect.describe() == "SERVICE_UNKNOWN"
