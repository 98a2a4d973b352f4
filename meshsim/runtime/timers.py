"""The completion queue: one task that fires callbacks at their (virtual or real) times.

A call that needs no task of its own (a simulated unary call, a deadline, the next
Poisson arrival) is a timer here. Many calls then cost one heap push and pop each
instead of a task. The queue reads time only through Trio, so it runs unchanged on
MockClock; a simulator can also hand it a `FastForward`, with which it fires a run
of timers back to back, moving virtual time itself, for as long as every other task
is blocked and waiting for something later. That turns a scheduler pass per event
into one per stretch of time in which only calls happen.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sized
from typing import Any, Protocol

import trio
import trio.testing


class FastForward(Protocol):
    def horizon(self) -> float: ...

    def others_runnable(self) -> bool: ...

    def run_queue(self) -> Sized:
        """The scheduler's runnable tasks: while it is empty, no other task could notice time move."""
        ...

    def jump_to(self, when: float) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """What a call path needs of time: the clock, and callbacks at a time (TimerQueue on Trio; a live
    proxy's call path uses its host loop's timers instead)."""

    def now(self) -> float: ...

    def call_at(self, when: float, fn: Callable[..., None], *args: Any) -> Cancellable: ...


class Timer:
    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """Callbacks fire in time order; callbacks due at the same instant fire in the order they were set."""

    name = "timers"

    def __init__(self, fast_forward: FastForward | None = None) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._scope: trio.CancelScope | None = None
        self._fast_forward = fast_forward
        self._firing: float | None = None

    def call_at(self, when: float, fn: Callable[..., None], *args: Any) -> Timer:
        timer = Timer(when, fn, args)
        heapq.heappush(self._heap, (when, next(self._order), timer))
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when
        return timer

    def call_soon(self, fn: Callable[..., None], *args: Any) -> Timer:
        return self.call_at(self.now(), fn, *args)

    def now(self) -> float:
        """The current time: while callbacks fire, the instant they are due (cheaper than asking Trio,
        and exact where the clock may read a hair off after float arithmetic)."""
        firing = self._firing
        return firing if firing is not None else trio.current_time()

    def __len__(self) -> int:
        return len(self._heap)

    def _fire_due(self, now: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        self._firing = now
        try:
            # Callbacks may add timers for `now`; they fire in this same pass.
            while heap and heap[0][0] <= now:
                timer = pop(heap)[2]
                if not timer.cancelled:
                    timer.fn(*timer.args)
        finally:
            self._firing = None

    def _run_ahead(self, fast_forward: FastForward) -> None:
        heap = self._heap
        pop = heapq.heappop
        horizon = fast_forward.horizon()
        runnable = fast_forward.run_queue()
        jump_to = fast_forward.jump_to
        # _fire_due per instant, inline: this loop runs once or twice a simulated call.
        try:
            while heap:
                when = heap[0][0]
                if when >= horizon or runnable:
                    break
                jump_to(when)
                # The clock may read a hair below `when` after float arithmetic; the timer is due regardless.
                self._firing = when
                while heap and heap[0][0] <= when:
                    timer = pop(heap)[2]
                    if not timer.cancelled:
                        timer.fn(*timer.args)
        finally:
            self._firing = None

    async def run(self) -> None:
        heap = self._heap
        fast_forward = self._fast_forward
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            if fast_forward is not None:
                # Tasks woken at this same instant (a fault beginning or ending) act before the timers
                # due now fire: a tie between a fault and a timer is ordered by rule, not by the
                # scheduler's shuffle of the tasks it woke together.
                await trio.testing.wait_all_tasks_blocked()
            self._fire_due(trio.current_time())
            if fast_forward is not None:
                await trio.testing.wait_all_tasks_blocked()
                self._fire_due(trio.current_time())
                self._run_ahead(fast_forward)
