"""The virtual-time progress bar: silent for short runs, shown after a second of wall time."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from meshsim.cli import progress as progress_module
from meshsim.cli.progress import VirtualTimeProgress


class FakeWall:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_bar_appears_only_after_a_second_and_tracks_virtual_time(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = FakeWall()
    monkeypatch.setattr(progress_module.time, "monotonic", wall.monotonic)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    bar = VirtualTimeProgress(console, duration=40.0)
    for virtual in (1.0, 2.0, 3.0):
        wall.now += 0.2
        bar(virtual)
    assert out.getvalue() == ""  # a run under a second shows nothing
    wall.now += 1.0
    bar(12.5)
    wall.now += 0.5
    bar(20.0)
    bar.close()
    shown = out.getvalue()
    assert "simulating" in shown
    assert "20.0/40 s virtual" in shown
