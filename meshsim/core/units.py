"""Durations as scenario files write them ("250ms", "1.5s", "2m") and as reports print them."""

from __future__ import annotations

import math
import re

# ASCII digits only: Arabic-Indic or superscript digits are not a duration anyone means.
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(us|µs|ms|s|m|h)\s*$")
_SCALE = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from "10s", "250ms", "100us", "2m", "1h" or a plain number of seconds.

    Raises ValueError for anything else, including negative and non-finite values.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    try:
        if isinstance(value, (int, float)):
            seconds = float(value)
        elif isinstance(value, str):
            match = _DURATION.match(value)
            if match is None:
                raise ValueError(value)
            seconds = float(match.group(1)) * _SCALE[match.group(2)]
        else:
            raise ValueError(value)
    except OverflowError:
        raise ValueError("too large") from None
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(value)
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.25 -> "250ms", 90 -> "90s"."""
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}us"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"
