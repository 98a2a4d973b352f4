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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")


def run(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run `async_fn(*args)` under Trio, hosted by a fresh asyncio loop that grpc.aio can use."""

    async def host() -> T:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[outcome.Outcome[T]] = loop.create_future()

        def done(result: outcome.Outcome[T]) -> None:
            if not finished.done():
                finished.set_result(result)

        trio.lowlevel.start_guest_run(
            async_fn,
            *args,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=done,
            host_uses_signal_set_wakeup_fd=True,
            strict_exception_groups=True,
        )
        return (await finished).unwrap()

    return asyncio.run(host())


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


async def wait(work: Awaitable[T]) -> T:
    """Await asyncio work from Trio; cancelling the Trio side cancels it."""
    event = trio.Event()
    task = start(work, lambda _: event.set())
    try:
        await event.wait()
    except BaseException:
        task.cancel()
        raise
    return task.result()
