"""What the commands print on stderr besides their own output: meshsim's warnings, one line each.

gRPC core (C++) logs to stderr by itself: an ERROR line for a port it cannot bind, an
INFO line for every refused TLS handshake, each printed before (or instead of)
meshsim's own one-line message about the same thing. Core reads GRPC_VERBOSITY and
GRPC_TRACE once, when grpc is first imported (setting them later changes nothing), so
the command group sets them before any command imports grpc. In grpcio 1.85 only
GRPC_VERBOSITY=NONE silences both lines: ERROR still prints the E lines.

meshsim's own modules log with `logging.getLogger(__name__)`; while a command runs,
every `meshsim.*` logger's lines at `--log-level` (info by default) and above come out
in one of two forms (`--log-format`): `text`, `meshsim: warning: ...` for a terminal,
or `json`, one object a line for machines: `time`, `level`, `logger`, `message` and the
facts the line is about (`fields`: an endpoint, a status, `trace_id` and `span_id`
where a call is involved). Either way without the traceback: an operator reads one
line, a developer sets GRPC_VERBOSITY or runs the code under a debugger.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sys
from collections.abc import Iterator

_GRPC_SETTINGS = ("GRPC_VERBOSITY", "GRPC_TRACE")
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


@contextlib.contextmanager
def configure_logging(form: str = "text", level_name: str = "info") -> Iterator[None]:
    """For the length of a command: gRPC core quiet unless the user asked otherwise, and meshsim's
    lines on stderr in `form` from `level_name` up. Undone at the end, for callers that run
    commands in their own process."""
    quieted = _quiet_grpc_core()
    logger = logging.getLogger("meshsim")
    handler: logging.Handler | None = None
    level = logger.level
    if not any(isinstance(present, (_OneLine, _JsonLines)) for present in logger.handlers):
        handler = _JsonLines() if form == "json" else _OneLine()
        logger.addHandler(handler)
        # Good news too ("replica ... is reachable again") by default, not only warnings.
        logger.setLevel(getattr(logging, level_name.upper()))
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
        if quieted:
            os.environ.pop("GRPC_VERBOSITY", None)


def _quiet_grpc_core() -> bool:
    """GRPC_VERBOSITY=NONE unless the user set it, or asked for traces, which NONE would hide too.
    True when it was set here. (Core reads an empty value as unset, and so does this.)"""
    if any(os.environ.get(name) for name in _GRPC_SETTINGS):
        return False
    os.environ["GRPC_VERBOSITY"] = "NONE"
    return True


class _JsonLines(logging.Handler):
    """One JSON object a line on the stderr of the moment: the line's facts as fields of their own."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line: dict[str, object] = {
                "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": " ".join(record.getMessage().splitlines()),
            }
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                line["error"] = f"{type(error).__name__}: {error}"
            fields = getattr(record, "fields", None)
            if isinstance(fields, dict):
                line.update((key, value) for key, value in fields.items() if key not in line)
            sys.stderr.write(json.dumps(line, default=str) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _OneLine(logging.Handler):
    """`meshsim: LEVEL: message` on the stderr of the moment (click's test runner replaces sys.stderr).

    Lines marked `on_stdout` (a start or a stop, which the command prints on stdout for a person)
    are for the JSON form alone: in a terminal they would say it twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "on_stdout", False):
            return
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                text = f"{text}: {type(error).__name__}: {error}"
            line = " ".join(text.splitlines())
            sys.stderr.write(f"meshsim: {record.levelname.lower()}: {line}\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)
