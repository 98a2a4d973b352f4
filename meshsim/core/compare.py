"""Two reports of one scenario side by side: did the simulator tell the truth?

Any two JSON reports compare (sim and live, two seeds, two policies): the assertion
verdicts, the headline figures (success rate, p50/p99/p99.9), each replica's share of
the calls, and when each replica went out and came back. They differ when a verdict
differs, or when a figure is further apart than its tolerance allows: p50 within 20 %
by default, the others judged only when given a tolerance. A latency figure is also
within when the two are no more than `LATENCY_SLACK_MS` apart: a live call pays gRPC's own
few milliseconds, which 20 % of a 10 ms service time would call a difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs

from meshsim.core.errors import ConfigError
from meshsim.core.report import REPORT_SCHEMA

# A client's first health check lands within this of the start (live: channels connecting).
FIRST_CHECK_WITHIN = 0.5

# name: (what it is, where in the report, relative tolerance or None for an absolute one)
FIGURES: dict[str, tuple[str, tuple[str, str], bool]] = {
    "success_rate": ("success rate", ("totals", "success_rate"), False),
    "p50": ("p50 ms", ("latency_ms", "p50"), True),
    "p99": ("p99 ms", ("latency_ms", "p99"), True),
    "p999": ("p99.9 ms", ("latency_ms", "p999"), True),
}
DEFAULT_TOLERANCES = {"p50": 0.2}
LATENCY_SLACK_MS = 5.0


class ReportError(ConfigError):
    """A file given to compare is not a meshsim report."""


@attrs.frozen
class Verdict:
    name: str
    a: bool | None  # None: the report has no such assertion
    b: bool | None

    @property
    def same(self) -> bool:
        return self.a == self.b


@attrs.frozen
class Figure:
    name: str
    label: str
    a: float
    b: float
    tolerance: float | None  # None: shown, not judged
    relative: bool
    slack: float = 0.0  # also within when no further apart than this, in the figure's unit

    @property
    def difference(self) -> float:
        if self.relative:
            return (self.b - self.a) / self.a if self.a else (0.0 if self.b == self.a else math.inf)
        return self.b - self.a

    @property
    def within(self) -> bool | None:
        if self.tolerance is None or math.isnan(self.a) or math.isnan(self.b):
            return None
        return abs(self.difference) <= self.tolerance or abs(self.b - self.a) <= self.slack


@attrs.frozen
class ReplicaRow:
    """One replica in both runs: its share of the calls and when it went out and came back in."""

    name: str
    share_a: float
    share_b: float
    changes_a: tuple[tuple[float, bool], ...]  # (at, in rotation) for the client that saw most
    changes_b: tuple[tuple[float, bool], ...]


@attrs.frozen
class Side:
    label: str  # "A" or "B"
    path: str
    scenario: str
    mode: str
    seed: int
    interrupted: bool


@attrs.frozen
class Comparison:
    a: Side
    b: Side
    verdicts: tuple[Verdict, ...]
    figures: tuple[Figure, ...]
    replicas: tuple[ReplicaRow, ...]

    @property
    def differences(self) -> list[str]:
        found = [f"verdict of {v.name!r}" for v in self.verdicts if not v.same]
        found += [f"{f.label} (off by more than {_tolerance(f)})" for f in self.figures if f.within is False]
        return found


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{path}: not a JSON report: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
        raise ReportError(f'{path}: not a meshsim report (schema "{REPORT_SCHEMA}")')
    return data


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    tolerances: dict[str, float] | None = None,
    paths: tuple[str, str] = ("", ""),
    latency_slack_ms: float = LATENCY_SLACK_MS,
) -> Comparison:
    tolerances = DEFAULT_TOLERANCES if tolerances is None else tolerances
    verdicts_a = {v["name"]: bool(v["passed"]) for v in a.get("assertions", [])}
    verdicts_b = {v["name"]: bool(v["passed"]) for v in b.get("assertions", [])}
    names = list(dict.fromkeys([*verdicts_a, *verdicts_b]))
    verdicts = tuple(Verdict(n, verdicts_a.get(n), verdicts_b.get(n)) for n in names)
    figures = tuple(
        Figure(
            name,
            label,
            _figure(a, where),
            _figure(b, where),
            tolerances.get(name),
            relative,
            latency_slack_ms if relative else 0.0,
        )
        for name, (label, where, relative) in FIGURES.items()
    )
    shares_a, shares_b = _shares(a), _shares(b)
    changes_a, changes_b = _changes(a), _changes(b)
    replicas = tuple(
        ReplicaRow(
            name,
            shares_a.get(name, 0.0),
            shares_b.get(name, 0.0),
            changes_a.get(name, ()),
            changes_b.get(name, ()),
        )
        for name in dict.fromkeys([*shares_a, *shares_b])
    )
    return Comparison(_side("A", a, paths[0]), _side("B", b, paths[1]), verdicts, figures, replicas)


def _side(label: str, report: dict[str, Any], path: str) -> Side:
    return Side(
        label,
        path,
        str(report.get("scenario", "?")),
        str(report.get("mode", "sim")),
        int(report.get("seed", 0)),
        bool(report.get("interrupted", False)),
    )


def _figure(report: dict[str, Any], where: tuple[str, str]) -> float:
    table, key = where
    if key == "success_rate":
        totals = report.get("totals", {})
        requests = totals.get("requests", 0)
        return totals.get("ok", 0) / requests if requests else math.nan
    value = report.get(table, {}).get(key)
    return math.nan if value is None else float(value)


def _shares(report: dict[str, Any]) -> dict[str, float]:
    endpoints = report.get("endpoints", [])
    total = sum(e.get("requests", 0) for e in endpoints)
    return {e["name"]: (e.get("requests", 0) / total if total else 0.0) for e in endpoints}


def _changes(report: dict[str, Any]) -> dict[str, tuple[tuple[float, bool], ...]]:
    """When each replica left and rejoined rotation: health verdicts and ejections (out) and
    returns (in), the first check's verdict left out. Health is as the client that saw it change
    most often saw it (the first by name on a tie), so that a partition of one client shows."""
    found: dict[str, list[tuple[float, bool]]] = {}
    for endpoint in report.get("endpoints", []):
        by_client: dict[str, list[tuple[float, bool]]] = {}
        for t in endpoint.get("health_transitions", []):
            by_client.setdefault(t["client"], []).append((float(t["at_s"]), bool(t["healthy"])))
        seen = sorted((client, _without_first_check(verdicts)) for client, verdicts in by_client.items())
        changes = max(seen, key=lambda item: len(item[1]), default=("", []))[1]
        for ejection in endpoint.get("ejections", []):
            changes.append((float(ejection["at_s"]), False))
            if ejection.get("returned_at_s") is not None:
                changes.append((float(ejection["returned_at_s"]), True))
        found[endpoint["name"]] = sorted(changes)
    return {name: tuple(changes) for name, changes in found.items()}


def _without_first_check(verdicts: list[tuple[float, bool]]) -> list[tuple[float, bool]]:
    """A client's verdicts less the first check letting a replica in as the run starts, which is
    not a change (a replica in from the start, `initial_state = "healthy"`, has no such verdict)."""
    if verdicts and verdicts[0][1] and verdicts[0][0] < FIRST_CHECK_WITHIN:
        return verdicts[1:]
    return verdicts


def _tolerance(figure: Figure) -> str:
    assert figure.tolerance is not None
    if not figure.relative:
        return f"{figure.tolerance:g}"
    return f"{figure.tolerance:.0%}" + (f" and {figure.slack:g} ms" if figure.slack else "")
