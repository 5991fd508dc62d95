"""Nothing is run twice: real processes started together on one cache.

Every function here appends one line per execution to a side file (``O_APPEND``,
one ``write`` per line), so the tests count executions, not results. The processes
wait on a file barrier (each says it is ready, then waits for ``go``) so that they
plan at the same moment; every race is repeated.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, run_script

pytestmark = pytest.mark.slow  # most tests here take seconds

SCRIPT = """
    import os, sys, time, pyjoule as pj

    OPTIONS = {"workers": int(os.environ["WORKERS"])}
    if os.environ.get("BACKEND") == "slurm":
        OPTIONS["slurm"] = {"time": "5"}

    @pj.experiment(progress=False, **OPTIONS)
    def k(i):
        time.sleep(float(os.environ.get("NAP", "0.02")))
        fd = os.open(os.environ["SIDE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, f"{i}\\n".encode())
        os.close(fd)
        return i * 2

    def barrier():
        folder = os.environ["BARRIER"]
        open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
        while not os.path.exists(os.path.join(folder, "go")):
            time.sleep(0.002)

    mode, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    barrier()
    if mode == "submit":
        run = k.submit(pj.grid(i=range(start, stop)))
        ds = run.result()
    else:
        ds = k.sweep(i=range(start, stop))
    values = ds.result.values.tolist()
    assert values == [2 * i for i in range(start, stop)], values
    print("ok", len(values), flush=True)
"""


def _race(folder: Path, jobs: list[tuple[str, int, int]], workers: int = 1,
          nap: float = 0.02, timeout: float = 180, backend: str = "") -> collections.Counter:
    """Start one process per ``(mode, start, stop)`` together; return how often each
    pset ran, after checking every process got its full Dataset."""
    script = folder / "race.py"
    script.write_text(textwrap.dedent(SCRIPT))
    barrier = folder / "barrier"
    barrier.mkdir(exist_ok=True)
    side = folder / "side.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO), WORKERS=str(workers), NAP=str(nap),
               SIDE=str(side), BARRIER=str(barrier), BACKEND=backend)
    procs = [subprocess.Popen([sys.executable, str(script), mode, str(a), str(b)],
                              cwd=folder, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for mode, a, b in jobs]
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready-*"))) < len(procs):
            assert time.monotonic() < deadline, "the processes never got ready"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        (barrier / "go").touch()
        for p, (_, a, b) in zip(procs, jobs):
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err
            assert out.strip() == f"ok {b - a}", (out, err)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return collections.Counter(int(line) for line in side.read_text().split())


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("repeat", range(3))
def test_processes_started_together_run_each_pset_once(cache_dir, weird_tmp_path, n, repeat):
    ran = _race(weird_tmp_path, [("map", 0, 40)] * n)
    assert ran == collections.Counter(range(40))  # every pset exactly once


@pytest.mark.parametrize("repeat", range(3))
def test_overlapping_grids_run_each_pset_once(cache_dir, weird_tmp_path, repeat):
    ran = _race(weird_tmp_path, [("map", s, s + 30) for s in (0, 10, 20, 30)])
    assert ran == collections.Counter(range(60))


@pytest.mark.parametrize("repeat", range(3))
def test_two_in_process_maps_at_once_both_succeed(cache_dir, weird_tmp_path, repeat):
    # workers=0 runs in the driver: the other process must see it alive, not take
    # it for dead and tidy its payload away (FileNotFoundError before)
    ran = _race(weird_tmp_path, [("map", 0, 30), ("map", 10, 40)], workers=0)
    assert ran == collections.Counter(range(40))


@pytest.mark.parametrize("repeat", range(3))
def test_a_submit_and_a_map_of_the_same_psets_make_one_run(cache_dir, weird_tmp_path,
                                                          repeat):
    ran = _race(weird_tmp_path, [("submit", 0, 30), ("map", 0, 30)], workers=2)
    assert ran == collections.Counter(range(30))
    runs = run_script(weird_tmp_path, "import pyjoule as pj; print(len(pj.runs()))")
    assert runs.stdout.strip() == "1"


def _index(cache: Path):
    return sqlite3.connect(cache / "index.sqlite", timeout=30)


def _kill_mid_run(folder: Path, cache: Path) -> tuple[dict, collections.Counter]:
    """Start a 40-pset map (2 workers, 0.2 s each), kill -9 its driver and its pool
    once some psets finished; return the script's environment and what ran."""
    script = folder / "race.py"
    script.write_text(textwrap.dedent(SCRIPT))
    side = folder / "side.txt"
    barrier = folder / "barrier"
    barrier.mkdir()
    (barrier / "go").touch()
    env = dict(os.environ, PYTHONPATH=str(REPO), WORKERS="2", NAP="0.2", SIDE=str(side),
               BARRIER=str(barrier))
    driver = subprocess.Popen([sys.executable, str(script), "map", "0", "40"],
                              cwd=folder, env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not side.exists() or len(side.read_text().split()) < 6:
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.05)
    (run_dir,) = (cache / "runs").iterdir()
    pool = int((run_dir / "worker.pid").read_text().split()[0])
    os.killpg(driver.pid, signal.SIGKILL)  # the driver's group and the pool's session
    os.killpg(pool, signal.SIGKILL)
    driver.communicate(timeout=30)
    finished = collections.Counter(int(x) for x in side.read_text().split())
    assert 0 < len(finished) < 40
    with _index(cache) as db:
        assert db.execute("SELECT state FROM runs").fetchall() == [("running",)]
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 1
    return env, finished


def test_a_killed_driver_and_pool_have_their_claims_taken_over(cache_dir, weird_tmp_path):
    env, _ = _kill_mid_run(weird_tmp_path, cache_dir)
    script, side = weird_tmp_path / "race.py", weird_tmp_path / "side.txt"

    # a later call takes the dead run's claims over and finishes the sweep
    env["NAP"] = "0.01"
    later = subprocess.run([sys.executable, str(script), "map", "0", "40"],
                           cwd=weird_tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert later.returncode == 0, later.stderr
    ran = collections.Counter(int(x) for x in side.read_text().split())
    assert set(ran) == set(range(40))
    # nothing that finished ran again; at most one pset per worker may have been
    # killed between its last line and its record (then it runs again, correctly)
    twice = [i for i, n in ran.items() if n > 1]
    assert len(twice) <= 2, twice
    with _index(cache_dir) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        states = sorted(r[0] for r in db.execute("SELECT state FROM runs"))
    assert states == ["done", "done"]


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(3))
def test_two_processes_on_slurm_submit_one_array(slurm, cache_dir, weird_tmp_path,
                                                 monkeypatch, repeat):
    # on SLURM a duplicate run would be a duplicate array job
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.3")
    ran = _race(weird_tmp_path, [("map", 0, 12), ("submit", 0, 12)], backend="slurm")
    assert ran == collections.Counter(range(12))
    runs = run_script(weird_tmp_path, """
        import pyjoule as pj
        runs = pj.runs()
        print(len(runs), len(runs.job_ids[0]))
    """)
    assert runs.stdout.split() == ["1", "1"]


def test_cache_gc_finishes_a_run_whose_driver_and_pool_were_killed(cache_dir,
                                                                   weird_tmp_path):
    _, finished = _kill_mid_run(weird_tmp_path, cache_dir)
    gc = subprocess.run([sys.executable, "-m", "pyjoule", "cache", "gc"],
                        cwd=weird_tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                        capture_output=True, text=True, timeout=120)
    assert gc.returncode == 0, gc.stderr
    assert "finished 1 runs a crash had left" in gc.stdout
    with _index(cache_dir) as db:
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        (state, done, failed), = db.execute("SELECT state, done, failed FROM runs")
        entries = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    # what finished before the kill is kept (one pset per worker may have been
    # killed between its line and its record); the rest is recorded as lost
    assert state == "done" and done == entries and done + failed == 40
    assert len(finished) - 2 <= entries <= len(finished)
