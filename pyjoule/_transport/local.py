"""Run commands on this machine. Every command pyjoule starts goes through
:func:`spawn` or :func:`run`, and is logged at DEBUG in its shell-quoted form."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from typing import Sequence

log = logging.getLogger("pyjoule")


def spawn(argv: Sequence[str], *, log_path: str, env: dict | None = None,
          cwd: str | None = None) -> subprocess.Popen:
    """Start ``argv`` detached in its own session (so its group can be killed, and a
    terminal's Ctrl-C reaches only the driver, which then decides what to stop)."""
    log.debug("spawn: %s", shlex.join(argv))
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)


def kill_group(pid: int, grace_s: float = 2.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            _reap(pid)
            time.sleep(0.02)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
