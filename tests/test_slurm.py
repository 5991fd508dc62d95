"""SLURM array jobs end to end, on the real single-node test cluster
(tests/slurm_cluster.py): submitted with the local sbatch, and through the test sshd,
where the jobs run as that host's user.

Polling is set to 0.3 s (PYJOULE_POLL_INTERVAL) so that the tests do not wait out the
default back-off; time limits are whole minutes, so only one test waits for one
(three runs side by side).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyjoule as pj

from conftest import REPO, ensure_slurm, run_script

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.3")


def _jobs_of(job_ids) -> list[dict]:
    """squeue's rows (id, state) of every task of ``job_ids``, finished ones too."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids),
                          "-o", "%i|%T"], capture_output=True, text=True).stdout
    return [dict(zip(("id", "state"), line.split("|"))) for line in out.split()]


def _active(job_ids) -> list[dict]:
    return [r for r in _jobs_of(job_ids)
            if r["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]


def _where():
    """Where the pset ran: the array task, its user, its process."""
    import getpass

    return {"task": os.environ.get("SLURM_ARRAY_JOB_ID", "") + "_"
            + os.environ.get("SLURM_ARRAY_TASK_ID", ""),
            "user": getpass.getuser(), "pid": os.getpid()}


def square(x, seed=0):
    return dict(y=x * x + seed, **_where())


def nap(i, s=0.5):
    time.sleep(s)
    return {"n": i, "t0": time.time() - s, "t1": time.time(), **_where()}


# ------------------------------------------------------------- the user story
def test_sweep_on_the_local_sbatch_returns_the_dataset_and_caches_it(slurm, cache_dir):
    f = pj.experiment(slurm={"cpus_per_task": 2, "time": "5"})(square)
    ds = f.sweep(x=[1, 2, 3], seed=range(4))
    assert ds.y.dims == ("x", "seed")
    assert ds.y.sel(x=3, seed=2).item() == 11
    tasks = set(ds.task.values.ravel().tolist())
    assert all(t.split("_")[0].isdigit() and t.split("_")[1].isdigit() for t in tasks)
    (run,) = pj.runs().itertuples()
    assert run.backend == "slurm" and run.state == "done" and run.done == 12
    assert len(run.job_ids) == 1 and run.job_ids[0] == next(iter(tasks)).split("_")[0]
    assert run.scheduler_queries >= 3  # the cluster's facts, sbatch, squeue at least
    assert {r["state"] for r in _jobs_of(run.job_ids)} == {"COMPLETED"}
    # again, in a new process: everything from the cache, nothing submitted
    out = run_script(cache_dir.parent, """
        import pyjoule as pj, test_slurm
        f = pj.experiment(slurm={"cpus_per_task": 2, "time": "5"})(test_slurm.square)
        ds = f.sweep(x=[1, 2, 3], seed=range(4))
        print(int(ds.y.sum()), len(pj.runs()))
    """, env={"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}).stdout
    assert out.split() == [str(4 * (1 + 4 + 9) + 3 * 6), "1"]


def test_submit_returns_at_once_and_counts_psets_not_tasks(slurm, cache_dir):
    f = pj.experiment(slurm={"cpus_per_task": 2}, batch=4)(nap)
    t0 = time.monotonic()
    run = f.submit(pj.grid(i=range(16)))
    assert time.monotonic() - t0 < 10
    first = run.status()
    assert first["total"] == 16 and first["done"] + first["pending"] + first["running"] == 16
    assert len(run.job_ids) == 1
    run.wait(timeout=120)
    assert run.status() == {"total": 16, "cached": 0, "pending": 0, "running": 0,
                            "done": 16, "failed": 0}
    assert run.scheduler_queries >= 2  # sbatch and at least one squeue
    assert sorted(run.dataset().n.values.tolist()) == list(range(16))


def test_sweep_through_the_ssh_host_runs_as_the_host_user(slurm, ssh_host, weird_tmp_path,
                                                           monkeypatch):
    study = weird_tmp_path / "study"
    study.mkdir()
    monkeypatch.chdir(study)  # a folder with no project: a notebook's, say
    monkeypatch.setenv("PYJOULE_CACHE", str(study / ".pyjoule"))

    def where_am_i(x):
        import getpass
        import os

        return {"x2": 2 * x, "user": getpass.getuser(),
                "job": os.environ.get("SLURM_ARRAY_JOB_ID", "")}

    f = pj.experiment(host=ssh_host, slurm={"time": "00:05:00"}, workers=2,
                      progress=False)(where_am_i)
    ds = f.sweep(x=range(10))
    assert ds.x2.values.tolist() == [2 * x for x in range(10)]
    assert set(ds.user.values.tolist()) == {"pjhost"}
    (job,) = set(ds.job.values.tolist())
    assert _jobs_of([job]) and {r["state"] for r in _jobs_of([job])} == {"COMPLETED"}
    user = subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%u"],
                          capture_output=True, text=True).stdout.split()
    assert set(user) == {"pjhost"}


# ------------------------------------------------------------------- packing
def test_more_tasks_than_one_array_allows_are_split_into_several(cache_dir):
    from pyjoule._backends import slurm as backend

    backend.reset_facts()
    ensure_slurm(max_array_size=20)
    try:
        f = pj.experiment(slurm={"time": "5"}, batch=1)(square)
        ds = f.sweep(x=range(45))
        assert ds.y.values.tolist() == [x * x for x in range(45)]
        (job_ids,) = pj.runs().job_ids
        assert len(job_ids) == 3  # 20 + 20 + 5 tasks
        rows = _jobs_of(job_ids)
        indices = [int(r["id"].split("_")[1]) for r in rows]
        assert len(rows) == 45 and max(indices) == 19
    finally:
        backend.reset_facts()
        ensure_slurm()


def test_the_throttle_caps_the_tasks_running_at_once(slurm, cache_dir):
    f = pj.experiment(slurm={"time": "5", "array_parallelism": 2}, batch=1)(nap)
    ds = f.sweep(i=range(6))
    spans = sorted(zip(ds.t0.values.tolist(), ds.t1.values.tolist()))
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 2
    (job_ids,) = pj.runs().job_ids
    assert len(_jobs_of(job_ids)) == 6  # one array task per batch, two at a time
    shown = subprocess.run(["scontrol", "show", "job", job_ids[0]], capture_output=True,
                           text=True).stdout
    assert "ArrayTaskThrottle=2" in shown


def test_fast_tasks_take_more_batches_and_slow_ones_do_not_hold_up_the_end(slurm,
                                                                           cache_dir):
    def uneven(i):
        time.sleep(4 if i == 0 else 0.1)
        return _where()["task"]

    # 10 batches of 2 and room for 2 tasks at a time: whoever does not hold the slow
    # pset claims batch after batch; the tasks started late find the queue empty
    f = pj.experiment(slurm={"time": "5", "array_parallelism": 2}, batch=2,
                      workers=1)(uneven)
    ds = f.sweep(i=range(20))
    per_task = {t: int((ds.result == t).sum()) for t in set(ds.result.values.tolist())}
    assert max(per_task.values()) >= 10, per_task
    assert sum(per_task.values()) == 20


# -------------------------------------------------------------------- faults
def test_a_task_cancelled_from_outside_fails_only_its_psets(slurm, cache_dir):
    f = pj.experiment(slurm={"time": "5"}, batch=3, errors="ignore")(nap)
    run = f.submit(pj.grid(i=range(9), s=[2.0]))
    (job,) = run.job_ids
    deadline = time.monotonic() + 60
    claims = cache_dir / "runs" / run.id / "queue" / "w0" / "claimed"
    while not list(claims.glob(f"*.{job}_*")):  # a task has claimed a batch
        assert time.monotonic() < deadline
        time.sleep(0.1)
    task = next(claims.glob(f"*.{job}_*")).name.split(".")[1]
    subprocess.run(["scancel", task], check=True)
    run.wait(timeout=120)
    failures = run.failures
    assert set(failures.reason) == {"cancelled"}
    assert 1 <= len(failures) <= 3
    assert run.status()["done"] == 9 - len(failures)
    assert "CANCELLED" in failures.message.iloc[0]


def test_a_killed_worker_fails_its_batch_as_lost_and_the_rest_finish(slurm, cache_dir):
    def dies(i):
        if i == 0:
            time.sleep(0.5)
            os.kill(os.getppid(), signal.SIGKILL)  # the task's worker, mid-batch
            time.sleep(5)
        return i

    f = pj.experiment(slurm={"time": "5"}, batch=4, workers=1, errors="ignore")(dies)
    run = f.submit(pj.grid(i=range(12)))
    run.wait(timeout=120)
    failures = run.failures
    assert set(failures.reason) == {"lost"} and 0 in failures.i.tolist()
    assert len(failures) <= 4 and run.status()["done"] == 12 - len(failures)
    log_path = failures.log.iloc[0].split("(worker log: ")[-1].rstrip(")")
    assert os.path.exists(log_path)  # the task's own log, for the user to read


def test_ctrl_c_in_map_scancels_the_jobs_and_keeps_what_finished(slurm, cache_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", """if True:
            import pyjoule as pj, test_slurm
            f = pj.experiment(slurm={"time": "5"}, batch=2, workers=1)(test_slurm.nap)
            print("ready", flush=True)
            f.sweep(i=range(40), s=[1.0])
        """], cwd=cache_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    assert proc.stdout.readline().strip() == "ready"
    store_db = cache_dir / "index.sqlite"
    deadline = time.monotonic() + 60
    while _done_count(store_db) < 2:
        assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert "KeyboardInterrupt" in err
    (run,) = pj.runs().itertuples()
    assert run.state == "cancelled" and _active(run.job_ids) == []
    kept = _done_count(store_db)
    assert 2 <= kept < 40


def _done_count(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        except sqlite3.OperationalError as exc:  # created, its tables not yet
            if "no such table" not in str(exc):
                raise
            return 0


def test_a_killed_client_loses_nothing_and_a_new_process_attaches(slurm, cache_dir):
    client = """if True:
        import sys, pyjoule as pj, test_slurm
        f = pj.experiment(slurm={"time": "5"}, batch=2, workers=1)(test_slurm.nap)
        run = f.submit(pj.grid(i=range(12), s=[0.5]))
        print(run.id, flush=True)
        if sys.argv[1] == "block":
            ds = f.sweep(i=range(12), s=[0.5])   # attaches to the run in flight
            print(sorted(ds.i.values.tolist()) == list(range(12)), len(pj.runs()))
        else:
            import time; time.sleep(600)
    """
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
    first = subprocess.Popen([sys.executable, "-c", client, "sleep"], cwd=cache_dir.parent,
                             stdout=subprocess.PIPE, text=True, env=env)
    run_id = first.stdout.readline().strip()
    first.kill()  # the kernel dies right after submitting
    first.wait(10)
    first.stdout.close()
    (job_ids,) = pj.runs().job_ids
    assert _active(job_ids)  # the jobs go on without it
    out = subprocess.run([sys.executable, "-c", client.replace(
        "run = f.submit(pj.grid(i=range(12), s=[0.5]))", "run = pj.attach(sys.argv[2])"),
        "block", run_id], cwd=cache_dir.parent, capture_output=True, text=True, env=env,
        timeout=120)
    assert out.stdout.split()[1:] == ["True", "1"], out.stderr  # one run, one submission
    assert pj.runs().job_ids.tolist() == [job_ids]


def test_pyjoule_cancel_in_a_shell_scancels_the_jobs(slurm, cache_dir):
    f = pj.experiment(slurm={"time": "5"}, batch=2, workers=1)(nap)
    run = f.submit(pj.grid(i=range(12), s=[1.0]))
    (job_ids,) = pj.runs().job_ids
    deadline = time.monotonic() + 60
    while run.status()["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc = subprocess.run([sys.executable, "-m", "pyjoule", "cancel", run.id],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    assert proc.returncode == 0, proc.stderr
    assert not _active(job_ids)
    row = pj.runs().set_index("id").loc[run.id]
    assert row.state == "cancelled" and 1 <= row.done < 12
    # the cancelled psets point at the logs of the tasks that had them
    info = _status_json(run.id)
    logs = info["logs"]["failure_logs"]
    assert logs and all(os.path.exists(p) for p in logs)
    assert {Path(p).name.split("_")[0] for p in logs} == set(job_ids)
    assert info["failures"]["by_reason"] == {"cancelled": 12 - row.done}


def _status_json(run_id: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "pyjoule", "status", run_id, "--json"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    assert proc.returncode == 1, proc.stderr  # it has failed psets
    return json.loads(proc.stdout)


def test_a_controller_restart_mid_run_is_ridden_out(slurm, cache_dir):
    f = pj.experiment(slurm={"time": "5"}, batch=2, workers=1)(nap)
    run = f.submit(pj.grid(i=range(8), s=[1.0]))
    deadline = time.monotonic() + 60
    while run.status()["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    slurm.restart()
    run.wait(timeout=180)
    assert run.status()["done"] == 8 and run.status()["failed"] == 0


def _slow_in_the_first_job(marker: Path):
    """A function whose psets take 2.5 s in the first job that runs them (the one whose
    id ``marker`` holds) and no time in any later one."""

    def slow_in_the_first_job(i):
        job = os.environ["SLURM_ARRAY_JOB_ID"]
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, job.encode())
            os.close(fd)
        except FileExistsError:
            pass
        if marker.read_text() == job:
            time.sleep(2.5)
        return job

    return slow_in_the_first_job


def test_time_limits_keep_what_finished_and_a_failure_tells_of_the_last_attempt(
        slurm, ssh_host, cache_dir, monkeypatch, caplog):
    """The one test that waits for a time limit (whole minutes: 60-90 s here), with
    three runs side by side so that the suite waits once:

    - a sweep whose first job hits its limit keeps what finished and retries only the
      rest (the time-limit part below);
    - two submitted runs (one here, one over SSH) whose first attempt loses its worker
      at once and whose retry runs past its limit: the failure tells of the last
      attempt (the retry part)."""
    import tempfile

    # the retry part: submitted first, followed until both retries are submitted, so
    # that the retries' wait for their limit overlaps the time-limit part's
    here = Path.cwd()
    study = cache_dir.parent / "study"
    study.mkdir()
    monkeypatch.chdir(study)  # no project to copy to the host
    markers = Path(tempfile.mkdtemp(prefix="pj-markers-"))
    markers.chmod(0o777)  # the host's user writes there too

    def dies_then_overruns(marker):
        import os
        import signal
        import time

        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            time.sleep(300)  # the retry: past the time limit
        os.kill(os.getppid(), signal.SIGKILL)  # the first attempt: its worker dies
        os.kill(os.getpid(), signal.SIGKILL)  # (it would have written a record itself)

    options = dict(slurm={"time": "1", "array_parallelism": 1}, workers=1, batch=1,
                   retries=1, errors="ignore")
    runs = [pj.experiment(**options)(dies_then_overruns).submit(
                pj.grid(marker=[str(markers / "here")])),
            pj.experiment(host=ssh_host, **options)(dies_then_overruns).submit(
                pj.grid(marker=[str(markers / "there")]))]
    try:
        deadline = time.monotonic() + 240
        while any(len(run.job_ids) < 2 for run in runs):  # each retried at once
            assert time.monotonic() < deadline
            for run in runs:
                run.wait(timeout=1)

        # the time-limit part, from the folder the test started in
        monkeypatch.chdir(here)
        marker = cache_dir.parent / "first-job"
        f = pj.experiment(slurm={"time": "1"}, batch=1000, workers=1, retries=1)(
            _slow_in_the_first_job(marker))
        caplog.clear()
        with caplog.at_level("INFO", logger="pyjoule"):
            ds = f.sweep(i=range(50))
        jobs = ds.result.values.tolist()
        first, retried = marker.read_text(), [j for j in jobs if j != marker.read_text()]
        assert 10 <= jobs.count(first) < 50 and len(retried) == 50 - jobs.count(first)
        (run,) = [r for r in pj.runs().itertuples() if r.id not in {x.id for x in runs}]
        assert len(run.job_ids) == 2 and _jobs_of([run.job_ids[0]])[0]["state"] == "TIMEOUT"
        retry_lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
        assert retry_lines and f"retrying {len(retried)} pset(s)" in retry_lines[0]
        assert f"timeout: {len(retried)}" in retry_lines[0]

        # the retry part, to its end
        monkeypatch.chdir(study)
        while set(pj.runs().state) != {"done"}:  # both followed
            assert time.monotonic() < deadline
            for run in runs:
                run.wait(timeout=1)
        for run in runs:
            _, last = run.job_ids  # the retry's job
            (failure,) = run.failures.itertuples()
            assert failure.reason == "timeout"
            assert f"array task {last}_0 ended TIMEOUT" in failure.message
            log_path = failure.log.split("(worker log: ")[-1].rstrip(")")
            assert log_path == str(cache_dir / "runs" / run.id / "logs" / f"{last}_0.out")
            assert "DUE TO TIME LIMIT" in Path(log_path).read_text()  # a local copy
            info = _status_json(run.id)
            assert info["failures"]["first"]["log"] == log_path
            assert f"{last}_0 ended TIMEOUT" in info["failures"]["first"]["message"]
            assert info["logs"]["failure_logs"] == [log_path]
    finally:
        import shutil

        shutil.rmtree(markers, ignore_errors=True)


# -------------------------------------------------------------- bad requests
def test_a_misspelt_sbatch_option_is_refused_before_anything_is_written(slurm, cache_dir):
    with pytest.raises(pj.OptionError, match="Did you mean 'cpus_per_task'"):
        pj.experiment(slurm={"cpus_per_tsk": 2})(square).sweep(x=[1])  # at decoration
    assert len(pj.runs()) == 0


def test_options_pyjoule_sets_itself_are_refused_at_decoration():
    with pytest.raises(pj.OptionError, match="array_parallelism"):
        pj.experiment(slurm={"array": "0-3"})(square)


@pytest.mark.parametrize("options, says", [
    ({"mem": "64G"}, "Memory specification can not be satisfied"),
    ({"partition": "nosuch"}, "invalid partition"),
])
def test_a_request_the_cluster_cannot_satisfy_fails_at_submit_with_slurms_words(
        slurm, cache_dir, options, says):
    f = pj.experiment(slurm=options)(square)
    with pytest.raises(pj.SlurmError, match=says):
        f.sweep(x=[1, 2])
    assert len(pj.runs()) == 0
    assert not list((cache_dir / "runs").glob("*"))  # nothing left behind


def test_a_module_missing_where_the_jobs_run_fails_before_queueing(slurm, cache_dir,
                                                                   tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "localonly.py").write_text("def f(x):\n    return x\n")
    t0 = time.monotonic()
    out = run_script(cache_dir.parent, f"""
        import sys
        sys.path.insert(0, {str(outside)!r})
        import localonly
        sys.path.remove({str(outside)!r})   # the jobs will not find it
        import pyjoule as pj

        @pj.experiment(slurm={{"time": "5"}})
        def uses(x):
            return localonly.f(x)

        try:
            uses.sweep(x=[1, 2])
        except pj.SlurmError as exc:
            print("REFUSED", exc)
        print("runs", len(pj.runs()))
    """, timeout=120).stdout
    assert "REFUSED" in out and "nothing was submitted" in out and "localonly" in out
    assert "runs 0" in out
    assert time.monotonic() - t0 < 30


def test_accounting_answers_for_tasks_squeue_has_forgotten():
    """With slurmdbd, the probe asks sacct about tasks squeue no longer shows."""
    from pyjoule._backends._slurm_probe import probe

    cluster = ensure_slurm(accounting=True)
    try:
        job = cluster.sbatch("--array=0-1", "--wrap", "true", cwd="/tmp")
        cluster.wait(job)
        deadline = time.monotonic() + 30
        while True:
            answer, _ = probe("/nonexistent", [], sacct=True,
                              expected=[f"{job}_0", f"{job}_1"])
            found = answer.get("sacct") or {}
            # slurmdbd may still hold a task as RUNNING a moment after it ended
            settled = all(state not in ("RUNNING", "PENDING") for state, _ in found.values())
            if (len(found) == 2 and settled) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {s for s, _ in found.values()} == {"COMPLETED"}
    finally:
        ensure_slurm()


def test_a_run_submitted_over_ssh_is_followed_from_a_new_process(slurm, sshd,
                                                                  weird_tmp_path):
    from pyjoule._transport import ssh

    study = weird_tmp_path / "study"
    study.mkdir()
    env = {"PYJOULE_SSH_CONFIG": str(sshd.ssh_config), "PYJOULE_CACHE": str(study / "c"),
           "PYJOULE_PROGRESS": "0", "PYJOULE_POLL_INTERVAL": "0.3"}
    out = run_script(study, """
        import time
        import pyjoule as pj

        @pj.experiment(host="pjtest", slurm={"time": "5"}, batch=2, workers=1)
        def slowly(i):
            time.sleep(0.5)
            return i * 3

        run = slowly.submit(pj.grid(i=range(8)))
        print(run.id, run.status()["done"])
    """, env=env, timeout=180).stdout.split()
    run_id, done_then = out[0], int(out[1])
    # this process has no PYJOULE_SSH_CONFIG: the run remembers the config it used
    assert done_then < 8  # the submitting process is gone before the work is done
    try:
        run = pj.attach(run_id, cache=study / "c")
        run.wait(timeout=120)
        assert run.status()["done"] == 8
        assert sorted(run.dataset().result.values.tolist()) == [3 * i for i in range(8)]
        (rec,) = pj.runs(cache=study / "c").itertuples()
        assert rec.state == "done" and rec.host == "pjtest" and len(rec.job_ids) == 1
        # what the run left on the host is tidied away
        assert sshd.run(f"ls ~/.cache/pyjoule/runs/{run_id} 2>&1 || true").stdout.count(
            "No such file") == 1
    finally:
        ssh.close_all()


def test_host_check_reports_the_clusters_limits(slurm, ssh_host):
    text = str(ssh_host.check())
    assert "slurm-wlm 22.05" in text and "MaxArraySize 1001" in text
    assert "MaxJobCount 10000" in text and "debug* (8 CPUs)" in text


def refuses(x):
    if x < 0:
        raise ValueError(f"x={x} must not be negative")
    print(f"took {x}")
    return x


def test_a_single_call_raises_what_the_array_task_raised(slurm, cache_dir):
    f = pj.experiment(slurm={"time": "5"}, workers=1)(refuses)
    with pytest.raises(ValueError, match="x=-1 must not be negative") as info:
        f(x=-1)
    assert isinstance(info.value.__cause__, pj.WorkerTraceback)
    assert f(x=2) == 2
    assert f.table(output=True)["_stdout"].tolist() == ["took 2\n"]
