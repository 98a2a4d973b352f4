"""Reads a scenario TOML file into the frozen model, or fails with one line naming the key.

Every key is checked: unknown keys are errors (with a suggestion), never ignored,
because a misspelt `unhealthy_treshold` silently falling back to a default is
exactly the kind of surprise meshsim exists to prevent.
"""

from __future__ import annotations

import difflib
import itertools
import math
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs

from meshsim.core.breaker import BreakerConfig, ConcurrencyLimit
from meshsim.core.calls import Pattern
from meshsim.core.distributions import (
    Constant,
    Distribution,
    Empirical,
    Exponential,
    LogNormal,
    Normal,
    Uniform,
)
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
from meshsim.core.retry import METHODS, BudgetConfig, HedgingPolicy, RetryPolicy, ThrottleConfig
from meshsim.core.scenario import (
    LATENCY_METRICS,
    METRICS,
    OPERATORS,
    SCHEMA,
    SCOPES,
    AssertionConfig,
    ClientConfig,
    FaultAction,
    FaultConfig,
    KeyDistribution,
    Scenario,
    ScenarioError,
    ServiceConfig,
)
from meshsim.core.status import SERVER_FAILURES, HealthStatus, StatusCode
from meshsim.core.units import format_duration, parse_duration

_MISSING: Any = object()
T = TypeVar("T")

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _type_name(value: object) -> str:
    for kind, name in _TYPE_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


class Table:
    """A TOML table plus where it sits in the file, handing out typed, checked values."""

    def __init__(self, file: Path, data: dict[str, Any], keypath: str = "") -> None:
        self.file = file
        self.data = data
        self.keypath = keypath
        self._read: set[str] = set()

    def path_of(self, key: str) -> str:
        return f"{self.keypath}.{key}" if self.keypath else key

    def fail(self, key: str | None, message: str) -> NoReturn:
        where = self.path_of(key) if key is not None else (self.keypath or "top level")
        raise ScenarioError(f"{self.file}: {where}: {message}")

    def has(self, key: str) -> bool:
        self._read.add(key)  # asked about, so a near miss gets a "did you mean"
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.fail(key, "is required")
        return default

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_type_name(value)} {value!r}")
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if type(value) is not int:
            self.fail(key, f"expected an integer, got {_type_name(value)} {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if type(value) not in (int, float) or not math.isfinite(value):
            self.fail(key, f"expected a number, got {_type_name(value)} {value!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be at most {maximum:g}, got {value:g}")
        if above is not None and value <= above:
            self.fail(key, f"must be greater than {above:g}, got {value:g}")
        return float(value)

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if type(value) is not bool:
            self.fail(key, f"expected true or false, got {_type_name(value)} {value!r}")
        return value

    def duration(self, key: str, default: Any = _MISSING, positive: bool = False) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return self.convert_duration(key, value, positive)

    def convert_duration(self, key: str, value: object, positive: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.fail(key, f'expected a duration like "10s", got {value!r}')
        if positive and seconds <= 0:
            self.fail(key, f"must be greater than 0s, got {value!r}")
        return seconds

    def choice(self, key: str, options: Iterable[str], default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        options = tuple(options)
        if value not in options:
            self.fail(key, f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def status(self, key: str, default: StatusCode) -> StatusCode:
        value = self.raw(key, default)
        if isinstance(value, StatusCode):
            return value
        try:
            return StatusCode.parse(str(value))
        except ValueError:
            self.fail(key, f'expected a gRPC status code like "UNAVAILABLE", got {value!r}')

    def statuses(self, key: str, default: frozenset[StatusCode]) -> frozenset[StatusCode]:
        value = self.raw(key, None)
        if value is None:
            return default
        if not isinstance(value, list):
            self.fail(key, f'expected an array of gRPC status codes like ["UNAVAILABLE"], got {value!r}')
        codes = set()
        for index, item in enumerate(value):
            try:
                codes.add(StatusCode.parse(str(item)))
            except ValueError:
                self.fail(f"{key}[{index}]", f'expected a gRPC status code like "UNAVAILABLE", got {item!r}')
        return frozenset(codes)

    def names(self, key: str, options: tuple[str, ...] | None, default: tuple[str, ...]) -> tuple[str, ...]:
        """A non-empty array of names, each one of `options` (any non-empty string if None)."""
        value = self.raw(key, None)
        if value is None:
            return default
        among = "" if options is None else f" from {', '.join(options)}"
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty array of names{among}, got {value!r}")
        for index, item in enumerate(value):
            if options is None:
                if not isinstance(item, str) or not item:
                    self.fail(f"{key}[{index}]", f"expected a non-empty string, got {item!r}")
            elif item not in options:
                self.fail(f"{key}[{index}]", f"expected one of {', '.join(options)}, got {item!r}")
        return tuple(value)

    def table(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_type_name(value)} {value!r}")
        return Table(self.file, value, self.path_of(key))

    def tables(self, key: str) -> list[Table]:
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected [[{key}]] tables, got {_type_name(value)}")
        return [Table(self.file, v, f"{self.path_of(key)}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        """Fail on the first key nobody asked for."""
        for key in self.data:
            if key not in self._read:
                hint = difflib.get_close_matches(key, sorted(self._read), n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(key, f"unknown key{suggestion}")


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file; raise ScenarioError naming file and key on any problem."""
    path = Path(path)
    return _build(toml_table(path, read_text(path)))


def read_text(path: Path) -> str:
    """A config file's text; a file that cannot be read is a ScenarioError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read: {error}") from None


def toml_table(path: Path, text: str) -> Table:
    """The top-level table of a TOML file; text that is not TOML is a ScenarioError naming the file."""
    try:
        return Table(path, tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None


def _build(top: Table) -> Scenario:
    schema = top.raw("schema", _MISSING) if top.has("schema") else None
    if schema != SCHEMA:
        top.fail("schema", f'expected "{SCHEMA}", got {schema!r}')
    name = top.string("name", top.file.stem)
    description = top.string("description", "")
    seed = top.integer("seed", 1, minimum=0)
    duration = top.duration("duration", positive=True)
    drain = top.duration("drain", 10.0)

    services = tuple(_service(t) for t in top.tables("service"))
    if not services:
        top.fail("service", "a scenario needs at least one [[service]]")
    _unique(top, "service", [s.name for s in services])

    balancer = read_balancer(top.table("balancer", None))
    health = read_health(top.table("health", None))
    outlier = read_outlier(top.table("outlier_detection", None))
    policies = read_policies(top)

    service_names = [s.name for s in services]
    clients = tuple(_client(t, service_names, duration) for t in top.tables("client"))
    if not clients:
        top.fail("client", "a scenario needs at least one [[client]] to send calls")
    _unique(top, "client", [c.name for c in clients])

    faults = tuple(
        _fault(t, i, services, [c.name for c in clients], duration) for i, t in enumerate(top.tables("fault"))
    )
    assertions = tuple(
        _assertion(t, i, services, [c.name for c in clients], duration) for i, t in enumerate(top.tables("assert"))
    )
    top.done()
    return Scenario(
        path=top.file,
        name=name,
        description=description,
        seed=seed,
        duration=duration,
        drain=drain,
        services=services,
        balancer=balancer,
        health=health,
        outlier=outlier,
        policies=policies,
        clients=clients,
        faults=faults,
        assertions=assertions,
    )


def _unique(top: Table, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            Table(top.file, {}, f"{key}[{index}]").fail("name", f"duplicate name {name!r}")
        seen.add(name)


def _service(table: Table) -> ServiceConfig:
    name = table.string("name")
    if "/" in name or ":" in name:
        table.fail("name", f"must not contain '/' or ':', got {name!r}")
    replicas = table.integer("replicas", 1, minimum=1)
    latency = _distribution(table, "latency", Constant(0.010))
    message_latency = _distribution(table, "message_latency", Constant(0.0))
    error_rate = table.number("error_rate", 0.0, minimum=0.0, maximum=1.0)
    error_status = table.status("error_status", StatusCode.UNAVAILABLE)
    if error_status is StatusCode.OK:
        table.fail("error_status", "an injected error cannot be OK")
    capacity = table.integer("capacity", None, minimum=1)
    queue_limit = table.integer("queue_limit", None, minimum=0)
    if queue_limit is not None and capacity is None:
        table.fail("queue_limit", "needs capacity: without a capacity nothing ever queues")
    weights: tuple[int, ...]
    if table.has("weights"):
        raw = table.raw("weights")
        if not isinstance(raw, list) or not all(type(w) is int and w >= 0 for w in raw):
            table.fail("weights", f"expected an array of non-negative integers, got {raw!r}")
        if len(raw) != replicas:
            table.fail("weights", f"has {len(raw)} entries for {replicas} replicas")
        weights = tuple(raw)
        if table.has("weight"):
            table.fail("weight", "give either weight or weights, not both")
    else:
        weight = table.integer("weight", 1, minimum=0)
        weights = (weight,) * replicas
    probe_latency = table.duration("probe_latency", 0.001)
    pushback = table.integer("error_pushback_ms", None)
    table.done()
    return ServiceConfig(
        name=name,
        replicas=replicas,
        latency=latency,
        message_latency=message_latency,
        error_rate=error_rate,
        error_status=error_status,
        capacity=capacity,
        queue_limit=queue_limit,
        weights=weights,
        probe_latency=probe_latency,
        error_pushback_ms=pushback,
    )


DISTRIBUTIONS = ("constant", "uniform", "exponential", "normal", "lognormal", "empirical")


def _distribution(parent: Table, key: str, default: Distribution) -> Distribution:
    if not parent.has(key):
        parent.raw(key, None)
        return default
    value = parent.raw(key)
    if not isinstance(value, dict):
        return Constant(parent.convert_duration(key, value))
    table = Table(parent.file, value, parent.path_of(key))
    kind = table.choice("dist", DISTRIBUTIONS)
    result: Distribution
    if kind == "constant":
        result = Constant(table.duration("value"))
    elif kind == "uniform":
        low, high = table.duration("low"), table.duration("high")
        if high < low:
            table.fail("high", f"must not be below low ({format_duration(low)})")
        result = Uniform(low, high)
    elif kind == "exponential":
        result = Exponential(table.duration("mean"))
    elif kind == "normal":
        result = Normal(table.duration("mean"), table.duration("stddev"))
    elif kind == "lognormal":
        result = LogNormal(table.duration("median", positive=True), table.number("sigma", minimum=0.0))
    else:
        result = _empirical(table)
    table.done()
    return result


def _empirical(table: Table) -> Empirical:
    raw_bounds = table.raw("bounds")
    raw_weights = table.raw("weights")
    if not isinstance(raw_bounds, list) or not raw_bounds:
        table.fail("bounds", "expected a non-empty array of durations (bucket upper edges)")
    bounds = tuple(table.convert_duration(f"bounds[{i}]", b) for i, b in enumerate(raw_bounds))
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        table.fail("bounds", "must be strictly increasing")
    if not isinstance(raw_weights, list) or len(raw_weights) != len(bounds):
        table.fail("weights", f"expected an array of {len(bounds)} numbers, one per bucket")
    finite = all(type(w) in (int, float) and math.isfinite(w) and w >= 0 for w in raw_weights)
    if not finite or sum(raw_weights) <= 0:
        table.fail("weights", "must be non-negative numbers with a positive sum")
    return Empirical(bounds, tuple(float(w) for w in raw_weights))


def read_balancer(table: Table | None) -> BalancerConfig:
    if table is None:
        return BalancerConfig()
    config = BalancerConfig(
        policy=table.choice("policy", POLICIES, "round_robin"),
        ring_size=table.integer("ring_size", 1024, minimum=1),
        choices=table.integer("choices", 2, minimum=1),
        panic_threshold=table.number("panic_threshold", 0.0, minimum=0.0, maximum=100.0),
        ewma=PeakEwmaConfig(
            decay=table.duration("decay", 10.0, positive=True),
            default_rtt=table.duration("default_rtt", 0.030, positive=True),
        ),
    )
    table.done()
    return config


def read_health(table: Table | None) -> HealthConfig:
    if table is None:
        return HealthConfig()
    config = HealthConfig(
        enabled=table.boolean("enabled", True),
        interval=table.duration("interval", 1.0, positive=True),
        timeout=table.duration("timeout", 0.5, positive=True),
        unhealthy_threshold=table.integer("unhealthy_threshold", 3, minimum=1),
        healthy_threshold=table.integer("healthy_threshold", 2, minimum=1),
        jitter=table.number("jitter", 0.0, minimum=0.0, maximum=1.0),
        service=table.string("service", None),
    )
    table.done()
    return config


def optional_table(parent: Table, key: str, build: Callable[[Table], T]) -> T | None:
    """`build` the sub-table `key` when it is there (checking it has no unknown keys), else None."""
    table = parent.table(key, None)
    if table is None:
        return None
    result = build(table)
    table.done()
    return result


def read_outlier(table: Table | None) -> OutlierConfig | None:
    if table is None:
        return None
    base = table.duration("base_ejection_time", 30.0, positive=True)
    config = OutlierConfig(
        interval=table.duration("interval", 10.0, positive=True),
        base_ejection_time=base,
        max_ejection_time=table.duration("max_ejection_time", max(300.0, base)),
        max_ejection_percent=table.number("max_ejection_percent", 10.0, minimum=0.0, maximum=100.0),
        failure_status_codes=table.statuses("failure_status_codes", SERVER_FAILURES),
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


def read_policies(top: Table, methods: tuple[str, ...] | None = METHODS) -> CallPolicies:
    """The call policy tables of `top`; `methods` are the names a policy may list (None: any name,
    for a proxy that serves methods meshsim has never heard of)."""
    retry = None
    retry_table = top.table("retry", None)
    if retry_table is not None:
        retry = read_retry(retry_table, methods)
    hedging = None
    hedging_table = top.table("hedging", None)
    if hedging_table is not None:
        hedging = HedgingPolicy(
            max_attempts=hedging_table.integer("max_attempts", 2, minimum=2),
            hedging_delay=hedging_table.duration("hedging_delay", 0.05),
            non_fatal_status_codes=hedging_table.statuses("non_fatal_status_codes", frozenset()),
            methods=hedging_table.names("methods", methods, METHODS),
        )
        if retry is not None:
            both = [m for m in hedging.methods if m in retry.methods]
            if both:
                hedging_table.fail(
                    "methods",
                    f"method {both[0]!r} has a retry policy too; a method has retry or hedging, not both "
                    "(give each a `methods` list)",
                )
        hedging_table.done()
    throttle = optional_table(
        top,
        "retry_throttling",
        lambda t: ThrottleConfig(
            max_tokens=t.number("max_tokens", 100.0, above=0.0, maximum=1000.0),
            token_ratio=t.number("token_ratio", 0.1, above=0.0),
        ),
    )
    budget = optional_table(
        top,
        "retry_budget",
        lambda t: BudgetConfig(
            budget_percent=t.number("budget_percent", 20.0, minimum=0.0),
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


def read_retry(table: Table, methods: tuple[str, ...] | None = METHODS) -> RetryPolicy:
    initial = table.duration("initial_backoff", 0.1, positive=True)
    policy = RetryPolicy(
        max_attempts=table.integer("max_attempts", 3, minimum=2),
        initial_backoff=initial,
        max_backoff=table.duration("max_backoff", max(1.0, initial), positive=True),
        backoff_multiplier=table.number("backoff_multiplier", 2.0, above=0.0),
        jitter=table.number("jitter", 1.0, minimum=0.0, maximum=1.0),
        retryable_status_codes=table.statuses("retryable_status_codes", frozenset({StatusCode.UNAVAILABLE})),
        per_attempt_timeout=table.duration("per_attempt_timeout", None, positive=True),
        methods=table.names("methods", methods, METHODS),
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
        window_size=table.integer("window_size", 100, minimum=1),
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


def _client(table: Table, services: list[str], duration: float) -> ClientConfig:
    name = table.string("name")
    if len(services) == 1:
        target = table.choice("target", services, services[0])
    else:
        target = table.choice("target", services)
    rate = table.number("rate", None, above=0.0)
    concurrency = table.integer("concurrency", None, minimum=1)
    if (rate is None) == (concurrency is None):
        table.fail(None, "give exactly one of rate (open loop, calls/s) or concurrency (closed loop)")
    think_time = table.duration("think_time", 0.0)
    if think_time and rate is not None:
        table.fail("think_time", "only applies to a closed-loop client (concurrency)")
    deadline = table.duration("deadline", None, positive=True)
    start = table.duration("start", 0.0)
    stop = table.duration("stop", None)
    if start >= duration:
        table.fail("start", f"{format_duration(start)} is not before the end of the run")
    if stop is not None and not start < stop <= duration:
        table.fail("stop", f"must be after start and at most the duration ({format_duration(duration)})")
    mix: tuple[tuple[Pattern, float], ...] = ((Pattern.UNARY, 1.0),)
    patterns = table.table("patterns", None)
    if patterns is not None:
        entries = []
        for pattern in Pattern:
            weight = patterns.number(pattern.value, 0.0, minimum=0.0)
            if weight > 0:
                entries.append((pattern, weight))
        patterns.done()
        if not entries:
            table.fail("patterns", "needs at least one pattern with a positive weight")
        mix = tuple(entries)
    messages = table.integer("messages", 10, minimum=1)
    keys = None
    keys_table = table.table("keys", None)
    if keys_table is not None:
        kind = keys_table.choice("dist", ("uniform", "zipf"))
        count = keys_table.integer("count", minimum=1)
        if kind == "uniform" and keys_table.has("exponent"):
            keys_table.fail("exponent", "applies to a zipf key distribution only")
        exponent = keys_table.number("exponent", 1.0, above=0.0) if kind == "zipf" else 1.0
        keys_table.done()
        keys = KeyDistribution(kind, count, exponent)
    table.done()
    return ClientConfig(
        name=name,
        target=target,
        rate=rate,
        concurrency=concurrency,
        think_time=think_time,
        deadline=deadline,
        start=start,
        stop=stop,
        mix=mix,
        messages=messages,
        keys=keys,
    )


_FAULT_PARAMS = {
    FaultAction.KILL: (),
    FaultAction.LATENCY: ("add", "multiply"),
    FaultAction.ERRORS: ("rate", "status", "pushback_ms"),
    FaultAction.BLACKHOLE: (),
    FaultAction.HEALTH: ("status",),
    FaultAction.PARTITION: ("client",),
}


def _fault(
    table: Table, index: int, services: tuple[ServiceConfig, ...], clients: list[str], duration: float
) -> FaultConfig:
    at = table.duration("at")
    if at >= duration:
        table.fail("at", f"{format_duration(at)} is not before the end of the run ({format_duration(duration)})")
    length = table.duration("for", None, positive=True)
    action = FaultAction(table.choice("action", [a.value for a in FaultAction]))
    target = table.string("target")
    _check_target(table, "target", target, services)
    allowed = _FAULT_PARAMS[action]
    for key in ("add", "multiply", "rate", "status", "client", "pushback_ms"):
        if table.has(key) and key not in allowed:
            table.fail(key, f"does not apply to a {action.value} fault")
    fault = FaultConfig(index=index, at=at, duration=length, action=action, target=target)
    if action is FaultAction.LATENCY:
        add = table.duration("add", 0.0)
        multiply = table.number("multiply", 1.0, minimum=0.0)
        if add == 0.0 and multiply == 1.0:
            table.fail(None, "a latency fault needs add (a duration) or multiply (a factor)")
        fault = _evolve(fault, add=add, multiply=multiply)
    elif action is FaultAction.ERRORS:
        rate = table.number("rate", above=0.0, maximum=1.0)
        status = table.status("status", StatusCode.UNAVAILABLE)
        if status is StatusCode.OK:
            table.fail("status", "an injected error cannot be OK")
        fault = _evolve(fault, rate=rate, status=status, pushback_ms=table.integer("pushback_ms", None))
    elif action is FaultAction.HEALTH:
        raw_health = table.raw("status", "NOT_SERVING")
        health = raw_health.upper() if isinstance(raw_health, str) else raw_health
        if health not in ("NOT_SERVING", "SERVICE_UNKNOWN"):
            table.fail("status", f"expected one of NOT_SERVING, SERVICE_UNKNOWN, got {raw_health!r}")
        fault = _evolve(fault, health=HealthStatus(health))
    elif action is FaultAction.PARTITION:
        fault = _evolve(fault, client=table.choice("client", clients))
    table.done()
    return fault


def _evolve(fault: FaultConfig, **changes: Any) -> FaultConfig:
    return attrs.evolve(fault, **changes)


def _check_target(table: Table, key: str, target: str, services: tuple[ServiceConfig, ...]) -> None:
    replicas = {name for s in services for name in s.replica_names}
    names = {s.name for s in services}
    if target not in names and target not in replicas:
        known = ", ".join(sorted(names)) + "; replicas like " + services[0].replica_name(0)
        table.fail(key, f"no service or replica named {target!r} (services: {known})")


def _assertion(
    table: Table, index: int, services: tuple[ServiceConfig, ...], clients: list[str], duration: float
) -> AssertionConfig:
    metric = table.choice("metric", METRICS)
    op = table.choice("op", OPERATORS)
    if metric in LATENCY_METRICS or metric.startswith("latency."):
        raw = table.raw("value")
        # Latency metrics are reported in milliseconds; a duration string is clearer still.
        if isinstance(raw, str):
            value = table.convert_duration("value", raw) * 1e3
        else:
            value = table.number("value", minimum=0.0)
    else:
        value = table.number("value")
    scope_text = table.string("scope", "run")
    kind, _, scope_name = scope_text.partition(":")
    if kind not in SCOPES or (kind == "run") != (scope_name == ""):
        table.fail("scope", f'expected "run", "service:NAME", "replica:NAME/N" or "client:NAME", got {scope_text!r}')
    if kind == "service" and scope_name not in {s.name for s in services}:
        table.fail("scope", f"no service named {scope_name!r}")
    if kind == "replica" and scope_name not in {r for s in services for r in s.replica_names}:
        table.fail("scope", f"no replica named {scope_name!r}")
    if kind == "client" and scope_name not in clients:
        table.fail("scope", f"no client named {scope_name!r}")
    if kind == "replica" and metric in ("key_affinity", "budget_exhausted", "panic_seconds"):
        table.fail("scope", f"{metric} is measured per client or service, not per replica")
    window = None
    if table.has("window"):
        raw_window = table.raw("window")
        if not isinstance(raw_window, list) or len(raw_window) != 2:
            table.fail("window", f'expected ["FROM", "TO"], got {raw_window!r}')
        low = table.convert_duration("window[0]", raw_window[0])
        high = table.convert_duration("window[1]", raw_window[1])
        if not low < high <= duration:
            table.fail("window", f"needs FROM < TO <= duration ({format_duration(duration)})")
        window = (low, high)
    default_name = f"{metric} {op} {value:g}" + ("" if kind == "run" else f" [{scope_text}]")
    name = table.string("name", default_name)
    table.done()
    return AssertionConfig(
        name=name,
        metric=metric,
        op=op,
        value=value,
        scope=kind,
        scope_name=scope_name or None,
        window=window,
    )
