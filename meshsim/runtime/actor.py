"""Actors: a bounded mailbox, an async run(), and a supervisor that decides what a crash means."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import attrs
import trio

from meshsim.core.errors import MeshsimError
from meshsim.runtime.observer import Observer

M = TypeVar("M")


class Actor(Protocol):
    """Anything with a name and a run() a supervisor can start (and start again after a crash)."""

    @property
    def name(self) -> str: ...

    async def run(self) -> None: ...


class Mailbox(Generic[M]):
    """A bounded memory channel: senders wait when the actor falls behind, rather than memory growing."""

    def __init__(self, capacity: int = 256) -> None:
        self._send, self._receive = trio.open_memory_channel[M](capacity)

    async def send(self, message: M) -> None:
        await self._send.send(message)

    def send_nowait(self, message: M) -> None:
        """For synchronous callers (the call path); raises trio.WouldBlock when full."""
        self._send.send_nowait(message)

    async def receive(self) -> M:
        return await self._receive.receive()

    def receive_nowait(self) -> M:
        return self._receive.receive_nowait()


@attrs.frozen
class RestartPolicy:
    """Restart a crashed actor up to `max_restarts` times, waiting `backoff` doubling each time."""

    max_restarts: int = 0
    backoff: float = 0.1
    max_backoff: float = 5.0


@attrs.frozen
class ActorRestarted:
    """Event: an actor crashed and was started again."""

    at: float
    actor: str
    error: str
    restarts: int


class ActorFailed(MeshsimError):
    """An actor crashed more often than its policy allows; the run fails with this."""

    def __init__(self, actor: str, restarts: int, error: BaseException) -> None:
        super().__init__(f"actor {actor!r} crashed after {restarts} restart(s): {error!r}")
        self.actor = actor


class Supervisor:
    """Starts actors in a nursery it does not own, restarting or failing loudly on a crash."""

    def __init__(self, nursery: trio.Nursery, observer: Observer) -> None:
        self._nursery = nursery
        self._observer = observer

    def start(self, actor: Actor, policy: RestartPolicy = RestartPolicy()) -> None:
        self._nursery.start_soon(self._supervise, actor, policy, name=actor.name)

    async def _supervise(self, actor: Actor, policy: RestartPolicy) -> None:
        restarts = 0
        while True:
            try:
                await actor.run()
                return
            except Exception as error:
                if restarts >= policy.max_restarts:
                    raise ActorFailed(actor.name, restarts, error) from error
                restarts += 1
                self._observer.emit(ActorRestarted(trio.current_time(), actor.name, repr(error), restarts))
                delay = min(policy.max_backoff, policy.backoff * math.pow(2, restarts - 1))
                await trio.sleep(delay)


class Background:
    """A nursery held open from an object's __aenter__ to its __aexit__ (a client's or a proxy's actors).

    `open()` and `close()` pair up around the object's lifetime; if the rest of
    __aenter__ fails, `close()` cancels what was started and the error goes on as
    itself, not wrapped in the nursery's exception group.
    """

    def __init__(self) -> None:
        self._manager: Any = None
        self.nursery: trio.Nursery | None = None

    async def open(self) -> trio.Nursery:
        self._manager = trio.open_nursery()
        self.nursery = await self._manager.__aenter__()
        return self.nursery

    async def close(
        self,
        kind: type[BaseException] | None = None,
        error: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> bool:
        assert self.nursery is not None
        self.nursery.cancel_scope.cancel()
        return bool(await self._manager.__aexit__(kind, error, traceback))
