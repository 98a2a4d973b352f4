"""`meshsim run`'s terminal report: 80 columns without a cut figure, and its chart over time
(p99, p50, success rate, the fault windows on the same axis)."""

from __future__ import annotations

import io
import math
from functools import cache

import pytest
from rich.console import Console

from meshsim.cli.render import render_report
from meshsim.cli.sparkline import Scale, bars, sparkline
from meshsim.cli.timeline_chart import TimelineChart, chart_lines
from meshsim.core.report import Report
from meshsim.core.scenario_loader import load_scenario
from meshsim.sim.runner import run_scenario
from tests.conftest import ROOT


@cache
def report(name: str) -> Report:
    return run_scenario(load_scenario(ROOT / "scenarios" / f"{name}.toml"))


def rendered(shown: Report, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(render_report(shown, wall_seconds=0.5))
    return console.export_text().splitlines()


def test_sparklines_leave_gaps_blank_and_never_hide_a_value() -> None:
    assert sparkline([0.0, 4.0, None, 8.0]) == "▁▄ █"  # a gap is blank; zero still has a block
    assert bars([0.5, 1.0], Scale(0.0, 1.0), height=2) == [" █", "██"]
    assert Scale.ratio([1.0, 0.995]) == Scale(0.99, 1.0)  # a dip under 100 % shows...
    assert Scale.ratio([1.0, 0.42]) == Scale(0.42, 1.0)  # ...however deep it goes
    assert sparkline([3.0, 3.0]) == "██" and sparkline([0.0, 0.0]) == "▁▁"


@pytest.mark.parametrize("name", ["failover", "faults_tour", "retry_storm", "circuit_breaker", "hedging"])
def test_the_report_fits_80_columns_without_cutting_a_figure(name: str) -> None:
    shown = report(name)
    lines = rendered(shown)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "…" not in text
    for endpoint in shown.endpoints:  # every replica's figures, whole, on its row
        row = next(line for line in lines if line.startswith(f"│  {endpoint.name} "))
        assert f" {endpoint.calls.requests} " in row
        assert f" {endpoint.calls.success_rate:.2%} " in row
        assert f" {endpoint.calls.latency.p99:.1f} " in row


def test_retries_and_hedges_get_columns_only_in_runs_that_had_some() -> None:
    def header(name: str) -> list[str]:
        line = next(line for line in rendered(report(name)) if "┃ attempts ┃" in line)
        return [cell.strip() for cell in line.strip("│ ").split("┃")]

    assert header("failover") == ["replica", "attempts", "success", "p50 ms", "p99 ms", "failures"]
    assert header("retry_storm")[:3] == ["replica", "attempts", "retries"]
    assert header("hedging")[:3] == ["replica", "attempts", "hedges"]


def chart(name: str, width: int) -> tuple[list[str], int]:
    """The chart's lines at `width`, and the column where its plot begins."""
    lines = [text.plain for text in chart_lines(report(name), width)]
    return lines, lines[1].index("┤") + 1


def test_the_fault_window_is_drawn_where_it_was_under_the_series() -> None:
    lines, start = chart("failover", 76)  # inside the report's panel at 80 columns
    columns = len(lines[1]) - start
    assert lines[0] == "Over time: 40 buckets of 1 s"
    assert [line[:start].split()[0] for line in lines[1:7:2]] == ["p99", "p50", "success"]
    lane = next(line for line in lines if line.startswith("faults"))
    first, last = math.floor(10 * columns / 40), math.ceil(25 * columns / 40) - 1  # api/1 killed 10-25 s
    assert lane[start + first :].startswith("├kill api/1─")
    assert lane[start + last] == "┤" and len(lane) == start + last + 1
    axis = lines[-1]
    assert axis.startswith("seconds") and axis[start] == "0"


def test_a_success_dip_and_its_recovery_show_in_the_chart() -> None:
    lines, start = chart("retry_storm", 76)  # every call to api fails half the time from 10 s to 25 s
    columns = len(lines[1]) - start
    top = next(i for i, line in enumerate(lines) if line.startswith("success"))
    top_row = lines[top][start:]
    before, during, after = top_row[: columns // 4], top_row[columns // 2], top_row[-3:]
    assert set(before) == {"█"}
    assert during == " "  # the dip: down to the bottom row, whose scale starts at the worst bucket
    assert set(after) == {"█"}
    assert lines[top + 1][:start].split() == ["41.62%", "┤"]  # the worst bucket, the bottom of the scale


def test_a_one_bucket_spike_survives_more_buckets_than_columns() -> None:
    # faults_tour's blackhole holds calls for their 2 s deadline in one bucket of 60; at 50 columns
    # a column covers more than a bucket and must show that bucket's p99, not an average of it.
    lines, start = chart("faults_tour", 50)
    assert lines[0] == "Over time: 60 buckets of 1 s, the worst in each column"
    assert lines[1][:start].split() == ["p99", "ms", "2000", "┤"]
    assert "█" in lines[1][start:]


@pytest.mark.parametrize("width", [40, 60, 80, 120, 200])
def test_the_chart_takes_the_width_it_is_given(width: int) -> None:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(TimelineChart(report("faults_tour")))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    assert max(len(line.rstrip()) for line in lines) == width  # and all of it


def test_the_same_run_draws_the_same_text() -> None:
    assert rendered(report("faults_tour")) == rendered(run_scenario(load_scenario(ROOT / "scenarios/faults_tour.toml")))
