"""Checked config files: the reader every meshsim file goes through, scenario or proxy config.

A `Table` hands out typed values, each checked against its range, and fails with one
line naming the file and the key path (`fault[2].at: ...`). Every key is checked:
unknown keys are errors (with a suggestion), never ignored, because a misspelt
`unhealthy_treshold` silently falling back to a default is exactly the kind of
surprise meshsim exists to prevent. The bounds below keep reading any file finite,
whatever is in it (docs/scenarios.md, "What a file may ask for").
"""

from __future__ import annotations

import difflib
import math
import reprlib
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from meshsim.core.errors import ConfigError
from meshsim.core.status import StatusCode
from meshsim.core.units import format_duration, parse_duration

MISSING: Any = object()
T = TypeVar("T")

# Bounds that keep every file's reading finite and every accepted run within a laptop's means.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 16  # tables and arrays inside each other; real configs use four or five
MAX_DURATION = 7 * 24 * 3600.0  # any duration: a simulated week
MAX_INTEGER = 2**31 - 1  # any integer a key takes, unless the key says less
MAX_REPLICAS = 10_000  # per service
MAX_WEIGHT = 1_000_000
MAX_RING_SIZE = 2**20  # gRPC's ring_hash allows up to 8M entries; a million is plenty in a simulation
MAX_PUSHBACK_MS = 86_400_000
MIN_INTERVAL = 0.001  # health checks and outlier sweeps: a thousand a second at most

# How a value is shown in an error: a line, never the whole of something huge.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 3, 48, 48, 24
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4


def shown(value: object) -> str:
    """`value` as an error message quotes it: repr, cut to fit a line."""
    try:
        text = _SHOWN.repr(value)
    except ValueError:  # an integer too long for str() at all
        return "a number with thousands of digits"
    return text if len(text) <= 60 else text[:59] + "…"


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _type_name(value: object) -> str:
    for kind, name in _TYPE_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


class Table:
    """A TOML table plus where it sits in the file, handing out typed, checked values."""

    def __init__(
        self, file: Path, data: dict[str, Any], keypath: str = "", error: type[ConfigError] = ConfigError
    ) -> None:
        """`error`: what `fail` raises (the kind of file: ScenarioError, ProxyConfigError)."""
        self.file = file
        self.data = data
        self.keypath = keypath
        self.error = error
        self._read: set[str] = set()

    def path_of(self, key: str) -> str:
        return f"{self.keypath}.{key}" if self.keypath else key

    def fail(self, key: str | None, message: str) -> NoReturn:
        where = self.path_of(key) if key is not None else (self.keypath or "top level")
        raise self.error(f"{self.file}: {where}: {message}")

    def has(self, key: str) -> bool:
        self._read.add(key)  # asked about, so a near miss gets a "did you mean"
        return key in self.data

    def raw(self, key: str, default: Any = MISSING) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            written = [k for k in self.data if isinstance(k, str) and k not in self._read]
            hint = difflib.get_close_matches(key, written, n=1)
            self.fail(key, f"is required (is {shown(hint[0])} a misspelling of it?)" if hint else "is required")
        return default

    def string(self, key: str, default: Any = MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_type_name(value)} {shown(value)}")
        return value

    def integer(self, key: str, default: Any = MISSING, minimum: int | None = None, maximum: int = MAX_INTEGER) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        if type(value) is not int:
            self.fail(key, f"expected an integer, got {_type_name(value)} {shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {shown(value)}")
        if value > maximum:
            self.fail(key, f"must be at most {maximum:,}, got {shown(value)}")
        return value

    def number(
        self,
        key: str,
        default: Any = MISSING,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        if type(value) not in (int, float):
            self.fail(key, f"expected a number, got {_type_name(value)} {shown(value)}")
        try:
            value = float(value)
        except OverflowError:
            self.fail(key, f"is too large a number, got {shown(value)}")
        if not math.isfinite(value):
            self.fail(key, f"expected a number, got a number {shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            self.fail(key, f"must be at most {maximum:g}, got {value:g}")
        if above is not None and value <= above:
            self.fail(key, f"must be greater than {above:g}, got {value:g}")
        return float(value)

    def boolean(self, key: str, default: Any = MISSING) -> Any:
        value = self.raw(key, default)
        if type(value) is not bool:
            self.fail(key, f"expected true or false, got {_type_name(value)} {shown(value)}")
        return value

    def duration(self, key: str, default: Any = MISSING, positive: bool = False, minimum: float = 0.0) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        return self.convert_duration(key, value, positive, minimum)

    def convert_duration(self, key: str, value: object, positive: bool = False, minimum: float = 0.0) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.fail(key, f'expected a duration like "10s", got {shown(value)}')
        if positive and seconds <= 0:
            self.fail(key, f"must be greater than 0s, got {shown(value)}")
        if seconds < minimum:
            self.fail(key, f"must be at least {format_duration(minimum)}, got {shown(value)}")
        if seconds > MAX_DURATION:
            self.fail(key, f"must be at most {format_duration(MAX_DURATION)} (7 days), got {shown(value)}")
        return seconds

    def choice(self, key: str, options: Iterable[str], default: Any = MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        options = tuple(options)
        if value not in options:
            self.fail(key, f"expected one of {', '.join(options)}, got {shown(value)}")
        return value

    def status(self, key: str, default: StatusCode) -> StatusCode:
        value = self.raw(key, default)
        if isinstance(value, StatusCode):
            return value
        try:
            return StatusCode.parse(str(value))
        except ValueError:
            self.fail(key, f'expected a gRPC status code like "UNAVAILABLE", got {shown(value)}')

    def statuses(self, key: str, default: frozenset[StatusCode]) -> frozenset[StatusCode]:
        value = self.raw(key, None)
        if value is None:
            return default
        if not isinstance(value, list):
            self.fail(key, f'expected an array of gRPC status codes like ["UNAVAILABLE"], got {shown(value)}')
        codes = set()
        for index, item in enumerate(value):
            try:
                codes.add(StatusCode.parse(str(item)))
            except ValueError:
                self.fail(f"{key}[{index}]", f'expected a gRPC status code like "UNAVAILABLE", got {shown(item)}')
        return frozenset(codes)

    def names(
        self, key: str, options: tuple[str, ...] | None, default: tuple[str, ...] | None
    ) -> tuple[str, ...] | None:
        """A non-empty array of names, each one of `options` (any non-empty string if None)."""
        value = self.raw(key, None)
        if value is None:
            return default
        among = "" if options is None else f" from {', '.join(options)}"
        if not isinstance(value, list) or not value:
            self.fail(key, f"expected a non-empty array of names{among}, got {shown(value)}")
        for index, item in enumerate(value):
            if options is None:
                if not isinstance(item, str) or not item:
                    self.fail(f"{key}[{index}]", f"expected a non-empty string, got {shown(item)}")
            elif item not in options:
                self.fail(f"{key}[{index}]", f"expected one of {', '.join(options)}, got {shown(item)}")
        return tuple(value)

    def table(self, key: str, default: Any = MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not MISSING:
            return value
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_type_name(value)} {shown(value)}")
        return Table(self.file, value, self.path_of(key), self.error)

    def tables(self, key: str) -> list[Table]:
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected [[{key}]] tables, got {_type_name(value)}")
        return [Table(self.file, v, f"{self.path_of(key)}[{i}]", self.error) for i, v in enumerate(value)]

    def done(self) -> None:
        """Fail on the first key nobody asked for."""
        for key in self.data:
            if not isinstance(key, str):
                self.fail(str(key), f"a key must be a name, got {_type_name(key)} {shown(key)}")
            if key not in self._read:
                hint = difflib.get_close_matches(key, sorted(self._read), n=1)
                suggestion = f" (did you mean {shown(hint[0])}?)" if hint else ""
                self.fail(key, f"unknown key{suggestion}")


def read_text(path: Path, error: type[ConfigError] = ConfigError) -> str:
    """A config file's text; a file that cannot be read is an `error` naming it."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as problem:
        raise error(f"{path}: cannot read: {problem.strerror or problem}") from None
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; a config file is not that long")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text (byte {problem.start})") from None
    if not text.strip():
        raise error(f"{path}: the file is empty")
    return text


def toml_table(path: Path, text: str, error: type[ConfigError] = ConfigError) -> Table:
    """The top-level table of a TOML file; text that is not TOML is an `error` naming the file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{path}: not valid TOML: {problem}") from None
    except ValueError:  # Python's limit on the digits of an integer
        raise error(f"{path}: not valid TOML: a number with thousands of digits") from None
    except RecursionError:
        raise error(f"{path}: tables or arrays nested too deeply (at most {MAX_DEPTH} levels)") from None
    check_depth(path, data, error)
    return Table(path, data, error=error)


def check_depth(path: Path, data: object, error: type[ConfigError] = ConfigError) -> None:
    """Refuse values nested more than MAX_DEPTH deep, naming the key where the nesting starts."""
    stack: list[tuple[object, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{path}: {where or 'top level'}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, where or str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, where) for v in value)


def optional_table(parent: Table, key: str, build: Callable[[Table], T]) -> T | None:
    """`build` the sub-table `key` when it is there (checking it has no unknown keys), else None."""
    table = parent.table(key, None)
    if table is None:
        return None
    result = build(table)
    table.done()
    return result
