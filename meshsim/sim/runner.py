"""The deterministic runner: a scenario in, a report out, in virtual time."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from meshsim.core.recording import RunRecorder
from meshsim.core.report import Report
from meshsim.core.report_builder import build_report
from meshsim.core.scenario import Scenario
from meshsim.core.status import StatusCode
from meshsim.runtime.actor import Supervisor
from meshsim.runtime.arrivals import load_client
from meshsim.runtime.assembly import CallerConfig, Replica, Streams, assemble
from meshsim.runtime.faults import FaultInjector
from meshsim.runtime.observer import Observer
from meshsim.runtime.timers import TimerQueue
from meshsim.sim.collector import quiet_collector, settled
from meshsim.sim.network import SimNetwork
from meshsim.sim.scheduler import MockFastForward, deterministic_scheduling

Progress = Callable[[float], None]


class _ProgressInstrument(trio.abc.Instrument):
    """Reports virtual time once per scheduler pass; watching changes nothing in the run."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def before_io_wait(self, timeout: float) -> None:
        self._progress(trio.current_time())


def run_scenario(scenario: Scenario, progress: Progress | None = None, observer: Observer | None = None) -> Report:
    """Run `scenario` to completion in virtual time and return its report.

    `observer` lets a caller listen to the run's events (it gets the recorder's
    subscriptions added); `progress` is called with the virtual time as it advances.
    """
    observer = observer or Observer()
    recorder = RunRecorder()
    recorder.subscribe(observer)
    clock = trio.testing.MockClock(rate=0, autojump_threshold=0)
    instruments = [_ProgressInstrument(progress)] if progress is not None else []
    with deterministic_scheduling(scenario.seed), quiet_collector():
        trio.run(
            _simulate,
            scenario,
            observer,
            MockFastForward(clock),
            clock=clock,
            instruments=instruments,
            strict_exception_groups=True,
        )
    return build_report(scenario, recorder)


async def _simulate(scenario: Scenario, observer: Observer, fast_forward: MockFastForward) -> None:
    seed = scenario.seed
    timers = TimerQueue(fast_forward)
    network = SimNetwork(scenario, timers)
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(nursery, observer)
        supervisor.start(timers)
        clients = []
        channels = []
        for config in scenario.clients:
            service = scenario.service(config.target)
            caller = await assemble(
                CallerConfig(
                    client=config.name,
                    service=service.name,
                    replicas=tuple(Replica(n, service.weights[i]) for i, n in enumerate(service.replica_names)),
                    balancer=scenario.balancer,
                    health=scenario.health,
                    outlier=scenario.outlier,
                    policies=scenario.policies,
                ),
                network.view(config.name),
                timers,
                observer,
                supervisor,
                Streams(seed, config.name, service.name),
            )
            channels.append(caller.channel)
            stop = config.stop if config.stop is not None else scenario.duration
            clients.append(load_client(config, caller.channel, timers, caller.streams, stop))
        supervisor.start(FaultInjector(scenario.faults, network.targets, observer))
        settled()
        # Clients stop sending at their stop time; calls still in flight get `drain`
        # to finish, and whatever is left then ends CANCELLED: no call is lost.
        with trio.move_on_at(scenario.duration + scenario.drain):
            async with trio.open_nursery() as load:
                for client in clients:
                    load.start_soon(client.run, name=client.name)
        for channel in channels:
            channel.abort(StatusCode.CANCELLED)
        network.abort_all(StatusCode.CANCELLED)
        async with trio.open_nursery() as settle:
            for client in clients:
                settle.start_soon(client.wait_idle, name=client.name)
        nursery.cancel_scope.cancel()
