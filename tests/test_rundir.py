"""The run directory's one owner, ``pyjoule._rundir``: its atomic write, the check
before anything is unpickled, liveness with start times, the names the scripts run
on hosts use (run here, for real, against a RunDir, with RunDir's names changed too),
and pulled answers that may not name paths outside the run directory."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule import _platform, _rundir, _slurm_task
from pyjoule._backends import _host_scripts
from pyjoule._backends.ssh import SSHBackend
from pyjoule._rundir import RunDir

from conftest import REPO
from test_trust_local import OTHER, other_user  # noqa: F401 - the fixture

PYTHON3 = shutil.which("python3") or sys.executable


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ------------------------------------------------------------- atomic write
def test_atomic_write_is_0600_under_umask_000_and_leaves_no_temporary_on_failure(tmp_path):
    old = os.umask(0)
    try:
        target = tmp_path / "exit"
        _rundir.atomic_write(target, b"0\n")
        assert target.read_bytes() == b"0\n" and mode_of(target) == 0o600
        RunDir(tmp_path).write_pid(os.getpid())
        assert mode_of(tmp_path / _rundir.PID) == 0o600
        with pytest.raises(TypeError):
            _rundir.atomic_write(tmp_path / "other", object())  # fails after the temp exists
        (tmp_path / "a_dir").mkdir()
        (tmp_path / "a_dir" / "inside").write_text("x")
        with pytest.raises(OSError):
            _rundir.atomic_write(tmp_path / "a_dir", b"x")  # os.replace onto a directory
        made = RunDir(tmp_path / "run").make()
        assert mode_of(made.path) == 0o700 and mode_of(made.results) == 0o700
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "exit", "run",
                                                          _rundir.PID]
    assert not list(tmp_path.rglob("*" + _rundir.TMP_SUFFIX))


def test_the_store_writes_with_the_same_atomic_write(tmp_path, monkeypatch):
    """One copy: _store.atomic_write is _files' (as _rundir's), with the full-disk error
    on top."""
    from pyjoule import _files, _store

    assert _rundir.atomic_write is _files.atomic_write
    calls = []
    real = _files.atomic_write
    monkeypatch.setattr(_files, "atomic_write", lambda *a: calls.append(a) or real(*a))
    _store.atomic_write(tmp_path / "seg", b"data")
    assert calls and (tmp_path / "seg").read_bytes() == b"data"


# ------------------------------------------------------- checked before loading
class Planted:
    """Unpickling this creates ``marker``: any load of it would be visible."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(run_dir: Path, marker: Path) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / _rundir.RESULTS).mkdir()
    for name in (_rundir.PAYLOAD, _rundir.TASKS, _rundir.REQUEST, "retry-1.pkl"):
        (run_dir / name).write_bytes(pickle.dumps(Planted(marker)))
    wave = run_dir / _rundir.QUEUE / "w0"
    wave.mkdir(parents=True)
    (wave / _rundir.META).write_text(json.dumps({"tasks": [_rundir.TASKS], "batch": 1}))


def every_reader(run_dir: Path):
    yield lambda: RunDir(run_dir).load()
    yield lambda: RunDir(run_dir).load(["retry-1.pkl"])
    yield lambda: RunDir(run_dir).read_tasks()
    yield lambda: RunDir(run_dir).read_request()
    yield lambda: RunDir(run_dir).task_list()
    yield lambda: _slurm_task.make_queue(str(run_dir), "w0", [_rundir.TASKS], 1)


def refused_everywhere(run_dir: Path, marker: Path, why: str) -> None:
    for read in every_reader(run_dir):
        with pytest.raises(pj.CacheError, match=why):
            read()
    # and the worker program itself, as a host or a SLURM task starts it
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for argv in (["--check"], ["--workers", "1"], ["--slurm", "w0"]):
        proc = subprocess.run([sys.executable, "-m", "pyjoule.worker", str(run_dir), *argv],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode != 0 and "CacheError" in proc.stderr, proc.stderr
    assert not marker.exists(), "a planted pickle was loaded"


def test_a_run_directory_of_another_user_is_refused_before_anything_is_unpickled(
        tmp_path, other_user):  # noqa: F811
    marker = tmp_path / "ran"
    run_dir = tmp_path / "run"
    plant(run_dir, marker)
    os.chown(run_dir, other_user.pw_uid, other_user.pw_gid)
    os.chmod(run_dir, 0o755)
    refused_everywhere(run_dir, marker, f"run directory {run_dir}: it belongs to {OTHER}")


def test_a_run_directory_writable_by_others_is_refused_before_anything_is_unpickled(
        tmp_path):
    marker = tmp_path / "ran"
    run_dir = tmp_path / "run"
    plant(run_dir, marker)
    os.chmod(run_dir, 0o757)
    refused_everywhere(run_dir, marker, "writable by every user .*mode 0o757.*chmod go-w")


def test_the_check_is_made_once_per_run_dir_and_again_by_a_new_one(tmp_path):
    run_dir = tmp_path / "run"
    plant(run_dir, tmp_path / "ran")
    (run_dir / _rundir.TASKS).write_bytes(pickle.dumps([("a", {"x": 1})]))
    rd = RunDir(run_dir)
    assert rd.read_tasks([_rundir.TASKS]) == {"a": {"x": 1}}
    os.chmod(run_dir, 0o757)
    assert rd.read_tasks([_rundir.TASKS]) == {"a": {"x": 1}}  # checked already
    with pytest.raises(pj.CacheError):
        RunDir(run_dir).read_tasks([_rundir.TASKS])


# ----------------------------------------------------------------- liveness
@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_liveness_believes_a_pid_only_with_its_start_time(tmp_path, sleeper):
    rd = RunDir(tmp_path)
    assert not rd.is_alive() and rd.read_pid() is None and rd.leader() is None
    start = _platform.process_start_time(sleeper.pid)
    assert start
    rd.write_pid(sleeper.pid)
    assert rd.read_pid() == (sleeper.pid, start) and rd.is_alive()
    assert rd.leader() == (sleeper.pid, start)
    # the pid now names another process (reused): not the worker, however alive
    rd.write_pid(sleeper.pid, str(int(start) + 1) if start.isdigit() else start + "x")
    assert not rd.is_alive() and rd.leader() is None
    rd.write_pid(sleeper.pid, start)
    rd.write_exit(0)  # every task accounted for: ended, though the process lingers
    assert rd.exited() and not rd.is_alive()
    rd.clear_exit()
    assert rd.is_alive()
    sleeper.kill()
    sleeper.wait()
    assert not rd.is_alive()


def test_kill_orphans_spares_a_reused_pid_and_kills_the_recorded_group(tmp_path, sleeper):
    rd = RunDir(tmp_path)
    start = _platform.process_start_time(sleeper.pid)
    (tmp_path / _rundir.CHILDREN).write_text(f"{sleeper.pid} {start}9\n")  # another's
    assert rd.kill_orphans() == 0 and sleeper.poll() is None
    (tmp_path / _rundir.CHILDREN).unlink()
    fd = rd.note_child(None, sleeper.pid)  # as the supervisor records a child
    os.close(fd)
    assert mode_of(rd.children) == 0o600
    assert rd.kill_orphans() == 1
    assert sleeper.wait(10) == -signal.SIGKILL
    rd.forget_children()
    assert not os.path.exists(rd.children) and rd.kill_orphans() == 0


# ------------------------------------------------ the scripts run on hosts
ALTERED = {"RESULTS": "res-x", "PID": "pid-x.txt", "EXIT": "exit-x", "LOG": "log-x.txt",
           "HOST_ENV": "env-x.sh", "QUEUE": "q-x", "PENDING": "pend-x", "CLAIMED": "cl-x",
           "ENDS": "ends-x", "LOGS": "logs-x", "LOG_SUFFIX": ".o-x", "META": "meta-x.json",
           "RESULT_SUFFIX": ".rec"}  # (result names are checked by _names: kept)


@pytest.fixture(params=["names as they are", "names changed in _rundir"])
def names(request, monkeypatch):
    """RunDir's names as they are, or all changed: the scripts must follow, since they
    take every name from _rundir and spell none themselves."""
    if request.param != "names as they are":
        for name, value in ALTERED.items():
            monkeypatch.setattr(_rundir, name, value)
    importlib.reload(_host_scripts)
    yield request.param
    monkeypatch.undo()
    importlib.reload(_host_scripts)


def sh(script: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", "umask 077\n" + script, "sh", *args], input=stdin,
                          capture_output=True, timeout=60)


def test_the_host_scripts_use_rundirs_names(tmp_path, names):
    remote = tmp_path / "host-run"
    local = RunDir(tmp_path / "local-run").make()
    rd = RunDir(remote)
    # RECEIVE: the directory, results/, host.env and the files from stdin (private)
    Path(local.path, _rundir.PAYLOAD).write_bytes(b"payload")
    stdin = SSHBackend(pj.Host("h", env={"PJ_X": "1"}), project="p", python="py",
                       lib="l")._files_input(local.path, [_rundir.PAYLOAD], "send")
    done = subprocess.run([PYTHON3, "-I", "-c", _host_scripts.RECEIVE, str(remote)],
                          input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert os.path.isdir(rd.results) and mode_of(rd.path) == 0o700
    assert Path(rd.host_env).read_text() == "export PJ_X=1\n" and mode_of(rd.host_env) == 0o600
    assert Path(rd.path, _rundir.PAYLOAD).read_bytes() == b"payload"
    assert mode_of(os.path.join(rd.path, _rundir.PAYLOAD)) == 0o600
    # START: the files again, worker.pid (pid and start time, as RunDir reads them) and
    # worker.log, then FOLLOW streams the results back until a word on stdin
    script = _host_scripts.START.replace("{setup}", "")
    command = ["sh", "-c", '[ "$1" = --check ] || { echo "env $PJ_X"; exec sleep 60; }', "sh"]
    start = subprocess.Popen(
        ["sh", "-c", "umask 077\n" + script, "sh", _host_scripts.RECEIVE,
         _host_scripts.FOLLOW, "{}", str(remote), str(tmp_path), "keep", *command],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start.stdin.write(SSHBackend(pj.Host("h"), project="p", python="py", lib="l",
                                 env_names=["PJ_X"])._files_input(
                                     local.path, [_rundir.PAYLOAD], "keep"))
    start.stdin.flush()
    line = start.stdout.readline().decode()
    assert line.startswith("@pyjoule-started "), (line, start.stderr.read(2000))
    pid = int(line.split()[1])
    try:
        assert rd.read_pid() == (pid, _platform.process_start_time(pid))
        assert rd.is_alive()
        # PULL: what RunDir finds there, appended to the local copy by RunDir
        with open(rd.result_file("w1-1"), "wb") as fh:
            fh.write(b"abc")
        answer = subprocess.run([PYTHON3, "-I", "-c", _host_scripts.PULL, rd.path,
                                 json.dumps(local.offsets())], capture_output=True,
                                timeout=60).stdout
        meta = local.append_pulled(answer, "host")
        assert meta == {"files": [["w1-1" + _rundir.RESULT_SUFFIX, 3]], "alive": True}
        assert Path(local.result_file("w1-1")).read_bytes() == b"abc"
        # CANCEL: finds the worker by RunDir's pid file, stops its group
        sh(f"{PYTHON3} -I -c \"$1\" \"$2\"", _host_scripts.CANCEL, rd.path)
        deadline = time.monotonic() + 10
        while _platform.is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not rd.is_alive()
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "env 1" in Path(rd.log).read_text()
    rd.write_exit(0)
    # FOLLOW: a last frame saying the worker ended, then "all" removes the run directory
    out, _ = start.communicate(b"all\n", timeout=60)
    assert b'"alive": false' in out.rsplit(b"@pyjoule-frame ", 1)[1]
    assert not os.path.exists(rd.path)
    os.makedirs(rd.results)
    rd.write_exit(0)
    answer = subprocess.run([PYTHON3, "-I", "-c", _host_scripts.PULL, rd.path,
                             json.dumps(local.offsets())], capture_output=True).stdout
    assert local.append_pulled(answer, "host")["alive"] is False  # RunDir's exit file


def test_the_slurm_probe_sent_to_a_host_uses_rundirs_names(tmp_path, names):
    from pyjoule._backends.slurm import _probe_source

    rd = RunDir(tmp_path / "run").make()
    Path(rd.path, _rundir.TASKS).write_bytes(pickle.dumps([(str(i), {}) for i in range(3)]))
    assert _slurm_task.make_queue(rd.path, "w0", [_rundir.TASKS], 1) == 3
    assert _slurm_task.claim(rd.queue("w0"), "7_0") == 0
    _rundir.atomic_write(rd.end_file("7_0"), b"0 done 1\n")
    # an end file being written (atomic_write's temporary) is not an end, nor a bad name
    Path(rd.end_file("7_1") + f".123.abcdef{_rundir.TMP_SUFFIX}").write_text("0 done")
    Path(rd.log_file("7_1")).write_text("slurmstepd: CANCELLED\n")
    with open(rd.result_file("7_0-b0-w1-1"), "wb") as fh:
        fh.write(b"xyz")
    request = {"run_dir": rd.path, "job_ids": [], "offsets": {}, "expected": ["7_1"]}
    proc = subprocess.run([PYTHON3, "-I", "-c", _probe_source(), json.dumps(request)],
                          capture_output=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    head, _, body = proc.stdout.partition(b"\n")
    got = json.loads(head)
    assert got["pending"] == {"w0": 2} and got["claimed"] == {"w0": ["000000.7_0"]}
    assert got["ends"] == {"7_0": "0 done 1"} and "CANCELLED" in got["logs"]["7_1"]
    assert got["files"] == [["7_0-b0-w1-1" + _rundir.RESULT_SUFFIX, 3]] and body == b"xyz"


def test_the_scripts_spell_no_run_directory_name_and_fill_refuses_unknown_ones():
    """The templates name run directory files only as @NAME@ (filled from _rundir)."""
    sources = [Path(_host_scripts.__file__).read_text(),
               Path(_slurm_task.__file__).read_text(),
               (Path(_host_scripts.__file__).parent / "_slurm_probe.py").read_text()]
    for name in _rundir.NAMES:
        value = getattr(_rundir, name)
        for source in sources:
            for spelled in (f'run_dir/{value}"', f'"{value}"' if "." in value else None):
                assert not spelled or spelled not in source, (name, spelled)
    with pytest.raises(ValueError, match="@NOPE@"):
        _rundir.fill("cat $run_dir/@NOPE@")
    assert _rundir.fill("$d/@PID@ $d/@RESULTS@") == f"$d/{_rundir.PID} $d/{_rundir.RESULTS}"


# ------------------------------------------------------------ pulled answers
BAD = ["../evil.rec", "/tmp/evil.rec", "a/b.rec", "..", "x\0.rec", "notes.txt",
       f"../../{_rundir.PAYLOAD}", f"../{_rundir.PID}"]


@pytest.mark.parametrize("name", BAD)
def test_a_pulled_answer_cannot_name_a_path_outside_results(tmp_path, name):
    rd = RunDir(tmp_path / "cache" / "runs" / "r1").make()
    Path(rd.result_file("ok")).write_bytes(b"old")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    answer = json.dumps({"files": [["ok.rec", 3], [name, 4]], "alive": True}).encode() \
        + b"\nnewEVIL"
    with pytest.raises(pj.HostError, match="box answered .*refused, nothing was written"):
        rd.append_pulled(answer, "box")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_good_pull_appends_and_an_incomplete_one_writes_nothing(tmp_path):
    rd = RunDir(tmp_path / "r").make()
    good = json.dumps({"files": [["a.rec", 2], ["b.rec", 0]], "alive": False}).encode()
    assert rd.append_pulled(good + b"\nhi", "box") == {"files": [["a.rec", 2],
                                                               ["b.rec", 0]], "alive": False}
    assert rd.offsets() == {"a.rec": 2} and mode_of(rd.result_file("a")) == 0o600
    short = json.dumps({"files": [["a.rec", 5]], "alive": True}).encode() + b"\nabc"
    assert rd.append_pulled(short, "box") is None and rd.offsets() == {"a.rec": 2}


# ------------------------------------------------------------------ tidying
def test_tidy_keeps_the_request_and_a_cancelled_runs_task_files(tmp_path):
    rd = RunDir(tmp_path / "r").make()
    for name in (_rundir.PAYLOAD, _rundir.TASKS, "retry-1.pkl", _rundir.REQUEST):
        rd.write(name, b"x")
    Path(rd.log).write_bytes(b"")
    Path(rd.result_file("a")).write_bytes(b"x")
    rd.tidy(keep_log=False, keep_tasks=True)
    assert sorted(os.listdir(rd.path)) == ["request.pkl", "retry-1.pkl", "tasks.pkl"]
    rd.tidy(keep_log=False)
    assert os.listdir(rd.path) == [_rundir.REQUEST]
