"""A recording made into a scenario, and balancing policies compared on it (`meshsim replay`).

`derive` turns a recording (core/call_log.py) into the text of a scenario file:

- each recorded service is a `[[service]]` whose replicas are the endpoints its calls
  reached (`api/0` is the first in address order), each with a `[[service.replica]]`
  giving its own latency (an empirical distribution: the measured durations' quantiles,
  finer in the tail) and status mix (its calls that failed, but for CANCELLED and
  DEADLINE_EXCEEDED, which are the caller's doing);
- each recorded client of a service is a `[[client]]` whose arrivals follow the
  recording: a Poisson rate for each `rate_step`, fitted to the calls that started in
  it (docs/replay.md says why a schedule rather than the exact instants);
- a client whose calls ran out of time gets a deadline: the median duration of those.

The scenario is text first and read by the scenario loader, so that what `meshsim
replay` simulates is exactly what `--emit` writes and `meshsim run` reads. `figures`
measures a set of calls the same way whether they were recorded or simulated, so the
recorded row and the policies' rows of the comparison mean the same things.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from meshsim.core.call_log import PATTERNS, CallLog, CallLogError
from meshsim.core.calls import Pattern
from meshsim.core.events import RequestFinished
from meshsim.core.measurements import percentile
from meshsim.core.scenario import Scenario
from meshsim.core.status import StatusCode
from meshsim.core.units import format_duration

REPLAY_SCHEMA = "meshsim/replay/v1"
DEFAULT_POLICIES = ("round_robin", "least_connections", "p2c", "peak_ewma")
# The quantiles a replica's latency distribution keeps: every percent, then finer in the tail,
# where a policy's p99 and p99.9 are decided.
LEVELS = (
    *(n / 100 for n in range(1, 100)),
    *(0.99 + n / 1000 for n in range(1, 10)),
    *(0.999 + n / 10_000 for n in range(1, 10)),
    1.0,
)
# Fewer for a recording of very many replicas, so that the scenario file stays under 1 MiB.
COARSE_LEVELS = (*(n / 20 for n in range(1, 20)), 0.99, 0.995, 0.999, 1.0)
MANY_REPLICAS = 150
MAX_STEPS = 10_000  # of a client's schedule: the step grows to fit a long recording
# Statuses a caller, not the replica, decides: not part of a replica's error mix.
CALLERS_STATUSES = frozenset({StatusCode.OK, StatusCode.CANCELLED, StatusCode.DEADLINE_EXCEEDED})


@attrs.frozen
class Derivation:
    """The derived scenario's text, and what a reader of the comparison needs to know about it."""

    text: str
    # (scenario replica, recorded endpoint, recorded service), in scenario order: one process often
    # serves several services, so an endpoint alone does not say which replica a call reached.
    replicas: tuple[tuple[str, str, str], ...]
    calls: int
    span: float  # seconds from the first call's start to the last's
    step: float
    notes: tuple[str, ...]


@attrs.frozen
class Figures:
    """One row of the comparison: the recording's own calls, or one policy's simulated ones."""

    label: str
    calls: int
    success_rate: float
    p50: float  # ms
    p99: float
    p999: float
    amplification: float  # attempts per call
    shares: tuple[float, ...]  # of the calls that reached a replica, each replica's, in scenario order
    unrouted: float  # the share of calls that reached no replica

    def to_dict(self, replicas: Sequence[str]) -> dict[str, Any]:
        return {
            "label": self.label,
            "calls": self.calls,
            "success_rate": _rounded(self.success_rate, 6),
            "latency_ms": {"p50": _rounded(self.p50, 3), "p99": _rounded(self.p99, 3), "p999": _rounded(self.p999, 3)},
            "amplification": _rounded(self.amplification, 6),
            "share": {name: _rounded(share, 6) for name, share in zip(replicas, self.shares, strict=True)},
            "unrouted": _rounded(self.unrouted, 6),
        }


def _rounded(value: float, places: int) -> float | None:
    return None if math.isnan(value) else round(value, places)


def figures(
    label: str,
    durations: Sequence[float],
    statuses: Sequence[int],
    attempts: Sequence[int],
    replicas: Sequence[int],
    count: int,
) -> Figures:
    """Figures of a set of calls: `replicas[i]` is the scenario replica call i reached (-1: none),
    out of `count` replicas. Latency percentiles are nearest-rank over every call, as reports are."""
    calls = len(durations)
    ordered = sorted(durations)
    reached = [0] * count
    for replica in replicas:
        if replica >= 0:
            reached[replica] += 1
    routed = sum(reached)
    nan = math.nan
    return Figures(
        label=label,
        calls=calls,
        success_rate=sum(1 for s in statuses if s == StatusCode.OK) / calls if calls else nan,
        p50=percentile(ordered, 50) * 1e3,
        p99=percentile(ordered, 99) * 1e3,
        p999=percentile(ordered, 99.9) * 1e3,
        amplification=sum(attempts) / calls if calls else nan,
        shares=tuple(n / routed if routed else nan for n in reached),
        unrouted=(calls - routed) / calls if calls else nan,
    )


def recorded_figures(log: CallLog, derivation: Derivation) -> Figures:
    """The recording's own figures, over the calls the scenario replays (its services' calls)."""
    numbers = {(service, endpoint): index for index, (_, endpoint, service) in enumerate(derivation.replicas)}
    services = _replayed_services(log)
    keep = [i for i in range(len(log)) if log.service[i] in services]
    return figures(
        "recorded",
        [log.duration[i] / 1e6 for i in keep],
        [log.status[i] for i in keep],
        [log.attempts[i] for i in keep],
        [
            numbers.get((log.services[log.service[i]], log.endpoints[log.endpoint[i] - 1]), -1)
            if log.endpoint[i]
            else -1
            for i in keep
        ],
        len(derivation.replicas),
    )


class CallTally:
    """A bus listener keeping what `figures` needs of each simulated call."""

    def __init__(self, replicas: Sequence[str]) -> None:
        self._numbers = {name: index for index, name in enumerate(replicas)}
        self._count = len(replicas)
        self.durations: list[float] = []
        self.statuses: list[int] = []
        self.attempts: list[int] = []
        self.replicas: list[int] = []

    def __call__(self, event: RequestFinished) -> None:
        self.durations.append(event.finished - event.started)
        self.statuses.append(int(event.status))
        self.attempts.append(event.attempts)
        self.replicas.append(-1 if event.endpoint is None else self._numbers.get(event.endpoint, -1))

    def figures(self, label: str) -> Figures:
        return figures(label, self.durations, self.statuses, self.attempts, self.replicas, self._count)


Simulate = Callable[[Scenario, Callable[[RequestFinished], None]], None]


def compare_policies(
    scenario: Scenario, replicas: Sequence[str], policies: Sequence[str], simulate: Simulate
) -> list[Figures]:
    """Each policy's figures on `scenario`, with the scenario's seed: `simulate(scenario, listener)`
    runs a scenario with `listener` hearing every call (the simulator is sim's, not core's)."""
    rows = []
    for policy in policies:
        tally = CallTally(replicas)
        simulate(attrs.evolve(scenario, balancer=attrs.evolve(scenario.balancer, policy=policy)), tally)
        rows.append(tally.figures(policy))
    return rows


def best_p99(rows: Sequence[Figures]) -> Figures | None:
    """The row with the lowest p99 (the first of equals); None when no row has one."""
    candidates = [row for row in rows if not math.isnan(row.p99)]
    return min(candidates, key=lambda row: row.p99) if candidates else None


# --- the scenario ------------------------------------------------------------------------------


def _replayed_services(log: CallLog) -> set[int]:
    """The services of the recording at least one of whose calls reached a replica."""
    return {log.service[i] for i in range(len(log)) if log.endpoint[i]}


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key: "10.0.0.2:9000" before "10.0.0.10:80", numbers as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _scenario_name(name: str, taken: set[str]) -> str:
    """A recorded name as a scenario service's: the last part of a gRPC name ("mesh.v1.MeshService"
    is "MeshService", as short as a scenario's replica names want), no '/' or ':', distinct from
    the names taken."""
    base = re.sub(r"[/:]", "_", name.rsplit(".", 1)[-1]).strip("_") or "service"
    chosen, n = base, 2
    while chosen in taken:
        chosen, n = f"{base}-{n}", n + 1
    taken.add(chosen)
    return chosen


def _ms(micros: int) -> str:
    """Exact microseconds as a duration in milliseconds ("1.234ms", "5ms")."""
    whole, part = divmod(micros, 1000)
    return f'"{whole}.{part:03d}'.rstrip("0").rstrip(".") + 'ms"'


def _distribution(micros: list[int], levels: Sequence[float]) -> str:
    """An empirical latency distribution of the durations (µs), as TOML: a bucket per quantile of
    `levels`, each holding the calls between its quantile and the one before, drawn uniformly.
    The first bucket, from 0 to the fastest call, holds none: no call is replayed faster."""
    ordered = sorted(micros)
    if ordered[0] == ordered[-1]:
        return _ms(ordered[0])
    count = len(ordered)
    bounds = [ordered[0]]
    for level in levels:
        value = ordered[max(0, math.ceil(level * count) - 1)]
        if value > bounds[-1]:
            bounds.append(value)
    weights = [0]
    below = bisect.bisect_right(ordered, bounds[0])
    for bound in bounds[1:]:
        upto = bisect.bisect_right(ordered, bound)
        weights.append(upto - below + (below if len(weights) == 1 else 0))
        below = upto
    return (
        '{ dist = "empirical", bounds = ['
        + ", ".join(_ms(b) for b in bounds)
        + "], weights = ["
        + ", ".join(str(w) for w in weights)
        + "] }"
    )


def _errors(statuses: list[int]) -> str | None:
    """A replica's status mix as TOML, or None when it failed nothing of its own doing. Each share
    is rounded down, so that the shares never add up to more than 1."""
    counted = [s for s in statuses if s != StatusCode.CANCELLED]
    if not counted:
        return None
    tally: dict[int, int] = {}
    for status in counted:
        if status not in CALLERS_STATUSES:
            tally[status] = tally.get(status, 0) + 1
    shares = [(StatusCode(s).name, math.floor(n / len(counted) * 1e6) / 1e6) for s, n in sorted(tally.items())]
    shares = [(name, share) for name, share in shares if share > 0]
    if not shares:
        return None
    return "{ " + ", ".join(f"{name} = {share:.6g}" for name, share in shares) + " }"


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.6g}"


def choose_step(span: float, step: float | None) -> float:
    """The schedule's step: the one asked for, or a second, but never more than MAX_STEPS of them."""
    chosen = 1.0 if step is None else step
    if span / chosen >= MAX_STEPS:
        chosen = math.ceil(span / (MAX_STEPS - 1) * 1000) / 1000
    return chosen


def derive(
    log: CallLog,
    *,
    seed: int = 1,
    step: float | None = None,
    policy: str = "round_robin",
    name: str | None = None,
) -> Derivation:
    """The scenario of a recording (see the module's docstring); CallLogError when it has no call
    that reached a replica, so nothing to replay."""
    services = sorted(_replayed_services(log), key=lambda s: log.services[s])
    if not services:
        raise CallLogError(f"{log.path}: no call in the recording reached a replica: there is nothing to replay")
    replayed = set(services)
    keep = [i for i in range(len(log)) if log.service[i] in replayed]
    origin = min(log.start[i] for i in keep)
    span = (max(log.start[i] for i in keep) - origin) / 1e6
    step = choose_step(span, step)
    steps = int(span // step) + 1
    step_us = step * 1e6
    longest = max(log.duration[i] for i in keep) / 1e6
    notes: list[str] = []

    # The replicas of each service, and the calls of each (service, client).
    endpoints_of: dict[int, set[int]] = {s: set() for s in services}
    calls_of: dict[tuple[int, int], list[int]] = {}
    for i in keep:
        if log.endpoint[i]:
            endpoints_of[log.service[i]].add(log.endpoint[i])
        calls_of.setdefault((log.service[i], log.client[i]), []).append(i)
    many = sum(len(e) for e in endpoints_of.values()) > MANY_REPLICAS
    levels = COARSE_LEVELS if many else LEVELS

    lines = [
        "# Derived by `meshsim replay` from a recording; edit it and `meshsim run` it (docs/replay.md).",
        _comment(
            f"{log.path.name}: {len(keep):,} calls over {span:.3f} s"
            + (f" (wall start {log.wall_start:.3f}, Unix time)" if log.wall_start is not None else "")
            + (f", recorded by {log.source}" if log.source else "")
        ),
    ]
    body: list[str] = []
    replicas: list[tuple[str, str, str]] = []
    taken: set[str] = set()
    service_names: dict[int, str] = {}
    for service in services:
        service_name = service_names[service] = _scenario_name(log.services[service], taken)
        ordered = sorted(endpoints_of[service], key=lambda e: _natural(log.endpoints[e - 1]))
        number = {endpoint: index for index, endpoint in enumerate(ordered)}
        clean: list[list[int]] = [[] for _ in ordered]  # first-attempt durations, µs
        every: list[list[int]] = [[] for _ in ordered]
        statuses: list[list[int]] = [[] for _ in ordered]
        for i in keep:
            if log.service[i] != service or not log.endpoint[i]:
                continue
            index = number[log.endpoint[i]]
            statuses[index].append(log.status[i])
            if log.status[i] != StatusCode.CANCELLED:
                every[index].append(log.duration[i])
                if log.attempts[i] == 1:
                    clean[index].append(log.duration[i])
        pooled = [d for durations in every for d in durations] or [log.duration[i] for i in keep]
        body += [
            "",
            "[[service]]"
            + (f"  {_comment(f'was {log.services[service]}')}" if service_name != log.services[service] else ""),
            f'name = "{_escaped(service_name)}"',
            f"replicas = {len(ordered)}",
            f"latency = {_distribution(pooled, levels)}",
        ]
        for index, endpoint in enumerate(ordered):
            recorded = log.endpoints[endpoint - 1]
            replica = f"{service_name}/{index}"
            replicas.append((replica, recorded, log.services[service]))
            samples = clean[index] or every[index] or [0]
            body += [
                "",
                "[[service.replica]]  " + _comment(f"{replica} was {recorded}: {len(statuses[index]):,} calls"),
                f"index = {index}",
                f"latency = {_distribution(samples, levels)}",
            ]
            mix = _errors(statuses[index])
            if mix is not None:
                body.append(f"errors = {mix}")

    body += ["", "[balancer]", f'policy = "{policy}"']
    clients_of: dict[int, list[int]] = {}
    for service, client in calls_of:
        clients_of.setdefault(client, []).append(service)
    for (service, client), indices in sorted(
        calls_of.items(), key=lambda item: (log.clients[item[0][1]], service_names[item[0][0]])
    ):
        counts = [0] * steps
        patterns: dict[int, int] = {}
        ran_out: list[int] = []
        for i in indices:
            counts[min(steps - 1, int((log.start[i] - origin) // step_us))] += 1
            patterns[log.pattern[i]] = patterns.get(log.pattern[i], 0) + 1
            if log.status[i] == StatusCode.DEADLINE_EXCEEDED:
                ran_out.append(log.duration[i])
        client_name = log.clients[client]
        if len(clients_of[client]) > 1:
            client_name = f"{client_name}@{service_names[service]}"
        body += [
            "",
            "[[client]]",
            f'name = "{_escaped(client_name)}"',
            f'target = "{_escaped(service_names[service])}"',
            "rates = [" + ", ".join(_number(n / step) for n in counts) + "]",
            f'rate_step = "{format_duration(step)}"',
        ]
        if set(patterns) != {PATTERNS.index(Pattern.UNARY)}:
            mix = ", ".join(f"{PATTERNS[p].value} = {n}" for p, n in sorted(patterns.items()))
            body += [f"patterns = {{ {mix} }}", "messages = 1  # a stream's whole duration is its latency"]
        if ran_out:
            ran_out.sort()
            deadline = max(1000, round(ran_out[len(ran_out) // 2] / 1000) * 1000)
            body.append(f"deadline = {_ms(deadline)}")
            notes.append(
                f"{client_name}: {len(ran_out):,} calls ran out of time: replayed with a deadline of "
                f"{format_duration(deadline / 1e6)}, their median duration"
            )

    unrouted = sum(1 for i in keep if not log.endpoint[i])
    if unrouted:
        notes.append(
            f"{unrouted:,} calls ({unrouted / len(keep):.1%}) reached no replica; in the replay the balancer "
            "decides where every call goes"
        )
    retried = sum(1 for i in keep if log.attempts[i] > 1)
    if retried:
        notes.append(
            f"{retried:,} calls ({retried / len(keep):.1%}) took more than one attempt: add the recorded "
            "client's [retry] or [hedging] to the scenario (--emit) to replay them as such"
        )
    skipped = len(log) - len(keep)
    if skipped:
        notes.append(f"{skipped:,} calls of services no call of which reached a replica are left out")
    if not log.complete:
        notes.append("the recording was cut off (no end record): its last calls may be missing")
    if log.dropped:
        notes.append(f"{log.dropped:,} calls were not recorded ({log.reason or 'stopped'})")
    if many:
        notes.append(f"over {MANY_REPLICAS} replicas: each latency distribution keeps fewer quantiles")

    head = [
        *lines,
        *(_comment(f"note: {note}") for note in notes),
        "",
        'schema = "meshsim/v1"',
        f'name = "{_escaped(name or f"replay of {log.path.name}")}"',
        f"seed = {seed}",
        f'duration = "{format_duration(steps * step)}"',
        f'drain = "{format_duration(max(10.0, math.ceil(longest) + 1.0))}"',
    ]
    return Derivation(
        text="\n".join(head + body) + "\n",
        replicas=tuple(replicas),
        calls=len(keep),
        span=span,
        step=step,
        notes=tuple(notes),
    )


def _escaped(text: str) -> str:
    """Text inside a TOML basic string: backslashes and quotes escaped, control characters as \\uXXXX."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)


def _comment(text: str) -> str:
    """A TOML comment line of `text`: a recorded name may hold anything, a comment no line break."""
    return "# " + re.sub(r"[\x00-\x1f\x7f]", "?", text)


def default_path(recording: Path) -> Path:
    """Where a derived scenario is said to come from (its reports name it)."""
    return recording.with_suffix(".replay.toml")
