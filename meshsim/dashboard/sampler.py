"""Successive registry tallies made into what the dashboard plots, and the last minutes of it kept.

Rates and percentiles are computed here, server-side, as Prometheus' `rate()` and
`histogram_quantile()` would over the last `window` seconds, so that the page only
draws. One sampler belongs to one admin app and is shared by every page watching it:
the app adds a sample each interval while it runs (live/admin.py), and a page that
finds the last one an interval old adds one itself. Samples that stopped for a while
leave a gap in the charts, never a rate averaged over the time nobody looked.

Time is an argument (`now`, seconds on any steady clock): the page plots differences.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from meshsim.dashboard.tally import Counts, Key
from meshsim.dashboard.view import Window, services

INTERVAL = 1.0  # seconds between samples: the /events stream's pace
WINDOW = 5.0  # seconds of calls behind each rate and percentile: steadier than one second's few calls
KEEP = 300  # samples kept: five minutes of charts at one a second
# A baseline this much older than the window means nobody watched for a while: start again.
_STALE = 3.0


class Sampler:
    def __init__(self, interval: float = INTERVAL, window: float = WINDOW, keep: int = KEEP) -> None:
        self.interval = interval
        self.window = window
        self.history: deque[dict[str, Any]] = deque(maxlen=keep)
        self._tallies: deque[tuple[float, Mapping[Key, Counts]]] = deque()
        self._seq = 0

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.history[-1] if self.history else None

    def due(self, now: float) -> bool:
        """Whether a new sample is wanted (the last is nearly an interval old, or there is none)."""
        latest = self.latest
        return latest is None or now - float(latest["t"]) >= 0.9 * self.interval

    def add(
        self,
        now: float,
        tallies: Mapping[Key, Counts],
        clusters: Mapping[str, Any],
        faults: Sequence[Mapping[str, Any]] = (),
        ready: bool = True,
    ) -> dict[str, Any]:
        """The sample at `now`: the process's tallies then, and its `/clusters` and faults as they are."""
        window = self._window(now, tallies)
        self._seq += 1
        sample = {
            "seq": self._seq,
            "t": round(now, 3),
            "ready": ready,
            "window_s": None if window is None else round(window.seconds, 3),
            "services": services(clusters, window),
            "faults": [dict(fault) for fault in faults],
        }
        self.history.append(sample)
        return sample

    def _window(self, now: float, tallies: Mapping[Key, Counts]) -> Window | None:
        kept = self._tallies
        kept.append((now, tallies))
        # Keep the newest tally at least a window old as the baseline, and what came after it.
        while len(kept) >= 2 and now - kept[1][0] >= self.window:
            kept.popleft()
        if len(kept) >= 2 and now - kept[0][0] > self.window + _STALE:
            kept.popleft()
        then, earlier = kept[0]
        if then >= now:
            return None
        return Window({key: counts.since(earlier.get(key, Counts())) for key, counts in tallies.items()}, now - then)
