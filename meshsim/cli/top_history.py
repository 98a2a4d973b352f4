"""What `meshsim top` remembers between scrapes: the calls of each window between two scrapes,
for the sparklines of the last minutes.

A window is what two scrapes say about the time between them (calls, errors, the latency
histogram's counts, all series summed). A sparkline column is a fixed stretch of time, on
boundaries that do not move as time passes, so a column's bar stays where it was drawn; it
sums every window that overlaps it, so a missed scrape leaves no hole, only a longer window.
"""

from __future__ import annotations

import math

import attrs

Histogram = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending


@attrs.frozen
class Window:
    """The calls of every series between two scrapes, at monotonic times `start` and `end`."""

    start: float
    end: float
    calls: float
    errors: float
    histogram: Histogram

    @property
    def seconds(self) -> float:
        return self.end - self.start


@attrs.frozen
class Column:
    """The windows that overlap one column of a sparkline, summed."""

    seconds: float
    calls: float
    errors: float
    histogram: Histogram

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else math.nan

    @property
    def error_share(self) -> float:
        return self.errors / self.calls if self.calls else math.nan


@attrs.frozen
class History:
    """The windows of the last `keep` seconds, oldest first."""

    windows: tuple[Window, ...] = ()
    keep: float = 3600.0

    def add(self, window: Window) -> History:
        kept = tuple(w for w in self.windows if w.end > window.end - self.keep)
        return attrs.evolve(self, windows=(*kept, window))

    def columns(self, now: float, span: float, count: int) -> list[Column | None]:
        """`count` columns covering the `span` seconds up to `now`, oldest first; None where no
        window reaches. Column boundaries are multiples of span / count, so they stay put."""
        step = span / count
        last = math.floor(now / step)
        shown: list[Column | None] = []
        for index in range(last - count + 1, last + 1):
            begin, end = index * step, (index + 1) * step
            inside = [w for w in self.windows if w.end > begin and w.start < end]
            shown.append(_summed(inside) if inside else None)
        return shown


def _summed(windows: list[Window]) -> Column:
    bounds: dict[float, float] = {}
    for window in windows:
        for bound, count in window.histogram:
            bounds[bound] = bounds.get(bound, 0.0) + count
    return Column(
        seconds=sum(w.seconds for w in windows),
        calls=sum(w.calls for w in windows),
        errors=sum(w.errors for w in windows),
        histogram=tuple(sorted(bounds.items())),
    )
