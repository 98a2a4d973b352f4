"""Load-balancing pickers: immutable views of the ready endpoints that choose one per call.

A balancer publishes a new picker whenever the set of pickable endpoints changes;
a call asks the current picker synchronously. Counters inside a picker (the round
robin position, smooth-WRR weights) are the picker's own and start afresh with
every new picker, as in gRPC.

Each policy is a module of this package with a `POLICY` (`base.LbPolicy`); REGISTERED
below is the one place a policy is added (docs/architecture.md has the recipe).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from meshsim.core.endpoint import Endpoint
from meshsim.core.pickers import (
    consistent_hash,
    least_connections,
    p2c,
    peak_ewma,
    random_choice,
    round_robin,
    weighted_round_robin,
)
from meshsim.core.pickers.base import BalancerConfig as BalancerConfig
from meshsim.core.pickers.base import EmptyPicker as EmptyPicker
from meshsim.core.pickers.base import LbPolicy as LbPolicy
from meshsim.core.pickers.base import Picker as Picker
from meshsim.core.pickers.base import PickerInputs
from meshsim.core.pickers.consistent_hash import RingHashPicker as RingHashPicker
from meshsim.core.pickers.consistent_hash import stable_hash as stable_hash
from meshsim.core.pickers.least_connections import LeastConnectionsPicker as LeastConnectionsPicker
from meshsim.core.pickers.p2c import PowerOfTwoPicker as PowerOfTwoPicker
from meshsim.core.pickers.peak_ewma import PeakEwmaPicker as PeakEwmaPicker
from meshsim.core.pickers.random_choice import RandomPicker as RandomPicker
from meshsim.core.pickers.round_robin import RoundRobinPicker as RoundRobinPicker
from meshsim.core.pickers.weighted_round_robin import SmoothWeightedPicker as SmoothWeightedPicker

REGISTERED: dict[str, LbPolicy] = {
    policy.name: policy
    for policy in (
        round_robin.POLICY,
        random_choice.POLICY,
        weighted_round_robin.POLICY,
        least_connections.POLICY,
        p2c.POLICY,
        consistent_hash.POLICY,
        peak_ewma.POLICY,
    )
}
POLICIES = tuple(REGISTERED)


def _no_clock() -> float:
    raise RuntimeError("this policy needs a clock: pass build_picker(..., now=...)")


def build_picker(
    config: BalancerConfig,
    endpoints: Sequence[Endpoint],
    rng: random.Random,
    now: Callable[[], float] = _no_clock,
    universe: Sequence[Endpoint] | None = None,
) -> Picker:
    """The picker of `config.policy` over `endpoints` (already filtered to the pickable ones);
    `universe` is every configured endpoint, usable or not."""
    if not endpoints:
        return EmptyPicker()
    policy = REGISTERED.get(config.policy)
    if policy is None:
        raise ValueError(f"unknown balancer policy {config.policy!r}")
    return policy.build(PickerInputs(config, endpoints, rng, now, universe if universe is not None else endpoints))
