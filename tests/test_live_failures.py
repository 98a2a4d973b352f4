"""Replicas that fail the way real processes do, behind the proxy: hung (SIGSTOP), killed and
restarted after a long outage, never reachable. Each replica is its own `meshsim serve` process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
import trio

from meshsim import live
from meshsim.core.calls import MESH_SERVICE
from meshsim.core.events import AttemptFinished, HealthChanged, RequestFinished
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import ConsecutiveFailuresConfig, OutlierConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.retry import RetryPolicy
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.config import Keepalive, ProxyConfig
from meshsim.live.proxy import Proxy
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.conftest import serve_replicas, start, start_proxy, stop

pytestmark = pytest.mark.slow


@attrs.define
class Seen:
    calls: list[RequestFinished] = attrs.Factory(list)
    attempts: list[AttemptFinished] = attrs.Factory(list)
    health: list[HealthChanged] = attrs.Factory(list)

    def observer(self) -> Observer:
        observer = Observer()
        observer.subscribe(RequestFinished, self.calls.append)
        observer.subscribe(AttemptFinished, self.attempts.append)
        observer.subscribe(HealthChanged, self.health.append)
        return observer


@pytest.fixture
def three_processes() -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """Three `meshsim serve` processes of one replica each (so that one can be stopped alone)."""
    started = []
    try:
        for _ in range(3):
            process, (address,) = serve_replicas(1)
            started.append((process, address))
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
            stop(process)


def with_proxy(config: ProxyConfig, seen: Seen, check: Callable[[Proxy, Any], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Proxy(config, seen.observer()) as proxy:
            channel = grpc.aio.insecure_channel(proxy.address)
            try:
                await check(proxy, mesh_pb2_grpc.MeshServiceStub(channel))
            finally:
                await bridge.wait(channel.close())

    live.run(main)


async def calls(stub: Any, count: int, deadline: float = 2.0) -> list[str]:
    """`count` Process calls one after another: the replica that answered each, or the status."""
    answers = []
    for n in range(count):
        try:
            reply = await bridge.wait(stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=deadline))
            answers.append(reply.replica)
        except grpc.aio.AioRpcError as error:
            answers.append(error.code().name)
    return answers


async def until(condition: Callable[[], bool], limit: float) -> float:
    """Wait until `condition()` holds; how long it took (fails past `limit` seconds)."""
    started = trio.current_time()
    with trio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 (the balancer's state has no event to wait on)
            await trio.sleep(0.05)
    return trio.current_time() - started


@pytest.mark.parametrize("retries", [True, False], ids=["with retries", "without retries"])
def test_a_hung_replica_is_taken_out_and_calls_keep_flowing(
    three_processes: list[tuple[subprocess.Popen[str], str]], retries: bool
) -> None:
    """SIGSTOP keeps a replica's connections and its health stream open while it answers nothing:
    the silent stream is backed by Checks with the health timeout, so it is taken out as the
    simulator takes out a blackholed replica, and calls that timed out on it count as failures."""
    hung_process, hung = three_processes[0]
    health = HealthConfig(interval=0.5, timeout=0.25, unhealthy_threshold=2)
    policies = CallPolicies(
        retry=RetryPolicy(
            max_attempts=3,
            initial_backoff=0.01,
            per_attempt_timeout=0.25,
            retryable_status_codes=frozenset({StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED}),
        )
        if retries
        else None
    )
    config = ProxyConfig.for_service(
        MESH_SERVICE, tuple(address for _, address in three_processes), health=health, policies=policies
    )
    seen = Seen()
    after: list[str] = []

    async def check(proxy: Proxy, stub: Any) -> None:
        balancer = proxy.balancers[0]
        assert len(set(await calls(stub, 6))) == 3
        os.kill(hung_process.pid, signal.SIGSTOP)
        stopped_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(4):  # callers keep calling while the replica hangs
                nursery.start_soon(calls, stub, 10, 0.5)
            took = await until(lambda: not balancer.endpoint(hung).healthy, limit=5.0)  # type: ignore[union-attr]
        assert took < 3.0, f"the hung replica stayed in for {took:.1f} s"
        after.extend(await calls(stub, 30))
        assert trio.current_time() - stopped_at < 30

    with_proxy(config, seen, check)
    assert hung not in after
    assert set(after) <= {a for _, a in three_processes}, after  # every call after it was taken out succeeded
    on_hung = [a for a in seen.attempts if a.endpoint == hung and a.status is not StatusCode.OK]
    assert on_hung, "no call reached the hung replica"
    # A call or attempt that ran out of time on the hung replica timed out there: that is what
    # outlier detection and breakers must see, not a cancellation.
    assert {a.status for a in on_hung} == {StatusCode.DEADLINE_EXCEEDED}, on_hung


def test_timeouts_on_a_hung_replica_eject_it_by_outlier_detection(
    three_processes: list[tuple[subprocess.Popen[str], str]],
) -> None:
    """With health checks off, only the calls can tell: attempts that hit their per-attempt timeout
    are failures, and consecutive failures eject the replica."""
    hung_process, hung = three_processes[0]
    config = ProxyConfig.for_service(
        MESH_SERVICE,
        tuple(address for _, address in three_processes),
        health=HealthConfig(enabled=False),
        outlier=OutlierConfig(
            interval=0.5,
            base_ejection_time=30.0,
            consecutive_failures=ConsecutiveFailuresConfig(threshold=3),
        ),
        policies=CallPolicies(
            retry=RetryPolicy(
                max_attempts=3,
                initial_backoff=0.01,
                per_attempt_timeout=0.2,
                retryable_status_codes=frozenset({StatusCode.DEADLINE_EXCEEDED}),
            )
        ),
    )
    seen = Seen()
    after: list[str] = []

    async def check(proxy: Proxy, stub: Any) -> None:
        balancer = proxy.balancers[0]
        os.kill(hung_process.pid, signal.SIGSTOP)
        await calls(stub, 12)
        assert balancer.outlier is not None and balancer.outlier.is_ejected(hung)
        after.extend(await calls(stub, 12))

    with_proxy(config, seen, check)
    assert hung not in after and all(":" in a for a in after), after


def test_keepalive_pings_are_accepted_by_the_demo_replicas(
    three_processes: list[tuple[subprocess.Popen[str], str]],
) -> None:
    """The proxy's keepalive (here every second, with only a health stream on the connection)
    must not earn it a GOAWAY too_many_pings from `meshsim serve`: the connection stays up."""
    _, address = three_processes[0]
    states: list[str] = []

    async def main() -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from meshsim.live.proxy import grpc_options

        config = ProxyConfig.for_service(MESH_SERVICE, (address,), keepalive=Keepalive(time=1.0, timeout=0.5))
        channel = grpc.aio.insecure_channel(address, options=grpc_options(config, listener=False))
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        try:
            await bridge.wait(watch.read())
            for _ in range(60):  # 6 s: a default gRPC server would have sent GOAWAY after the third ping
                await trio.sleep(0.1)
                states.append(channel.get_state().name)
        finally:
            watch.cancel()
            await bridge.wait(channel.close())

    live.run(main)
    assert set(states) == {"READY"}, states


@pytest.mark.parametrize("retries", [True, False], ids=["with retries", "without retries"])
def test_stream_attempts_timing_out_on_a_hung_replica_are_failures(
    three_processes: list[tuple[subprocess.Popen[str], str]], retries: bool
) -> None:
    """Whether its own timeout or the caller's deadline ends an attempt on a hung replica, the
    attempt timed out (streams are forwarded as streams, not as unary calls)."""
    hung_process, hung = three_processes[0]
    retry = RetryPolicy(
        max_attempts=3,
        initial_backoff=0.01,
        per_attempt_timeout=0.2,
        retryable_status_codes=frozenset({StatusCode.DEADLINE_EXCEEDED}),
    )
    config = ProxyConfig.for_service(
        MESH_SERVICE,
        tuple(address for _, address in three_processes),
        health=HealthConfig(enabled=False),
        policies=CallPolicies(retry=retry if retries else None),
    )
    seen = Seen()

    async def check(proxy: Proxy, stub: Any) -> None:
        os.kill(hung_process.pid, signal.SIGSTOP)
        for n in range(6):
            call = stub.StreamEvents(mesh_pb2.StreamRequest(stream_id=str(n), count=2), timeout=0.3)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await bridge.wait(_collect(call))
            if retries:
                call = stub.StreamEvents(mesh_pb2.StreamRequest(stream_id=str(n), count=2), timeout=3)
                await bridge.wait(_collect(call))

    with_proxy(config, seen, check)
    on_hung = [a for a in seen.attempts if a.endpoint == hung]
    assert on_hung
    assert {a.status for a in on_hung} == {StatusCode.DEADLINE_EXCEEDED}, on_hung


async def _collect(call: Any) -> list[Any]:
    return [message async for message in call]


def test_a_replica_back_after_a_long_outage_is_found_within_an_interval() -> None:
    """gRPC's reconnect backoff grows to minutes while a replica is down; the channels to replicas
    try again at least every health interval, so a replica that comes back is found at once."""
    first, (address,) = serve_replicas(1)
    other, (spare,) = serve_replicas(1)
    port = address.rsplit(":", 1)[1]
    health = HealthConfig(interval=0.5, timeout=0.25, unhealthy_threshold=2)
    config = ProxyConfig.for_service(MESH_SERVICE, (address, spare), health=health)
    seen = Seen()
    answers: list[str] = []
    restarted: list[subprocess.Popen[str]] = []

    async def check(proxy: Proxy, stub: Any) -> None:
        balancer = proxy.balancers[0]
        first.kill()
        first.communicate()
        await until(lambda: not balancer.endpoint(address).healthy, limit=5.0)  # type: ignore[union-attr]
        await trio.sleep(12)  # long enough for gRPC's default backoff to grow past 10 s
        again = await trio.to_thread.run_sync(lambda: start("serve", "--port", port, "--grace", "0s"))
        restarted.append(again)
        assert again.stdout is not None
        await trio.to_thread.run_sync(again.stdout.readline)  # it is serving
        took = await until(lambda: balancer.endpoint(address).healthy, limit=15.0)  # type: ignore[union-attr]
        assert took < 2.5, f"the replica came back {took:.1f} s before it was used"
        for _ in range(20):
            answers.extend(await calls(stub, 1))
            await trio.sleep(0.05)

    try:
        with_proxy(config, seen, check)
    finally:
        for process in (first, other, *restarted):
            stop(process)
    assert set(answers) == {address, spare}, answers


def proxy_stderr(tmp_path: Path, config: str, seconds: float = 3.0) -> str:
    """What `meshsim live` says on stderr in its first `seconds`."""
    path = tmp_path / "mesh.toml"
    path.write_text(config, encoding="utf-8")
    live_process, _ = start_proxy(path)
    try:
        time.sleep(seconds)
        live_process.send_signal(signal.SIGTERM)
        _, said = live_process.communicate(timeout=15)
    finally:
        stop(live_process)
    return said


def test_unreachable_replicas_are_named_once_with_the_reason(tmp_path: Path) -> None:
    serve, (replica,) = serve_replicas(1)
    try:
        config = (
            '[proxy]\nlisten = "127.0.0.1:0"\n'
            f'endpoints = ["{replica}", "nosuchhost.invalid:50051", "127.0.0.1:1"]\n'
            '[health]\ninterval = "200ms"\n'
        )
        said = proxy_stderr(tmp_path, config).splitlines()
    finally:
        stop(serve)
    unresolved = "replica nosuchhost.invalid:50051 cannot be reached: its name does not resolve; trying again"
    refused = "replica 127.0.0.1:1 cannot be reached: nothing listens on that port (connection refused); trying again"
    assert said.count(f"meshsim: warning: {unresolved}") == 1, said
    assert said.count(f"meshsim: warning: {refused}") == 1, said
    assert not any(replica in line for line in said), said


def test_a_tls_mismatch_with_the_replicas_is_said(tmp_path: Path) -> None:
    from meshsim.tls import authority

    certs = tmp_path / "certs"
    authority.init_directory(certs)
    plain, (plain_replica,) = serve_replicas(1)
    secure, (tls_replica,) = serve_replicas(1, "--cert-dir", str(certs))
    try:
        to_plain = proxy_stderr(
            tmp_path,
            f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = ["{plain_replica}"]\n[mtls]\ncert_dir = "{certs}"\n',
        )
        to_tls = proxy_stderr(tmp_path, f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = ["{tls_replica}"]\n')
    finally:
        stop(plain)
        stop(secure)
    assert f"replica {plain_replica} cannot be reached: it does not speak TLS" in to_plain, to_plain
    assert f"replica {tls_replica} cannot be reached: it closes the connection at once: does it expect TLS?" in (
        to_tls
    ), to_tls
    for said in (to_plain, to_tls):
        assert "ssl_transport_security" not in said and "Traceback" not in said


def test_a_call_on_a_channel_closed_under_it_ends_unavailable() -> None:
    """A drained channel closes (after a certificate rotation, here forced) while a slow call is on
    it: the call ends UNAVAILABLE, saying why, and the program goes on."""
    from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
    from meshsim.demo.servicer import ServerFaults
    from meshsim.live.transport import LiveTransport

    outcome: list[object] = []

    async def main() -> None:
        (replica,) = await bridge.wait(start_replicas(ServeConfig(port=0, faults=ServerFaults(latency=2.0))))
        try:
            async with live.GrpcClient(endpoints=[replica.address]) as client:

                async def call() -> None:
                    try:
                        outcome.append(await client.Process(mesh_pb2.ProcessRequest(request_id="slow")))
                    except live.RpcError as error:
                        outcome.append(error)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(call)
                    await trio.sleep(0.3)
                    transport = client.channel.transport
                    assert isinstance(transport, LiveTransport)
                    started = trio.current_time()
                    transport.reconnect(0.1)
                assert trio.current_time() - started < 1.5  # ended with the channel, not with the replica
                assert client.channel.balancer.endpoints[0].in_flight == 0
        finally:
            await bridge.wait(stop_replicas([replica], 0))

    live.run(main)
    (error,) = outcome
    assert isinstance(error, live.RpcError) and error.status is StatusCode.UNAVAILABLE
    assert "connection to the replica was closed" in error.details


def test_a_stream_that_answered_then_ran_out_of_time_is_a_deadline_failure() -> None:
    """A bidi call commits on its first answer, then the caller's deadline passes while the replica
    takes its time over the second: the attempt timed out (DEADLINE_EXCEEDED), it was not cancelled."""
    from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
    from meshsim.demo.servicer import ServerFaults
    from tests.messages import chat

    seen = Seen()

    async def main() -> None:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, faults=ServerFaults(latency=0.2))))
        config = ProxyConfig.for_service(MESH_SERVICE, (replicas[0].address,), health=HealthConfig(enabled=False))
        try:
            async with Proxy(config, seen.observer()) as proxy:
                channel = grpc.aio.insecure_channel(proxy.address)
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                try:
                    for _ in range(3):
                        answers: list[object] = []
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            async for answer in _stream(stub.Chat(chat(), timeout=0.3)):
                                answers.append(answer)
                        assert len(answers) == 1  # it had answered once: committed
                finally:
                    await bridge.wait(channel.close())
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    live.run(main)
    assert [c.status for c in seen.calls] == [StatusCode.DEADLINE_EXCEEDED] * 3
    assert {a.status for a in seen.attempts} == {StatusCode.DEADLINE_EXCEEDED}


async def _stream(call: Any) -> Any:
    """Read a grpc.aio stream from Trio, one message at a time."""
    while True:
        message = await bridge.wait(call.read())
        if message is grpc.aio.EOF:
            return
        yield message
