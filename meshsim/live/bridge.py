"""Trio on asyncio: the one place live mode crosses between the two event loops.

grpc.aio runs only on asyncio. meshsim's actors run on Trio. Live mode runs Trio in
guest mode on the asyncio loop (`trio.lowlevel.start_guest_run`): both loops share one
thread, so a grpc.aio call started from Trio code is an asyncio task on the same
thread, and its completion comes back to Trio through the run's token. The issue's
measurements chose this over trio-asyncio (whose loop failed grpc's client-streaming
and bidi servicers and did not always cancel a stream) and over a second thread (a
thread hop per call); docs/live.md keeps the reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

import outcome
import trio

T = TypeVar("T")


def run(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run `async_fn(*args)` under Trio, hosted by a fresh asyncio loop that grpc.aio can use."""
    return asyncio.run(guest(async_fn, *args))


async def guest(async_fn: Callable[..., Awaitable[T]], *args: Any, clock: trio.abc.Clock | None = None) -> T:
    """Run `async_fn(*args)` under Trio as a guest of the running asyncio loop, and return what it
    returns (for a host that does asyncio work of its own before and after)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[outcome.Outcome[T | None]] = loop.create_future()
    scope = trio.CancelScope()
    token: list[trio.lowlevel.TrioToken] = []

    def done(result: outcome.Outcome[T | None]) -> None:
        if not finished.done():
            finished.set_result(result)

    async def main() -> T | None:
        token.append(trio.lowlevel.current_trio_token())
        with scope:
            return await async_fn(*args)
        return None  # only when the host cancelled the run, and wants no result

    trio.lowlevel.start_guest_run(
        main,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=done,
        host_uses_signal_set_wakeup_fd=True,
        strict_exception_groups=True,
        clock=clock,
    )
    try:
        return cast("T", (await asyncio.shield(finished)).unwrap())
    except asyncio.CancelledError:
        # The host gives up on the run: Trio's side is cancelled and waited for, so that nothing
        # of it runs on after the host (a second Ctrl-C, a task cancelled).
        if token:
            token[0].run_sync_soon(scope.cancel)
        while not finished.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(finished)
        raise


class RunClock(trio.abc.Clock):
    """The system's monotonic clock, reading 0 when it is made: a live run's times are then the
    scenario's, as a simulated run's are."""

    def __init__(self) -> None:
        self._origin = time.perf_counter()

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return time.perf_counter() - self._origin

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return deadline - self.current_time()


def host_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop hosting this Trio run (guest mode runs Trio inside its callbacks)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("live mode must run under meshsim.live.run(): grpc.aio needs an asyncio loop") from None


def start(work: Awaitable[T], on_done: Callable[[asyncio.Future[T]], None]) -> asyncio.Future[T]:
    """Start `work` (a coroutine or a grpc.aio call) on the host loop; `on_done(future)` is called
    later, in Trio's context."""
    token = trio.lowlevel.current_trio_token()
    task = asyncio.ensure_future(work, loop=host_loop())
    task.add_done_callback(lambda finished: token.run_sync_soon(on_done, finished))
    return task


class HostCancelled(Exception):
    """Asyncio work awaited from Trio was cancelled on the host loop's side, not by its Trio caller:
    a grpc.aio call whose channel was closed under it, say. An Exception, unlike asyncio's
    CancelledError, so that Trio code can handle it like any other failure of the work."""


async def wait(work: Awaitable[T]) -> T:
    """Await asyncio work from Trio; cancelling the Trio side cancels it. Work cancelled on the
    asyncio side raises HostCancelled."""
    event = trio.Event()
    task = start(work, lambda _: event.set())
    try:
        await event.wait()
    except BaseException:
        task.cancel()
        raise
    if task.cancelled():
        # asyncio's CancelledError is a BaseException: left as it is, it would cancel whatever
        # Trio task awaited the work, and its nursery with it.
        raise HostCancelled(f"{type(work).__name__} was cancelled on the asyncio side")
    return task.result()


def in_trio() -> bool:
    """Whether this code runs in Trio's context (a task or a Trio callback), not asyncio's."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class Home(Protocol):
    """Where a live call path runs: its clock, and how work comes back to it.

    GrpcClient's call path runs on Trio (its callers are Trio tasks); the proxy's runs on
    the host loop, where grpc.aio hands it the calls, so that a proxied call never
    crosses between the loops.
    """

    def now(self) -> float: ...

    def here(self) -> bool:
        """Whether the current code runs where the call path does."""
        ...

    def later(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` soon in the call path's context (never from inside the caller)."""
        ...

    def launch(self, work: Awaitable[T], on_done: Callable[[asyncio.Future[T]], None]) -> asyncio.Future[T]:
        """Start asyncio work; `on_done(future)` runs in the call path's context."""
        ...


class TrioHome:
    """The call path on Trio (its timers are a TimerQueue actor)."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()

    def now(self) -> float:
        return trio.current_time()

    def here(self) -> bool:
        return in_trio()

    def later(self, fn: Callable[..., None], *args: Any) -> None:
        self._token.run_sync_soon(fn, *args)

    def launch(self, work: Awaitable[T], on_done: Callable[[asyncio.Future[T]], None]) -> asyncio.Future[T]:
        return start(work, on_done)


class HostHome:
    """The call path on the host asyncio loop, on a clock that reads the same as Trio's; it is also
    the call path's timers (runtime.timers.Timers)."""

    def __init__(self) -> None:
        self._loop = host_loop()
        # Trio's clock and the loop's are both monotonic; one offset lines them up, so that
        # events from either side of the thread share one time line.
        self._offset = trio.current_time() - self._loop.time()

    def now(self) -> float:
        return self._loop.time() + self._offset

    def call_at(self, when: float, fn: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        return self._loop.call_at(when - self._offset, fn, *args)

    def here(self) -> bool:
        return not in_trio()

    def later(self, fn: Callable[..., None], *args: Any) -> None:
        self._loop.call_soon(fn, *args)

    def launch(self, work: Awaitable[T], on_done: Callable[[asyncio.Future[T]], None]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work, loop=self._loop)
        task.add_done_callback(on_done)
        return task
