"""Helper functions the test files share (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _script(folder: Path, source: str, name: str, env: dict | None) -> tuple[Path, dict]:
    """``source`` written to ``folder/name``, and the environment to run it in: this
    one, with pyjoule (the checkout) and ``folder`` importable, and ``env``."""
    script = folder / name
    script.write_text(textwrap.dedent(source))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(folder)])
    full_env.update(env or {})
    return script, full_env


def run_script(folder: Path, source: str, *, timeout: float = 120, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``source`` as ``__main__`` of a script in ``folder``, in a fresh interpreter."""
    script, full_env = _script(folder, source, "script.py", env)
    proc = subprocess.run([sys.executable, str(script)], cwd=folder, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


_started: list[subprocess.Popen] = []


def start_script(folder: Path, source: str, *args: str, name: str = "script.py",
                 env: dict | None = None) -> subprocess.Popen:
    """Start ``source`` as ``__main__`` of ``folder/name`` with ``args``, in a fresh
    interpreter, and return at once; its output is piped (text). The test's end
    closes it (:func:`close_started`)."""
    script, full_env = _script(folder, source, name, env)
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=folder, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started.append(proc)
    return proc


def close_started() -> None:
    """Kill what :func:`start_script` started and is still running, and close its
    pipes: a test that kills a script and never reads it back leaves them open
    (a ResourceWarning, an error in this suite)."""
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def uv_project(root: Path, name: str) -> Path:
    """A user's project at ``root``, locked with real uv: what a study run on the test
    host needs (cloudpickle, threadpoolctl)."""
    from sshd_server import _local_uv

    root.mkdir()
    (root / "pyproject.toml").write_text(
        f"[project]\nname = '{name}'\nversion = '0'\nrequires-python = '>=3.10'\n"
        "dependencies = ['cloudpickle>=3', 'threadpoolctl>=3.1']\n")
    subprocess.run([str(_local_uv()), "lock", "--quiet"], cwd=root, check=True)
    return root


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


def run_ids(cache: Path) -> set[str]:
    """The ids of the runs ``cache`` has (a run directory, or a row of its index)."""
    ids = {p.name for p in (cache / "runs").glob("*")}
    try:
        with sqlite3.connect(f"{(cache / 'index.sqlite').as_uri()}?mode=ro", uri=True,
                             timeout=30) as db:
            ids |= {row[0] for row in db.execute("SELECT run_id FROM runs")}
    except sqlite3.OperationalError:  # no index yet
        pass
    return ids


def host_workers(sshd, cache: Path) -> list[str]:
    """The worker processes on the test host of runs of ``cache``, as ``pgrep -a``
    shows them: other test sessions may run theirs on the same host meanwhile."""
    lines = sshd.run("pgrep -u pjhost -af 'pyjoule[.]worker' || true").stdout.splitlines()
    ids = run_ids(cache)
    return [line for line in lines if any(f"/runs/{run_id}" in line for run_id in ids)]


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
    proc = start_script(folder, SLEEPER, *args, name="sleeper.py",
                        env={"PYJOULE_CACHE": str(cache), "PYJOULE_PROGRESS": "0", **(env or {})})
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    wait_for_launched(cache)
    return proc


def processes():
    """``(pid, ppid, name, state, cmdline)`` of every process, read from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            name = stat[stat.index(b"(") + 1:stat.rindex(b")")]
            state, ppid = stat[stat.rindex(b")") + 2:].split()[:2]
        except (OSError, ValueError):
            continue
        yield int(entry), int(ppid), name, state, cmd
