"""Ctrl-C and crashes leave no run half-done: real SIGINTs to real scripts.

A cancelled run records its unfinished psets in one row, however many (200,000
here), and they are still listed, each with reason ``cancelled``. A second Ctrl-C
during the cancel never leaves a run ``finishing``; ``cache gc`` finishes runs a
crash left ``starting``, ``running`` or ``finishing``, and frees their psets.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import start_script

from conftest import REPO, run_script

pytestmark = pytest.mark.slow  # most tests here take seconds

BIG = 200_000
BIG_SCRIPT = f"""
    import sys, time, pyjoule as pj

    @pj.experiment(workers=2, progress=False)
    def tiny(i):
        time.sleep(0.001)
        return i

    print("ready", flush=True)
    try:
        tiny.sweep(i=range({BIG}))
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
"""

READ_BACK = """
    import pyjoule as pj, time

    @pj.experiment(workers=2, progress=False)
    def tiny(i):
        time.sleep(0.001)
        return i

    (run_id,) = pj.runs().id
    frame = pj.attach(run_id).failures
    store = tiny._store()
    of_function = store.failures(func_id=tiny._func_id_for(store))
    print(len(frame), sorted(set(frame.reason)), len(tiny.table()), len(of_function),
          store.count_failures(run_id))
"""


def _start(folder: Path, source: str) -> subprocess.Popen:
    return start_script(folder, source, name="big.py")


def _computing(cache: Path, timeout_s: float = 120) -> Path:
    """The run directory, once its workers have written some results."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_dir in (cache / "runs").glob("*") if (cache / "runs").is_dir() else ():
            results = run_dir / "results"
            if results.is_dir() and sum(f.stat().st_size for f in results.iterdir()) > 20_000:
                return run_dir
        time.sleep(0.05)
    raise AssertionError("the run never started computing")


def _db(cache: Path) -> sqlite3.Connection:
    return sqlite3.connect(cache / "index.sqlite", timeout=30)


def _index_bytes(cache: Path) -> int:
    return sum(p.stat().st_size for p in cache.glob("index.sqlite*"))


def test_ctrl_c_on_a_huge_map_writes_one_row_and_lists_every_cancelled_pset(
        cache_dir, weird_tmp_path):
    proc = _start(weird_tmp_path, BIG_SCRIPT)
    assert proc.stdout.readline().strip() == "ready"
    _computing(cache_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in out
    with _db(cache_dir) as db:
        (state, done, failed), = db.execute("SELECT state, done, failed FROM runs")
        rows, size = db.execute("SELECT COUNT(*), SUM(LENGTH(record)) FROM failures"
                                ).fetchone()
        claims = db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    assert state == "cancelled"
    assert 0 < done < BIG and done + failed == BIG
    assert rows == 1 and size < 64_000  # one row, not one pickled failure per pset
    assert claims == 0  # released: the next call runs them
    # was 118 MB: 200,000 pickled failures (the packed claims are 3 MB, freed again)
    assert _index_bytes(cache_dir) < 16_000_000
    listed = run_script(weird_tmp_path, READ_BACK).stdout.split()
    assert listed == [str(failed), "['cancelled']", str(done), str(failed), str(failed)]


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_a_second_ctrl_c_during_the_cancel_never_leaves_a_run_finishing(
        cache_dir, weird_tmp_path, delay):
    proc = _start(weird_tmp_path, BIG_SCRIPT)
    assert proc.stdout.readline().strip() == "ready"
    _computing(cache_dir)
    proc.send_signal(signal.SIGINT)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # a KeyboardInterrupt, after the cancel
    with _db(cache_dir) as db:
        assert db.execute("SELECT state FROM runs").fetchall() == [("cancelled",)]
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    # the autouse fixture checks that no worker outlived the driver


def test_ctrl_c_held_down_still_cancels_the_run_once(cache_dir, weird_tmp_path):
    """An impatient user: a Ctrl-C every 10 ms until the driver is gone. Whichever
    one lands between the wait's interrupt and the cancel, the cancel still runs to
    its end."""
    proc = _start(weird_tmp_path, BIG_SCRIPT)
    assert proc.stdout.readline().strip() == "ready"
    _computing(cache_dir)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    # 130: the sweep's KeyboardInterrupt; -SIGINT: a later Ctrl-C cut the script's
    # own exit short, after the sweep had returned
    assert proc.returncode in (130, -signal.SIGINT), err
    with _db(cache_dir) as db:
        (state, done, failed), = db.execute("SELECT state, done, failed FROM runs")
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert state == "cancelled" and done + failed == BIG


CLAIM_AND_DIE = """
    import os, signal, sys, pyjoule as pj
    from pyjoule import _dispatch

    @pj.experiment(workers=1, progress=False)
    def sq(i):
        return i * i

    store = sq._store()
    if sys.argv[1] == "starting":  # claimed and registered, then killed before launch
        _dispatch.plan(store, sq._func_id_for(store), sq._signature, pj.grid(i=range(10)))
    else:  # killed while finishing a run (after its orphans, before it ended)
        (run_id,) = [r["run_id"] for r in store.list_runs()]
        assert store.claim_finish(run_id) == "running"
    os.kill(os.getpid(), signal.SIGKILL)
"""

MAP_10 = """
    import pyjoule as pj

    @pj.experiment(workers=1, progress=False)
    def sq(i):
        return i * i

    print(int(sq.sweep(i=range(10)).result.sum()))
"""


def _die(folder: Path, mode: str) -> None:
    (folder / "die.py").write_text(textwrap.dedent(CLAIM_AND_DIE))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(folder / "die.py"), mode], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_cache_gc_finishes_runs_a_crash_left_starting(cache_dir, weird_tmp_path):
    _die(weird_tmp_path, "starting")
    with _db(cache_dir) as db:
        assert db.execute("SELECT state FROM runs").fetchall() == [("starting",)]
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 1
    gc = subprocess.run([sys.executable, "-m", "pyjoule", "cache", "gc", "--json"],
                        cwd=weird_tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                        capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert '"runs_settled": 1' in gc.stdout
    with _db(cache_dir) as db:
        assert db.execute("SELECT state FROM runs").fetchall() == [("done",)]
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert run_script(weird_tmp_path, MAP_10).stdout.strip() == str(sum(i * i for i in range(10)))


def test_a_dead_starting_run_is_taken_over_without_gc(cache_dir, weird_tmp_path):
    _die(weird_tmp_path, "starting")
    assert run_script(weird_tmp_path, MAP_10).stdout.strip() == str(sum(i * i for i in range(10)))
    with _db(cache_dir) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        assert sorted(r[0] for r in db.execute("SELECT state FROM runs")) == ["done", "done"]


def test_cache_gc_finishes_a_run_a_crash_left_finishing(cache_dir, weird_tmp_path):
    run = run_script(weird_tmp_path, """
        import pyjoule as pj

        @pj.experiment(workers=1, progress=False)
        def sq(i):
            return i * i

        r = sq.submit(pj.grid(i=range(10)))
        print(r.id)
    """).stdout.strip()
    # the pool computes on after its driver exits; a follower dies finishing it
    deadline = time.monotonic() + 60
    while not (cache_dir / "runs" / run / "exit").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _die(weird_tmp_path, "finishing")
    with _db(cache_dir) as db:
        assert db.execute("SELECT state FROM runs").fetchall() == [("finishing",)]
    gc = subprocess.run([sys.executable, "-m", "pyjoule", "cache", "gc", "--json"],
                        cwd=weird_tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                        capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert '"runs_settled": 1' in gc.stdout
    with _db(cache_dir) as db:
        assert db.execute("SELECT state, done FROM runs").fetchall() == [("done", 10)]
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_pyjoule_cancel_stops_an_in_process_run_of_another_process(cache_dir,
                                                                  weird_tmp_path):
    proc = _start(weird_tmp_path, """
        import sys, time, pyjoule as pj

        @pj.experiment(workers=0, progress=False)
        def nap(i):
            time.sleep(0.05)
            return i

        print("ready", flush=True)
        try:
            nap.sweep(i=range(2000))
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
    """)
    assert proc.stdout.readline().strip() == "ready"
    _computing(cache_dir)
    (run_dir,) = (cache_dir / "runs").iterdir()
    cancel = subprocess.run([sys.executable, "-m", "pyjoule", "cancel", run_dir.name],
                            cwd=weird_tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, timeout=120)
    assert cancel.returncode == 0, cancel.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in out, err
    with _db(cache_dir) as db:
        (state, done, failed), = db.execute("SELECT state, done, failed FROM runs")
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert state == "cancelled" and 0 < done < 2000 and done + failed == 2000


def test_ctrl_c_in_an_in_process_map_cancels_its_run(cache_dir, weird_tmp_path):
    proc = _start(weird_tmp_path, """
        import sys, time, pyjoule as pj

        @pj.experiment(workers=0, progress=False)
        def nap(i):
            time.sleep(0.05)
            return i

        print("ready", flush=True)
        try:
            nap.sweep(i=range(2000))
        except KeyboardInterrupt as exc:
            print("interrupted", exc, flush=True)
            sys.exit(130)
    """)
    assert proc.stdout.readline().strip() == "ready"
    _computing(cache_dir)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    with _db(cache_dir) as db:
        (state, done, failed), = db.execute("SELECT state, done, failed FROM runs")
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert state == "cancelled" and 0 < done < 2000 and done + failed == 2000
    # the function itself was interrupted (workers=0): the same one line
    assert f"interrupted cancelled: {done} of 2000 psets kept in the cache" in out, out


ONE_LINE = """
    import os, time, pyjoule as pj

    @pj.experiment(workers=2, progress=False)
    def mark(i):
        time.sleep(0.05)
        open(os.path.join("marks", str(i)), "w").close()
        return i

    os.makedirs("marks", exist_ok=True)
    print("ready", flush=True)
    mark.sweep(i=range(180))
"""


def _marked(marks: Path, n: int) -> None:
    """Wait until the script's function has marked ``n`` psets done."""
    deadline = time.monotonic() + 120
    while len(os.listdir(marks)) < n and time.monotonic() < deadline:
        time.sleep(0.02)


def test_ctrl_c_in_a_script_prints_one_line_with_the_counts(cache_dir, weird_tmp_path):
    proc = _start(weird_tmp_path, ONE_LINE)
    assert proc.stdout.readline().strip() == "ready"
    _marked(weird_tmp_path / "marks", 10)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, err  # as Python ends on a Ctrl-C
    lines = err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and len(lines) <= 8, err
    kept = run_script(weird_tmp_path, ONE_LINE.replace(
        "mark.sweep(i=range(180))", "print(len(mark.table()))")).stdout.split()[-1]
    assert 10 <= int(kept) < 180
    assert lines[-1] == (f"KeyboardInterrupt: cancelled: {kept} of 180 psets kept in the "
                         "cache; run again to continue"), err
    for internal in ("_dispatch", "pool.py", "select", "_interrupt", "During handling"):
        assert internal not in err, err
    assert 'File "' + str(weird_tmp_path / "big.py") + '", line 12, in <module>' in err


def test_ctrl_c_during_a_single_call_prints_one_line_too(cache_dir, weird_tmp_path):
    proc = _start(weird_tmp_path, """
        import os, time, pyjoule as pj

        @pj.experiment(workers=1, progress=False)
        def stuck(i):
            with open("started.tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.replace("started.tmp", "started")
            time.sleep(60)

        print("ready", flush=True)
        stuck(i=1)
    """)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not (weird_tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert len(lines) <= 8 and "_dispatch" not in err and "in __call__" in err, err
    assert lines[-1] == ("KeyboardInterrupt: cancelled: 0 of 1 psets kept in the cache; "
                         "run again to continue"), err
    child = int((weird_tmp_path / "started").read_text())
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z"


@pytest.mark.parametrize("wait", ["run.wait()", "run.result()"])
def test_ctrl_c_while_waiting_for_a_submitted_run_stops_the_wait_not_the_run(
        cache_dir, weird_tmp_path, wait):
    """A submitted run is not the waiting call's to stop: Ctrl-C prints one line saying
    it goes on and how to follow or stop it, and the run finishes every pset."""
    proc = _start(weird_tmp_path, ONE_LINE.replace(
        "mark.sweep(i=range(180))",
        "run = mark.submit(pj.grid(i=range(180)))\n"
        f"    print(run.id, flush=True)\n    {wait}"))
    assert proc.stdout.readline().strip() == "ready"
    run_id = proc.stdout.readline().strip()
    _marked(weird_tmp_path / "marks", 10)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert len(lines) <= 8, err
    assert lines[-1].startswith("KeyboardInterrupt: stopped waiting: "), err
    assert lines[-1].endswith(f"psets are in the cache; run {run_id} goes on "
                              f"(pj.attach({run_id!r}).wait() to follow it, "
                              f"`pyjoule cancel {run_id}` to stop it)"), err
    for internal in ("_dispatch", "pool.py", "select", "_interrupt", "During handling"):
        assert internal not in err, err
    out = run_script(weird_tmp_path, f"""
        import pyjoule as pj
        run = pj.attach({run_id!r}).wait()
        print(run.status()["done"] + run.status()["cached"], run.status()["failed"])
    """, timeout=180).stdout.split()
    assert out[-2:] == ["180", "0"]
