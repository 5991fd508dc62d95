"""A driver killed while it starts a run: nothing is run twice, nothing is lost.

The run is registered ``starting`` when its psets are claimed and ``running`` once its
backend started. A driver killed in between leaves a worker that may or may not have
started (a forked pool, a detached worker on a host, a submitted SLURM array). The next
call must find out which, from the run directory's fate (the first of the worker's
``started`` and the settler's ``abandoned`` stands), and follow the run or free its
psets; never both. ``PYJOULE_FAULT`` makes the driver SIGKILL itself at the named point
(pyjoule/_faults.py), so each window is hit every time, and each case runs repeatedly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, ensure_slurm

POINTS = ["launch:before-start", "launch:started"]

STUDY = """
    import os, sys, time
    import pyjoule as pj

    LOG = {log!r}

    @pj.experiment({options})
    def slow(i):
        import os
        with open(os.path.expanduser(LOG), "a") as fh:
            fh.write(f"{{i}}\\n")
        time.sleep(0.2)
        return i * 10

    ds = slow.sweep(i=range({n}))
    runs = pj.runs()
    print("finished", int(ds.result.sum()), sorted(runs.state), flush=True)
"""


def _script(folder: Path, log: str, options: str, n: int) -> Path:
    path = folder / "study.py"
    path.write_text(textwrap.dedent(STUDY.format(log=log, options=options, n=n)))
    return path


def _call(folder: Path, script: Path, fault: str | None = None, timeout: float = 240):
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{folder}")
    env.pop("PYJOULE_FAULT", None)
    if fault:
        env["PYJOULE_FAULT"] = fault
    env["PYJOULE_LOG_LEVEL"] = "INFO"
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", str(script)], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # where it hangs: every thread's stack, on stderr
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"the call did not end in {timeout} s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _killed_then_called_again(folder: Path, script: Path, point: str, n: int,
                              calls) -> str:
    killed = _call(folder, script, fault=point)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    again = _call(folder, script)
    assert again.returncode == 0, again.stderr
    assert f"finished {sum(i * 10 for i in range(n))}" in again.stdout, again.stderr
    assert "starting" not in again.stdout and "running" not in again.stdout, again.stdout
    ran = Counter(calls())
    assert sorted(ran) == [str(i) for i in sorted(range(n), key=str)], ran
    twice = {i: c for i, c in ran.items() if c > 1}
    assert not twice, f"psets run twice after a kill at {point}: {twice}"
    return again.stdout


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("attempt", range(3))
def test_pool_driver_killed_while_starting(tmp_path, monkeypatch, point, attempt):
    monkeypatch.setenv("PYJOULE_CACHE", str(tmp_path / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    log = tmp_path / "calls.txt"
    script = _script(tmp_path, str(log), "workers=2", 8)
    _killed_then_called_again(tmp_path, script, point, 8,
                              lambda: log.read_text().split() if log.exists() else [])


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("attempt", range(2))
def test_ssh_driver_killed_while_starting(remote_project, sshd, point, attempt):
    name = f"pj-calls-{os.getpid()}-{attempt}-{point.replace(':', '-')}.txt"
    log = sshd.home / name
    subprocess.run(["rm", "-f", str(log)], check=True)
    script = _script(remote_project, f"~/{name}", 'host="pjtest", workers=2', 8)
    try:
        _killed_then_called_again(remote_project, script, point, 8,
                                  lambda: log.read_text().split() if log.exists() else [])
    finally:
        subprocess.run(["rm", "-f", str(log)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_slurm_driver_killed_while_starting(tmp_path, monkeypatch, point):
    from pyjoule._backends import slurm as backend

    backend.reset_facts()
    ensure_slurm()
    monkeypatch.setenv("PYJOULE_CACHE", str(tmp_path / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.3")
    log = tmp_path / "calls.txt"
    script = _script(tmp_path, str(log), 'slurm={"time": "5"}, workers=2', 6)
    _killed_then_called_again(tmp_path, script, point, 6,
                              lambda: log.read_text().split() if log.exists() else [])


def test_first_fate_stands_when_processes_race(tmp_path):
    """Twelve processes decide one run directory's fate at once: all see the same."""
    code = textwrap.dedent("""
        import sys, time
        from pyjoule._rundir import RunDir
        time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
        print(RunDir(sys.argv[1]).decide_fate(sys.argv[2]))
    """)
    import time

    for round_ in range(3):
        run_dir = tmp_path / f"run{round_}"
        at = str(time.time() + 1.5)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        procs = [subprocess.Popen([sys.executable, "-c", code, str(run_dir),
                                   "started" if k % 2 else "abandoned", at],
                                  stdout=subprocess.PIPE, text=True, env=env)
                 for k in range(12)]
        answers = {p.communicate(timeout=60)[0].strip() for p in procs}
        assert len(answers) == 1 and answers <= {"started", "abandoned"}, answers
        assert (run_dir / "fate").read_text() == answers.pop()
        assert [p.name for p in run_dir.iterdir()] == ["fate"]  # no temporary file left
        assert oct((run_dir / "fate").stat().st_mode & 0o777) == "0o600"


def test_a_worker_of_an_abandoned_run_computes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PYJOULE_CACHE", str(tmp_path / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    log = tmp_path / "calls.txt"
    script = _script(tmp_path, str(log), "workers=2", 4)
    killed = _call(tmp_path, script, fault="launch:before-start")
    assert killed.returncode == -signal.SIGKILL
    (run_dir,) = (tmp_path / ".pyjoule" / "runs").iterdir()
    from pyjoule._rundir import RunDir

    assert RunDir(str(run_dir)).decide_fate("abandoned") == "abandoned"
    worker = subprocess.run([sys.executable, "-m", "pyjoule.worker", str(run_dir),
                             "--workers", "1"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}"),
                            timeout=60)
    assert worker.returncode == 0 and "abandoned" in worker.stderr, worker.stderr
    assert not log.exists()  # nothing computed
    assert not list((run_dir / "results").iterdir())
