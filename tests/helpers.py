"""Helper functions the test files share (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wait_for_launched(cache: Path, timeout: float = 60) -> None:
    """Until a run of ``cache`` is recorded ``running`` (launched), not ``starting``:
    a kill in between is another fault (the run is settled as never started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"{(cache / 'index.sqlite').as_uri()}?mode=ro", uri=True,
                                 timeout=30) as db:
                if db.execute("SELECT 1 FROM runs WHERE state = 'running'").fetchone():
                    return
        except sqlite3.OperationalError:  # no index, or no table yet
            pass
        time.sleep(0.05)
    raise AssertionError("the run was never recorded running")


SLEEPER = """
import sys, time
import pyjoule as pj

@pj.experiment(workers=1, host=sys.argv[1] if len(sys.argv) > 1 else None)
def wait(i):
    time.sleep(120)
    return i

print("ready", flush=True)
wait.sweep(i=[0])
"""


def start_sleeper(folder: Path, cache: Path, *args: str, env: dict | None = None
                  ) -> subprocess.Popen:
    """A script whose one pset sleeps two minutes in ``cache`` (``args``: a host);
    returns once its run is launched, so that killing it leaves the worker alone."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sleeper.py").write_text(SLEEPER)
    full = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{folder}",
                PYJOULE_CACHE=str(cache), PYJOULE_PROGRESS="0")
    full.update(env or {})
    proc = subprocess.Popen([sys.executable, "sleeper.py", *args], cwd=folder, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    wait_for_launched(cache)
    return proc
