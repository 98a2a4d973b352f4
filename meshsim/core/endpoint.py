"""An endpoint as the balancer and its pickers see it."""

from __future__ import annotations

import attrs

from meshsim.core.ewma import PeakEwma


@attrs.define(eq=False)
class Endpoint:
    """One replica seen from one client's balancer.

    `in_flight` is data-plane state shared with the published picker: the call
    path bumps it on every pick, so least-connections and p2c read live load
    without a mailbox round trip (gRPC's least_request does the same with atomics).
    """

    name: str
    weight: int = 1
    index: int = 0
    healthy: bool = True
    in_flight: int = 0
    latency: PeakEwma | None = None
