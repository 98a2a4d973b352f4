"""Scenario validation of [[client]]: targets, open and closed loop, patterns, keys, deadlines and policies.

Every rejection names the file, the key path and the problem, in one line; each error test
writes a small valid scenario with one part made wrong (tests/scenario_files.py) and checks the
whole message after the `FILE: ` prefix, so a test states only what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenario_files import DROP, Table


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
