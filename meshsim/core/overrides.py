"""`--set KEY=VALUE`: a scenario key changed on the command line, by its dotted path in the TOML.

An override changes the parsed TOML data, not the frozen model, so that the scenario
loader checks an overridden value exactly as it checks one written in the file: every
bad value is refused by the same code, with the same one line naming the key. The
value is read as a TOML value when it is one (`3`, `0.5`, `true`, `"p2c"`, `["A"]`)
and as a bare string otherwise (`round_robin`, `250ms`), which is what a shell user
types. Only this module knows the `--set` syntax; `meshsim run` takes one value per
key, `meshsim sweep` a comma-separated list of them.
"""

from __future__ import annotations

import copy
import difflib
import re
import shlex
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs

from meshsim.core.config import shown
from meshsim.core.scenario import ScenarioError

MAX_VALUES = 100  # values of one --set: a sweep of more is a different experiment
_SEGMENT = re.compile(r"([A-Za-z0-9_-]+)(?:\[(\d{1,6})\])?")


@attrs.frozen
class Assignment:
    """One key set to one value, kept as the text the user wrote (so that the command that
    reproduces a run can say it again) and parsed when applied."""

    key: str
    text: str

    @property
    def value(self) -> Any:
        return parse_value(self.text)

    @property
    def flag(self) -> str:
        """The `--set` argument that asks for this again, quoted for a POSIX shell."""
        return f"--set {shlex.quote(f'{self.key}={self.text}')}"

    def __str__(self) -> str:
        return f"{self.key}={self.text}"


def parse_value(text: str) -> Any:
    """`text` as a TOML value when it is one, else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return text


def parse_set(argument: str) -> tuple[Assignment, ...]:
    """`KEY=V1,V2,...` as one assignment per value (commas inside brackets, braces or quotes
    belong to the value); ValueError with the reason on bad syntax."""
    key, equals, values = argument.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ValueError(f"expected KEY=VALUE (e.g. balancer.policy=p2c), got {argument!r}")
    check_key(key)
    texts = _split(values)
    if any(not text for text in texts):
        raise ValueError(f"{key}: a value is empty in {values!r}")
    if len(texts) > MAX_VALUES:
        raise ValueError(f"{key}: at most {MAX_VALUES} values, got {len(texts)}")
    if len(set(texts)) != len(texts):
        raise ValueError(f"{key}: a value is given twice in {values!r}")
    return tuple(Assignment(key, text) for text in texts)


def check_key(key: str) -> None:
    """A dotted path of names, each optionally indexed (`service[0].replicas`); ValueError if not."""
    for segment in key.split("."):
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(f"{key}: expected a dotted key path like retry.max_attempts or service[0].replicas")


def _split(values: str) -> list[str]:
    """Split on the commas outside brackets, braces and quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current: list[str] = []
    for char in values:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def apply_overrides(data: dict[str, Any], assignments: Sequence[Assignment], path: Path) -> dict[str, Any]:
    """A copy of the TOML `data` of the file at `path` with each assignment made. A table on the
    way that is not there is made (so `retry.max_attempts` works in a file without [retry]); a
    key the scenario does not know is left for the loader to refuse, with its did-you-mean."""
    data = copy.deepcopy(data)
    for assignment in assignments:
        _assign(data, assignment, path)
    return data


def _assign(data: dict[str, Any], assignment: Assignment, path: Path) -> None:
    segments = [_SEGMENT.fullmatch(segment) for segment in assignment.key.split(".")]
    table: dict[str, Any] = data
    walked = ""
    for number, match in enumerate(segments):
        if match is None:  # check_key refuses these; a caller may have built an Assignment by hand
            _fail(path, assignment, "is not a dotted key path")
        name, index = match.group(1), match.group(2)
        walked = f"{walked}.{name}" if walked else name
        last = number == len(segments) - 1
        if index is None:
            if last:
                table[name] = assignment.value
                return
            value = table.setdefault(name, {})
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
                _fail(path, assignment, f"{walked} is an array of tables: name one, as in {walked}[0]")
        else:
            items = table.get(name)
            if items is None:
                _fail(path, assignment, _unknown(walked, name, table))
            if not isinstance(items, list):
                _fail(path, assignment, f"{walked} is not an array, so it has no [{index}]")
            position = int(index)
            if position >= len(items):
                _fail(path, assignment, f"the file has {len(items)} {walked} entries, so no {walked}[{index}]")
            walked = f"{walked}[{index}]"
            if last:
                items[position] = assignment.value
                return
            value = items[position]
        if not isinstance(value, dict):
            _fail(path, assignment, f"{walked} is not a table, so it has no keys to set")
        table = value


def _unknown(walked: str, name: str, table: dict[str, Any]) -> str:
    """An indexed name the file lacks: a typo for one of its arrays, as the loader says of other keys."""
    hint = difflib.get_close_matches(name, sorted(k for k, v in table.items() if isinstance(v, list)), n=1)
    suggestion = f" (did you mean {shown(hint[0])}?)" if hint else ""
    where = "" if walked == name else f"{walked}: "
    return f"{where}unknown key{suggestion}"


def _fail(path: Path, assignment: Assignment, message: str) -> NoReturn:
    raise ScenarioError(f"{path}: {assignment.key}: {message} (--set {assignment})")


def mention(message: str, assignments: Sequence[Assignment]) -> str:
    """A loader's error, with the `--set` that put the value there when the error names its key, or
    every `--set` in effect when it names another (`duration=1s` makes a fault's `at` too late)."""
    for assignment in assignments:
        if f": {assignment.key}: " in message or f": {assignment.key}[" in message:
            return f"{message} (--set {assignment})"
    return f"{message} (with --set {', '.join(str(a) for a in assignments)})"
