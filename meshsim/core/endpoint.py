"""An endpoint as the balancer and its pickers see it."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from meshsim.core.ewma import PeakEwma


@attrs.define(eq=False)
class Endpoint:
    """One replica seen from one client's balancer.

    `in_flight` is data-plane state shared with the published picker: the call
    path bumps it on every pick, so least-connections and p2c read live load
    without a mailbox round trip (gRPC's least_request does the same with atomics).
    A picker that indexes endpoints by load instead of reading every count at each
    pick sets `load_watcher`, which is told of every change.
    """

    name: str
    weight: int = 1
    index: int = 0
    healthy: bool = True
    _in_flight: int = 0
    latency: PeakEwma | None = None
    load_watcher: Callable[[Endpoint], None] | None = attrs.field(default=None, repr=False)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self._in_flight = value
        watcher = self.load_watcher
        if watcher is not None:
            watcher(self)
