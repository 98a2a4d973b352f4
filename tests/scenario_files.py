"""Scenario files for the validation tests: a small valid scenario with one part made wrong.

`scenario_text` builds the text from `BASE` and the parts given; `Files` writes it under a
directory, loads it, and returns the one-line error without its `FILE: ` prefix (which it
checks). conftest.py makes these the `files` and `bad` fixtures.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pytest

from meshsim.core.scenario import Scenario, ScenarioError
from meshsim.core.scenario_loader import load_scenario

DROP: Final[Any] = object()
"""An override value that removes the key instead of setting it."""

BASE: Final[Mapping[str, Any]] = {
    "schema": "meshsim/v1",
    "duration": "10s",
    "service": [{"name": "api", "replicas": 3}],
    "client": [{"name": "web", "rate": 100}],
}
"""The minimal valid scenario every test starts from: 10 s, api/0..api/2, one open-loop client."""

KILL: Final[Mapping[str, Any]] = {"at": "1s", "action": "kill", "target": "api/0"}
CHECK: Final[Mapping[str, Any]] = {"metric": "success_rate", "op": ">=", "value": 0.99}

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

Table = Mapping[str, Any]


def toml_value(value: Any) -> str:
    """Just enough TOML for the tests: scalars, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: Table) -> str:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not is_table_array(v)]
    for key, value in data.items():
        if is_table_array(value):
            for table in value:
                lines += ["", f"[[{toml_key(key)}]]"]
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def merged(base: Table, overrides: Table | None) -> dict[str, Any]:
    result = dict(base)
    for key, value in (overrides or {}).items():
        if value is DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def scenario_text(
    *,
    top: Table | None = None,
    service: Table | None = None,
    client: Table | None = None,
    faults: Sequence[Table] = (),
    asserts: Sequence[Table] = (),
) -> str:
    """BASE with `service`/`client` merged into the first [[service]]/[[client]], the given
    [[fault]]s and [[assert]]s added, then `top` merged at the top level (DROP removes a key)."""
    data = copy.deepcopy(dict(BASE))
    data["service"] = [merged(data["service"][0], service)]
    data["client"] = [merged(data["client"][0], client)]
    if faults:
        data["fault"] = [dict(f) for f in faults]
    if asserts:
        data["assert"] = [dict(a) for a in asserts]
    return to_toml(merged(data, top))


class Files:
    """Writes scenario files under tmp_path and loads them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._names: Iterator[int] = iter(range(10_000))

    def write(self, text: str, name: str | None = None) -> Path:
        path = self.root / (name or f"scenario{next(self._names)}.toml")
        path.write_text(text, encoding="utf-8")
        return path

    def load(self, **parts: Any) -> Scenario:
        return load_scenario(self.write(scenario_text(**parts)))

    def error_of(self, path: Path) -> str:
        """The message loading `path` fails with, minus its `PATH: ` prefix (which is checked)."""
        with pytest.raises(ScenarioError) as caught:
            load_scenario(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: "), message
        assert "\n" not in message
        return message.removeprefix(f"{path}: ")

    def error(self, **parts: Any) -> str:
        return self.error_of(self.write(scenario_text(**parts)))

    def text_error(self, text: str) -> str:
        return self.error_of(self.write(text))


def fault(**changes: Any) -> dict[str, Any]:
    return merged(KILL, changes)
