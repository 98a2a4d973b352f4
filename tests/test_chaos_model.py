"""The chaos model: fault requests read as scenario faults are, and a board that clears each in time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from meshsim.core.chaos import (
    MAX_ACTIVE,
    CallMatch,
    ChaosFault,
    ChaosRequestError,
    ChaosScope,
    FaultBoard,
    fault_request,
    read_fault,
)
from meshsim.core.scenario_loader import load_scenario
from tests.conftest import ROOT

EVERYTHING = ChaosScope(
    ("kill", "latency", "errors", "blackhole", "health", "partition"), headers=True, clients=("web",)
)


def test_a_request_reads_as_the_scenario_reads_a_fault() -> None:
    fault = read_fault(
        {"action": "errors", "target": "api/1", "share": 0.25, "status": "INTERNAL", "for": "30s", "method": "Process"},
        EVERYTHING,
        "f1",
        100.0,
    )
    assert fault.effect.describe() == "25% INTERNAL"  # for errors, share is the rate
    assert (fault.duration, fault.expires_at, fault.match.method) == (30.0, 130.0, "Process")
    assert fault.describe() == "f1 errors 25% INTERNAL on api/1 for 30s (method Process)"
    slow = read_fault({"action": "latency", "target": "*", "add": "20ms", "share": 0.1, "for": 5}, EVERYTHING, "f2", 0)
    assert slow.match.share == 0.1 and slow.effect.describe() == "+20ms"


@pytest.mark.parametrize(
    ("request_body", "field", "words"),
    [
        ([], None, "expected a JSON object"),
        ({"target": "api", "for": "1s"}, "action", "is required"),
        ({"action": "kill", "target": "api"}, "for", "is required"),
        ({"action": "kill", "target": "api", "for": "0s"}, "for", "greater than 0s"),
        ({"action": "kill", "target": "api", "for": "25h"}, "for", "at most 86400s"),
        ({"action": "kill", "target": "", "for": "1s"}, "target", "non-empty string"),
        ({"action": "kill", "target": "api", "for": "1s", "share": 0.5}, "share", "acts on the whole target"),
        ({"action": "errors", "target": "api", "for": "1s", "rate": 0}, "rate", "greater than 0"),
        ({"action": "errors", "target": "api", "for": "1s", "rate": 0.5, "add": "1s"}, "add", "does not apply"),
        ({"action": "latency", "target": "api", "for": "1s"}, None, "needs add"),
        ({"action": "latency", "target": "api", "for": "1s", "add": "1s", "header": "a b"}, "header", "name=value"),
        ({"action": "partition", "target": "api", "for": "1s", "client": "x"}, "client", "expected one of web"),
        ({"action": "latency", "target": "api", "for": "1s", "add": "1s", "sharre": 1}, "sharre", "did you mean"),
    ],
)
def test_a_bad_request_names_its_field(request_body: object, field: str | None, words: str) -> None:
    with pytest.raises(ChaosRequestError) as refused:
        read_fault(request_body, EVERYTHING, "f1", 0.0)
    assert refused.value.field == field
    assert words in refused.value.message


def test_a_process_refuses_kinds_and_targets_it_does_not_have() -> None:
    replicas = ChaosScope(
        ("kill",),
        headers=False,
        check_target=lambda target, action: None if target == "api/0" else f"no replica {target!r}",
        why_not={"partition": "a replica cannot cut one caller off"},
    )
    with pytest.raises(ChaosRequestError, match="partition does not apply here: a replica cannot") as refused:
        read_fault({"action": "partition", "target": "api/0", "for": "1s", "client": "x"}, replicas, "f1", 0.0)
    assert refused.value.field == "action"
    with pytest.raises(ChaosRequestError, match="no replica 'api/9'"):
        read_fault({"action": "kill", "target": "api/9", "for": "1s"}, replicas, "f1", 0.0)


def test_calls_match_by_method_path_or_name_and_by_header() -> None:
    match = CallMatch(method="Process", header=("x-chaos", "on"))
    assert match.method_matches("/mesh.v1.MeshService/Process")
    assert not match.method_matches("/mesh.v1.MeshService/Chat")
    assert CallMatch(method="/mesh.v1.MeshService/Chat").method_matches("/mesh.v1.MeshService/Chat")
    assert match.header_matches([("x-chaos", "on")]) and not match.header_matches([("x-chaos", "off")])
    assert CallMatch(header=("x-chaos", None)).header_matches([("x-chaos", "anything")])


class Clock:
    """The board's clock and timer, advanced by hand: what a loop's call_later does, in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None], Timer]] = []

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer()
        self.timers.append((self.now + delay, fn, timer))
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for when, fn, timer in sorted(self.timers, key=lambda entry: entry[0]):
            if when <= self.now and not timer.cancelled:
                timer.cancelled = True
                fn()


class Timer:
    cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def test_the_board_clears_each_fault_when_its_time_is_up_and_says_why() -> None:
    clock = Clock()
    log: list[str] = []

    def applied(fault: ChaosFault) -> None:
        log.append(f"+{fault.id}")

    def cleared(fault: ChaosFault, reason: str) -> None:
        log.append(f"-{fault.id} {reason}")

    board = FaultBoard(EVERYTHING, lambda: clock.now, clock.call_later, applied, cleared)
    board.add({"action": "kill", "target": "api/0", "for": "2s"})
    board.add({"action": "health", "target": "api/1", "for": "5s"})
    board.add({"action": "blackhole", "target": "api/2", "for": "9s"})
    clock.advance(2.5)
    assert [f.id for f in board.active] == ["f2", "f3"]
    assert board.remove("f3") is not None and board.remove("f3") is None
    clock.advance(10)  # f3's timer was cancelled with it
    assert log == ["+f1", "+f2", "+f3", "-f1 expired", "-f3 deleted", "-f2 expired"]
    board.add({"action": "kill", "target": "api/0", "for": "1s"})
    board.add({"action": "kill", "target": "api/1", "for": "1s"})
    assert [f.id for f in board.clear()] == ["f5", "f4"]  # the latest undone first
    assert board.active == []


def test_a_refused_fault_is_not_held_and_the_board_is_bounded() -> None:
    clock = Clock()

    def refuse(fault: ChaosFault) -> None:
        raise ChaosRequestError("multiply", "no")

    board = FaultBoard(EVERYTHING, lambda: clock.now, clock.call_later, refuse, lambda fault, reason: None)
    with pytest.raises(ChaosRequestError):
        board.add({"action": "latency", "target": "api", "multiply": 2, "for": "1s"})
    assert board.active == [] and clock.timers == []
    board = FaultBoard(EVERYTHING, lambda: clock.now, clock.call_later, lambda f: None, lambda f, r: None)
    for _ in range(MAX_ACTIVE):
        board.add({"action": "kill", "target": "api", "for": "1s"})
    with pytest.raises(ChaosRequestError, match="faults are active already"):
        board.add({"action": "kill", "target": "api", "for": "1s"})


def test_every_shipped_scenario_fault_becomes_a_request_that_reads_back_the_same() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        scenario = load_scenario(path)
        clients = tuple(client.name for client in scenario.clients)
        scope = ChaosScope(EVERYTHING.kinds, headers=True, clients=clients)
        for fault in scenario.faults:
            request = fault_request(fault.action, fault.target, fault.effect, 12.5)
            read = read_fault(request, scope, "f1", 0.0)
            assert (read.action, read.target, read.effect, read.duration) == (
                fault.action,
                fault.target,
                fault.effect,
                12.5,
            ), path.name


def test_a_delay_longer_than_the_fault_and_share_with_rate_are_refused() -> None:
    with pytest.raises(ChaosRequestError) as refused:
        read_fault({"action": "latency", "target": "api", "add": "10s", "for": "5s"}, EVERYTHING, "f1", 0.0)
    assert refused.value.field == "add"
    with pytest.raises(ChaosRequestError) as refused:
        read_fault({"action": "errors", "target": "api", "rate": 0.5, "share": 0.5, "for": "5s"}, EVERYTHING, "f1", 0)
    assert refused.value.field == "share"


def test_only_applied_faults_take_a_number() -> None:
    clock = Clock()
    board = FaultBoard(EVERYTHING, lambda: clock.now, clock.call_later, lambda f: None, lambda f, r: None)
    with pytest.raises(ChaosRequestError):
        board.add({"action": "kill", "target": "api"})
    assert board.add({"action": "kill", "target": "api", "for": "1s"}).id == "f1"
