"""The worker program (``python -m pyjoule.worker RUN_DIR``) on hand-built run directories.

Functions are cloudpickled by value (as for ``__main__`` or a notebook), so the worker
subprocess never needs to import this test module.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from pyjoule import _records, worker
from pyjoule import _slurm_task as slurm_task
from pyjoule._rundir import RunDir

REPO = Path(__file__).resolve().parent.parent
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


# ------------------------------------------------------------------------ helpers
def make_run(run_dir: Path, func, psets: list[dict], *, timeout_s=None, threads=1,
             capture=True) -> list[str]:
    """Write payload.pkl, tasks.pkl and results/; return the pset ids in order."""
    run_dir.mkdir(parents=True)
    (run_dir / "results").mkdir()
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        payload = cloudpickle.dumps({"func": func, "threads": threads,
                                     "timeout_s": timeout_s, "capture": capture})
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    (run_dir / "payload.pkl").write_bytes(payload)
    ids = [f"pset-{i:03d}" for i in range(len(psets))]
    (run_dir / "tasks.pkl").write_bytes(pickle.dumps(list(zip(ids, psets))))
    return ids


def _no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def worker_argv(run_dir: Path, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "pyjoule.worker", str(run_dir), "--workers", str(workers)]


def run_worker(run_dir: Path, workers: int = 2, timeout: float = 60):
    proc = subprocess.run(worker_argv(run_dir, workers), env=worker_env(), cwd=run_dir,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_no_core_dumps)
    assert proc.returncode == 0, proc.stderr
    return proc


def run_in_mode(mode: str, run_dir: Path):
    if mode == "subprocess":
        run_worker(run_dir)
    else:
        assert worker.run(str(run_dir), 0) == 0


def read_records(run_dir: Path) -> list[dict]:
    out = []
    for path in sorted((run_dir / "results").iterdir()):
        recs, offset = _records.read_from(path)
        assert offset == path.stat().st_size, f"torn or damaged records in {path.name}"
        out.extend(recs)
    return out


def one_per_pset(records: list[dict], ids: list[str]) -> dict[str, dict]:
    by_id: dict[str, list[dict]] = {}
    for rec in records:
        by_id.setdefault(rec["pset_id"], []).append(rec)
    assert sorted(by_id) == sorted(ids)
    assert all(len(v) == 1 for v in by_id.values()), {k: len(v) for k, v in by_id.items()}
    return {k: v[0] for k, v in by_id.items()}


def live_pids_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def live_pids() -> set[int]:
    from conftest import processes

    return {pid for pid, _, _, state, _ in processes() if state not in (b"Z", b"X")}


def live_children(ppid: int) -> list[int]:
    from conftest import processes

    return [pid for pid, parent, _, state, _ in processes()
            if parent == ppid and state not in (b"Z", b"X")]


# --------------------------------------------------------- functions under test
def double(x):
    return {"y": 2 * x, "x": x}


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"bad value x={x}")
    if x == 5:
        sys.exit(7)  # SystemExit is a failure of that pset too, not of the worker
    return x * 10


def chatty(x):
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    return x


def unpicklable_on_some(x):
    if x == 1:
        return threading.Lock()
    if x == 2:
        return (i for i in range(3))  # a generator: not even cloudpickle handles it
    return x


def sleepy(x):
    if x == 2:
        time.sleep(30)
    return x


def crashes(x):
    if x == 1:
        os._exit(3)
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def quick_then_slow(x):
    if x >= 2:
        time.sleep(30)
    return x


def blas_threads(x):
    import numpy  # noqa: F401 - loads the BLAS library
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def blas_threads_numpy_preloaded(x):
    # ``np`` is a global of this function: it travels by reference in the payload, so
    # the worker has loaded numpy (and its BLAS) before it runs any pset.
    assert np.ones(1).sum() == 1
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@dataclasses.dataclass
class Point:
    x: int
    y: float


def returns_point(x):
    return Point(x, x / 2)


# ------------------------------------------------------------------------ tests
MODES = ["subprocess", "inprocess"]


@pytest.mark.parametrize("mode", MODES)
def test_all_psets_done_with_values_and_bookkeeping(weird_tmp_path, mode):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, double, [{"x": i} for i in range(7)])
    before = time.time()
    run_in_mode(mode, run_dir)
    after = time.time()
    recs = one_per_pset(read_records(run_dir), ids)
    for i, pid in enumerate(ids):
        rec = recs[pid]
        assert rec["status"] == "done"
        assert rec["value"] == {"y": 2 * i, "x": i}
        assert before <= rec["started"] <= rec["finished"] <= after
        assert 0 <= rec["runtime_s"] <= rec["finished"] - rec["started"] + 0.05
        assert rec["host"] == socket.gethostname()
        assert isinstance(rec["pid"], int) and rec["pid"] > 0
        if mode == "inprocess":
            assert rec["pid"] == os.getpid()
        else:
            assert rec["pid"] != os.getpid()


@pytest.mark.parametrize("mode", MODES)
def test_exceptions_become_failed_records_and_others_continue(weird_tmp_path, mode):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, fail_on_three, [{"x": i} for i in range(8)])
    run_in_mode(mode, run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    bad = recs[ids[3]]
    assert bad["status"] == "failed"
    assert bad["value"] is None
    assert bad["error_type"] == "ValueError"
    assert bad["message"] == "bad value x=3"
    assert bad["reason"] == "exception"
    assert "fail_on_three" in bad["traceback"]
    assert "ValueError: bad value x=3" in bad["traceback"]
    exited = recs[ids[5]]
    assert exited["status"] == "failed" and exited["error_type"] == "SystemExit"
    assert exited["reason"] == "exception"
    for i in (0, 1, 2, 4, 6, 7):
        assert recs[ids[i]]["status"] == "done"
        assert recs[ids[i]]["value"] == i * 10


@pytest.mark.parametrize("mode", MODES)
def test_stdout_and_stderr_are_captured_per_pset(weird_tmp_path, mode):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, chatty, [{"x": i} for i in range(5)])
    run_in_mode(mode, run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    for i, pid in enumerate(ids):
        assert recs[pid]["stdout"] == f"out {i}\n"
        assert recs[pid]["stderr"] == f"err {i}\n"
        assert recs[pid]["value"] == i


def test_capture_false_leaves_output_alone(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, chatty, [{"x": i} for i in range(3)], capture=False)
    proc = run_worker(run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    assert all(r["stdout"] == "" and r["stderr"] == "" for r in recs.values())
    assert all(r["status"] == "done" for r in recs.values())
    for i in range(3):
        assert f"out {i}" in proc.stdout
        assert f"err {i}" in proc.stderr


@pytest.mark.parametrize("mode", MODES)
def test_unpicklable_return_value_fails_that_pset_only(weird_tmp_path, mode):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, unpicklable_on_some, [{"x": i} for i in range(5)])
    run_in_mode(mode, run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    for i in (1, 2):
        rec = recs[ids[i]]
        assert rec["status"] == "failed"
        assert rec["value"] is None
        assert "return value could not be pickled" in rec["message"]
        assert rec["reason"] == "exception"
    for i in (0, 3, 4):
        assert recs[ids[i]]["status"] == "done" and recs[ids[i]]["value"] == i


def test_timeout_kills_only_the_slow_pset(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, sleepy, [{"x": i} for i in range(6)], timeout_s=0.5)
    t0 = time.monotonic()
    run_worker(run_dir)
    elapsed = time.monotonic() - t0
    assert elapsed < 20, f"the 30 s pset was not cut at the timeout ({elapsed:.1f} s)"
    recs = one_per_pset(read_records(run_dir), ids)
    slow = recs[ids[2]]
    assert slow["status"] == "failed"
    assert slow["reason"] == "timeout"
    assert slow["error_type"] == "TimeoutError"
    assert slow["value"] is None
    for i in (0, 1, 3, 4, 5):
        assert recs[ids[i]]["status"] == "done" and recs[ids[i]]["value"] == i
    assert (run_dir / "exit").read_text().strip() == "0"


def test_crashed_worker_processes_are_reported_lost(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, crashes, [{"x": i} for i in range(8)])
    proc = run_worker(run_dir)
    assert proc.returncode == 0
    recs = one_per_pset(read_records(run_dir), ids)
    for i, what in ((1, r"\b3\b"), (3, r"SIGSEGV")):  # the message says what happened
        rec = recs[ids[i]]
        assert rec["status"] == "failed"
        assert rec["reason"] == "lost"
        assert re.search(what, rec["message"]), rec["message"]
    for i in (0, 2, 4, 5, 6, 7):
        assert recs[ids[i]]["status"] == "done" and recs[ids[i]]["value"] == i
    assert (run_dir / "exit").read_text().strip() == "0"
    assert RunDir(str(run_dir)).is_alive() is False


def test_exit_file_and_is_alive(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    make_run(run_dir, quick_then_slow, [{"x": 0}, {"x": 1}, {"x": 2}])
    proc = subprocess.Popen(worker_argv(run_dir), env=worker_env(), cwd=run_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not RunDir(str(run_dir)).is_alive():  # running: pid file written, no exit
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert not (run_dir / "exit").exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert RunDir(str(run_dir)).is_alive() is False  # dead, even without an exit file


def test_empty_task_list_exits_zero(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    make_run(run_dir, double, [])
    run_worker(run_dir)
    assert read_records(run_dir) == []
    assert (run_dir / "exit").read_text().strip() == "0"
    assert RunDir(str(run_dir)).is_alive() is False


@pytest.mark.parametrize("target", ["group", "supervisor"])
def test_sigterm_ends_supervisor_and_children_keeping_records(weird_tmp_path, target):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, quick_then_slow, [{"x": i} for i in range(6)])
    proc = subprocess.Popen(worker_argv(run_dir), env=worker_env(), cwd=run_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_no_core_dumps)
    pgid = proc.pid
    try:
        deadline = time.monotonic() + 20
        while True:  # until the two quick psets are written and children are busy
            done = [r for r in read_records(run_dir) if r["status"] == "done"]
            children = live_children(proc.pid)  # each leads its own process group
            if len(done) >= 2 and len(children) >= 2:
                break
            assert proc.poll() is None, "the worker ended on its own"
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.02)
        t0 = time.monotonic()
        if target == "group":
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
        left = lambda: [p for p in children + [pgid] if p in live_pids()]  # noqa: E731
        while left() and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        assert left() == [], "processes left after SIGTERM"
        assert time.monotonic() - t0 < 10
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    assert proc.returncode != 0
    assert RunDir(str(run_dir)).is_alive() is False
    recs = read_records(run_dir)
    values = {r["pset_id"]: r["value"] for r in recs if r["status"] == "done"}
    assert values == {ids[0]: 0, ids[1]: 1}
    exit_file = run_dir / "exit"
    assert exit_file.exists() and exit_file.read_text().strip() not in ("", "0")


def _blas_or_skip(threads_seen):
    if not threads_seen:
        pytest.skip("numpy exposes no BLAS library to threadpoolctl")


def test_threads_limit_blas_in_worker_processes(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, blas_threads_numpy_preloaded, [{"x": 0}, {"x": 1}], threads=1)
    run_worker(run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    for rec in recs.values():
        assert rec["status"] == "done", rec.get("traceback")
        _blas_or_skip(rec["value"])
        assert rec["value"] == [1] * len(rec["value"])



def test_threads_limit_blas_loaded_lazily_by_the_function(weird_tmp_path):
    from threadpoolctl import threadpool_info

    default = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    if not default or max(default) < 2:
        pytest.skip("needs a BLAS that defaults to more than one thread")
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, blas_threads, [{"x": 0}, {"x": 1}], threads=1)
    run_worker(run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    for rec in recs.values():
        assert rec["status"] == "done", rec.get("traceback")
        assert rec["value"] == [1] * len(rec["value"])


def test_threads_limit_blas_in_process(weird_tmp_path):
    from threadpoolctl import threadpool_info

    default = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    if not default or max(default) < 2:
        pytest.skip("needs a BLAS that defaults to more than one thread")
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, blas_threads, [{"x": 0}], threads=1)
    assert worker.run(str(run_dir), 0) == 0
    recs = one_per_pset(read_records(run_dir), ids)
    assert recs[ids[0]]["value"] == [1] * len(default)
    # and the caller's own limits are back afterwards
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == default


def test_value_of_a_class_sent_by_value_comes_back(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, returns_point, [{"x": 1}, {"x": 2}])
    run_worker(run_dir)
    recs = one_per_pset(read_records(run_dir), ids)
    for i, pid in zip((1, 2), ids):
        rec = recs[pid]
        assert rec["status"] == "done", rec.get("message")
        assert type(rec["value"]).__name__ == "Point"
        assert (rec["value"].x, rec["value"].y) == (i, i / 2)


# ------------------------------------------------------------ as a SLURM array task
def short_nap(x):
    time.sleep(0.3)
    return x


def _slurm_env(job: str, task: int, **extra) -> dict:
    env = dict(os.environ, SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=str(task),
               SLURM_JOB_ID=f"{job}{task}")
    env.pop("SLURM_JOB_END_TIME", None)
    env.update(extra)
    env["PATH"] = "/nonexistent"  # no squeue: the job's end comes from the variable only
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def _slurm_task(run_dir: Path, env: dict, workers: int = 1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pyjoule.worker", str(run_dir),
                             "--slurm", "w0", "--workers", str(workers)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_array_tasks_share_the_batches_of_a_queue_each_pset_once(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, double, [{"x": i} for i in range(40)])
    assert slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 3) == 14
    procs = [_slurm_task(run_dir, _slurm_env("77", t)) for t in range(3)]
    assert [(p.communicate(timeout=60), p.returncode)[1] for p in procs] == [0, 0, 0]
    recs = one_per_pset(read_records(run_dir), ids)
    assert all(r["status"] == "done" for r in recs.values())
    claimed = sorted((run_dir / "queue" / "w0" / "claimed").iterdir())
    assert len(claimed) == 14 and not list((run_dir / "queue" / "w0" / "pending").iterdir())
    assert {p.name.split(".")[1] for p in claimed} <= {"77_0", "77_1", "77_2"}
    ends = {p.name: p.read_text().split() for p in (run_dir / "ends").iterdir()}
    assert sorted(ends) == ["77_0", "77_1", "77_2"]
    assert all(e[:2] == ["0", "done"] for e in ends.values())
    assert sum(int(e[2]) for e in ends.values()) == 14  # batches run, in all


def test_an_array_task_claims_no_batch_it_has_no_time_left_for(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    make_run(run_dir, short_nap, [{"x": i} for i in range(6)])
    slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 2)
    # less time left than the margin: it runs the first batch (always), then stops
    end = str(int(time.time() + slurm_task.END_MARGIN_S))
    proc = _slurm_task(run_dir, _slurm_env("78", 0, SLURM_JOB_END_TIME=end))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "claiming no more" in out
    assert (run_dir / "ends" / "78_0").read_text().split() == ["0", "time", "1"]
    assert len(list((run_dir / "queue" / "w0" / "pending").iterdir())) == 2
    assert len(read_records(run_dir)) == 2  # the one batch it ran


def test_sigterm_to_an_array_task_keeps_its_records_and_says_so(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    make_run(run_dir, short_nap, [{"x": i} for i in range(40)])
    slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 40)
    proc = _slurm_task(run_dir, _slurm_env("79", 0), workers=2)
    deadline = time.monotonic() + 30
    while len(read_records(run_dir)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends at the time limit
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped by signal" in out
    assert (run_dir / "ends" / "79_0").read_text().split()[:2] == ["143", "terminated"]
    recs = read_records(run_dir)
    assert 3 <= len(recs) < 40 and all(r["status"] == "done" for r in recs)


def test_an_exited_but_unreaped_supervisor_counts_as_dead(tmp_path):
    """A run cancelled from another process leaves its supervisor a zombie until the
    submitting process reaps it: it must count as dead at once, not after timeouts."""
    from pyjoule._platform import group_alive as _group_alive
    from pyjoule._transport.local import kill_group

    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not worker.is_zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.is_zombie(pid)
        (tmp_path / "worker.pid").write_text(f"{pid} {worker.process_start_time(pid)}")
        assert not RunDir(str(tmp_path)).is_alive()
        assert not _group_alive(pid)
        kill_group(pid, grace_s=30)  # returns at once: nothing of the group runs
        assert not worker.is_zombie(pid)  # and it reaped its own child
    finally:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def test_done_byte_comes_once_every_record_is_on_disk(weird_tmp_path):
    """The caller is told through ``done_fd`` as soon as every pset is accounted for
    (it ingests while the pool exits); by then each record and ``exit`` are written,
    and ``exit`` is not rewritten afterwards."""
    run_dir = weird_tmp_path / "run"
    ids = make_run(run_dir, crashes, [{"x": i} for i in range(8)])  # lost ones too
    done_r, done_w = os.pipe()
    proc = subprocess.Popen(worker_argv(run_dir) + ["--done-fd", str(done_w)],
                            env=worker_env(), cwd=run_dir, pass_fds=(done_w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_no_core_dumps)
    os.close(done_w)
    try:
        import select

        ready, _, _ = select.select([done_r], [], [], 60)
        assert ready and os.read(done_r, 1) == b"d"
        recs = one_per_pset(read_records(run_dir), ids)  # all there, at that moment
        assert (run_dir / "exit").read_text().strip() == "0"
        assert not RunDir(str(run_dir)).is_alive()
        (run_dir / "exit").write_text("tidied\n")  # as if the caller moved on
        assert proc.wait(30) == 0
    finally:
        os.close(done_r)
        if proc.poll() is None:
            proc.kill()
    assert (run_dir / "exit").read_text() == "tidied\n"
    assert {i for i, pid in enumerate(ids) if recs[pid]["status"] == "failed"} == {1, 3}
