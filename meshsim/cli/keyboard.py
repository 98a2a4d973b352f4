"""Single keys from the terminal, for views that quit on `q`.

The terminal is put in cbreak mode (a key arrives without Enter, Ctrl-C still interrupts)
for as long as the view runs, and given back as it was however the view ends. Off a
terminal (stdin a pipe or /dev/null, or a system without termios) no key ever arrives and
the view runs until it is interrupted, as `top -b` does.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Callable, Iterator

# Reads one key, waiting at most the given seconds; None when none came.
KeyReader = Callable[[float], str | None]

# What a reader returns once the terminal is gone (as Ctrl-D, end of input): a view quits on it.
END = "\x04"


@contextlib.contextmanager
def keys() -> Iterator[KeyReader]:
    try:
        import termios
        import tty
    except ImportError:  # not a POSIX terminal
        yield _none
        return
    stream = sys.stdin
    if stream is None or not stream.isatty():
        yield _none
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield lambda timeout: _read(fd, timeout)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read(fd: int, timeout: float) -> str | None:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return None
    data = os.read(fd, 32)  # a key, or an escape sequence (arrows): only its first character counts
    return data[:1].decode(errors="replace") if data else END


def _none(timeout: float) -> str | None:
    time.sleep(timeout)
    return None
