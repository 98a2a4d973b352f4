"""Load generators: the clients of a scenario, as open-loop (Poisson) or closed-loop actors."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable
from typing import Protocol

import trio

from meshsim.core.calls import CallSpec, Pattern
from meshsim.core.events import RequestFinished
from meshsim.core.scenario import ClientConfig
from meshsim.runtime.timers import Timers

# A closed-loop worker whose call ended at the instant it began (no endpoint was
# pickable) waits this long before the next one, so that a dead cluster cannot
# spin a virtual instant forever.
FAST_FAILURE_PAUSE = 0.001


class CallFactory:
    """Draws the pattern (from `mix`) and hash key (from `keys`) of each call from the client's config."""

    def __init__(self, config: ClientConfig, mix: random.Random, key_rng: random.Random) -> None:
        self._config = config
        self._mix = mix
        self._key_rng = key_rng
        self._patterns = [pattern for pattern, _ in config.mix]
        self._pattern_weights = list(itertools.accumulate(weight for _, weight in config.mix))
        keys = config.keys
        self._keys: list[str] = []
        self._key_weights: list[float] = []
        if keys is not None:
            self._keys = [f"key-{i}" for i in range(keys.count)]
            if keys.kind == "zipf":
                self._key_weights = list(
                    itertools.accumulate(1.0 / (k**keys.exponent) for k in range(1, keys.count + 1))
                )
        self._templates = {
            pattern: CallSpec(
                client=config.name,
                service=config.target,
                pattern=pattern,
                deadline=config.deadline,
                messages=1 if pattern is Pattern.UNARY else config.messages,
            )
            for pattern in Pattern
        }
        self._mix_templates = [self._templates[pattern] for pattern in self._patterns]

    def next_call(self) -> CallSpec:
        # Templates by position in the mix, not by Pattern: an enum's hash is a Python call.
        if len(self._patterns) == 1:
            template = self._mix_templates[0]
        else:
            point = self._mix.random() * self._pattern_weights[-1]
            template = self._mix_templates[bisect.bisect_right(self._pattern_weights, point)]
        if not self._keys:
            return template
        rng = self._key_rng
        if self._key_weights:
            point = rng.random() * self._key_weights[-1]
            index = min(bisect.bisect_right(self._key_weights, point), len(self._keys) - 1)
        else:
            index = rng.randrange(len(self._keys))
        return CallSpec(
            client=template.client,
            service=template.service,
            pattern=template.pattern,
            key=self._keys[index],
            deadline=template.deadline,
            messages=template.messages,
        )


class Calls(Protocol):
    """What starts a client's calls: a MeshChannel, or what gives a live call its requests first."""

    def start(self, call: CallSpec, on_finished: Callable[[RequestFinished], None] | None = None) -> object: ...


class LoadClient:
    """Sends calls from `start` to `stop`, then waits for its calls in flight to end.

    Arrivals are timers on the completion queue, not tasks: an open-loop client
    costs one heap entry per call.
    """

    def __init__(
        self,
        config: ClientConfig,
        channel: Calls,
        timers: Timers,
        streams: Callable[[str], random.Random],
        stop: float,
    ) -> None:
        """`streams(purpose)`: the caller's random streams (runtime.assembly.Streams): arrivals, mix, keys."""
        self.name = f"client:{config.name}"
        self.config = config
        self._channel = channel
        # A channel that can start a call the client will not hold on to does it more cheaply.
        self._channel_send: Callable[[CallSpec, Callable[[float, float], None]], None] | None = getattr(
            channel, "send", None
        )
        self._timers = timers
        self._rng = streams("arrivals")
        self._calls = CallFactory(config, streams("mix"), streams("keys"))
        self._stop = stop
        self._outstanding = 0
        self._planned = 0.0  # the time the next open-loop arrival is due
        self._idle = trio.Event()
        self.sent = 0

    async def run(self) -> None:
        config = self.config
        await trio.sleep_until(config.start)
        if config.rate is not None:
            self._planned = config.start + self._rng.expovariate(config.rate)
            self._timers.call_at(self._planned, self._arrive)
        else:
            assert config.concurrency is not None
            for _ in range(config.concurrency):
                self._send()
        await trio.sleep_until(self._stop)
        await self.wait_idle()

    def stop_sending(self) -> None:
        """Send nothing more from now on (a run stopped early)."""
        self._stop = min(self._stop, self._timers.now())

    async def wait_idle(self) -> None:
        """Return once the client has stopped sending and none of its calls is in flight."""
        if self._outstanding:
            await self._idle.wait()

    def _arrive(self) -> None:
        # Each arrival is planned from the one before, not from when its timer fired: on a real
        # clock a late timer must not slow the arrivals down (the simulator's fire on time).
        planned = self._planned
        if planned >= self._stop:
            return
        self._send()
        assert self.config.rate is not None
        # random.expovariate's own formula, inline (the same floats): this runs once a call.
        self._planned = planned + -math.log(1.0 - self._rng.random()) / self.config.rate
        self._timers.call_at(self._planned, self._arrive)

    def _send(self) -> None:
        self._outstanding += 1
        self.sent += 1
        call = self._calls.next_call()
        if self._channel_send is not None:
            self._channel_send(call, self._ended)
        else:
            self._channel.start(call, self._finished)

    def _finished(self, event: RequestFinished) -> None:
        self._ended(event.started, event.finished)

    def _ended(self, started: float, finished: float) -> None:
        self._outstanding -= 1
        if self.config.concurrency is not None:
            pause = self.config.think_time
            if not pause and finished == started:
                pause = FAST_FAILURE_PAUSE
            next_at = finished + pause
            if next_at < self._stop:
                self._timers.call_at(next_at, self._next_closed_loop_call)
                self._outstanding += 1  # reserved: the worker is not idle while it pauses
                return
        if self._outstanding == 0 and self._timers.now() >= self._stop:
            self._idle.set()

    def _next_closed_loop_call(self) -> None:
        self._outstanding -= 1
        if self._timers.now() >= self._stop:
            if self._outstanding == 0:
                self._idle.set()
            return
        self._send()
