"""A program in a real terminal of a chosen size: a tmux session whose screen a test reads back.

tmux is what a clean CI machine may lack, so `ensure_tmux()` installs it with apt-get the
way benchmarks/install-tools installs what the benchmarks drive (as root, or through
passwordless sudo). Each `Terminal` has a tmux server of its own (its own socket), so tests
never see each other's sessions nor a user's, and closing it ends only what it started.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.conftest import ROOT

_SOCKETS = itertools.count()


def ensure_tmux() -> str:
    """The path of tmux, installed with apt-get first if it is missing."""
    found = shutil.which("tmux")
    if found:
        return found
    apt = shutil.which("apt-get")
    assert apt, "the terminal tests need tmux: install it with this system's package manager"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", "tmux"]):
        done = subprocess.run([*sudo, apt, *step], capture_output=True, text=True, timeout=600, check=False, env=env)
        assert done.returncode == 0, f"apt-get {step[0]} failed (tmux is needed):\n{done.stderr}"
    found = shutil.which("tmux")
    assert found, "apt-get installed tmux, but it is not on PATH"
    return found


class Terminal:
    """`command` running in a `width` x `height` terminal; its exit status and stderr are kept in
    `scratch`, the pane kept open after it ends so that its last screen can still be read."""

    def __init__(self, tmux: str, command: Sequence[str], width: int, height: int, scratch: Path) -> None:
        self._tmux = [tmux, "-L", f"meshsim-test-{os.getpid()}-{next(_SOCKETS)}", "-f", os.devnull]
        self._status = scratch / "status"
        self.stderr_path = scratch / "stderr"
        # COLUMNS and LINES would fix the width rich draws for: the terminal's own size must decide.
        # The shell outlives a Ctrl-C meant for the command (a trap, unlike an ignored signal, is
        # not inherited), so the command's status is still written.
        script = (
            f"unset COLUMNS LINES; trap true INT; {shlex.join(command)} 2>{shlex.quote(str(self.stderr_path))}; "
            f"echo $? >{shlex.quote(str(self._status))}; sleep 600"
        )
        self._run("new-session", "-d", "-x", str(width), "-y", str(height), "-c", str(ROOT), "sh", "-c", script)

    def _run(self, *args: str) -> str:
        done = subprocess.run([*self._tmux, *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    def screen(self) -> str:
        """What the terminal shows now, a line per row, trailing blanks dropped."""
        return self._run("capture-pane", "-p")

    def wait_for(self, shown: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        """The first screen for which `shown` holds; fails after `timeout` with the last one seen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if shown(screen):
                return screen
            assert time.monotonic() < deadline, f"no {what} in {timeout} s; the screen:\n{screen}"
            time.sleep(0.1)

    def press(self, key: str) -> None:
        self._run("send-keys", key)

    def exit_status(self, timeout: float = 10.0) -> int:
        """The command's exit status once it has ended."""
        deadline = time.monotonic() + timeout
        while not self._status.exists() or not self._status.read_text().strip():
            assert time.monotonic() < deadline, f"still running after {timeout} s:\n{self.screen()}"
            time.sleep(0.05)
        return int(self._status.read_text())

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace") if self.stderr_path.exists() else ""

    def close(self) -> None:
        """End this terminal's tmux server, and with it what still runs in it."""
        subprocess.run([*self._tmux, "kill-server"], capture_output=True, timeout=10, check=False)
