"""What an LB policy is: a picker over the pickable endpoints, and what it needs to build one.

A policy declares what it needs (`LbPolicy`): the balancer's random stream, its clock,
the whole configured endpoint set (not only the pickable ones), or a latency estimate
kept on each endpoint; the balancer provides those and never asks a policy's name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from meshsim.core.endpoint import Endpoint
from meshsim.core.ewma import PeakEwmaConfig


class Picker(Protocol):
    def pick(self, key: str | None) -> Endpoint | None:
        """The endpoint for a call with hash key `key`, or None when nothing is pickable."""
        ...


@attrs.frozen
class BalancerConfig:
    """`panic_threshold` is Envoy's: when fewer than that percentage of the endpoints are
    healthy and not ejected, balance over all of them. 0 (gRPC's behaviour) never panics.

    `hash_header` is the request header whose value is a proxied call's hash key (gRFC A76's
    `request_hash_header`); only the proxy reads it: simulated calls carry their clients' keys,
    GrpcClient's calls the `key` their caller gives."""

    policy: str = "round_robin"
    ring_size: int = 1024
    choices: int = 2
    panic_threshold: float = 0.0
    ewma: PeakEwmaConfig = attrs.field(factory=PeakEwmaConfig)
    hash_header: str | None = None


@attrs.frozen
class PickerInputs:
    """Everything a policy may build its picker from."""

    config: BalancerConfig
    endpoints: Sequence[Endpoint]  # the pickable ones, never empty
    rng: random.Random  # the balancer's own stream
    now: Callable[[], float]  # the balancer's clock
    universe: Sequence[Endpoint]  # every configured endpoint, usable or not


@attrs.frozen
class LbPolicy:
    """A load-balancing policy: its name in config files, and how it builds a picker.

    `latency`: the policy reads a latency estimate (`Endpoint.latency`), which the balancer
    then keeps for every endpoint from the call outcomes it is told. `keyed`: the policy picks
    by the call's key, so a caller that has none to give (a proxied call without the hash
    header) gives a random one, or every such call would go where the empty key does.
    """

    name: str
    build: Callable[[PickerInputs], Picker]
    summary: str
    latency: bool = False
    keyed: bool = False


class EmptyPicker:
    """No endpoint is ready: every call fails fast with UNAVAILABLE."""

    def pick(self, key: str | None) -> Endpoint | None:
        return None
