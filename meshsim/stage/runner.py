"""A scenario played for real: `meshsim run SCENARIO --live`.

Every [[service]] gets real grpc.aio replicas on loopback (ports from the OS,
behaving as the simulator's do: stage/servicer.py); every [[client]] calls them
through the runtime's own assembly over the live transport, with the scenario's
policies; every [[fault]] is applied at its time by the runtime's fault injector. The
run takes the scenario's duration in wall time, on a clock that reads 0 when the load
starts, so its report (the same model, `mode = "live"`) lines up with a simulated one.

A SIGINT or SIGTERM stops the load; the calls in flight get the drain, every replica
is stopped, and the report so far comes back marked interrupted.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import attrs
import trio

from meshsim.core import cost
from meshsim.core.errors import ConfigError
from meshsim.core.events import RequestFinished
from meshsim.core.recording import RunRecorder
from meshsim.core.report import Report
from meshsim.core.report_builder import build_report
from meshsim.core.scenario import Scenario
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.upstream import Upstream
from meshsim.runtime.actor import Background, Supervisor
from meshsim.runtime.faults import FaultInjector
from meshsim.runtime.load import LoadClient
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue
from meshsim.stage.load import LiveCalls
from meshsim.stage.replica import StagedReplica

# What this kind of machine carries live, measured (docs/live.md): calls a second through
# in-process replicas and callers, all on one Python thread.
LIVE_CALLS_PER_SECOND = 400.0

Progress = Callable[[float, int], None]  # (seconds into the run, calls finished)


@attrs.define
class LiveRun:
    """What a live run's caller may watch: time goes by, calls end, and it may be asked to stop."""

    finished: int = 0
    interrupted: bool = False


def check_load(scenario: Scenario) -> float:
    """The calls a second the scenario's clients ask for together, or ConfigError when that is more
    than this machine carries live."""
    rate = sum(
        cost.client_calls(scenario, client) / ((client.stop or scenario.duration) - client.start)
        for client in scenario.clients
    )
    if rate > LIVE_CALLS_PER_SECOND:
        raise ConfigError(
            f"{scenario.path}: asks for about {rate:,.0f} calls a second; this machine carries about "
            f"{LIVE_CALLS_PER_SECOND:,.0f} live (--force to try anyway)"
        )
    return rate


def run_live(
    scenario: Scenario,
    progress: Progress | None = None,
    handle_signals: bool = True,
    observer: Observer | None = None,
) -> Report:
    """Play `scenario` against real replicas on loopback and report it (blocking; its own loop).
    `observer` lets a caller listen to the run's events, as `run_scenario`'s does."""
    return asyncio.run(_host(scenario, progress, handle_signals, observer or Observer()))


async def _host(scenario: Scenario, progress: Progress | None, handle_signals: bool, observer: Observer) -> Report:
    replicas = [
        StagedReplica(service, index, scenario.seed)
        for service in scenario.services
        for index in range(service.replicas)
    ]
    try:
        for replica in replicas:
            await replica.start()
        recorder = RunRecorder()
        recorder.subscribe(observer)
        state = LiveRun()
        # Trio starts here, on a clock reading 0: the load, the faults and every event from now on.
        await bridge.guest(
            _play, scenario, replicas, observer, state, progress, handle_signals, clock=bridge.RunClock()
        )
        for replica in replicas:
            await replica.settle()
    finally:
        for replica in replicas:
            await replica.stop(0)
    return build_report(scenario, recorder, mode="live", interrupted=state.interrupted)


async def _play(
    scenario: Scenario,
    replicas: list[StagedReplica],
    observer: Observer,
    state: LiveRun,
    progress: Progress | None,
    handle_signals: bool,
) -> None:
    by_name = {r.name: r for r in replicas}
    background = Background()
    nursery = await background.open()
    upstreams: dict[str, Upstream] = {}
    try:
        supervisor = Supervisor(nursery, observer)
        loads = []
        channels = []
        for config in scenario.clients:
            service = scenario.service(config.target)
            names = service.replica_names
            upstream = Upstream(
                config.name,
                service.name,
                names,
                observer,
                balancer=scenario.balancer,
                health=scenario.health,
                outlier=scenario.outlier,
                policies=scenario.policies,
                seed=scenario.seed,
                addresses={name: by_name[name].address for name in names},
                weights={name: service.weights[i] for i, name in enumerate(names)},
            )
            upstreams[config.name] = upstream
            timers = TimerQueue()
            supervisor.start(timers)
            channel = await upstream.start(supervisor, timers)
            channels.append(channel)
            stop = config.stop if config.stop is not None else scenario.duration
            loads.append(LoadClient(config, LiveCalls(channel, nursery), timers, upstream.streams, stop))

        def cut(replica: str, clients: frozenset[str]) -> None:
            for client, upstream in upstreams.items():
                upstream.transport.cut_off(replica, client in clients)

        for replica in replicas:
            replica.on_cut = cut
        supervisor.start(FaultInjector(scenario.faults, lambda target: _targets(replicas, target), observer))
        observer.subscribe(RequestFinished, lambda _: _count(state))
        with trio.CancelScope() as run_scope:
            if handle_signals:
                nursery.start_soon(_stop_on_signal, run_scope, state)
            if progress is not None:
                nursery.start_soon(_report_progress, progress, state)
            with trio.move_on_at(scenario.duration + scenario.drain):
                async with trio.open_nursery() as load:
                    for client in loads:
                        load.start_soon(client.run, name=client.name)
        if state.interrupted:
            # Stopped early: no more calls, and those in flight still get the drain.
            for client in loads:
                client.stop_sending()
            with trio.move_on_after(scenario.drain):
                for client in loads:
                    await client.wait_idle()
        for channel in channels:
            channel.abort(StatusCode.CANCELLED)
    finally:
        await background.close()
        with trio.CancelScope(shield=True):
            for upstream in upstreams.values():
                await upstream.transport.close()


def _count(state: LiveRun) -> None:
    state.finished += 1


def _targets(replicas: list[StagedReplica], target: str) -> list[StagedReplica]:
    named = [r for r in replicas if r.name == target]
    return named or [r for r in replicas if r.service.name == target]


async def _stop_on_signal(run: trio.CancelScope, state: LiveRun) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            state.interrupted = True
            run.cancel()
            return


async def _report_progress(progress: Progress, state: LiveRun) -> None:
    while True:
        progress(trio.current_time(), state.finished)
        await trio.sleep(0.25)
