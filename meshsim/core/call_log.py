"""Call recordings: every call a client or the proxy made, kept small enough for millions.

A recording is what `meshsim replay` builds a scenario from (docs/replay.md): for each
call its start, duration, status, attempts, pattern, replica, method, client and
service. `CallRecorder` is an event-bus listener that writes one; `read_call_log` reads
one back into columns.

The format (docs/replay.md, "The recording format") is block-columnar: calls are
buffered and written a block at a time, each block's columns side by side (all the
start times, then all the durations, ...) and zlib-compressed. Columns of small,
similar numbers compress to a few bytes a call, a reader decodes a block with one
decompress and one array copy per column, and a process that dies loses at most the
block it was filling. Names (replicas, methods, clients, services) are written once,
in the block where each first appears, and calls refer to them by number.

    b"meshsim-calls/1\\n"
    then records, each: kind (1 byte) | body length (u32) | CRC-32 of the body (u32) | body
      H  header: JSON {"wall_start": Unix seconds of the first call's start or null,
                       "source": what recorded it}
      C  calls: zlib of: count (u32) | names length (u32) | names JSON | the columns
      E  end: JSON {"calls": recorded, "dropped": calls left out, "reason": why or null}

All integers are little-endian. Columns, `count` entries each: start (i64, µs, the
change from the call before; the first call of the file starts at 0), duration (u32,
µs), status (u8), attempts (u8), pattern (u8, 0 unary, 1 server stream, 2 client
stream, 3 bidi), replica (u16, 0 for none, else 1 + its number), method, client and
service (u16, their numbers). A file without an `E` record was cut off (the process
died, or is still writing): what it holds is still read.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
import sys
import zlib
from array import array
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol

import attrs
import trio

from meshsim.core.calls import Pattern
from meshsim.core.errors import ConfigError
from meshsim.core.events import RequestFinished
from meshsim.core.status import StatusCode

logger = logging.getLogger(__name__)

MAGIC = b"meshsim-calls/1\n"
FORMAT = "meshsim-calls/1"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# A block is written when it holds this many calls, or when its first call is this old: a
# busy proxy writes a few hundred kilobytes at a time, a quiet one loses little if it dies.
BLOCK_CALLS = 8192
BLOCK_SECONDS = 5.0
# Room kept for the end record, so that a capped file still ends properly.
END_RESERVE = 256

_RECORD = struct.Struct("<cII")  # kind, body length, CRC-32
_COUNTS = struct.Struct("<II")  # calls, names length
# (attribute, array type) of each column, in file order.
COLUMNS = (
    ("start", "q"),
    ("duration", "I"),
    ("status", "B"),
    ("attempts", "B"),
    ("pattern", "B"),
    ("endpoint", "H"),
    ("method", "H"),
    ("client", "H"),
    ("service", "H"),
)
CALL_BYTES = sum(array(code).itemsize for _, code in COLUMNS)
NAME_KINDS = ("endpoint", "method", "client", "service")
PATTERNS = tuple(Pattern)
_PATTERN_NUMBER = {pattern: number for number, pattern in enumerate(PATTERNS)}
MAX_NAMES = 65_535  # per kind: a u16 each, 0 kept for "no replica"
MAX_NAME_LENGTH = 1024
_OTHER = "(other)"  # the name of every name past MAX_NAMES
_MAX_U32 = 2**32 - 1
_BIG_ENDIAN = sys.byteorder == "big"

# What a reader accepts, whatever the file says: no block larger than a writer makes.
_MAX_BLOCK_CALLS = 1 << 20
_MAX_NAMES_BYTES = 64 * 1024 * 1024
_MAX_JSON_BYTES = 1024 * 1024


class CallLogError(ConfigError):
    """A recording cannot be written or read; the message names the file."""


@attrs.frozen
class RecordConfig:
    """Where a proxy or a GrpcClient records its calls (`[record]`), and how much at most: the
    recording stops at `max_bytes` of file or `max_calls` calls, whichever comes first."""

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    max_calls: int | None = None

    def open(self, wall_clock: Callable[[], float] | None = None, source: str = "") -> CallRecorder:
        return CallRecorder.open(
            self.path, max_bytes=self.max_bytes, max_calls=self.max_calls, wall_clock=wall_clock, source=source
        )


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
MIN_MAX_BYTES = 64 * 1024
MAX_MAX_BYTES = 2**40


def parse_size(value: object) -> int:
    """Bytes from an integer or "512MiB", "2GB", "64KiB" (ValueError for anything else)."""
    if type(value) is int:
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    text = value.strip().upper().replace(" ", "")
    digits = text.rstrip("KMGIB")
    unit = text[len(digits) :]
    if not digits.isascii() or not digits.isdigit() or unit not in _SIZE_UNITS:
        raise ValueError(value)
    return int(digits) * _SIZE_UNITS[unit]


class EventBus(Protocol):
    def subscribe(self, event_type: type[Any], listener: Callable[[Any], None]) -> None: ...


def _micros(seconds: float) -> int:
    return round(seconds * 1e6)


def _record(kind: bytes, body: bytes) -> bytes:
    return _RECORD.pack(kind, len(body), zlib.crc32(body)) + body


def _shuffled(column: array[int]) -> bytes:
    """The column's little-endian bytes plane by plane: every value's first byte, then every second
    byte, ... (HDF5's and Blosc's shuffle): the high bytes of small numbers, mostly zeros, end up
    side by side, and compress to almost nothing."""
    if _BIG_ENDIAN:
        column = array(column.typecode, column)
        column.byteswap()
    data = column.tobytes()
    size = column.itemsize
    return data if size == 1 else b"".join(data[plane::size] for plane in range(size))


def _unshuffled(data: bytes, code: str, count: int) -> array[int]:
    column = array(code)
    size = column.itemsize
    if size > 1:
        interleaved = bytearray(len(data))
        for plane in range(size):
            interleaved[plane::size] = data[plane * count : (plane + 1) * count]
        data = bytes(interleaved)
    column.frombytes(data)
    if _BIG_ENDIAN:
        column.byteswap()
    return column


class _Names:
    """Numbers for the names of one kind, in first-seen order; the ones not yet written."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.new: list[str] = []

    def number(self, name: str) -> int:
        found = self.numbers.get(name)
        if found is None:
            if len(self.numbers) >= MAX_NAMES - 1 and name != _OTHER:
                return self.number(_OTHER)
            found = self.numbers[name] = len(self.numbers)
            self.new.append(name[:MAX_NAME_LENGTH])
        return found


class CallRecorder:
    """Writes every call it hears of (`RequestFinished`) to a recording, until `max_bytes` or
    `max_calls`; then it counts the calls it leaves out, and says so in the file's end.

    A listener runs in the call path, so recording a call is an append to arrays; a block is
    compressed and written (one `write`, a few milliseconds of a busy proxy's time every few
    thousand calls) when it is full, when its first call is `BLOCK_SECONDS` old, and at `close`.
    A write that fails (a full disk) stops the recording, never the calls: `failure` says why.
    """

    def __init__(
        self,
        sink: BinaryIO,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_calls: int | None = None,
        wall_clock: Callable[[], float] | None = None,
        clock: Callable[[], float] = trio.current_time,
        source: str = "",
    ) -> None:
        """`wall_clock` (live: `time.time`) and `clock` (the clock the events' times are on) give
        the header the wall time of the first call; without a wall clock it has none."""
        self.path = path
        self.max_bytes = max_bytes
        self.max_calls = max_calls
        self.source = source
        self._sink: BinaryIO | None = sink
        self._wall_clock = wall_clock
        self._clock = clock
        self._names = {kind: _Names() for kind in NAME_KINDS}
        self._columns = {name: array(code) for name, code in COLUMNS}
        self._origin: int | None = None  # µs, the first call's start on the events' clock
        self._previous_start = 0  # µs since the origin: the last start written
        self._block_began = 0.0
        self._wall_start: float | None = None
        self.written = 0  # bytes
        self.recorded = 0
        self.dropped = 0
        self.reason: str | None = None  # why calls are being left out
        self.failure: str | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_calls: int | None = None,
        wall_clock: Callable[[], float] | None = None,
        clock: Callable[[], float] = trio.current_time,
        source: str = "",
    ) -> CallRecorder:
        """Create (or replace) the recording at `path`; CallLogError naming it when it cannot."""
        path = Path(path)
        if max_bytes < MIN_MAX_BYTES:
            raise CallLogError(f"{path}: a recording needs max_bytes of at least {MIN_MAX_BYTES:,}")
        try:
            sink = path.open("wb")
        except OSError as error:
            raise CallLogError(f"{path}: cannot write the recording: {error.strerror or error}") from None
        return cls(
            sink,
            path,
            max_bytes=max_bytes,
            max_calls=max_calls,
            wall_clock=wall_clock,
            clock=clock,
            source=source,
        )

    def listen(self, bus: EventBus) -> None:
        """Record every call that ends on `bus`."""
        bus.subscribe(RequestFinished, self.record)

    @property
    def closed(self) -> bool:
        return self._sink is None

    def record(self, event: RequestFinished) -> None:
        if self._sink is None or self.reason is not None:
            self.dropped += 1
            return
        if self.max_calls is not None and self.recorded + len(self._columns["start"]) >= self.max_calls:
            self._stop("max_calls")
            self.dropped += 1
            return
        start = _micros(event.started)
        if self._origin is None:
            self._begin(event)
            self._origin = start
        columns = self._columns
        if not columns["start"]:
            self._block_began = event.finished
        columns["start"].append(start - self._origin)
        columns["duration"].append(min(max(0, _micros(event.finished - event.started)), _MAX_U32))
        columns["status"].append(int(event.status))
        columns["attempts"].append(min(max(0, event.attempts), 255))
        columns["pattern"].append(_PATTERN_NUMBER[event.pattern])
        names = self._names
        columns["endpoint"].append(0 if event.endpoint is None else names["endpoint"].number(event.endpoint) + 1)
        columns["method"].append(names["method"].number(event.method))
        columns["client"].append(names["client"].number(event.client))
        columns["service"].append(names["service"].number(event.service))
        if len(columns["start"]) >= BLOCK_CALLS or event.finished - self._block_began >= BLOCK_SECONDS:
            self.flush()

    def _begin(self, event: RequestFinished) -> None:
        if self._wall_clock is not None:
            # The wall time now, less the time the first call has taken since it started.
            self._wall_start = self._wall_clock() - (self._clock() - event.started)

    def flush_stale(self) -> None:
        """Write the calls buffered so far if the oldest has waited `BLOCK_SECONDS`: a quiet process
        hears of no new call that would, so its own timer calls this (`keep_flushing`)."""
        if self._columns["start"] and self._clock() - self._block_began >= BLOCK_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the calls buffered so far as one block (if they fit under max_bytes)."""
        columns = self._columns
        count = len(columns["start"])
        if self._sink is None or not count:
            return
        new_names = {kind: names.new for kind, names in self._names.items() if names.new}
        names_json = json.dumps(new_names, separators=(",", ":"), ensure_ascii=False).encode()
        # In order of start within the block (calls end, and are heard of, in another order): the
        # starts then grow by the gaps between arrivals, small numbers that compress well.
        starts = columns["start"]
        order = sorted(range(count), key=starts.__getitem__)
        ordered = {name: array(code, map(columns[name].__getitem__, order)) for name, code in COLUMNS}
        absolute = ordered["start"]
        deltas = array("q", (b - a for a, b in itertools.pairwise(absolute)))
        deltas.insert(0, absolute[0] - self._previous_start)
        ordered["start"] = deltas
        raw = b"".join([_COUNTS.pack(count, len(names_json)), names_json, *(_shuffled(ordered[n]) for n, _ in COLUMNS)])
        block = _record(b"C", zlib.compress(raw, 6))
        if self.written + len(block) + END_RESERVE + (0 if self.written else len(self._head())) > self.max_bytes:
            self._stop("max_bytes")
            self.dropped += count
        elif self._write((b"" if self.written else self._head()) + block):
            self.recorded += count
            self._previous_start = absolute[-1]
            for names in self._names.values():
                names.new = []
        else:
            self.dropped += count
        self._columns = {name: array(code) for name, code in COLUMNS}

    def _head(self) -> bytes:
        header = {"format": FORMAT, "wall_start": self._wall_start, "source": self.source}
        return MAGIC + _record(b"H", json.dumps(header, sort_keys=True).encode())

    def _stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            logger.warning("%s: recording stopped at %s; further calls are counted, not recorded", self.path, reason)

    def _write(self, data: bytes) -> bool:
        assert self._sink is not None
        try:
            self._sink.write(data)
            self._sink.flush()
        except OSError as error:
            self.failure = f"{self.path}: cannot write the recording: {error.strerror or error}"
            self._stop("write_failed")
            logger.error("%s", self.failure)
            return False
        self.written += len(data)
        return True

    def close(self) -> None:
        """Write what is buffered and the end record, and close the file (again: nothing)."""
        if self._sink is None:
            return
        self.flush()
        end = {"calls": self.recorded, "dropped": self.dropped, "reason": self.reason}
        if self.failure is None:
            self._write((b"" if self.written else self._head()) + _record(b"E", json.dumps(end).encode()))
        sink, self._sink = self._sink, None
        try:
            sink.close()
        except OSError as error:
            self.failure = self.failure or f"{self.path}: cannot write the recording: {error.strerror or error}"

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


@attrs.frozen
class RecordedCall:
    """One call of a recording, as `CallLog.call` gives it (a convenience: analyses use the columns)."""

    start: float  # seconds since the recording's first call started
    duration: float
    status: StatusCode
    attempts: int
    pattern: Pattern
    endpoint: str | None
    method: str
    client: str
    service: str


@attrs.frozen
class CallLog:
    """A recording read back: one array per column (times in µs), and the names calls refer to.

    `endpoint[i]` is 0 for a call that reached no replica, else 1 + an index into `endpoints`;
    `method[i]`, `client[i]`, `service[i]` index `methods`, `clients`, `services`.
    """

    path: Path
    wall_start: float | None
    source: str
    start: array[int]
    duration: array[int]
    status: array[int]
    attempts: array[int]
    pattern: array[int]
    endpoint: array[int]
    method: array[int]
    client: array[int]
    service: array[int]
    endpoints: tuple[str, ...]
    methods: tuple[str, ...]
    clients: tuple[str, ...]
    services: tuple[str, ...]
    dropped: int = 0
    reason: str | None = None
    complete: bool = True  # False: no end record (the recorder died, or is still writing)

    def __len__(self) -> int:
        return len(self.start)

    def call(self, index: int) -> RecordedCall:
        endpoint = self.endpoint[index]
        return RecordedCall(
            start=self.start[index] / 1e6,
            duration=self.duration[index] / 1e6,
            status=StatusCode(self.status[index]),
            attempts=self.attempts[index],
            pattern=PATTERNS[self.pattern[index]],
            endpoint=None if endpoint == 0 else self.endpoints[endpoint - 1],
            method=self.methods[self.method[index]],
            client=self.clients[self.client[index]],
            service=self.services[self.service[index]],
        )


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.data = data
        self.at = 0

    def fail(self, problem: str) -> CallLogError:
        return CallLogError(f"{self.path}: {problem}")

    def next_record(self) -> tuple[bytes, bytes] | None:
        """The next record's kind and body; None at the end, or where the file was cut off."""
        data, at = self.data, self.at
        if at == len(data):
            return None
        if at + _RECORD.size > len(data):
            return None
        kind, length, crc = _RECORD.unpack_from(data, at)
        body = data[at + _RECORD.size : at + _RECORD.size + length]
        if len(body) < length:
            return None
        if zlib.crc32(body) != crc:
            raise self.fail(f"the record at byte {at} is damaged (its checksum does not match)")
        self.at = at + _RECORD.size + length
        return kind, body

    def json(self, body: bytes, what: str) -> dict[str, Any]:
        if len(body) > _MAX_JSON_BYTES:
            raise self.fail(f"its {what} is larger than a recorder writes")
        try:
            value = json.loads(body)
        except ValueError:
            raise self.fail(f"its {what} is not JSON") from None
        if not isinstance(value, dict):
            raise self.fail(f"its {what} is not a JSON object")
        return value


def read_call_log(path: str | Path) -> CallLog:
    """Read a recording; CallLogError naming the file when it is not one, or is damaged. A file
    cut off mid-record (its writer died) gives the calls before the cut, `complete=False`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CallLogError(f"{path}: no such file") from None
    except OSError as error:
        raise CallLogError(f"{path}: cannot read: {error.strerror or error}") from None
    if not data.startswith(MAGIC):
        raise CallLogError(f"{path}: not a meshsim call recording (it does not start with {MAGIC[:-1].decode()})")
    reader = _Reader(path, data)
    reader.at = len(MAGIC)
    first = reader.next_record()
    if first is None or first[0] != b"H":
        raise reader.fail("the recording has no header")
    header = reader.json(first[1], "header")
    wall_start = header.get("wall_start")
    if wall_start is not None and type(wall_start) not in (int, float):
        raise reader.fail("its header's wall_start is not a number")
    columns = {name: array(code) for name, code in COLUMNS}
    names: dict[str, list[str]] = {kind: [] for kind in NAME_KINDS}
    end: dict[str, Any] | None = None
    while (record := reader.next_record()) is not None:
        kind, body = record
        if end is not None:
            raise reader.fail("there is more after its end record")
        if kind == b"C":
            _read_block(reader, body, columns, names)
        elif kind == b"E":
            end = reader.json(body, "end record")
        else:
            raise reader.fail(f"unknown record kind {kind!r} at byte {reader.at}")
    starts = columns["start"]
    columns["start"] = array("q", itertools.accumulate(starts))
    dropped = end.get("dropped", 0) if end is not None else 0
    reason = end.get("reason") if end is not None else None
    return CallLog(
        path=path,
        wall_start=None if wall_start is None else float(wall_start),
        source=str(header.get("source", "")),
        start=columns["start"],
        duration=columns["duration"],
        status=columns["status"],
        attempts=columns["attempts"],
        pattern=columns["pattern"],
        endpoint=columns["endpoint"],
        method=columns["method"],
        client=columns["client"],
        service=columns["service"],
        endpoints=tuple(names["endpoint"]),
        methods=tuple(names["method"]),
        clients=tuple(names["client"]),
        services=tuple(names["service"]),
        dropped=dropped if type(dropped) is int else 0,
        reason=reason if isinstance(reason, str) else None,
        complete=end is not None,
    )


def _read_block(reader: _Reader, body: bytes, columns: dict[str, array[int]], names: dict[str, list[str]]) -> None:
    where = f"the block at byte {reader.at - len(body) - _RECORD.size}"
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(body, _COUNTS.size)
        if len(head) < _COUNTS.size:
            raise reader.fail(f"{where} is damaged (too short)")
        count, names_length = _COUNTS.unpack(head)
        if count > _MAX_BLOCK_CALLS or names_length > _MAX_NAMES_BYTES:
            raise reader.fail(f"{where} is larger than a recorder writes")
        expected = names_length + count * CALL_BYTES
        raw = inflater.decompress(inflater.unconsumed_tail, expected + 1)
    except zlib.error:
        raise reader.fail(f"{where} is damaged (not zlib data)") from None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise reader.fail(f"{where} is damaged (its length does not match)")
    added = reader.json(raw[:names_length], f"names ({where})") if names_length else {}
    for kind, new in added.items():
        if kind not in names or not isinstance(new, list) or not all(isinstance(n, str) for n in new):
            raise reader.fail(f"{where} has names of an unknown kind or shape")
        names[kind].extend(new)
        if len(names[kind]) > MAX_NAMES:
            raise reader.fail(f"{where} names more than {MAX_NAMES:,} of kind {kind}")
    # Each column is checked whole (max runs at C speed), against what the file has named so far.
    limits = {
        "status": max(StatusCode) + 1,
        "pattern": len(PATTERNS),
        "endpoint": len(names["endpoint"]) + 1,
        **{kind: len(names[kind]) for kind in NAME_KINDS[1:]},
    }
    at = names_length
    for name, code in COLUMNS:
        size = array(code).itemsize * count
        column = _unshuffled(raw[at : at + size], code, count)
        at += size
        limit = limits.get(name)
        if limit is not None and count and max(column) >= limit:
            raise reader.fail(f"{where} has a call of an unknown {name}")
        columns[name].extend(column)
