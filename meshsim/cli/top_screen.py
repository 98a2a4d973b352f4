"""The whole `meshsim top` screen: a header (the URL, the time, the scrape's age, the key that
quits), why the latest scrape failed if it did, sparklines of the last minutes, and the
tables of `cli/health_view.py`; and `Watched`, what the view knows between two redraws.

A failed scrape never ends the view: it says "disconnected, retrying" over the last scrapes
that worked, and the next scrape is tried as usual. The screen is drawn for the width it
is given, so a resized terminal gets a new layout at the next redraw.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from meshsim.cli.health_view import calls_table, endpoints_table, window
from meshsim.cli.prometheus import Scrape, quantile
from meshsim.cli.sparkline import Scale, sparkline
from meshsim.cli.top_history import Column, History
from meshsim.core.metric_names import ENDPOINT_HEALTH, REQUESTS_TOTAL

QUIT_KEY = "q"
_LABEL = 8  # "calls/s " and the other sparkline labels
_FIGURES = 21  # "now 1234.5  max 1234.5", the room the figures usually need


@attrs.frozen
class Watched:
    """The two latest scrapes that worked (the window between them), the windows before them, and
    why the scrapes since failed, if they did."""

    url: str
    interval: str  # as it was given ("1s"), for "retrying every 1s"
    before: Scrape | None = None
    now: Scrape | None = None
    history: History = attrs.field(factory=History)
    trouble: str | None = None
    trouble_since: str = ""  # the wall-clock time of the first failure in a row

    def scraped(self, scrape: Scrape) -> Watched:
        history = self.history if self.now is None else self.history.add(window(self.now, scrape))
        return attrs.evolve(
            self, before=self.now or scrape, now=scrape, history=history, trouble=None, trouble_since=""
        )

    def failed(self, reason: str, clock: str) -> Watched:
        return attrs.evolve(self, trouble=reason, trouble_since=self.trouble_since or clock)


@attrs.frozen
class Moment:
    """When the screen is drawn: the wall clock as people read it, and monotonic time for ages."""

    clock: str
    monotonic: float


def screen(watched: Watched, width: int, at: Moment, span: float, watching: bool = True) -> RenderableType:
    """The screen for a terminal `width` columns wide; `watching` adds what only a redrawn view
    needs (the scrape's age, the key that quits, the sparklines of `span` seconds)."""
    parts: list[RenderableType] = [_header(watched, width, at, watching)]
    if watched.trouble is not None:
        since = f" (since {watched.trouble_since})" if watched.trouble_since else ""
        parts.append(
            Text(f"disconnected, retrying every {watched.interval}: {watched.trouble}{since}", style="bold red")
        )
    if watched.now is None or watched.before is None:
        return Group(*parts)
    if watching:
        # Up to the latest scrape, not to this instant: the newest column always has the newest
        # window in it (no blank column between two scrapes), and a view that lost its endpoint
        # stops where its data stops, under a header that says so.
        parts.append(_sparklines(watched.history, width, watched.now.at, span))
    endpoints, calls = endpoints_table(watched.now), calls_table(watched.before, watched.now)
    parts += [table for table in (endpoints, calls) if table is not None]
    if not any(name in (REQUESTS_TOTAL, ENDPOINT_HEALTH) for name, _ in watched.now.samples):
        parts.append(Text(f"no meshsim metrics here yet ({REQUESTS_TOTAL}, {ENDPOINT_HEALTH})", style="yellow"))
    return Group(*parts)


def _header(watched: Watched, width: int, at: Moment, watching: bool) -> Table:
    right = [at.clock]
    if watching:
        if watched.now is None:
            right.append("no scrape yet")
        else:
            right.append(f"scraped {_age(at.monotonic - watched.now.at)}")
        right.append(f"{QUIT_KEY} quits")
    news = "  ·  ".join(right)
    url = f"[bold]{escape(watched.url)}[/]"
    header = Table.grid(expand=True, padding=(0, 2))
    if len(watched.url) + 2 + len(news) <= width:
        header.add_column(overflow="fold")
        header.add_column(justify="right", no_wrap=True)
        header.add_row(url, news)
    else:  # a long URL or a narrow terminal: the URL whole on a line of its own
        header.add_column(overflow="fold")
        header.add_row(url)
        header.add_row(news)
    return header


def _age(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"


def _p99(column: Column) -> float:
    found = quantile(0.99, column.histogram)
    return math.nan if found is None else found * 1000


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


_Row = tuple[str, Callable[[Column], float], Callable[[float], str]]
_ROWS: tuple[_Row, ...] = (
    ("calls/s", lambda c: c.rate, lambda v: f"{v:.1f}"),
    ("p99 ms", _p99, lambda v: f"{v:.1f}"),
    ("errors", lambda c: c.error_share, lambda v: f"{100 * v:.1f}%"),
)


def _sparklines(history: History, width: int, latest: float, span: float) -> Table:
    """Calls a second, p99 and the share of errors, all series summed, over the `span` seconds up
    to `latest`; the sparklines get what the labels and the figures leave of the width."""
    room = _FIGURES
    for _ in range(3):  # the figures' width depends on the columns, a little: settle it
        count = max(1, width - _LABEL - room - 2)
        lines = [_line(history.columns(latest, span, count), measure, shown) for _, measure, shown in _ROWS]
        needed = max(len(figures) for _, figures in lines)
        if needed <= room:
            break
        room = needed
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=_LABEL - 1, no_wrap=True)
    grid.add_column(width=count, no_wrap=True)
    grid.add_column(no_wrap=True)
    for (label, _, _), (spark, figures) in zip(_ROWS, lines, strict=True):
        grid.add_row(label, Text(spark, style="cyan"), figures)
    before, after = f"{_duration(span)} before", "latest scrape"
    if count > len(before) + len(after):
        grid.add_row("", Text(before + after.rjust(count - len(before)), style="dim"), "")
    return grid


def _line(
    columns: list[Column | None], measure: Callable[[Column], float], shown: Callable[[float], str]
) -> tuple[str, str]:
    """One sparkline, and its newest and highest figures."""
    values = [None if c is None else _number(measure(c)) for c in columns]
    present = [v for v in values if v is not None]
    if not present:
        return sparkline(values), ""
    newest = next(v for v in reversed(values) if v is not None)
    return sparkline(values, Scale.from_zero(values)), f"now {shown(newest)}  max {shown(max(present))}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"
