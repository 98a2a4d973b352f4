"""Where gRPC's client and Envoy differ, the choice of which to follow, made once.

Each setting is also a key of its own (a file may set any of them); a preset only gives
the defaults. `grpc` is the default: meshsim models a gRPC client's channel first, and
its load balancing, health checking and retries are what a caller of `GrpcClient` or
the proxy gets. `envoy` is what a mesh of Envoy sidecars does with the same settings.
docs/resilience.md says where each value comes from.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Preset:
    name: str
    # A replica is out until its first check passes (both real systems).
    initial_healthy: bool = False
    # NOT_SERVING takes a replica out at once: a pushed status in gRPC, an "active" failure in Envoy.
    not_serving_at_once: bool = True
    # Health is watched (grpc.health.v1 Watch: pushed changes, a broken stream counts at once, as
    # gRPC's client health checking does) or polled with Check every interval (Envoy).
    watch: bool = True
    # A retry prefers a replica not tried yet: Envoy's previous_hosts predicate, off in both by default.
    previous_hosts: bool = False
    # max_ejection_percent: A50 checks the share already ejected ("current"); Envoy the share
    # the ejection would make ("prospective"), and ejects one host regardless only when asked.
    ejection_cap: str = "current"
    always_eject_one_host: bool = False
    # Each interval in rotation takes one off an endpoint's ejection multiplier (A50, and Envoy
    # since max_ejection_time).
    multiplier_decay: bool = True
    # Below this share of usable replicas, spread over all of them (Envoy's 50 %; gRPC has no panic).
    panic_threshold: float = 0.0


PRESETS = {
    "grpc": Preset("grpc"),
    "envoy": Preset("envoy", watch=False, ejection_cap="prospective", panic_threshold=50.0),
}
DEFAULT = PRESETS["grpc"]
EJECTION_CAPS = ("current", "prospective")
