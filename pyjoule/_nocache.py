"""The throw-away cache of ``cache=False``: a private directory per call.

``pyjoule-nocache-*`` in the system's temporary folder, 0700, with an ``owner`` file
(0600: the pid and start time of the calling process). Nobody but that call can use
its results, so unlike a cached run its pool does not outlive the caller: the pool's
supervisor dies with the caller and removes the directory (``worker.run``'s
``orphan_dir``). If that fails too (the pool was killed as well), the next
``cache=False`` call removes the directories whose owner is dead.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile

from . import _platform

log = logging.getLogger("pyjoule")

PREFIX = "pyjoule-nocache-"


def create() -> str:
    """A new throw-away cache directory, registered with the local pool."""
    from ._backends import pool

    remove_stale()
    folder = tempfile.mkdtemp(prefix=PREFIX)  # 0700
    pid = os.getpid()
    fd = os.open(os.path.join(folder, "owner"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{pid} {_platform.process_start_time(pid)}\n")
    pool.throwaway(folder)
    return folder


def remove(folder: str) -> None:
    from ._backends import pool

    pool.throwaway(folder, add=False)
    shutil.rmtree(folder, ignore_errors=True)


def remove_stale() -> int:
    """Remove this user's ``pyjoule-nocache-*`` directories whose owner process is dead
    (a caller killed with ``kill -9`` whose pool was killed too); return how many. Only
    real directories of this user with an ``owner`` file are candidates: never another
    user's, never one being created just now."""
    root = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith(PREFIX)]
    except OSError:
        return 0
    removed = 0
    for name in names:
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            with open(os.path.join(path, "owner")) as fh:
                pid_text, start = (fh.read().split() + [""])[:2]
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _platform.is_running(pid, start):
            log.debug("removing %s: its owner, process %d, is gone", path, pid)
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
