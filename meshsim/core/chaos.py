"""Chaos: the scenario's faults added to running processes, each clearing itself when its time is up.

A fault request is a scenario `[[fault]]` without `at` (it starts when it arrives) and
with a `for` that is required: whoever added a fault may go away, and the fault must
not outlive its duration because of that (Toxiproxy's toxics, by contrast, stay until
removed). Besides the kind's own keys (core/faults/), a request may narrow the calls
it acts on, as Envoy's fault filter does: `method` (a short name or a full path),
`header` (`name` or `name=value`, where the process sees call headers: the proxy) and
`share` (of the matching calls; for `errors` it is another name for `rate`).

This module is the model and the bookkeeping, with no clock or loop of its own: the
`FaultBoard` is given its clock and timer by its process, and tells the process, through
two callbacks, when a fault begins and ends; the process decides what the fault does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol

import attrs

from meshsim.core.config import Table, check_depth, shown
from meshsim.core.errors import ConfigError
from meshsim.core.faults import KINDS, Effect, FaultContext
from meshsim.core.units import format_duration

# A fault lasts at most a day: long enough for any experiment, short enough to be noticed.
MAX_CHAOS_DURATION = 24 * 3600.0
# Faults active at once in one process: each is consulted on every call it may match.
MAX_ACTIVE = 256
# Kinds that act on calls one at a time, so that `method` and `share` mean something.
PER_CALL = frozenset({"latency", "errors", "blackhole"})
_OWN_KEYS = ("action", "target", "for", "method", "header", "share")


class ChaosRequestError(ConfigError):
    """A fault request that cannot be applied: `field` names the key at fault (None: the whole request)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@attrs.frozen
class CallMatch:
    """Which calls a fault acts on: all of them, or those of one method, carrying one header."""

    method: str | None = None
    header: tuple[str, str | None] | None = None  # (name, value); value None: present at all
    share: float = 1.0

    def method_matches(self, path: str) -> bool:
        """`path` is a call's "/package.Service/Method"; `method` is that path, "package.Service/Method"
        or the bare method name."""
        method = self.method
        if method is None:
            return True
        return path == method or path.endswith("/" + method.lstrip("/"))

    def drawn(self, rng: random.Random) -> bool:
        """Whether this call is among the `share` the fault acts on (a draw only when it is not all)."""
        return self.share >= 1.0 or rng.random() < self.share

    def matches(self, method: str, metadata: Sequence[tuple[str, Any]], rng: random.Random) -> bool:
        """Whether the fault acts on this call: its method, its headers, and its share's draw."""
        return self.method_matches(method) and self.header_matches(metadata) and self.drawn(rng)

    def header_matches(self, metadata: Sequence[tuple[str, Any]]) -> bool:
        if self.header is None:
            return True
        name, value = self.header
        return any(key == name and (value is None or found == value) for key, found in metadata)

    def describe(self) -> str:
        parts = []
        if self.method is not None:
            parts.append(f"method {self.method}")
        if self.header is not None:
            name, value = self.header
            parts.append(f"header {name}" + ("" if value is None else f"={value}"))
        if self.share < 1.0:
            parts.append(f"{self.share:.0%} of calls")
        return ", ".join(parts)


@attrs.frozen
class ChaosFault:
    """One fault a process holds: what it is, what it targets, and when it began (the board's clock)."""

    id: str
    action: str
    target: str
    effect: Effect
    duration: float
    match: CallMatch
    applied_at: float

    @property
    def expires_at(self) -> float:
        return self.applied_at + self.duration

    def describe(self) -> str:
        """One line for logs: "f3 errors 50% UNAVAILABLE on api/1 for 30s (method Process)"."""
        effect = self.effect.describe()
        narrowed = self.match.describe()
        return (
            f"{self.id} {self.action}{' ' + effect if effect else ''} on {self.target} "
            f"for {format_duration(self.duration)}{f' ({narrowed})' if narrowed else ''}"
        )

    def to_json(self, now: float) -> dict[str, Any]:
        match = self.match
        return {
            "id": self.id,
            "action": self.action,
            "target": self.target,
            "effect": self.effect.describe(),
            "for_s": self.duration,
            "remaining_s": round(max(0.0, self.expires_at - now), 3),
            "method": match.method,
            "header": None if match.header is None else "=".join(p for p in match.header if p is not None),
            "share": match.share,
        }


@attrs.frozen
class ChaosScope:
    """What one process can do: the kinds it takes, whether it sees call headers, and its targets."""

    kinds: tuple[str, ...]
    headers: bool
    clients: tuple[str, ...] = ()
    # A target's problem, or None if this process has it; `action` may matter (a method on a replica).
    check_target: Callable[[str, str], str | None] = lambda target, action: None
    # Why a kind it does not take is not taken ("partition: a replica cannot tell ...").
    why_not: dict[str, str] = attrs.field(factory=dict)


class _RequestTable(Table):
    def fail(self, key: str | None, message: str) -> NoReturn:
        raise ChaosRequestError(key, message)


def read_fault(data: object, scope: ChaosScope, fault_id: str, now: float) -> ChaosFault:
    """The fault a request body (parsed JSON) asks for; ChaosRequestError naming the field if it cannot be."""
    if not isinstance(data, dict):
        raise ChaosRequestError(None, f"expected a JSON object, got {shown(data)}")
    try:
        check_depth(Path("request"), data, ConfigError)
    except ConfigError:
        raise ChaosRequestError(None, "nested too deeply") from None
    table = _RequestTable(Path("request"), dict(data))
    action = table.choice("action", tuple(KINDS))
    if action not in scope.kinds:
        reason = scope.why_not.get(action, f"this process takes {', '.join(scope.kinds)}")
        table.fail("action", f"{action} does not apply here: {reason}")
    kind = KINDS[action]
    if action == "errors" and table.has("share"):
        if table.has("rate"):
            table.fail("share", "for errors, share is another name for rate: give one of them")
        table.data["rate"] = table.data.pop("share")  # the CLI's --share, for errors
    duration = table.duration("for", positive=True)
    if duration > MAX_CHAOS_DURATION:
        table.fail("for", f"must be at most {format_duration(MAX_CHAOS_DURATION)}, got {shown(table.raw('for'))}")
    target = table.string("target")
    problem = scope.check_target(target, action)
    if problem is not None:
        table.fail("target", problem)
    per_call = action in PER_CALL
    for key in ("method", "share", "header"):
        if table.has(key) and not per_call:
            table.fail(key, f"a {action} fault acts on the whole target, not on some of its calls")
    if table.has("header") and not scope.headers:
        table.fail("header", "only the proxy sees call headers")
    match = CallMatch(
        method=table.string("method", None),
        header=_header(table),
        share=table.number("share", 1.0, above=0.0, maximum=1.0),
    )
    for key in data:
        if key not in _OWN_KEYS and key not in kind.keys and isinstance(key, str) and key in _ALL_KIND_KEYS:
            table.fail(key, f"does not apply to a {action} fault")
    effect = kind.read(table, FaultContext(scope.clients))
    if getattr(effect, "add", 0.0) > duration:
        # A call delayed past the fault's end would feel the fault after it is gone.
        table.fail("add", f"a delay longer than the fault lasts ({format_duration(duration)})")
    table.done()
    return ChaosFault(fault_id, action, target, effect, duration, match, now)


_ALL_KIND_KEYS = frozenset(key for kind in KINDS.values() for key in kind.keys)


def _header(table: Table) -> tuple[str, str | None] | None:
    text = table.string("header", None)
    if text is None:
        return None
    name, equals, value = text.partition("=")
    name = name.strip().lower()  # gRPC metadata keys are lower case
    if not name or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        table.fail("header", f'expected "name" or "name=value", got {shown(text)}')
    return name, (value if equals else None)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class FaultBoard:
    """The faults active in one process, each cleared when its time is up.

    `call_later(delay, fn)` is the process's timer (asyncio's loop.call_later fits);
    `on_apply(fault)` makes a fault act and may refuse it with ChaosRequestError;
    `on_clear(fault, reason)` undoes it ("expired", "deleted" or "cleared").
    """

    def __init__(
        self,
        scope: ChaosScope,
        clock: Callable[[], float],
        call_later: Callable[[float, Callable[[], None]], Cancellable],
        on_apply: Callable[[ChaosFault], None],
        on_clear: Callable[[ChaosFault, str], None],
    ) -> None:
        self.scope = scope
        self._clock = clock
        self._call_later = call_later
        self._on_apply = on_apply
        self._on_clear = on_clear
        self._active: dict[str, tuple[ChaosFault, Cancellable]] = {}
        self._next_id = 1

    @property
    def active(self) -> list[ChaosFault]:
        return [fault for fault, _ in self._active.values()]

    def now(self) -> float:
        return self._clock()

    def add(self, request: object) -> ChaosFault:
        """Read a request, make its fault act, and set it to clear itself."""
        if len(self._active) >= MAX_ACTIVE:
            raise ChaosRequestError(None, f"{MAX_ACTIVE} faults are active already; clear some first")
        fault = read_fault(request, self.scope, f"f{self._next_id}", self._clock())
        self._on_apply(fault)
        self._next_id += 1  # only faults that were applied take a number

        def expire() -> None:
            self.remove(fault.id, "expired")

        timer = self._call_later(fault.duration, expire)
        self._active[fault.id] = (fault, timer)
        return fault

    def remove(self, fault_id: str, reason: str = "deleted") -> ChaosFault | None:
        entry = self._active.pop(fault_id, None)
        if entry is None:
            return None
        fault, timer = entry
        timer.cancel()
        self._on_clear(fault, reason)
        return fault

    def clear(self) -> list[ChaosFault]:
        """Remove every fault (most recent first, so that each undoes onto what was before it)."""
        return [
            fault for fault in (self.remove(i, "cleared") for i in reversed(list(self._active))) if fault is not None
        ]


def fault_request(action: str, target: str, effect: Effect, duration: float) -> dict[str, Any]:
    """The request that adds a scenario's fault to a running process, for `duration` seconds."""
    request: dict[str, Any] = {"action": action, "target": target, "for": duration}
    keys = attrs.asdict(effect, value_serializer=lambda _, __, v: getattr(v, "name", v))  # type: ignore[arg-type]
    request.update((key, value) for key, value in keys.items() if value is not None)
    return request
