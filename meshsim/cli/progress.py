"""Progress bars: in virtual time (shown only for runs that take more than a second of wall time), and
for live runs in wall time with the rate achieved."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

_SHOW_AFTER = 1.0
_REFRESH = 0.1


class VirtualTimeProgress:
    """Called with the virtual time on every scheduler pass; reads the wall clock only to throttle itself."""

    def __init__(self, console: Console, duration: float) -> None:
        self._console = console
        self._duration = duration
        self._started = time.monotonic()
        self._next_refresh = self._started + _SHOW_AFTER
        self._bar: Progress | None = None
        self._task = 0

    def __call__(self, virtual_now: float) -> None:
        wall = time.monotonic()
        if wall < self._next_refresh:
            return
        self._next_refresh = wall + _REFRESH
        if self._bar is None:
            self._bar = Progress(
                TextColumn("simulating"),
                BarColumn(),
                TextColumn("{task.completed:.1f}/{task.total:.0f} s virtual"),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("run", total=self._duration)
        self._bar.update(self._task, completed=min(virtual_now, self._duration))  # type: ignore[arg-type]

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class LiveProgress:
    """A live run's progress: wall time against the scenario's duration, and the calls a second it
    achieves (called a few times a second by the run)."""

    def __init__(self, console: Console, duration: float) -> None:
        self._bar = Progress(
            TextColumn("live"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s  {task.fields[rate]}"),
            console=console,
            transient=True,
        )
        self._duration = duration
        self._task = self._bar.add_task("run", total=duration, rate="")
        self._bar.start()

    def __call__(self, now: float, finished: int) -> None:
        rate = f"{finished / now:,.0f} calls/s" if now > 1 else ""
        self._bar.update(self._task, completed=min(now, self._duration), rate=rate)

    def close(self) -> None:
        self._bar.stop()
