"""Reads a scenario TOML file into the frozen model, or fails with one line naming the key.

Every key is checked: unknown keys are errors (with a suggestion), never ignored,
because a misspelt `unhealthy_treshold` silently falling back to a default is
exactly the kind of surprise meshsim exists to prevent.
"""

from __future__ import annotations

import difflib
import itertools
import math
import reprlib
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs

from meshsim.core import cost
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
from meshsim.core.presets import DEFAULT, EJECTION_CAPS, PRESETS, Preset
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

# Bounds that keep every file's reading finite and every accepted run within a laptop's means.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 16  # tables and arrays inside each other; real configs use four or five
MAX_DURATION = 7 * 24 * 3600.0  # any duration: a simulated week
MAX_INTEGER = 2**31 - 1  # any integer a key takes, unless the key says less
MAX_REPLICAS = 10_000  # per service
MAX_WEIGHT = 1_000_000
MAX_RING_SIZE = 2**20  # gRPC's ring_hash allows up to 8M entries; a million is plenty in a simulation
MAX_PUSHBACK_MS = 86_400_000
MIN_INTERVAL = 0.001  # health checks and outlier sweeps: a thousand a second at most

# How a value is shown in an error: a line, never the whole of something huge.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 48, 48, 24
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4


def shown(value: object) -> str:
    """`value` as an error message quotes it: repr, cut to fit a line."""
    try:
        text = _SHOWN.repr(value)
    except ValueError:  # an integer too long for str() at all
        return "a number with thousands of digits"
    return text if len(text) <= 60 else text[:59] + "…"


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
            written = [k for k in self.data if isinstance(k, str) and k not in self._read]
            hint = difflib.get_close_matches(key, written, n=1)
            self.fail(key, f"is required (is {shown(hint[0])} a misspelling of it?)" if hint else "is required")
        return default

    def string(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_type_name(value)} {shown(value)}")
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int | None = None, maximum: int = MAX_INTEGER) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if type(value) is not int:
            self.fail(key, f"expected an integer, got {_type_name(value)} {shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {shown(value)}")
        if value > maximum:
            self.fail(key, f"must be at most {maximum:,}, got {shown(value)}")
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
        if type(value) not in (int, float):
            self.fail(key, f"expected a number, got {_type_name(value)} {shown(value)}")
        try:
            value = float(value)
        except OverflowError:
            self.fail(key, f"is too large a number, got {shown(value)}")
        if not math.isfinite(value):
            self.fail(key, f"expected a number, got a number {shown(value)}")
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
            self.fail(key, f"expected true or false, got {_type_name(value)} {shown(value)}")
        return value

    def duration(self, key: str, default: Any = _MISSING, positive: bool = False, minimum: float = 0.0) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return self.convert_duration(key, value, positive, minimum)

    def convert_duration(self, key: str, value: object, positive: bool = False, minimum: float = 0.0) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.fail(key, f'expected a duration like "10s", got {shown(value)}')
        if positive and seconds <= 0:
            self.fail(key, f"must be greater than 0s, got {shown(value)}")
        if seconds < minimum:
            self.fail(key, f"must be at least {format_duration(minimum)}, got {shown(value)}")
        if seconds > MAX_DURATION:
            self.fail(key, f"must be at most {format_duration(MAX_DURATION)} (7 days), got {shown(value)}")
        return seconds

    def choice(self, key: str, options: Iterable[str], default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        options = tuple(options)
        if value not in options:
            self.fail(key, f"expected one of {', '.join(options)}, got {shown(value)}")
        return value

    def status(self, key: str, default: StatusCode) -> StatusCode:
        value = self.raw(key, default)
        if isinstance(value, StatusCode):
            return value
        try:
            return StatusCode.parse(str(value))
        except ValueError:
            self.fail(key, f'expected a gRPC status code like "UNAVAILABLE", got {shown(value)}')

    def statuses(self, key: str, default: frozenset[StatusCode]) -> frozenset[StatusCode]:
        value = self.raw(key, None)
        if value is None:
            return default
        if not isinstance(value, list):
            self.fail(key, f'expected an array of gRPC status codes like ["UNAVAILABLE"], got {shown(value)}')
        codes = set()
        for index, item in enumerate(value):
            try:
                codes.add(StatusCode.parse(str(item)))
            except ValueError:
                self.fail(f"{key}[{index}]", f'expected a gRPC status code like "UNAVAILABLE", got {shown(item)}')
        return frozenset(codes)

    def names(self, key: str, options: tuple[str, ...] | None, default: tuple[str, ...]) -> tuple[str, ...]:
        """A non-empty array of names, each one of `options` (any non-empty string if None)."""
        value = self.raw(key, None)
        if value is None:
            return default
        among = "" if options is None else f" from {', '.join(options)}"
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty array of names{among}, got {shown(value)}")
        for index, item in enumerate(value):
            if options is None:
                if not isinstance(item, str) or not item:
                    self.fail(f"{key}[{index}]", f"expected a non-empty string, got {shown(item)}")
            elif item not in options:
                self.fail(f"{key}[{index}]", f"expected one of {', '.join(options)}, got {shown(item)}")
        return tuple(value)

    def table(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_type_name(value)} {shown(value)}")
        return Table(self.file, value, self.path_of(key))

    def tables(self, key: str) -> list[Table]:
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected [[{key}]] tables, got {_type_name(value)}")
        return [Table(self.file, v, f"{self.path_of(key)}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        """Fail on the first key nobody asked for."""
        for key in self.data:
            if not isinstance(key, str):
                self.fail(str(key), f"a key must be a name, got {_type_name(key)} {shown(key)}")
            if key not in self._read:
                hint = difflib.get_close_matches(key, sorted(self._read), n=1)
                suggestion = f" (did you mean {shown(hint[0])}?)" if hint else ""
                self.fail(key, f"unknown key{suggestion}")


def load_scenario(path: str | Path) -> Scenario:
    """Parse and validate a scenario file; raise ScenarioError naming file and key on any problem."""
    path = Path(path)
    scenario = _build(toml_table(path, read_text(path)))
    cost.check(scenario)
    return scenario


def read_text(path: Path) -> str:
    """A config file's text; a file that cannot be read is a ScenarioError naming it."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; a config file is not that long")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {error.start})") from None
    if not text.strip():
        raise ScenarioError(f"{path}: the file is empty")
    return text


def toml_table(path: Path, text: str) -> Table:
    """The top-level table of a TOML file; text that is not TOML is a ScenarioError naming the file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise ScenarioError(f"{path}: not valid TOML: a number with thousands of digits") from None
    except RecursionError:
        raise ScenarioError(f"{path}: tables or arrays nested too deeply (at most {MAX_DEPTH} levels)") from None
    check_depth(path, data)
    return Table(path, data)


def check_depth(path: Path, data: object) -> None:
    """Refuse values nested more than MAX_DEPTH deep, naming the key where the nesting starts."""
    stack: list[tuple[object, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise ScenarioError(f"{path}: {where or 'top level'}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, where or str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, where) for v in value)


def _build(top: Table) -> Scenario:
    if not top.has("schema"):
        top.fail("schema", f'is required: a scenario file starts with schema = "{SCHEMA}"')
    schema = top.raw("schema")
    if schema != SCHEMA:
        top.fail("schema", f'expected "{SCHEMA}", got {shown(schema)}')
    name = top.string("name", top.file.stem)
    description = top.string("description", "")
    seed = top.integer("seed", 1, minimum=0, maximum=2**63 - 1)
    preset = read_preset(top)
    duration = top.duration("duration", positive=True)
    drain = top.duration("drain", 10.0)

    services = tuple(_service(t) for t in top.tables("service"))
    if not services:
        top.fail("service", "a scenario needs at least one [[service]]")
    _unique(top, "service", [s.name for s in services])

    balancer = read_balancer(top.table("balancer", None), preset)
    health = read_health(top.table("health", None), preset)
    outlier = read_outlier(top.table("outlier_detection", None), preset)
    policies = read_policies(top, preset=preset)

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
        preset=preset.name,
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
            Table(top.file, {}, f"{key}[{index}]").fail("name", f"duplicate name {shown(name)}")
        seen.add(name)


def _service(table: Table) -> ServiceConfig:
    name = table.string("name")
    if "/" in name or ":" in name:
        table.fail("name", f"must not contain '/' or ':', got {shown(name)}")
    replicas = table.integer("replicas", 1, minimum=1, maximum=MAX_REPLICAS)
    latency = _distribution(table, "latency", Constant(0.010))
    message_latency = _distribution(table, "message_latency", Constant(0.0))
    error_rate = table.number("error_rate", 0.0, minimum=0.0, maximum=1.0)
    error_status = table.status("error_status", StatusCode.UNAVAILABLE)
    if error_status is StatusCode.OK:
        table.fail("error_status", "an injected error cannot be OK")
    capacity = table.integer("capacity", None, minimum=1, maximum=1_000_000)
    queue_limit = table.integer("queue_limit", None, minimum=0, maximum=1_000_000)
    if queue_limit is not None and capacity is None:
        table.fail("queue_limit", "needs capacity: without a capacity nothing ever queues")
    weights: tuple[int, ...]
    if table.has("weights"):
        raw = table.raw("weights")
        if not isinstance(raw, list) or not all(type(w) is int and 0 <= w <= MAX_WEIGHT for w in raw):
            table.fail("weights", f"expected an array of integers from 0 to {MAX_WEIGHT:,}, got {shown(raw)}")
        if len(raw) != replicas:
            table.fail("weights", f"has {len(raw)} entries for {replicas} replicas")
        weights = tuple(raw)
        if table.has("weight"):
            table.fail("weight", "give either weight or weights, not both")
    else:
        weight = table.integer("weight", 1, minimum=0, maximum=MAX_WEIGHT)
        weights = (weight,) * replicas
    probe_latency = table.duration("probe_latency", 0.001)
    pushback = table.integer("error_pushback_ms", None, minimum=-MAX_PUSHBACK_MS, maximum=MAX_PUSHBACK_MS)
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
        result = LogNormal(table.duration("median", positive=True), table.number("sigma", minimum=0.0, maximum=10.0))
    else:
        result = _empirical(table)
    table.done()
    return result


def _empirical(table: Table) -> Empirical:
    raw_bounds = table.raw("bounds")
    raw_weights = table.raw("weights")
    if not isinstance(raw_bounds, list) or not raw_bounds or len(raw_bounds) > 10_000:
        table.fail("bounds", "expected an array of 1 to 10,000 durations (bucket upper edges)")
    bounds = tuple(table.convert_duration(f"bounds[{i}]", b) for i, b in enumerate(raw_bounds))
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        table.fail("bounds", "must be strictly increasing")
    if not isinstance(raw_weights, list) or len(raw_weights) != len(bounds):
        table.fail("weights", f"expected an array of {len(bounds)} numbers, one per bucket")
    finite = all(type(w) in (int, float) and 0 <= w <= 1e12 for w in raw_weights)
    if not finite or sum(raw_weights) <= 0:
        table.fail("weights", "must be non-negative numbers with a positive sum")
    return Empirical(bounds, tuple(float(w) for w in raw_weights))


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
    )
    table.done()
    return config


def read_health(table: Table | None, preset: Preset = DEFAULT) -> HealthConfig:
    if table is None:
        return HealthConfig(initial_healthy=preset.initial_healthy, not_serving_at_once=preset.not_serving_at_once)
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


def read_policies(top: Table, methods: tuple[str, ...] | None = METHODS, preset: Preset = DEFAULT) -> CallPolicies:
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
            methods=hedging_table.names("methods", methods, METHODS),
        )
        if retry is not None:
            both = [m for m in hedging.methods if m in retry.methods]
            if both:
                hedging_table.fail(
                    "methods",
                    f"method {shown(both[0])} has a retry policy too; a method has retry or hedging, not both "
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


def read_retry(table: Table, methods: tuple[str, ...] | None = METHODS, preset: Preset = DEFAULT) -> RetryPolicy:
    initial = table.duration("initial_backoff", 0.1, positive=True)
    policy = RetryPolicy(
        max_attempts=table.integer("max_attempts", 3, minimum=2, maximum=100),
        initial_backoff=initial,
        max_backoff=table.duration("max_backoff", max(1.0, initial), positive=True),
        backoff_multiplier=table.number("backoff_multiplier", 2.0, above=0.0, maximum=100.0),
        jitter=table.number("jitter", 1.0, minimum=0.0, maximum=1.0),
        retryable_status_codes=table.statuses("retryable_status_codes", frozenset({StatusCode.UNAVAILABLE})),
        per_attempt_timeout=table.duration("per_attempt_timeout", None, positive=True),
        methods=table.names("methods", methods, METHODS),
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


def _client(table: Table, services: list[str], duration: float) -> ClientConfig:
    name = table.string("name")
    if len(services) == 1:
        target = table.choice("target", services, services[0])
    else:
        target = table.choice("target", services)
    rate = table.number("rate", None, above=0.0, maximum=1_000_000.0)
    concurrency = table.integer("concurrency", None, minimum=1, maximum=100_000)
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
    messages = table.integer("messages", 10, minimum=1, maximum=100_000)
    keys = None
    keys_table = table.table("keys", None)
    if keys_table is not None:
        kind = keys_table.choice("dist", ("uniform", "zipf"))
        count = keys_table.integer("count", minimum=1, maximum=1_000_000)
        if kind == "uniform" and keys_table.has("exponent"):
            keys_table.fail("exponent", "applies to a zipf key distribution only")
        exponent = keys_table.number("exponent", 1.0, above=0.0, maximum=10.0) if kind == "zipf" else 1.0
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
        multiply = table.number("multiply", 1.0, minimum=0.0, maximum=1000.0)
        if add == 0.0 and multiply == 1.0:
            table.fail(None, "a latency fault needs add (a duration) or multiply (a factor)")
        fault = _evolve(fault, add=add, multiply=multiply)
    elif action is FaultAction.ERRORS:
        rate = table.number("rate", above=0.0, maximum=1.0)
        status = table.status("status", StatusCode.UNAVAILABLE)
        if status is StatusCode.OK:
            table.fail("status", "an injected error cannot be OK")
        pushback_ms = table.integer("pushback_ms", None, minimum=-MAX_PUSHBACK_MS, maximum=MAX_PUSHBACK_MS)
        fault = _evolve(fault, rate=rate, status=status, pushback_ms=pushback_ms)
    elif action is FaultAction.HEALTH:
        raw_health = table.raw("status", "NOT_SERVING")
        health = raw_health.upper() if isinstance(raw_health, str) else raw_health
        if health not in ("NOT_SERVING", "SERVICE_UNKNOWN"):
            table.fail("status", f"expected one of NOT_SERVING, SERVICE_UNKNOWN, got {shown(raw_health)}")
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
        table.fail(key, f"no service or replica named {shown(target)} (services: {known})")


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
        table.fail(
            "scope", f'expected "run", "service:NAME", "replica:NAME/N" or "client:NAME", got {shown(scope_text)}'
        )
    if kind == "service" and scope_name not in {s.name for s in services}:
        table.fail("scope", f"no service named {shown(scope_name)}")
    if kind == "replica" and scope_name not in {r for s in services for r in s.replica_names}:
        table.fail("scope", f"no replica named {shown(scope_name)}")
    if kind == "client" and scope_name not in clients:
        table.fail("scope", f"no client named {shown(scope_name)}")
    if kind == "replica" and metric in ("key_affinity", "budget_exhausted", "panic_seconds"):
        table.fail("scope", f"{metric} is measured per client or service, not per replica")
    window = None
    if table.has("window"):
        raw_window = table.raw("window")
        if not isinstance(raw_window, list) or len(raw_window) != 2:
            table.fail("window", f'expected ["FROM", "TO"], got {shown(raw_window)}')
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
