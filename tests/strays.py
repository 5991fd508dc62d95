"""Which pyjoule worker processes a test session started, for the check that no worker
outlives its test (``no_stray_workers`` in conftest.py).

The machine is shared: another pytest, or someone's run over the test sshd, may have
workers running meanwhile. Those are not this session's to judge. A worker is this
session's when

- it descends from this process (a pool worker, forked or started);
- its environment carries this session's mark (:data:`MARK`, set in ``os.environ``
  at start-up, so everything the tests start inherits it: a worker left behind by a
  killed script, adopted by init, still has it);
- its run directory is under this session's temporary folder, or its run id (the run
  directory's name) is one of a cache there: a worker on the test sshd or a SLURM
  node runs in ``<workdir>/runs/<run id>``, detached from us, under another user.

psutil, not /proc, so that it works where the suite runs on a Mac too (on Linux the
list of workers is read from /proc: it is taken twice per test).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from pathlib import Path

import psutil

MARK = "PYJOULE_TEST_SESSION"
WORKER = "pyjoule.worker"  # started workers show it in their command line
NAME = "pyjoule-worker"  # forked ones by their name (Linux)


def mark_session() -> str:
    """Give this process (and so all it starts) a mark of its own."""
    os.environ[MARK] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return os.environ[MARK]


def worker_pids() -> set[int]:
    """Every live pyjoule worker process on the machine, whoever started it."""
    if sys.platform.startswith("linux"):
        return _worker_pids_from_proc()
    found = set()
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["name"] == NAME or any(WORKER in arg for arg in info["cmdline"] or ()):
            found.add(proc.pid)
    return found


def _worker_pids_from_proc() -> set[int]:
    """:func:`worker_pids` read from /proc: the check runs twice per test, and this
    takes half the time of psutil's (which reads more of each process)."""
    from helpers import processes

    name, worker = NAME.encode(), WORKER.encode()
    return {pid for pid, _, comm, state, cmdline in processes()
            if state != b"Z" and (comm == name or worker in cmdline)}


def _descendants() -> set[int]:
    try:
        return {child.pid for child in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return set()


def _run_dir(cmdline: list[str]) -> str:
    """The argument after ``pyjoule.worker``: the worker's run directory."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == WORKER:
            return cmdline[i + 1]
    return ""


def _cache_has_run(root: Path, run_id: str) -> bool:
    """A cache under ``root`` has (or had: its index keeps the row) run ``run_id``."""
    if not run_id or not run_id.replace("-", "").isalnum():  # as _dispatch names them
        return False
    if next(root.glob(f"**/runs/{run_id}"), None) is not None:
        return True
    for index in root.glob("**/index.sqlite"):
        try:
            with sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=1) as db:
                if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                    return True
        except sqlite3.Error:
            continue
    return False


class Owner:
    """Decides, once per process, whether a worker is this session's (``root``: its
    temporary folder)."""

    def __init__(self, root: Path):
        self.root = root
        self.mark = os.environ.get(MARK)
        self.known: dict[int, bool] = {}
        self.runs: dict[str, bool] = {}

    def ours(self, pids: set[int]) -> set[int]:
        if pids - self.known.keys():
            family = _descendants()
            for pid in pids - self.known.keys():
                self.known[pid] = pid in family or self._claims(pid)
        return {pid for pid in pids if self.known[pid]}

    def _claims(self, pid: int) -> bool:
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
        except psutil.Error:
            return False
        try:
            if self.mark and proc.environ().get(MARK) == self.mark:
                return True
        except psutil.Error:  # another user's, where we are not root
            pass
        run_dir = _run_dir(cmdline)
        if not run_dir:
            return False
        if run_dir.startswith(str(self.root)):
            return True
        run_id = os.path.basename(run_dir.rstrip("/"))
        if run_id not in self.runs:
            self.runs[run_id] = _cache_has_run(self.root, run_id)
        return self.runs[run_id]
