"""Numbers drawn with unicode blocks: one-line sparklines and small bar charts a few rows high.

A column is one value; None is a gap, drawn blank, so that "no calls here" never looks like
"zero calls". Any value gets at least the lowest block for the same reason: a column that
has data is never blank. Rendering is a pure function of the values and the scale, so a
report drawn twice from one run is the same text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

# Eighths of a cell, from empty to full.
BLOCKS = " ▁▂▃▄▅▆▇█"
_STEPS = len(BLOCKS) - 1


@attrs.frozen
class Scale:
    """What the bottom and the top of the chart stand for; values outside are clipped to it."""

    low: float
    high: float

    @classmethod
    def from_zero(cls, values: Sequence[float | None]) -> Scale:
        """0 at the bottom, the largest value at the top: for rates and latencies, whose zero means something."""
        return cls(0.0, max(_present(values), default=0.0))

    @classmethod
    def ratio(cls, values: Sequence[float | None], floor: float = 0.99) -> Scale:
        """A share with 1 at the top and its lowest value (or `floor`, if higher) at the bottom, so
        that a dip from 100 % to 99.4 % shows, as it would not on a scale from 0."""
        return cls(min(min(_present(values), default=floor), floor), 1.0)

    def level(self, value: float, steps: int) -> int:
        """How many of `steps` eighths `value` fills: at least one, at most all."""
        if self.high <= self.low:
            return 1
        share = (value - self.low) / (self.high - self.low)
        return max(1, min(steps, round(share * steps)))


def bars(values: Sequence[float | None], scale: Scale, height: int = 1) -> list[str]:
    """The chart as `height` strings of one character per value, top row first."""
    steps = _STEPS * height
    levels = [None if value is None or math.isnan(value) else scale.level(value, steps) for value in values]
    rows = []
    for row in reversed(range(height)):
        below = row * _STEPS
        rows.append("".join(" " if level is None else BLOCKS[max(0, min(_STEPS, level - below))] for level in levels))
    return rows


def sparkline(values: Sequence[float | None], scale: Scale | None = None) -> str:
    """One line of blocks; on a scale from zero unless told otherwise."""
    return bars(values, scale or Scale.from_zero(values))[0]


def _present(values: Sequence[float | None]) -> list[float]:
    return [value for value in values if value is not None and not math.isnan(value)]
