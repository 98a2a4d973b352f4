"""The report's timeline as a chart in the terminal: p99, p50 and success rate over the run, with
the fault windows under them on the same time axis, so a dip lines up with the fault that made it.

The chart takes the width it is given. With fewer buckets than columns a bucket is drawn one
or two columns wide; with more, a column stands for the worst bucket it covers (the highest
latency, the lowest success rate), so a one-bucket spike is never averaged away. Columns are
worked out in whole numbers, so the same report draws the same text at the same width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import attrs
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from meshsim.cli.sparkline import Scale, bars
from meshsim.core.recording import FaultRecord
from meshsim.core.report import Bucket, Report

_HEIGHT = 2  # rows per series: 16 levels, and room for the scale's top and bottom
_AXIS = " ┤"
_FAULT_STYLE = "on grey19"  # the band a fault window draws through every series
_NICE_TICKS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)


@attrs.frozen
class Column:
    """What one column of the chart shows: the worst of the buckets it covers."""

    p50: float | None
    p99: float | None
    success: float | None


@attrs.frozen
class Series:
    name: str
    values: tuple[float | None, ...]
    scale: Scale
    top: str
    bottom: str
    style: str


@attrs.frozen
class TimelineChart:
    """A rich renderable: the chart for `report`, drawn at the width the console offers."""

    report: Report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from chart_lines(self.report, options.max_width)


def chart_lines(report: Report, width: int) -> Iterator[Text]:
    """The chart's lines, none wider than `width`; nothing for a run without a timeline."""
    buckets = report.timeline
    if not buckets:
        return
    # Every bucket is in some column, so the scales (and their labels) are those of one column
    # covering them all, whatever the number of columns the labels leave room for.
    series = _series(buckets, 1)
    label_width = max(len(name) for name in (*(s.name for s in series), _FAULTS_LABEL)) + 1
    number_width = max(max(len(s.top), len(s.bottom)) for s in series)
    room = width - label_width - number_width - len(_AXIS)
    if room < 8:
        return
    count = len(buckets)
    columns = room
    span = count * report.bucket_width
    series = _series(buckets, columns)
    faulted = _fault_columns(report.faults, span, columns)
    buckets_of = f"{count} buckets of {report.bucket_width:g} s"
    if columns < count:
        yield Text(f"Over time: {buckets_of}, the worst in each column", style="italic")
    else:
        yield Text(f"Over time: {buckets_of}", style="italic")
    for one in series:
        for row, chars in enumerate(bars(one.values, one.scale, _HEIGHT)):
            line = Text((one.name if row == 0 else "").ljust(label_width))
            line.append((one.top if row == 0 else one.bottom).rjust(number_width) + _AXIS, style="dim")
            for column, char in enumerate(chars):
                line.append(char, style=f"{one.style} {_FAULT_STYLE}" if column in faulted else one.style)
            yield line
    indent = label_width + number_width + len(_AXIS)
    for n, lane in enumerate(_fault_lanes(report.faults, span, columns)):
        yield Text((_FAULTS_LABEL if n == 0 else "").ljust(indent)) + lane
    yield Text("seconds".ljust(indent), style="dim") + Text(_axis(span, columns), style="dim")


_FAULTS_LABEL = "faults"


def _series(buckets: Sequence[Bucket], columns: int) -> tuple[Series, ...]:
    shown = [_column(buckets, i, columns) for i in range(columns)]
    p99 = tuple(c.p99 for c in shown)
    p50 = tuple(c.p50 for c in shown)
    success = tuple(c.success for c in shown)
    p99_scale, p50_scale, success_scale = Scale.from_zero(p99), Scale.from_zero(p50), Scale.ratio(success)
    return (
        Series("p99 ms", p99, p99_scale, _ms(p99_scale.high), "0", "magenta"),
        Series("p50 ms", p50, p50_scale, _ms(p50_scale.high), "0", "cyan"),
        Series("success", success, success_scale, _percent(1.0), _percent(success_scale.low), "green"),
    )


def _column(buckets: Sequence[Bucket], index: int, columns: int) -> Column:
    """What column `index` shows. In units where a column is `count` long and a bucket `columns`:
    with more columns than buckets, the bucket under the column's middle (so a bucket is one or
    two columns wide, never blurred into its neighbour); with fewer, the worst bucket it overlaps."""
    count = len(buckets)
    if columns >= count:
        first = last = (2 * index + 1) * count // (2 * columns)
    else:
        first, last = index * count // columns, ((index + 1) * count - 1) // columns
    covered = buckets[first : last + 1]
    return Column(
        p50=_worst(max, (b.calls.latency.p50 for b in covered)),
        p99=_worst(max, (b.calls.latency.p99 for b in covered)),
        success=_worst(min, (b.calls.success_rate for b in covered)),
    )


def _worst(pick: Callable[[list[float]], float], values: Iterator[float]) -> float | None:
    present = [value for value in values if not math.isnan(value)]
    return pick(present) if present else None


def _window(fault: FaultRecord, span: float, columns: int) -> tuple[int, int] | None:
    """The columns [first, last] a fault's window covers; None if it begins after the chart ends."""
    end = span if fault.cleared_at is None else min(fault.cleared_at, span)
    if fault.applied_at >= span:
        return None
    first = int(fault.applied_at * columns / span)
    last = max(first, math.ceil(end * columns / span) - 1)
    return first, min(last, columns - 1)


def _fault_columns(faults: Sequence[FaultRecord], span: float, columns: int) -> frozenset[int]:
    covered: set[int] = set()
    for fault in faults:
        window = _window(fault, span, columns)
        if window is not None:
            covered.update(range(window[0], window[1] + 1))
    return frozenset(covered)


def _fault_lanes(faults: Sequence[FaultRecord], span: float, columns: int) -> list[Text]:
    """Each fault as a bar under the columns it covers, named inside it or beside it; faults that
    would touch share a lane no more, so overlapping windows each get their own."""
    lanes: list[list[tuple[int, int, str]]] = []  # per lane: (from, to, drawn text starting at from)
    for fault in faults:
        window = _window(fault, span, columns)
        if window is None:
            continue
        first, last = window
        name = f"{fault.action} {fault.target}"
        length = last - first + 1
        if length >= len(name) + 2:
            drawn, start = "├" + name + "─" * (length - len(name) - 2) + "┤", first
        else:
            bar = "│" if length == 1 else "├" + "─" * (length - 2) + "┤"
            after = bar + " " + name
            if first + len(after) <= columns:
                drawn, start = after, first
            elif first - len(name) - 1 >= 0:
                drawn, start = name + " " + bar, first - len(name) - 1
            else:
                drawn, start = bar, first
        extent = (start, start + len(drawn) - 1, drawn)
        for lane in lanes:
            if all(extent[0] > end + 1 or extent[1] < begin - 1 for begin, end, _ in lane):
                lane.append(extent)
                break
        else:
            lanes.append([extent])
    texts = []
    for lane in lanes:
        cells = [" "] * columns
        for begin, _, drawn in lane:
            for offset, char in enumerate(drawn[: columns - begin]):
                cells[begin + offset] = char
        texts.append(Text("".join(cells).rstrip(), style="red"))
    return texts


def _axis(span: float, columns: int) -> str:
    """Seconds under the columns they begin, at a round step that leaves room between the labels."""
    per_column = span / columns
    widest = len(f"{span:g}") + 2
    tick = next((t for t in _NICE_TICKS if t / per_column >= widest), _NICE_TICKS[-1])
    cells = [" "] * columns
    at = 0.0
    while at <= span:
        column = round(at / per_column)
        label = f"{at:g}"
        if column + len(label) > columns:
            break
        cells[column : column + len(label)] = label
        at += tick
    return "".join(cells).rstrip()


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _percent(value: float) -> str:
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"
