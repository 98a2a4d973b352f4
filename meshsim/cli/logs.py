"""What the commands print on stderr besides their own output: meshsim's warnings, one line each.

gRPC core (C++) logs to stderr by itself: an ERROR line for a port it cannot bind, an
INFO line for every refused TLS handshake, each printed before (or instead of)
meshsim's own one-line message about the same thing. Core reads GRPC_VERBOSITY and
GRPC_TRACE once, when grpc is first imported (setting them later changes nothing), so
the command group sets them before any command imports grpc. In grpcio 1.85 only
GRPC_VERBOSITY=NONE silences both lines: ERROR still prints the E lines.

meshsim's own modules log with `logging.getLogger(__name__)`; while a command runs,
every `meshsim.*` logger's news, warnings and errors come out as `meshsim: warning: ...`,
without the traceback: an operator reads one line, a developer sets GRPC_VERBOSITY or
runs the code under a debugger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

_GRPC_SETTINGS = ("GRPC_VERBOSITY", "GRPC_TRACE")


@contextlib.contextmanager
def configure_logging() -> Iterator[None]:
    """For the length of a command: gRPC core quiet unless the user asked otherwise, and meshsim's
    warnings on stderr. Undone at the end, for callers that run commands in their own process."""
    quieted = _quiet_grpc_core()
    logger = logging.getLogger("meshsim")
    handler = None
    level = logger.level
    if not any(isinstance(present, _OneLine) for present in logger.handlers):
        handler = _OneLine()
        logger.addHandler(handler)
        # Good news too ("replica ... is reachable again"), not only warnings.
        logger.setLevel(logging.INFO)
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


class _OneLine(logging.Handler):
    """`meshsim: LEVEL: message` on the stderr of the moment (click's test runner replaces sys.stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
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
