"""Open-loop arrivals that follow a schedule: a Poisson rate per step, as a recording is replayed.

A client with `rates` (docs/scenarios.md, `[[client]]`) sends as a Poisson process whose
rate is `rates[i]` during the i-th `rate_step` from its start, and nothing after the last
step. Arrivals are drawn by time change: a unit-rate exponential draw is spent against
the rate's integral, crossing steps as needed, so a draw costs the same whatever the
steps and one step of rate r draws exactly what a plain `rate = r` client draws.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import trio

from meshsim.core.scenario import ClientConfig
from meshsim.runtime.load import Calls, LoadClient
from meshsim.runtime.timers import Timers


class ScheduledArrivals:
    """The arrival times of a Poisson process with a piecewise-constant rate."""

    def __init__(self, rates: tuple[float, ...], step: float, start: float, rng: random.Random) -> None:
        self._rates = rates
        self._step = step
        self._start = start
        self._rng = rng

    def after(self, now: float) -> float:
        """The next arrival after `now`, or infinity when the schedule has none left."""
        need = self._rng.expovariate(1.0)
        rates, step, start = self._rates, self._step, self._start
        index = max(0, int((now - start) // step))
        while index < len(rates):
            end = start + (index + 1) * step
            rate = rates[index]
            if rate > 0 and end > now:
                covered = rate * (end - now)
                if need <= covered:
                    return now + need / rate
                need -= covered
            now = max(now, end)
            index += 1
        return math.inf


class ScheduledLoadClient(LoadClient):
    """An open-loop client whose rate follows its config's schedule; everything else (the calls it
    makes, how it stops and drains) is LoadClient's."""

    def __init__(
        self,
        config: ClientConfig,
        channel: Calls,
        timers: Timers,
        streams: Callable[[str], random.Random],
        stop: float,
    ) -> None:
        super().__init__(config, channel, timers, streams, stop)
        self._arrivals = ScheduledArrivals(config.rates, config.rate_step, config.start, self._rng)

    async def run(self) -> None:
        await trio.sleep_until(self.config.start)
        self._plan(self.config.start)
        await trio.sleep_until(self._stop)
        await self.wait_idle()

    def _arrive(self) -> None:
        planned = self._planned
        if planned >= self._stop:
            return
        self._send()
        self._plan(planned)

    def _plan(self, after: float) -> None:
        # From the arrival before, not from when its timer fired: a late timer on a real clock
        # must not slow the arrivals down (as LoadClient plans them).
        self._planned = self._arrivals.after(after)
        if self._planned < self._stop:
            self._timers.call_at(self._planned, self._arrive)


def load_client(
    config: ClientConfig,
    channel: Calls,
    timers: Timers,
    streams: Callable[[str], random.Random],
    stop: float,
) -> LoadClient:
    """The load generator a client's config asks for: a schedule's, or LoadClient."""
    kind = ScheduledLoadClient if config.rates else LoadClient
    return kind(config, channel, timers, streams, stop)
