"""One set of behaviour tests, run in the simulator, through GrpcClient and through the proxy.

Each case is one scenario, in the scenario file's own vocabulary (its replicas, faults,
policies and one client), and what a user must see. The simulator runs it as it is.
Live, its replicas are real grpc.aio servers on 127.0.0.1 (meshsim/stage: the service's
latency, the faults at their times), and the client's load generator (runtime/load.py:
the same workers, think time, deadlines, patterns and keys) makes its calls with
GrpcClient's own methods, or with a plain stub through the proxy, both configured from
the same scenario. The same mesh logic must give the same answer in all three.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import attrs
import grpc
import pytest
import trio

from meshsim import live
from meshsim.core.calls import MESH_SERVICE, CallSpec, Pattern
from meshsim.core.events import AttemptFinished, BreakerChanged, EndpointEjected, RequestFinished
from meshsim.core.scenario import Scenario
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.live.status import status_of
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.actor import Supervisor
from meshsim.runtime.assembly import Streams
from meshsim.runtime.faults import FaultInjector
from meshsim.runtime.load import LoadClient
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue
from meshsim.sim.runner import run_scenario
from meshsim.stage.replica import StagedReplica


@attrs.define
class Seen:
    """What a user sees of a run, replicas named as in the scenario (api/0, api/1, ...)."""

    calls: list[RequestFinished] = attrs.Factory(list)
    attempts: list[AttemptFinished] = attrs.Factory(list)
    ejected: list[str] = attrs.Factory(list)
    opened: list[str] = attrs.Factory(list)  # replicas whose breaker opened

    def watch(self, observer: Observer, name_of: Callable[[str], str]) -> None:
        def finished(e: RequestFinished) -> None:
            self.calls.append(attrs.evolve(e, endpoint=None if e.endpoint is None else name_of(e.endpoint)))

        def attempted(e: AttemptFinished) -> None:
            self.attempts.append(attrs.evolve(e, endpoint=None if e.endpoint is None else name_of(e.endpoint)))

        def breaker(e: BreakerChanged) -> None:
            if e.scope == "replica" and e.state == "OPEN":
                self.opened.append(name_of(e.target))

        observer.subscribe(RequestFinished, finished)
        observer.subscribe(AttemptFinished, attempted)
        observer.subscribe(EndpointEjected, lambda e: self.ejected.append(name_of(e.endpoint)))
        observer.subscribe(BreakerChanged, breaker)

    def shares(self) -> dict[str, float]:
        counts = collections.Counter(c.endpoint for c in self.calls if c.endpoint is not None)
        total = sum(counts.values())
        return {name: count / total for name, count in sorted(counts.items())}


@attrs.frozen
class Case:
    name: str
    scenario: str  # a scenario file's text, less its schema line
    expect: Callable[[Seen], None]


# --- the cases ------------------------------------------------------------------------------

TWO_REPLICAS = """
seed = 5
duration = "2s"

[[service]]
name = "api"
replicas = 2
latency = "5ms"

[health]
interval = "100ms"
timeout = "50ms"

[[client]]
name = "c"
concurrency = 1
think_time = "15ms"
deadline = "2s"
"""

RETRY = '\n[retry]\nmax_attempts = 3\ninitial_backoff = "5ms"\n'
FAILING = '\n[[fault]]\nat = "0s"\naction = "errors"\ntarget = "api/0"\nrate = 1.0\nstatus = "UNAVAILABLE"\n'
STREAMS = TWO_REPLICAS.replace('deadline = "2s"', 'deadline = "2s"\npatterns = { server_stream = 1 }\nmessages = 3')


def every_call_succeeds(seen: Seen) -> None:
    assert len(seen.calls) >= 20
    assert [c.status for c in seen.calls if c.status is not StatusCode.OK] == []


def retries_did_it(seen: Seen) -> None:
    every_call_succeeds(seen)
    # Health says SERVING throughout, so retries alone carried the calls over.
    assert any(c.attempts == 2 for c in seen.calls)


def ejected_after_three_failures(seen: Seen) -> None:
    assert seen.ejected == ["api/0"]
    failed = [n for n, c in enumerate(seen.calls) if c.status is not StatusCode.OK]
    # Round robin sends every other call to the bad replica until its third failure ejects it.
    assert len(failed) == 3
    assert all(c.status is StatusCode.OK for c in seen.calls[failed[-1] + 1 :])


def answered_by_the_fast_replica(seen: Seen) -> None:
    every_call_succeeds(seen)
    assert max(c.finished - c.started for c in seen.calls) < 0.4


def committed_streams_fail_with_their_replica(seen: Seen) -> None:
    """api/0 dies at 1 s with streams mid-answer: those fail, on their first attempt (committed,
    never retried), and every other call succeeds, retried if need be."""
    failed = [c for c in seen.calls if c.status is not StatusCode.OK]
    assert 1 <= len(failed) <= 2, failed  # the two workers' streams on api/0 as it died
    assert all(c.attempts == 1 and c.endpoint == "api/0" and 0.9 < c.finished < 1.2 for c in failed)
    assert len(seen.calls) - len(failed) >= 5


def even_to_one_call(seen: Seen) -> None:
    counts = collections.Counter(c.endpoint for c in seen.calls)
    assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 1, counts


def three_to_one(seen: Seen) -> None:
    assert len(seen.calls) >= 40
    assert seen.shares()["api/0"] == pytest.approx(0.75, abs=0.03)


def spread_over_all(seen: Seen) -> None:
    shares = seen.shares()
    assert len(shares) == 3 and all(0.15 < share < 0.55 for share in shares.values()), shares


def avoids_the_slow_replica(seen: Seen) -> None:
    every_call_succeeds(seen)
    assert seen.shares().get("api/0", 0.0) < 0.12, seen.shares()  # round robin would give it a third


def each_key_on_one_replica(seen: Seen) -> None:
    every_call_succeeds(seen)
    homes = collections.defaultdict(set)
    for call in seen.calls:
        if call.started > 0.1:  # once every replica is in (the first call takes the first one in)
            homes[call.key].add(call.endpoint)
    assert len(homes) >= 10 and all(len(home) == 1 for home in homes.values()), homes
    assert len({home for (home,) in homes.values()}) == 3


def breaker_opens_on_the_failing_replica(seen: Seen) -> None:
    """Five attempts fill its window (minimum_calls), all failing: it opens, and from then on
    an attempt for api/0 fails at once without reaching it; retries carry every call."""
    assert seen.opened == ["api/0"]
    assert len([a for a in seen.attempts if a.endpoint == "api/0"]) == 5
    refused = [a for a in seen.attempts if a.endpoint is None]
    assert refused and all(a.status is StatusCode.UNAVAILABLE for a in refused)
    every_call_succeeds(seen)


def the_deadline_bounds_every_attempt_together(seen: Seen) -> None:
    """Attempts of 150 ms that fail, retried up to five times under a 400 ms deadline: the call
    ends at its deadline, in its third attempt, not after five."""
    assert len(seen.calls) >= 3
    for call in seen.calls:
        assert call.status is StatusCode.DEADLINE_EXCEEDED
        assert call.attempts == 3
        assert call.finished - call.started == pytest.approx(0.4, abs=0.04)


def per_attempt_timeouts_move_on(seen: Seen) -> None:
    every_call_succeeds(seen)
    assert max(c.finished - c.started for c in seen.calls) < 0.3
    assert any(c.attempts == 2 for c in seen.calls)


def three_replicas(policy: str, extra: str = "") -> str:
    return f"""
seed = 5
duration = "1.5s"

[[service]]
name = "api"
replicas = 3
latency = "10ms"

[health]
interval = "100ms"
timeout = "50ms"

[balancer]
policy = "{policy}"
hash_header = "x-user"

{extra}
"""


SLOW_FIRST = '\n[[fault]]\nat = "0s"\naction = "latency"\ntarget = "api/0"\nadd = "300ms"\n'
BUSY_CLIENT = '\n[[client]]\nname = "c"\nconcurrency = 6\ndeadline = "2s"\n'
STEADY_CLIENT = '\n[[client]]\nname = "c"\nconcurrency = 1\nthink_time = "10ms"\ndeadline = "2s"\n'

CASES = [
    Case("retries ride over a replica that fails every call", TWO_REPLICAS + RETRY + FAILING, retries_did_it),
    Case(
        "retries ride over a dead replica",
        TWO_REPLICAS + RETRY + '\n[[fault]]\nat = "0s"\naction = "kill"\ntarget = "api/0"\n',
        every_call_succeeds,
    ),
    Case(
        "outlier detection ejects a replica failing calls while healthy",
        TWO_REPLICAS
        + FAILING
        + '\n[outlier_detection]\ninterval = "10s"\nbase_ejection_time = "30s"\nmax_ejection_percent = 50\n'
        + "[outlier_detection.consecutive_failures]\nthreshold = 3\n",
        ejected_after_three_failures,
    ),
    Case(
        "hedging answers from the fast replica",
        TWO_REPLICAS
        + '\n[hedging]\nmax_attempts = 2\nhedging_delay = "50ms"\n'
        + '\n[[fault]]\nat = "0s"\naction = "latency"\ntarget = "api/0"\nadd = "500ms"\n',
        answered_by_the_fast_replica,
    ),
    Case("a stream that fails before answering is retried", STREAMS + RETRY + FAILING, retries_did_it),
    Case(
        "a stream that has answered is committed, and fails with its replica",
        STREAMS.replace('latency = "5ms"', 'latency = "20ms"\nmessage_latency = "50ms"')
        .replace("messages = 3", "messages = 10")
        .replace("concurrency = 1", "concurrency = 2")
        + RETRY
        + '\n[[fault]]\nat = "1s"\naction = "kill"\ntarget = "api/0"\n',
        committed_streams_fail_with_their_replica,
    ),
    Case("round robin: even to one call", three_replicas("round_robin") + STEADY_CLIENT, even_to_one_call),
    Case(
        "weighted round robin: shares follow the weights",
        three_replicas("weighted_round_robin").replace("replicas = 3", "replicas = 2\nweights = [3, 1]")
        + STEADY_CLIENT,
        three_to_one,
    ),
    Case("random: spread over every replica", three_replicas("random") + STEADY_CLIENT, spread_over_all),
    *[
        Case(
            f"{policy}: avoids the slow replica",
            three_replicas(policy) + BUSY_CLIENT + SLOW_FIRST,
            avoids_the_slow_replica,
        )
        for policy in ("least_connections", "p2c", "peak_ewma")
    ],
    Case(
        "consistent hash: each key stays on one replica",
        three_replicas("consistent_hash") + STEADY_CLIENT + 'keys = { dist = "uniform", count = 20 }\n',
        each_key_on_one_replica,
    ),
    Case(
        "a replica's breaker opens on its failures",
        TWO_REPLICAS
        + RETRY
        + FAILING
        + "\n[circuit_breaker.replica]\nwindow_size = 5\nminimum_calls = 5\nfailure_rate_threshold = 50\n"
        + 'wait_duration_in_open = "30s"\n',
        breaker_opens_on_the_failing_replica,
    ),
    Case(
        "the deadline bounds every attempt together",
        TWO_REPLICAS.replace('latency = "5ms"', 'latency = "150ms"').replace('deadline = "2s"', 'deadline = "400ms"')
        + '\n[retry]\nmax_attempts = 5\ninitial_backoff = "1ms"\nmax_backoff = "1ms"\n'
        + '\n[[fault]]\nat = "0s"\naction = "errors"\ntarget = "api"\nrate = 1.0\nstatus = "UNAVAILABLE"\n',
        the_deadline_bounds_every_attempt_together,
    ),
    Case(
        "a per-attempt timeout moves a call on to another replica",
        TWO_REPLICAS
        + '\n[retry]\nmax_attempts = 3\ninitial_backoff = "5ms"\nper_attempt_timeout = "100ms"\n'
        + '\n[[fault]]\nat = "0s"\naction = "latency"\ntarget = "api/0"\nadd = "1s"\n',
        per_attempt_timeouts_move_on,
    ),
]


def scenario_of(case: Case, tmp_path: Path) -> Scenario:
    path = tmp_path / "case.toml"
    path.write_text('schema = "meshsim/v1"\n' + case.scenario, encoding="utf-8")
    return load_scenario(path)


# --- the three worlds -----------------------------------------------------------------------


def simulate(scenario: Scenario) -> Seen:
    observer = Observer()
    seen = Seen()
    seen.watch(observer, lambda name: name)
    run_scenario(scenario, observer=observer)
    return seen


def go_live(scenario: Scenario, via: str) -> Seen:
    """Real replicas, called through GrpcClient (`via="client"`) or through the proxy."""
    seen = Seen()

    async def host() -> None:
        (service,) = scenario.services
        replicas = [StagedReplica(service, index, scenario.seed) for index in range(service.replicas)]
        try:
            for replica in replicas:
                await replica.start()
            names = {replica.address: replica.name for replica in replicas}
            observer = Observer()
            seen.watch(observer, lambda address: names.get(address, address))
            await bridge.guest(play, scenario, replicas, via, observer, clock=bridge.RunClock())
            for replica in replicas:
                await replica.settle()
        finally:
            for replica in replicas:
                await replica.close()

    asyncio.run(host())
    return seen


async def play(scenario: Scenario, replicas: list[StagedReplica], via: str, observer: Observer) -> None:
    """The scenario's faults at their times, and its client's load through `via`, for its duration."""
    (client,) = scenario.clients
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(nursery, observer)
        timers = TimerQueue()
        supervisor.start(timers)
        targets = lambda target: [r for r in replicas if target in (r.name, r.service.name)]  # noqa: E731
        supervisor.start(FaultInjector(scenario.faults, targets, observer))
        connect = through_client if via == "client" else through_proxy
        async with connect(scenario, [r.address for r in replicas], observer) as make:
            streams = Streams(scenario.seed, client.name, client.target)
            load = LoadClient(client, MadeCalls(make, nursery), timers, streams, client.stop or scenario.duration)
            with trio.move_on_at(scenario.duration + scenario.drain):
                await load.run()
        nursery.cancel_scope.cancel()


Make = Callable[[CallSpec], Awaitable[StatusCode]]  # make one call, say how it ended


class MadeCalls:
    """The load generator's `Calls`: each call made by `make`, in a task of its own."""

    def __init__(self, make: Make, nursery: trio.Nursery) -> None:
        self._make = make
        self._nursery = nursery

    def start(self, call: CallSpec, on_finished: Callable[[RequestFinished], None] | None = None) -> object:
        self._nursery.start_soon(self._run, call, on_finished)
        return None

    async def _run(self, call: CallSpec, on_finished: Callable[[RequestFinished], None] | None) -> None:
        started = trio.current_time()
        status = await self._make(call)
        if on_finished is not None:  # as the caller saw it; the mesh's own record is the observer's
            on_finished(
                RequestFinished(call.client, call.service, None, call.pattern, status, started, trio.current_time())
            )


@contextlib.asynccontextmanager
async def through_client(scenario: Scenario, addresses: list[str], observer: Observer) -> AsyncIterator[Make]:
    (service,) = scenario.services
    client = live.GrpcClient(
        endpoints=addresses,
        weights=service.weights or None,
        policy=scenario.balancer,
        policies=scenario.policies,
        health=scenario.health,
        outlier_detection=scenario.outlier,
        observer=observer,
        seed=scenario.seed,
    )

    async def make(call: CallSpec) -> StatusCode:
        try:
            if call.pattern is Pattern.UNARY:
                await client.Process(mesh_pb2.ProcessRequest(request_id="c"), timeout=call.deadline, key=call.key)
            else:
                request = mesh_pb2.StreamRequest(stream_id="c", count=call.messages)
                async for _ in client.StreamEvents(request, timeout=call.deadline, key=call.key):
                    pass
        except live.RpcError as error:
            return error.status
        return StatusCode.OK

    async with client:
        yield make


@contextlib.asynccontextmanager
async def through_proxy(scenario: Scenario, addresses: list[str], observer: Observer) -> AsyncIterator[Make]:
    (service,) = scenario.services
    config = ProxyConfig.for_service(
        MESH_SERVICE,
        tuple(addresses),
        weights=service.weights,
        balancer=scenario.balancer,
        health=scenario.health,
        policies=scenario.policies,
        outlier=scenario.outlier,
    )
    header = scenario.balancer.hash_header

    async with Proxy(config, observer) as proxy:
        channel = grpc.aio.insecure_channel(proxy.address)
        stub = mesh_pb2_grpc.MeshServiceStub(channel)

        async def make(call: CallSpec) -> StatusCode:
            metadata = () if call.key is None or header is None else ((header, call.key),)
            try:
                if call.pattern is Pattern.UNARY:
                    request = mesh_pb2.ProcessRequest(request_id="c")
                    await bridge.wait(stub.Process(request, timeout=call.deadline, metadata=metadata))
                else:
                    request = mesh_pb2.StreamRequest(stream_id="c", count=call.messages)
                    stream = stub.StreamEvents(request, timeout=call.deadline, metadata=metadata)
                    while await bridge.wait(stream.read()) is not grpc.aio.EOF:
                        pass
            except grpc.aio.AioRpcError as error:
                return status_of(error)
            return StatusCode.OK

        try:
            yield make
        finally:
            await bridge.wait(channel.close())


# --- the tests ------------------------------------------------------------------------------

IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_in_the_simulator(case: Case, tmp_path: Path) -> None:
    case.expect(simulate(scenario_of(case, tmp_path)))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_real_replicas_through_the_client(case: Case, tmp_path: Path) -> None:
    case.expect(go_live(scenario_of(case, tmp_path), via="client"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_real_replicas_through_the_proxy(case: Case, tmp_path: Path) -> None:
    case.expect(go_live(scenario_of(case, tmp_path), via="proxy"))
