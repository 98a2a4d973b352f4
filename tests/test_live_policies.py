"""Call policies on real replicas for every pattern: retries, hedging, breakers, deadlines and commit,
through the proxy (plain grpc.aio stubs as clients) and through GrpcClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import grpc
import pytest
import trio

from meshsim import live
from meshsim.core.breaker import BreakerConfig
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.events import AttemptFinished, BreakerChanged, RequestFinished
from meshsim.core.health import HealthConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import HedgingPolicy, RetryPolicy
from meshsim.core.status import StatusCode
from meshsim.demo.server import Replica, ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.live.config import ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.live.streams import RequestReplay
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.messages import chat, metrics

pytestmark = pytest.mark.slow

HEALTH = HealthConfig(interval=0.1, timeout=0.5)
RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.005)


@attrs.define
class Seen:
    calls: list[RequestFinished] = attrs.Factory(list)
    attempts: list[AttemptFinished] = attrs.Factory(list)
    breakers: list[BreakerChanged] = attrs.Factory(list)

    def observer(self) -> Observer:
        observer = Observer()
        observer.subscribe(RequestFinished, self.calls.append)
        observer.subscribe(AttemptFinished, self.attempts.append)
        observer.subscribe(BreakerChanged, self.breakers.append)
        return observer


Check = Callable[[Any, list[Replica]], Awaitable[None]]


def through_proxy(check: Check, seen: Seen, replicas: int = 2, **options: Any) -> None:
    """Run `check(stub, replicas)` with a MeshService stub on a proxy in front of fresh replicas."""

    async def main() -> None:
        started = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=replicas)))
        config = ProxyConfig.for_service(
            service=MESH_SERVICE, endpoints=tuple(r.address for r in started), health=HEALTH, **options
        )
        try:
            async with Proxy(config, seen.observer()) as proxy:
                channel = grpc.aio.insecure_channel(proxy.address)
                try:
                    await check(mesh_pb2_grpc.MeshServiceStub(channel), started)
                finally:
                    await bridge.wait(channel.close())
        finally:
            await bridge.wait(stop_replicas(started, 0))

    live.run(main)


async def every_pattern(stub: Any) -> list[str]:
    """One call of each pattern; the replica that answered each."""
    reply = await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id="r"), timeout=5))
    events = await bridge.wait(_collect(stub.StreamEvents(mesh_pb2.StreamRequest(count=2), timeout=5)))
    summary = await bridge.wait(stub.CollectMetrics(metrics(), timeout=5))
    answers = await bridge.wait(_collect(stub.Chat(chat(), timeout=5)))
    assert [e.sequence for e in events] == [0, 1]
    assert summary.count == 3  # every request reached the replica that answered, retried or not
    assert [a.message for a in answers] == ["echo: Message 0", "echo: Message 1", "echo: Message 2"]
    return [reply.replica, events[0].replica, summary.replica, answers[0].replica]


async def _collect(call: Any) -> list[Any]:
    return [message async for message in call]


@pytest.mark.parametrize("retry", [True, False], ids=["with retries", "without retries"])
def test_the_proxy_retries_every_pattern_over_a_replica_failing_every_call(retry: bool) -> None:
    seen = Seen()
    failures: list[grpc.StatusCode] = []

    async def check(stub: Any, replicas: list[Replica]) -> None:
        replicas[0].faults.error_rate = 1.0  # health stays SERVING: only retries can help
        for _ in range(3):
            try:
                answered = await every_pattern(stub)
            except grpc.aio.AioRpcError as error:
                failures.append(error.code())
            else:
                assert set(answered) == {replicas[1].address}

    through_proxy(check, seen, policies=CallPolicies(retry=RETRY if retry else None))
    if retry:
        assert failures == []
        assert {c.status for c in seen.calls} == {StatusCode.OK}
        assert any(c.attempts == 2 for c in seen.calls)
    else:
        assert failures and set(failures) == {grpc.StatusCode.UNAVAILABLE}


def test_a_stream_that_has_answered_is_not_retried() -> None:
    seen = Seen()

    async def check(stub: Any, replicas: list[Replica]) -> None:
        call = stub.Chat(timeout=5)
        await bridge.wait(call.write(mesh_pb2.ChatMessage(message="first")))
        first = await bridge.wait(call.read())
        assert first.message == "echo: first"
        replicas[0].faults.error_rate = 1.0
        await bridge.wait(call.write(mesh_pb2.ChatMessage(message="second")))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await bridge.wait(call.read())
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE

    through_proxy(check, seen, replicas=1, policies=CallPolicies(retry=RETRY))
    assert [(c.status, c.attempts) for c in seen.calls] == [(StatusCode.UNAVAILABLE, 1)]


def test_a_call_whose_requests_outgrow_the_retry_buffer_is_not_retried() -> None:
    seen = Seen()

    async def check(stub: Any, replicas: list[Replica]) -> None:
        replicas[0].faults.error_rate = 1.0
        for _ in range(4):
            try:
                await bridge.wait(stub.CollectMetrics(metrics(), timeout=5))
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE

    through_proxy(check, seen, policies=CallPolicies(retry=RETRY), retry_buffer=8)
    assert len(seen.calls) == 4
    assert all(c.attempts == 1 for c in seen.calls)
    assert any(c.status is StatusCode.UNAVAILABLE for c in seen.calls)


def test_hedging_through_the_proxy_answers_a_server_stream_from_the_fast_replica() -> None:
    seen = Seen()
    hedging = HedgingPolicy(max_attempts=2, hedging_delay=0.05)

    async def check(stub: Any, replicas: list[Replica]) -> None:
        replicas[0].faults.latency = 2.0
        for _ in range(4):
            events = await bridge.wait(_collect(stub.StreamEvents(mesh_pb2.StreamRequest(count=3), timeout=5)))
            assert [e.replica for e in events] == [replicas[1].address] * 3

    through_proxy(check, seen, policies=CallPolicies(hedging=hedging))
    assert all(c.status is StatusCode.OK and c.finished - c.started < 1.0 for c in seen.calls)
    # Calls the picker sent to the slow replica first were hedged; the hedge that lost was cancelled.
    assert any(a.status is StatusCode.CANCELLED for a in seen.attempts)


def test_the_service_breaker_in_the_proxy_opens_and_fails_calls_fast() -> None:
    seen = Seen()
    breaker = BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=50, wait_duration_in_open=60)
    details: list[str] = []

    async def check(stub: Any, replicas: list[Replica]) -> None:
        for replica in replicas:
            replica.faults.error_rate = 1.0
        for n in range(10):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5))
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            details.append(failed.value.details() or "")

    through_proxy(check, seen, policies=CallPolicies(service_breaker=breaker))
    assert [b.state for b in seen.breakers] == ["OPEN"]
    assert len(seen.attempts) == 4  # the replicas saw four calls; the other six failed in the proxy
    assert all("refused" in d for d in details[4:])
    assert all("injected" in d for d in details[:4])


def test_the_call_deadline_bounds_retries_through_the_proxy() -> None:
    seen = Seen()
    slow_retries = RetryPolicy(max_attempts=5, initial_backoff=0.5, max_backoff=0.5)

    async def check(stub: Any, replicas: list[Replica]) -> None:
        for replica in replicas:
            replica.faults.error_rate = 1.0
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id="late"), timeout=0.3))
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    through_proxy(check, seen, policies=CallPolicies(retry=slow_retries))
    assert [c.status for c in seen.calls] == [StatusCode.DEADLINE_EXCEEDED]


def test_stopping_the_proxy_lets_calls_in_flight_finish() -> None:
    answers: list[str] = []

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=1)))
        replicas[0].faults.latency = 0.5
        config = ProxyConfig.for_service(
            service=MESH_SERVICE, endpoints=(replicas[0].address,), health=HEALTH, shutdown_grace=5.0
        )
        channel = None
        try:
            async with trio.open_nursery() as nursery, Proxy(config) as proxy:
                channel = grpc.aio.insecure_channel(proxy.address)
                stub = mesh_pb2_grpc.MeshServiceStub(channel)

                async def call() -> None:
                    reply = await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id="x"), timeout=5))
                    answers.append(reply.replica)

                nursery.start_soon(call)
                await trio.sleep(0.2)  # the call is at the replica when the proxy is told to stop
        finally:
            if channel is not None:
                await bridge.wait(channel.close())
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    assert len(answers) == 1


# --- GrpcClient: streams through the mesh ---------------------------------------------


def with_client(check: Callable[[live.GrpcClient, list[Replica]], Awaitable[None]], **options: Any) -> Seen:
    seen = Seen()

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=2)))
        client = live.GrpcClient(
            endpoints=[r.address for r in replicas], health=HEALTH, observer=seen.observer(), **options
        )
        try:
            async with client:
                await check(client, replicas)
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    return seen


def test_grpc_client_retries_streams_until_they_answer() -> None:
    async def check(client: live.GrpcClient, replicas: list[Replica]) -> None:
        replicas[0].faults.error_rate = 1.0
        for _ in range(3):
            events = [e async for e in client.StreamEvents(mesh_pb2.StreamRequest(count=2))]
            summary = await client.CollectMetrics(metrics())
            answers = [m async for m in client.Chat(chat())]
            assert summary.count == 3
            assert len(answers) == 3
            assert {events[0].replica, summary.replica, answers[0].replica} == {replicas[1].address}

    seen = with_client(check, retry_policy=RETRY)
    assert {c.status for c in seen.calls} == {StatusCode.OK}
    assert any(c.attempts == 2 for c in seen.calls)


def test_grpc_client_streams_fail_without_retries() -> None:
    statuses: list[StatusCode] = []

    async def check(client: live.GrpcClient, replicas: list[Replica]) -> None:
        replicas[0].faults.error_rate = 1.0
        for _ in range(4):
            try:
                await client.CollectMetrics(metrics())
            except live.RpcError as error:
                statuses.append(error.status)

    with_client(check)
    assert statuses and set(statuses) == {StatusCode.UNAVAILABLE}


def test_a_failing_request_stream_ends_the_call_and_says_why() -> None:
    async def broken() -> AsyncIterator[mesh_pb2.Metric]:
        yield mesh_pb2.Metric(value=1.0)
        raise OSError("the sensor went away")

    async def check(client: live.GrpcClient, replicas: list[Replica]) -> None:
        with pytest.raises(live.RpcError) as failed:
            await client.CollectMetrics(broken(), timeout=5)
        assert failed.value.status is StatusCode.CANCELLED
        assert "the sensor went away" in failed.value.details

    seen = with_client(check)
    assert [c.status for c in seen.calls] == [StatusCode.CANCELLED]


def test_a_replica_killed_mid_run_loses_no_call() -> None:
    seen = Seen()
    outcomes: list[tuple[float, grpc.StatusCode]] = []
    killed_at: list[float] = []

    async def check(stub: Any, replicas: list[Replica]) -> None:
        for replica in replicas:
            replica.faults.latency = 0.02

        async def caller(n: int) -> None:
            while True:
                try:
                    await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5))
                    outcomes.append((trio.current_time(), grpc.StatusCode.OK))
                except grpc.aio.AioRpcError as error:
                    outcomes.append((trio.current_time(), error.code()))

        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(caller, n)
            await trio.sleep(0.4)
            killed_at.append(trio.current_time())
            await bridge.wait(replicas[0].stop(0))
            await trio.sleep(0.6)
            nursery.cancel_scope.cancel()

    # A retry goes to the replica not tried yet: without that, round robin shared by three callers
    # may hand one call's every attempt to the dead replica before its health check notices.
    through_proxy(check, seen, policies=CallPolicies(retry=attrs.evolve(RETRY, previous_hosts=True)))
    # Every call the callers saw end was recorded, and the ones cut off by cancelling the callers too.
    assert len(seen.calls) >= len(outcomes) > 20
    # Calls fail over: retries carry the calls in flight on the killed replica, and after it
    # is gone every call succeeds on the other.
    assert [code for _, code in outcomes if code != grpc.StatusCode.OK] == []
    after = [c for c in seen.calls if c.started > killed_at[0] + 0.1 and c.status is not StatusCode.CANCELLED]
    assert after and all(c.status is StatusCode.OK for c in after)


def test_the_retry_buffer_stays_bounded_once_the_call_commits() -> None:
    """A client stream bigger than the buffer: the call commits, and from then on the proxy holds at
    most the limit (and a message), the caller waiting for a slow replica to read."""

    async def main() -> tuple[int, int, int]:
        replay = RequestReplay(limit=1000)
        commits: list[int] = []

        def overflowed() -> None:
            commits.append(1)
            replay.commit()

        replay.on_overflow = overflowed

        async def caller() -> AsyncIterator[bytes]:
            for _ in range(200):
                yield b"x" * 100

        filling = asyncio.ensure_future(replay.fill(caller()))
        read, most = 0, 0
        async for _ in replay.read():
            read += 1
            most = max(most, replay.held_bytes)
            await asyncio.sleep(0)  # a replica slower than its caller
        await filling
        return read, most, len(commits)

    read, most, commits = asyncio.run(main())
    assert (read, commits) == (200, 1)
    assert most <= 1000 + 100


def test_a_trio_caller_waits_for_room_in_a_committed_buffer() -> None:
    """GrpcClient's request copier runs on Trio: it waits (through the bridge) while the attempt lags."""
    held: list[int] = []

    async def main() -> None:
        replay = RequestReplay(limit=300)
        replay.commit()

        async def attempt() -> None:  # the committed attempt's writer, slower than the caller
            async for _ in replay.read():
                held.append(replay.held_bytes)
                await asyncio.sleep(0.001)

        reading = asyncio.ensure_future(attempt())
        for _ in range(50):
            replay.append(b"x" * 100)
            if replay.full:
                await bridge.wait(replay.room())
        replay.end()
        await bridge.wait(reading)

    live.run(main)
    assert len(held) == 50
    assert max(held) <= 400
