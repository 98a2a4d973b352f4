"""Reads a scenario TOML file into the frozen model, or fails with one line naming the key.

The checked reading is `core.config`'s and the policy tables are `core.policy_config`'s,
shared with the proxy config; this module holds what only a scenario has: services
and their latency, clients, faults and assertions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshsim.core import cost
from meshsim.core.calls import Pattern
from meshsim.core.config import (
    MAX_PUSHBACK_MS,
    MAX_REPLICAS,
    MAX_WEIGHT,
    Table,
    check_depth,
    read_text,
    shown,
    toml_table,
)
from meshsim.core.distributions import (
    Constant,
    Distribution,
    Empirical,
    Exponential,
    LogNormal,
    Normal,
    Uniform,
)
from meshsim.core.faults import KINDS, FaultContext
from meshsim.core.overrides import Assignment, apply_overrides, mention
from meshsim.core.policy_config import read_balancer, read_health, read_outlier, read_policies, read_preset
from meshsim.core.scenario import (
    LATENCY_METRICS,
    METRICS,
    OPERATORS,
    SCHEMA,
    SCOPES,
    AssertionConfig,
    ClientConfig,
    ErrorMix,
    FaultConfig,
    KeyDistribution,
    ReplicaOverride,
    Scenario,
    ScenarioError,
    ServiceConfig,
)
from meshsim.core.status import StatusCode
from meshsim.core.units import format_duration

MAX_RATE = 1_000_000.0  # calls a second, of one client
MAX_RATES = 100_000  # steps of a schedule: a day of seconds fits


def load_scenario(path: str | Path, overrides: Sequence[Assignment] = ()) -> Scenario:
    """Parse and validate a scenario file, with `overrides` (`--set`) made to its keys first; raise
    ScenarioError naming file and key on any problem."""
    path = Path(path)
    return parse_scenario(read_text(path, ScenarioError), path, overrides)


def parse_scenario(text: str, path: Path, overrides: Sequence[Assignment] = ()) -> Scenario:
    """A scenario from its text, checked as a file of that name is (`meshsim replay` builds one
    this way, so that what it simulates is exactly what `--emit` writes)."""
    if not overrides:
        scenario = _build(toml_table(path, text, ScenarioError))
        cost.check(scenario)
        return scenario
    data = apply_overrides(toml_table(path, text, ScenarioError).data, overrides, path)
    return scenario_from_data(data, path, overrides)


def scenario_from_data(data: dict[str, Any], path: Path, overrides: Sequence[Assignment] = ()) -> Scenario:
    """A scenario from TOML data already parsed (and overridden: `meshsim sweep` parses a file once
    and builds each combination of its `--set` values from it), checked exactly as a file is; an
    error about a key an override set says which `--set` it was."""
    check_depth(path, data, ScenarioError)
    try:
        scenario = _build(Table(path, data, error=ScenarioError))
        cost.check(scenario)
    except ScenarioError as error:
        if not overrides:
            raise
        raise ScenarioError(mention(str(error), overrides)) from None
    return scenario


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
            Table(top.file, {}, f"{key}[{index}]", top.error).fail("name", f"duplicate name {shown(name)}")
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
    errors = _error_mix(table)
    if errors is not None:
        for key in ("error_rate", "error_status"):
            if table.has(key):
                table.fail(key, "give either errors or error_rate and error_status, not both")
    if table.has("replica") and not isinstance(table.raw("replica"), list):
        # `replica = 3` is far likelier a misspelt `replicas` than a malformed [[service.replica]].
        table.fail(
            "replica",
            f"expected [[service.replica]] tables, got {shown(table.raw('replica'))} (did you mean 'replicas'?)",
        )
    overrides = tuple(_override(t, replicas) for t in table.tables("replica"))
    seen: set[int] = set()
    for index, override in enumerate(overrides):
        if override.index in seen:
            Table(table.file, {}, table.path_of(f"replica[{index}]"), table.error).fail(
                "index", f"replica {override.index} already has a [[service.replica]] table"
            )
        seen.add(override.index)
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
        errors=errors or (),
        overrides=overrides,
    )


def _override(table: Table, replicas: int) -> ReplicaOverride:
    """`[[service.replica]]`: one replica's own latency, message latency or error model."""
    index = table.integer("index", minimum=0)
    if index >= replicas:
        table.fail("index", f"must be below replicas ({replicas}), got {index}")
    latency = _distribution(table, "latency", None) if table.has("latency") else None
    message_latency = _distribution(table, "message_latency", None) if table.has("message_latency") else None
    errors = _error_mix(table)
    if table.has("error_rate") or table.has("error_status"):
        if errors is not None:
            table.fail("error_rate", "give either errors or error_rate and error_status, not both")
        rate = table.number("error_rate", minimum=0.0, maximum=1.0)
        status = table.status("error_status", StatusCode.UNAVAILABLE)
        if status is StatusCode.OK:
            table.fail("error_status", "an injected error cannot be OK")
        errors = ((status, rate),) if rate else ()
    if latency is None and message_latency is None and errors is None:
        table.fail(None, "changes nothing: give latency, message_latency, error_rate or errors")
    table.done()
    return ReplicaOverride(index=index, latency=latency, message_latency=message_latency, errors=errors)


def _error_mix(table: Table) -> ErrorMix | None:
    """`errors = { UNAVAILABLE = 0.02, INTERNAL = 0.01 }`: each status's probability, in file order
    (None when the table has no `errors`)."""
    if not table.has("errors"):
        return None
    raw = table.raw("errors")
    if not isinstance(raw, dict):
        table.fail("errors", f"expected a table like {{ UNAVAILABLE = 0.02 }} (status = probability), got {shown(raw)}")
    mix = Table(table.file, raw, table.path_of("errors"), table.error)
    found: dict[StatusCode, float] = {}
    for key in raw:
        try:
            status = StatusCode.parse(str(key))
        except ValueError:
            mix.fail(str(key), "expected a gRPC status code like UNAVAILABLE as the key")
        if status is StatusCode.OK:
            mix.fail(str(key), "an injected error cannot be OK")
        if status in found:
            mix.fail(str(key), f"{status.name} is given twice")
        found[status] = mix.number(key, minimum=0.0, maximum=1.0)
    total = math.fsum(found.values())
    if total > 1.0 + 1e-9:
        table.fail("errors", f"the probabilities add up to {total:g}, more than 1")
    mix.done()
    return tuple((status, rate) for status, rate in found.items() if rate > 0)


DISTRIBUTIONS = ("constant", "uniform", "exponential", "normal", "lognormal", "empirical")


def _distribution(parent: Table, key: str, default: Distribution | None) -> Distribution:
    if not parent.has(key):
        parent.raw(key, None)
        assert default is not None, "a distribution without a default is read only when given"
        return default
    value = parent.raw(key)
    if not isinstance(value, dict):
        return Constant(parent.convert_duration(key, value))
    table = Table(parent.file, value, parent.path_of(key), parent.error)
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


def _client(table: Table, services: list[str], duration: float) -> ClientConfig:
    name = table.string("name")
    if len(services) == 1:
        target = table.choice("target", services, services[0])
    else:
        target = table.choice("target", services)
    rate = table.number("rate", None, above=0.0, maximum=MAX_RATE)
    concurrency = table.integer("concurrency", None, minimum=1, maximum=100_000)
    rates = _rates(table)
    if rates and (rate is not None or concurrency is not None):
        table.fail("rates", "give either rates (a schedule), rate or concurrency, not two of them")
    if not rates and (rate is None) == (concurrency is None):
        table.fail(None, "give exactly one of rate (open loop, calls/s) or concurrency (closed loop)")
    rate_step = 1.0
    if table.has("rate_step"):
        if not rates:
            table.fail("rate_step", "only applies to a schedule (rates)")
        rate_step = table.duration("rate_step", minimum=0.001)
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
    if rates:
        rate = _mean_rate(rates, rate_step, start, stop if stop is not None else duration)
        if rate == 0:
            table.fail("rates", "has no positive rate between start and stop: the client would send nothing")
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
        rates=rates,
        rate_step=rate_step,
    )


def _rates(table: Table) -> tuple[float, ...]:
    """`rates = [120, 180.5, 0, ...]`: calls a second for each `rate_step` from the client's start."""
    if not table.has("rates"):
        return ()
    raw = table.raw("rates")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_RATES:
        table.fail("rates", f"expected an array of 1 to {MAX_RATES:,} rates (calls/s), got {shown(raw)}")
    for index, value in enumerate(raw):
        if type(value) not in (int, float) or not 0 <= value <= MAX_RATE:
            table.fail(f"rates[{index}]", f"expected a number of calls/s from 0 to {MAX_RATE:,.0f}, got {shown(value)}")
    return tuple(float(value) for value in raw)


def _mean_rate(rates: tuple[float, ...], step: float, start: float, stop: float) -> float:
    """The schedule's calls a second on average over [start, stop) (nothing after its last step)."""
    total = 0.0
    for index, rate in enumerate(rates):
        low = start + index * step
        if low >= stop:
            break
        total += rate * (min(low + step, stop) - low)
    return total / (stop - start)


# Every key some fault kind takes: a key of another kind is named as not applying, not as unknown.
_FAULT_KEYS = tuple(dict.fromkeys(key for kind in KINDS.values() for key in kind.keys))


def _fault(
    table: Table, index: int, services: tuple[ServiceConfig, ...], clients: list[str], duration: float
) -> FaultConfig:
    at = table.duration("at")
    if at >= duration:
        table.fail("at", f"{format_duration(at)} is not before the end of the run ({format_duration(duration)})")
    length = table.duration("for", None, positive=True)
    kind = KINDS[table.choice("action", tuple(KINDS))]
    target = table.string("target")
    _check_target(table, "target", target, services)
    for key in _FAULT_KEYS:
        if table.has(key) and key not in kind.keys:
            table.fail(key, f"does not apply to a {kind.name} fault")
    effect = kind.read(table, FaultContext(tuple(clients)))
    table.done()
    return FaultConfig(index=index, at=at, duration=length, action=kind.name, target=target, effect=effect)


def _check_target(table: Table, key: str, target: str, services: tuple[ServiceConfig, ...]) -> None:
    replicas = {name for s in services for name in s.replica_names}
    names = {s.name for s in services}
    if target not in names and target not in replicas:
        listed = [_as_listed(name) for name in sorted(names)[:8]] + (["..."] if len(names) > 8 else [])
        known = ", ".join(listed) + "; replicas like " + _as_listed(services[0].replica_name(0))
        table.fail(key, f"no service or replica named {shown(target)} (services: {known})")


def _as_listed(name: str) -> str:
    """A name in a list of names: as it is, unless it could break the line or run on (then quoted)."""
    return name if name.isprintable() and len(name) <= 40 else shown(name)


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
