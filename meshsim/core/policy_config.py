"""The mesh policy tables, as a scenario and a proxy config both write them.

`[balancer]`, `[health]`, `[outlier_detection]`, `[retry]`, `[hedging]`,
`[retry_throttling]`, `[retry_budget]`, `[circuit_breaker]` and `[concurrency_limit]`
read into the frozen policy objects of `meshsim.core`, with the `preset`'s defaults
where gRPC and Envoy differ (core/presets.py).
"""

from __future__ import annotations

import re

import attrs

from meshsim.core.breaker import BreakerConfig, ConcurrencyLimit
from meshsim.core.calls import MESH_METHODS
from meshsim.core.config import MAX_RING_SIZE, MIN_INTERVAL, Table, optional_table, shown
from meshsim.core.ewma import PeakEwmaConfig
from meshsim.core.health import HealthConfig
from meshsim.core.outlier import (
    ConsecutiveFailuresConfig,
    FailurePercentageConfig,
    OutlierConfig,
    SuccessRateConfig,
)
from meshsim.core.pickers import POLICIES, BalancerConfig
from meshsim.core.policies import CallPolicies
from meshsim.core.presets import DEFAULT, EJECTION_CAPS, PRESETS, Preset
from meshsim.core.retry import BudgetConfig, HedgingPolicy, RetryPolicy, ThrottleConfig
from meshsim.core.status import SERVER_FAILURES, StatusCode


def read_preset(top: Table) -> Preset:
    """`preset = "grpc"` (the default) or `"envoy"`: the defaults where the two differ."""
    return PRESETS[top.choice("preset", tuple(PRESETS), DEFAULT.name)]


def read_balancer(table: Table | None, preset: Preset = DEFAULT) -> BalancerConfig:
    if table is None:
        return BalancerConfig(panic_threshold=preset.panic_threshold)
    config = BalancerConfig(
        policy=table.choice("policy", POLICIES, "round_robin"),
        ring_size=table.integer("ring_size", 1024, minimum=1, maximum=MAX_RING_SIZE),
        choices=table.integer("choices", 2, minimum=1, maximum=100),
        panic_threshold=table.number("panic_threshold", preset.panic_threshold, minimum=0.0, maximum=100.0),
        ewma=PeakEwmaConfig(
            decay=table.duration("decay", 10.0, positive=True),
            default_rtt=table.duration("default_rtt", 0.030, positive=True),
        ),
        hash_header=read_hash_header(table),
    )
    table.done()
    return config


# gRPC's metadata names (its HTTP/2 spec's Header-Name): what a gRPC client can send and a
# proxy receive; HTTP/2 field names are lowercase.
_HEADER_NAME = re.compile(r"[0-9a-z_.-]+")


def read_hash_header(table: Table, key: str = "hash_header") -> str | None:
    """The request header whose value is a proxied call's hash key (A76's `request_hash_header`),
    or None: a lowercase gRPC metadata name, neither a pseudo-header nor a binary (-bin) header."""
    name: str | None = table.string(key, None)
    if name is None:
        return None
    if name.startswith(":"):
        table.fail(key, f"a pseudo-header ({name[:48]}) cannot be a hash key; name a request header")
    if not _HEADER_NAME.fullmatch(name):
        table.fail(key, f"expected a lowercase header name (a-z, 0-9, '-', '_', '.'), got {shown(name)}")
    if name.endswith("-bin"):
        table.fail(key, f"a binary header (-bin) cannot be a hash key, got {shown(name)}")
    return name


def read_health(table: Table | None, preset: Preset = DEFAULT) -> HealthConfig:
    if table is None:
        return HealthConfig(
            initial_healthy=preset.initial_healthy, not_serving_at_once=preset.not_serving_at_once, watch=preset.watch
        )
    initial = "healthy" if preset.initial_healthy else "unhealthy"
    not_serving = "at_once" if preset.not_serving_at_once else "threshold"
    config = HealthConfig(
        enabled=table.boolean("enabled", True),
        interval=table.duration("interval", 1.0, minimum=MIN_INTERVAL),
        timeout=table.duration("timeout", 0.5, positive=True),
        unhealthy_threshold=table.integer("unhealthy_threshold", 3, minimum=1, maximum=1000),
        healthy_threshold=table.integer("healthy_threshold", 2, minimum=1, maximum=1000),
        jitter=table.number("jitter", 0.0, minimum=0.0, maximum=1.0),
        service=table.string("service", None),
        initial_healthy=table.choice("initial_state", ("unhealthy", "healthy"), initial) == "healthy",
        not_serving_at_once=table.choice("not_serving", ("at_once", "threshold"), not_serving) == "at_once",
        watch=table.boolean("watch", preset.watch),
    )
    table.done()
    return config


def read_outlier(table: Table | None, preset: Preset = DEFAULT) -> OutlierConfig | None:
    if table is None:
        return None
    base = table.duration("base_ejection_time", 30.0, positive=True)
    config = OutlierConfig(
        interval=table.duration("interval", 10.0, minimum=MIN_INTERVAL),
        base_ejection_time=base,
        max_ejection_time=table.duration("max_ejection_time", max(300.0, base)),
        max_ejection_percent=table.number("max_ejection_percent", 10.0, minimum=0.0, maximum=100.0),
        failure_status_codes=table.statuses("failure_status_codes", SERVER_FAILURES),
        ejection_cap=table.choice("ejection_cap", EJECTION_CAPS, preset.ejection_cap),
        always_eject_one_host=table.boolean("always_eject_one_host", preset.always_eject_one_host),
        multiplier_decay=table.boolean("multiplier_decay", preset.multiplier_decay),
    )

    def enforcement(t: Table) -> float:
        return float(t.number("enforcement_percentage", 100.0, minimum=0.0, maximum=100.0))

    config = attrs.evolve(
        config,
        consecutive_failures=optional_table(
            table,
            "consecutive_failures",
            lambda t: ConsecutiveFailuresConfig(
                threshold=t.integer("threshold", 5, minimum=1),
                enforcement_percentage=enforcement(t),
                status_codes=t.statuses("status_codes", SERVER_FAILURES),
            ),
        ),
        success_rate=optional_table(
            table,
            "success_rate",
            lambda t: SuccessRateConfig(
                stdev_factor=t.integer("stdev_factor", 1900, minimum=0),
                enforcement_percentage=enforcement(t),
                minimum_hosts=t.integer("minimum_hosts", 5, minimum=1),
                request_volume=t.integer("request_volume", 100, minimum=1),
            ),
        ),
        failure_percentage=optional_table(
            table,
            "failure_percentage",
            lambda t: FailurePercentageConfig(
                threshold=t.number("threshold", 85.0, minimum=0.0, maximum=100.0),
                enforcement_percentage=enforcement(t),
                minimum_hosts=t.integer("minimum_hosts", 5, minimum=1),
                request_volume=t.integer("request_volume", 50, minimum=1),
            ),
        ),
    )
    if config.consecutive_failures is None and config.success_rate is None and config.failure_percentage is None:
        table.fail(None, "needs at least one detector: consecutive_failures, success_rate or failure_percentage")
    table.done()
    return config


def read_policies(top: Table, methods: tuple[str, ...] | None = MESH_METHODS, preset: Preset = DEFAULT) -> CallPolicies:
    """The call policy tables of `top`; `methods` are the names a policy may list (None: any name,
    for a proxy that serves methods meshsim has never heard of)."""
    retry = None
    retry_table = top.table("retry", None)
    if retry_table is not None:
        retry = read_retry(retry_table, methods, preset)
    hedging = None
    hedging_table = top.table("hedging", None)
    if hedging_table is not None:
        hedging = HedgingPolicy(
            max_attempts=hedging_table.integer("max_attempts", 2, minimum=2, maximum=100),
            hedging_delay=hedging_table.duration("hedging_delay", 0.05),
            non_fatal_status_codes=hedging_table.statuses("non_fatal_status_codes", frozenset()),
            methods=hedging_table.names("methods", methods, None),
        )
        if retry is not None:
            both = _overlap(retry.methods, hedging.methods, methods)
            if both:
                what = "every method" if both == _EVERY else f"method {shown(both)}"
                hedging_table.fail(
                    "methods",
                    f"{what} has a retry policy too; a method has retry or hedging, not both "
                    "(give each a `methods` list)",
                )
        hedging_table.done()
    throttle = optional_table(
        top,
        "retry_throttling",
        lambda t: ThrottleConfig(
            max_tokens=t.number("max_tokens", 100.0, above=0.0, maximum=1000.0),
            token_ratio=t.number("token_ratio", 0.1, above=0.0, maximum=1000.0),
        ),
    )
    budget = optional_table(
        top,
        "retry_budget",
        lambda t: BudgetConfig(
            budget_percent=t.number("budget_percent", 20.0, minimum=0.0, maximum=1000.0),
            min_retry_concurrency=t.integer("min_retry_concurrency", 3, minimum=0),
        ),
    )
    if budget is not None and retry is None:
        top.fail("retry_budget", "limits retries, but there is no [retry] (hedges are limited by [retry_throttling])")
    if throttle is not None and retry is None and hedging is None:
        top.fail("retry_throttling", "limits retries and hedges, but there is neither [retry] nor [hedging]")
    breakers = top.table("circuit_breaker", None)
    replica_breaker = service_breaker = None
    if breakers is not None:
        replica = breakers.table("replica", None)
        replica_breaker = None if replica is None else _breaker(replica)
        service = breakers.table("service", None)
        service_breaker = None if service is None else _breaker(service)
        breakers.done()  # a misspelt sub-table is named before the "needs" below
        if replica_breaker is None and service_breaker is None:
            breakers.fail(None, "needs [circuit_breaker.replica] or [circuit_breaker.service]")
    limits = optional_table(
        top,
        "concurrency_limit",
        lambda t: ConcurrencyLimit(
            max_requests=t.integer("max_requests", 1024, minimum=1),
            max_pending=t.integer("max_pending", 1024, minimum=0),
            max_requests_per_endpoint=t.integer("max_requests_per_endpoint", None, minimum=1),
        ),
    )
    return CallPolicies(
        retry=retry,
        hedging=hedging,
        throttle=throttle,
        budget=budget,
        replica_breaker=replica_breaker,
        service_breaker=service_breaker,
        limits=limits,
    )


_EVERY = "*"


def _overlap(first: tuple[str, ...] | None, second: tuple[str, ...] | None, universe: tuple[str, ...] | None) -> str:
    """A method both lists cover (None: every method, out of `universe` when it is known), or ""."""
    if first is None and second is None:
        return universe[0] if universe else _EVERY
    if first is None or second is None:
        return (second or first or ("",))[0]
    return next((m for m in second if m in first), "")


def read_retry(table: Table, methods: tuple[str, ...] | None = MESH_METHODS, preset: Preset = DEFAULT) -> RetryPolicy:
    initial = table.duration("initial_backoff", 0.1, positive=True)
    policy = RetryPolicy(
        max_attempts=table.integer("max_attempts", 3, minimum=2, maximum=100),
        initial_backoff=initial,
        max_backoff=table.duration("max_backoff", max(1.0, initial), positive=True),
        backoff_multiplier=table.number("backoff_multiplier", 2.0, above=0.0, maximum=100.0),
        jitter=table.number("jitter", 1.0, minimum=0.0, maximum=1.0),
        retryable_status_codes=table.statuses("retryable_status_codes", frozenset({StatusCode.UNAVAILABLE})),
        per_attempt_timeout=table.duration("per_attempt_timeout", None, positive=True),
        methods=table.names("methods", methods, None),
        previous_hosts=table.boolean("previous_hosts", preset.previous_hosts),
    )
    if policy.max_backoff < policy.initial_backoff:
        table.fail("max_backoff", "must not be below initial_backoff")
    if StatusCode.OK in policy.retryable_status_codes:
        table.fail("retryable_status_codes", "OK is never retried")
    table.done()
    return policy


def _breaker(table: Table) -> BreakerConfig:
    window_type = table.choice("window_type", ("count", "time"), "count")
    config = BreakerConfig(
        window_type=window_type,
        # A count window keeps its calls, a time window a bucket per second: both bounded.
        window_size=table.integer(
            "window_size", 100, minimum=1, maximum=1_000_000 if window_type == "count" else 86_400
        ),
        minimum_calls=table.integer("minimum_calls", 100, minimum=1),
        failure_rate_threshold=table.number("failure_rate_threshold", 50.0, above=0.0, maximum=100.0),
        slow_call_rate_threshold=table.number("slow_call_rate_threshold", 100.0, above=0.0, maximum=100.0),
        slow_call_duration=table.duration("slow_call_duration", 60.0, positive=True),
        wait_duration_in_open=table.duration("wait_duration_in_open", 60.0, positive=True),
        permitted_calls_in_half_open=table.integer("permitted_calls_in_half_open", 10, minimum=1),
        failure_status_codes=table.statuses("failure_status_codes", SERVER_FAILURES),
    )
    table.done()
    return config
