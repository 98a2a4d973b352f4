"""A scenario played for real: `meshsim run SCENARIO --live`.

Every [[service]] gets real grpc.aio replicas on loopback (ports from the OS,
behaving as the simulator's do: stage/servicer.py); every [[client]] calls them
through the runtime's own assembly over the live transport, with the scenario's
policies; every [[fault]] is applied at its time by the runtime's fault injector. The
run takes the scenario's duration in wall time, on a clock that reads 0 once the
replicas listen, so its report (the same model, `mode = "live"`) lines up with a simulated one.

A SIGINT or SIGTERM stops the load; the calls in flight get the drain (a second signal
stops waiting for them), every replica is stopped, and the report so far comes back
marked interrupted.
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
from meshsim.runtime.arrivals import load_client
from meshsim.runtime.channel import MeshChannel
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
    """What a live run's caller may watch: time goes by, calls end, and it may be asked to stop.

    A first SIGINT or SIGTERM stops the load, a second the drain; either way the replicas
    are stopped and the report so far comes back. Signals are the asyncio host's to catch,
    from before the first replica starts to after the last one stops."""

    finished: int = 0
    signals: int = 0
    token: trio.lowlevel.TrioToken | None = None
    run_scope: trio.CancelScope | None = None
    drain_scope: trio.CancelScope | None = None

    @property
    def interrupted(self) -> bool:
        return self.signals > 0

    def signalled(self) -> None:
        """On the asyncio side: pass the signal to Trio's side, once Trio runs."""
        self.signals += 1
        if self.token is not None:
            self.token.run_sync_soon(self.stop)

    def stop(self) -> None:
        """On Trio's side: cancel what the signals so far ask to be cancelled."""
        if self.signals > 0 and self.run_scope is not None:
            self.run_scope.cancel()
        if self.signals > 1 and self.drain_scope is not None:
            self.drain_scope.cancel()


def check_load(scenario: Scenario) -> float:
    """The calls a second the scenario's clients ask for at its busiest (clients whose times
    overlap add up), or ConfigError when that is more than this machine carries live."""
    windows = []
    for client in scenario.clients:
        stop = client.stop or scenario.duration
        windows.append((client.start, stop, cost.client_calls(scenario, client) / (stop - client.start)))
    rate = max((sum(r for a, b, r in windows if a <= start < b) for start, _, _ in windows), default=0.0)
    if rate > LIVE_CALLS_PER_SECOND:
        raise ConfigError(
            f"{scenario.path}: asks for about {rate:,.0f} calls a second; this machine carries about "
            f"{LIVE_CALLS_PER_SECOND:,.0f} live (--force to try anyway)"
        )
    return rate


Started = Callable[[dict[str, list[str]]], None]  # each service's replica addresses, once they listen


def run_live(
    scenario: Scenario,
    progress: Progress | None = None,
    handle_signals: bool = True,
    observer: Observer | None = None,
    on_start: Started | None = None,
) -> Report:
    """Play `scenario` against real replicas on loopback and report it (blocking; its own loop).
    `observer` lets a caller listen to the run's events, as `run_scenario`'s does; `on_start` is
    told where the replicas listen, before the load starts."""
    return asyncio.run(_host(scenario, progress, handle_signals, observer or Observer(), on_start))


async def _host(
    scenario: Scenario, progress: Progress | None, handle_signals: bool, observer: Observer, on_start: Started | None
) -> Report:
    state = LiveRun()
    loop = asyncio.get_running_loop()
    caught = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for number in caught:
        loop.add_signal_handler(number, state.signalled)
    replicas = [
        StagedReplica(service, index, scenario.seed)
        for service in scenario.services
        for index in range(service.replicas)
    ]
    try:
        for replica in replicas:
            await replica.start()
        if on_start is not None:
            listening: dict[str, list[str]] = {}
            for replica in replicas:
                listening.setdefault(replica.service.name, []).append(replica.address)
            on_start(listening)
        recorder = RunRecorder()
        recorder.subscribe(observer)
        # Trio starts here, on a clock reading 0: the callers, the load, the faults and every
        # event from now on.
        await bridge.guest(_play, scenario, replicas, observer, state, progress, clock=bridge.RunClock())
        for replica in replicas:
            await replica.settle()
    finally:
        try:
            for replica in replicas:
                await replica.close()
        finally:
            for number in caught:
                loop.remove_signal_handler(number)
    return build_report(scenario, recorder, mode="live", interrupted=state.interrupted)


async def _play(
    scenario: Scenario,
    replicas: list[StagedReplica],
    observer: Observer,
    state: LiveRun,
    progress: Progress | None,
) -> None:
    state.token = trio.lowlevel.current_trio_token()
    by_name = {r.name: r for r in replicas}
    background = Background()
    nursery = await background.open()
    upstreams: dict[str, Upstream] = {}
    loads: list[LoadClient] = []
    channels: list[MeshChannel] = []
    try:
        with trio.CancelScope() as state.run_scope:
            state.stop()  # a signal while the replicas started
            supervisor = Supervisor(nursery, observer)
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
                loads.append(load_client(config, LiveCalls(channel, nursery), timers, upstream.streams, stop))

            def cut(replica: str, clients: frozenset[str]) -> None:
                for client, upstream in upstreams.items():
                    upstream.transport.cut_off(replica, client in clients)

            for replica in replicas:
                replica.on_cut = cut
            supervisor.start(FaultInjector(scenario.faults, lambda target: _targets(replicas, target), observer))
            observer.subscribe(RequestFinished, lambda _: _count(state))
            if progress is not None:
                nursery.start_soon(_report_progress, progress, state)
            with trio.move_on_at(scenario.duration + scenario.drain):
                async with trio.open_nursery() as load:
                    for client in loads:
                        load.start_soon(client.run, name=client.name)
        if state.interrupted:
            # Stopped early: no more calls, and those in flight still get the drain (unless a
            # second signal says not to wait).
            for client in loads:
                client.stop_sending()
            with trio.move_on_after(scenario.drain) as state.drain_scope:
                state.stop()
                for client in loads:
                    await client.wait_idle()
        for channel in channels:
            channel.abort(StatusCode.CANCELLED)
    finally:
        try:
            await background.close()
        finally:
            with trio.CancelScope(shield=True):
                for upstream in upstreams.values():
                    await upstream.transport.close()


def _count(state: LiveRun) -> None:
    state.finished += 1


def _targets(replicas: list[StagedReplica], target: str) -> list[StagedReplica]:
    named = [r for r in replicas if r.name == target]
    return named or [r for r in replicas if r.service.name == target]


async def _report_progress(progress: Progress, state: LiveRun) -> None:
    while True:
        progress(trio.current_time(), state.finished)
        await trio.sleep(0.25)
