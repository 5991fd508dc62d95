"""Local process faults stay contained (issue 13, §3): real processes, real signals.

A pset that forks helpers and hangs, a pset that closes its output, the supervisor
killed with ``kill -9``, Ctrl-C during ``f(x)``, a ``cache=False`` driver killed,
reused pids, private file modes, and the portable fallbacks of ``pyjoule._platform``.
"""

from __future__ import annotations

import glob
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import helpers
import pytest

import pyjoule as pj
from pyjoule import _platform, _rundir, _slurm_task, worker
from pyjoule._backends.pool import PoolBackend
from pyjoule._rundir import RunDir
from pyjoule._transport import local

from conftest import REPO, processes

WAIT_S = 30  # a bound on waits for something that must happen, not a speed check


# ------------------------------------------------------------------- helpers
def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not), read from /proc."""
    return any(p == pid and state not in (b"Z", b"X") for p, _, _, state, _ in processes())


def wait_until(check, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.05)
    return result


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def append(path: str, text: str) -> None:
    """One O_APPEND write: lines from several processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def start_script(folder: Path, source: str, env: dict | None = None) -> subprocess.Popen:
    return helpers.start_script(folder, source, env={"PYJOULE_PROGRESS": "0", **(env or {})})


@pytest.fixture(params=["linux", "fallback"])
def platform_mode(request, monkeypatch):
    """Run a test with the Linux probes, and again with them switched off (the
    fallbacks a Mac uses: psutil, a watcher thread, polling)."""
    if request.param == "fallback":
        monkeypatch.setattr(_platform, "LINUX", False)
    return request.param


@pytest.fixture
def sleeper():
    """An unrelated live process (a ``sleep`` in its own session)."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def _tree(folder: Path) -> str:
    """What is in ``folder``, and the worker logs there (for failure messages)."""
    lines = [str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))]
    for log in folder.rglob("worker.log"):
        lines.append(f"{log}:\n{log.read_text()}")
    return "\n".join(lines)


# ------------------------------------------------ _platform, and its fallbacks
def test_start_time_tells_a_live_process_from_a_reused_pid(platform_mode, sleeper):
    start = _platform.process_start_time(sleeper.pid)
    assert start, "no start time"
    assert _platform.process_start_time(sleeper.pid) == start  # stable
    assert _platform.is_running(sleeper.pid, start)
    assert not _platform.is_running(sleeper.pid, start + "1")
    sleeper.kill()
    sleeper.wait()
    assert not _platform.is_running(sleeper.pid, start)
    assert _platform.process_start_time(sleeper.pid) == ""


def test_without_psutil_the_fallback_start_time_is_unknown_not_an_error(monkeypatch,
                                                                         sleeper):
    monkeypatch.setattr(_platform, "LINUX", False)
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil fails
    assert _platform.process_start_time(sleeper.pid) == ""
    assert _platform.is_running(sleeper.pid, "anything")  # unknown: kill(pid, 0) decides
    assert _platform.group_alive(sleeper.pid)


def test_zombies_and_groups(platform_mode):
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        assert not _platform.is_zombie(proc.pid)
        assert _platform.group_alive(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        wait_until(lambda: _platform.is_zombie(proc.pid), "the killed child to be a zombie")
        assert not _platform.is_running(proc.pid)
        assert not _platform.group_alive(proc.pid)  # only a zombie is left in it
    finally:
        proc.kill()
        proc.wait()
    assert not _platform.group_alive(proc.pid)


def test_child_exited_leaves_the_child_unreaped(platform_mode):
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        assert not _platform.child_exited(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        wait_until(lambda: _platform.child_exited(proc.pid), "the killed child to be seen")
        assert _platform.child_exited(proc.pid)  # asking twice: still unreaped
        assert os.waitpid(proc.pid, os.WNOHANG)[0] == proc.pid  # the caller reaps it
    finally:
        proc.returncode = -9
    assert _platform.child_exited(proc.pid)  # reaped: gone


def test_without_psutil_a_zombie_child_is_still_seen_to_have_exited(monkeypatch):
    monkeypatch.setattr(_platform, "LINUX", False)
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil fails: ps answers
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        assert not _platform.child_exited(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        wait_until(lambda: _platform.child_exited(proc.pid), "ps to see the zombie")
    finally:
        proc.kill()
        proc.wait()


def test_file_system_type_agrees_with_the_portable_fallback(monkeypatch, tmp_path):
    linux = _platform.filesystem_type(tmp_path)
    root = _platform.filesystem_type("/")
    assert linux and root
    monkeypatch.setattr(_platform, "LINUX", False)  # psutil's partitions, as on a Mac
    assert _platform.filesystem_type(tmp_path) == linux
    assert _platform.filesystem_type("/") == root


def test_windows_gets_a_clear_error_naming_wsl(monkeypatch):
    _platform.require_posix()  # here: nothing to say
    for platform, os_name in (("win32", "nt"), ("cygwin", "posix"), ("linux", "nt")):
        with monkeypatch.context() as m:
            m.setattr(sys, "platform", platform)
            m.setattr(os, "name", os_name)
            with pytest.raises(pj.PyjouleError) as info:
                _platform.require_posix()
        assert "Windows is not supported" in str(info.value), platform
        assert "WSL" in str(info.value)


def test_importing_the_pool_on_windows_is_that_error_not_a_traceback(tmp_path):
    code = textwrap.dedent("""
        import sys
        import pyjoule as pj
        sys.platform = "win32"
        try:
            from pyjoule._backends import pool
        except pj.PyjouleError as exc:
            print("CLEAR:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("CLEAR: Windows is not supported"), proc.stdout


def test_portable_only_switches_the_linux_paths_off_in_the_process_and_its_workers(tmp_path):
    code = "from pyjoule import _platform; print(_platform.LINUX, _platform.PORTABLE_ONLY)"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for value, expected in (("1", "False True"), ("0", "True False"), ("", "True False")):
        env["PYJOULE_PORTABLE_ONLY"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout.strip()
        assert out == expected, (value, out)


def test_wait_for_exit_wakes_when_the_process_ends(platform_mode):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    t0 = time.monotonic()
    while proc.poll() is None:
        _platform.wait_for_exit(proc.pid, 600)
        assert time.monotonic() - t0 < 300, "waited out the timeout: the exit was missed"
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        t0 = time.monotonic()
        _platform.wait_for_exit(os.getpid(), 600, [r])  # a readable fd wakes it too
        assert time.monotonic() - t0 < 300
    finally:
        os.close(r)
        os.close(w)


DEATH_SCRIPT = """
    import os, signal, sys, time
    from pyjoule import _platform

    _platform.LINUX = {linux}
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _platform.die_with_parent(signal.SIGKILL, parent)
        _platform.set_process_name(b"pj-test-orphan")
        time.sleep(600)
        os._exit(0)
    print(pid, flush=True)
    time.sleep(600)
"""


def test_a_child_dies_with_its_parent(platform_mode, tmp_path):
    proc = start_script(tmp_path, DEATH_SCRIPT.format(linux=platform_mode == "linux"))
    child = int(proc.stdout.readline())
    try:
        assert running(child)
        if platform_mode == "linux":  # PR_SET_NAME: ps shows the name
            wait_until(lambda: Path(f"/proc/{child}/comm").read_text().strip()
                       == "pj-test-orphan", "the child's name")
        proc.kill()  # kill -9: the parent cleans up nothing
        proc.wait()
        wait_until(lambda: not running(child), "the orphan to die")
    finally:
        proc.kill()
        proc.wait()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------ 1. timeout= with forked helpers
def _forks_helpers_then_hangs(x, pids):
    if x == 0:  # a multiprocessing.Pool: its processes inherit the worker's pipes
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(2)
        append(pids, "".join(f"{p.pid}\n" for p in pool._pool))
        pool.map(time.sleep, [600, 600])
    if x == 1:  # a subprocess that keeps the worker's pipes open
        proc = subprocess.Popen(["sleep", "1000"], close_fds=False)
        append(pids, f"{proc.pid}\n")
        time.sleep(600)
    return x


@pytest.mark.slow
def test_timeout_bounds_a_pset_that_forked_helpers(cache_dir, tmp_path):
    pids = str(tmp_path / "helpers")

    @pj.experiment(workers=2, timeout=2, progress=False, errors="ignore")
    def forks(x):
        return _forks_helpers_then_hangs(x, pids)

    ds = forks.sweep(x=range(6))
    assert ds.result.values.tolist()[2:] == [2, 3, 4, 5]
    assert len(forks.table(pj.grid(x=range(6)))) == 4  # the hanging two are not cached
    helpers = pids_in(Path(pids))
    assert len(helpers) >= 3, "the helpers did not start"
    wait_until(lambda: not any(running(p) for p in helpers), "every helper to be killed")


@pytest.mark.slow
def test_timeout_fails_the_forking_pset_with_reason_timeout(cache_dir, tmp_path):
    pids = str(tmp_path / "helpers")

    @pj.experiment(workers=2, timeout=2, progress=False)
    def forks(x):
        return _forks_helpers_then_hangs(x, pids)

    with pytest.raises(pj.ExperimentError) as err:
        forks.sweep(x=range(4))
    failures = err.value.failures
    assert sorted(failures.reason) == ["timeout", "timeout"]
    assert sorted(err.value.dataset.result.values.tolist()[2:]) == [2, 3]
    helpers = pids_in(Path(pids))
    assert len(helpers) >= 3
    wait_until(lambda: not any(running(p) for p in helpers), "every helper to be killed")


# ------------------------- 2. a forked worker never unwinds into the supervisor
def _closes_its_output(x):
    if x == 0:
        sys.stdout.close()
    elif x == 1:
        sys.stderr.close()
    elif x == 2:
        os.close(1)
    elif x == 3:
        os.close(2)
    return x


@pytest.mark.parametrize("capture", [True, False])
def test_a_pset_that_closes_its_output_harms_no_sibling(cache_dir, capture):
    @pj.experiment(workers=2, progress=False, capture=capture)
    def closes(x):
        return _closes_its_output(x)

    for _ in range(3):  # the closing psets meet different siblings each time
        closes.clear_cache()
        ds = closes.sweep(x=range(12))  # errors="raise": any failure would raise
        assert ds.result.values.tolist() == list(range(12))


def test_a_forked_detached_child_never_unwinds_into_the_caller(tmp_path):
    """Whatever fails in it (its output closed, then an exception), the child of
    ``fork_detached`` ends with ``os._exit``: it never returns into this code."""
    me = os.getpid()
    marker = tmp_path / "unwound"

    def target():
        sys.stdout.close()
        sys.stderr.close()
        os.close(1)
        os.close(2)
        raise RuntimeError("and then this")

    try:
        child = local.fork_detached(target, log_path=str(tmp_path / "log"))
    finally:
        if os.getpid() != me:  # the child came back here: say so, and stop
            marker.write_text("unwound")
            os._exit(0)
    assert child.wait(WAIT_S) == 1
    assert not marker.exists()
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o600


# ------------------------------- 3. kill -9 of the supervisor: nothing finished lost
SUPERVISOR_SCRIPT = """
    import os, time, pyjoule as pj

    COUNT = {count!r}
    if {fallback}:  # the forked pool inherits it: its children watch their parent
        from pyjoule import _platform
        _platform.LINUX = False

    @pj.experiment(workers=2, progress=False, errors="ignore")
    def slow(i):
        if i < 2:  # a helper that outlives the pset, in the worker's process group
            import subprocess
            helper = subprocess.Popen(["sleep", "1000"])
            with open(COUNT + ".helpers", "a") as fh:
                fh.write(f"{{helper.pid}}\\n")
        time.sleep(0.1)
        fd = os.open(COUNT, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, f"{{i}}\\n".encode())
        os.close(fd)
        return i

    if os.environ.get("ONLY_TABLE"):
        print(sorted(int(i) for i in slow.table()["i"]))
    else:
        ds = slow.sweep(i=range(60))
        print("finished", flush=True)
"""


def _supervisor_of(cache: Path) -> tuple[int, str]:
    for path in glob.glob(str(cache / "runs" / "*" / "worker.pid")):
        found = RunDir(os.path.dirname(path)).read_pid()
        if found and found[1]:
            return found
    return None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["linux", "fallback"])
def test_kill_9_of_the_supervisor_keeps_what_finished(cache_dir, tmp_path, mode):
    for attempt in range(3):
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        cache = folder / "cache"
        count = folder / "count"
        env = {"PYJOULE_CACHE": str(cache)}
        source = SUPERVISOR_SCRIPT.format(count=str(count), fallback=mode == "fallback")
        proc = start_script(folder, source, env)
        try:
            pid, _ = wait_until(lambda: _supervisor_of(cache), "the supervisor")
            wait_until(lambda: len(pids_in(count)) >= 6, "some psets to finish")
            children = [p for p, ppid, *_ in processes() if ppid == pid]
            assert children
            os.kill(pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=120)
            assert "finished" in out, err
        finally:
            proc.kill()
            proc.wait()
        wait_until(lambda: not any(running(p) for p in children + [pid]),
                   "the supervisor's children to die with it")
        helpers = pids_in(Path(f"{count}.helpers"))
        assert len(helpers) == 2
        wait_until(lambda: not any(running(p) for p in helpers),
                   "the helpers the children left to be killed")
        cached = eval(start_script(folder, source, dict(env, ONLY_TABLE="1"))
                      .communicate(timeout=120)[0])
        assert 0 < len(cached) < 60
        before = pids_in(count)
        assert set(cached) <= set(before)
        proc = start_script(folder, source, env)
        out, err = proc.communicate(timeout=120)
        assert "finished" in out, err
        counts = pids_in(count)
        assert sorted(set(counts)) == list(range(60))
        for i in cached:  # finished before the kill: never run again
            assert counts.count(i) == 1, (i, counts.count(i))
        assert all(counts.count(i) <= 2 for i in range(60))


# ---------------------------------------------------- 4. Ctrl-C during f(x)
CALL_SCRIPT = """
    import os, sys, time, pyjoule as pj

    PIDS = {pids!r}

    @pj.experiment(workers=1, progress=False)
    def hangs(x):
        fd = os.open(PIDS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, f"{{os.getpid()}}\\n".encode())
        os.close(fd)
        time.sleep(600)
        return x

    try:
        hangs(1)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
"""


def test_ctrl_c_during_a_single_call_stops_its_worker(cache_dir, tmp_path):
    pids = tmp_path / "pids"
    proc = start_script(tmp_path, CALL_SCRIPT.format(pids=str(pids)),
                        {"PYJOULE_CACHE": str(cache_dir)})
    try:
        (child,) = wait_until(lambda: pids_in(pids), "the pset to start")
        supervisor = wait_until(lambda: _supervisor_of(cache_dir), "the supervisor")[0]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in out
    wait_until(lambda: not running(child) and not running(supervisor),
               "the worker to stop")


# ----------------------------------- 5. cache=False: a killed driver leaves nothing
NOCACHE_SCRIPT = """
    import os, threading, time, pyjoule as pj

    PIDS = {pids!r}
    if {spawn}:  # a thread: forking is unsafe, the pool is started as python -m ...
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    if {fallback}:  # the forked pool inherits it: no PR_SET_PDEATHSIG, no pidfd
        from pyjoule import _platform
        _platform.LINUX = False

    @pj.experiment(workers=2, progress=False, cache=False)
    def slow(i):
        fd = os.open(PIDS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(fd, f"{{os.getpid()}}\\n".encode())
        os.close(fd)
        time.sleep(0.5)
        return i

    slow.sweep(i=range(100))
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["forked", "spawned", "forked-fallback"])
def test_kill_9_of_a_cache_false_driver_leaves_no_pool_and_no_dir(tmp_path, start):
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        temp = folder / "tmp"
        temp.mkdir(parents=True)
        pids = folder / "pids"
        source = NOCACHE_SCRIPT.format(pids=str(pids), spawn=start == "spawned",
                                       fallback=start == "forked-fallback")
        proc = start_script(folder, source, {"TMPDIR": str(temp)})
        try:
            wait_until(lambda: len(pids_in(pids)) >= 2, "the pool to start")
            (nocache,) = glob.glob(str(temp / "pyjoule-nocache-*"))
            assert stat.S_IMODE(os.stat(nocache).st_mode) == 0o700
            supervisor = wait_until(lambda: _supervisor_of(Path(nocache)),
                                    "its supervisor")[0]
            spawned = b"--parent" in Path(f"/proc/{supervisor}/cmdline").read_bytes()
            assert spawned == (start == "spawned")
            proc.kill()
            proc.wait()
            wait_until(lambda: not any(running(p) for p in pids_in(pids) + [supervisor]),
                       "the pool to die with its driver")
            wait_until(lambda: not glob.glob(str(temp / "pyjoule-nocache-*")),
                       f"the nocache directory to be removed: {_tree(temp)}")
        finally:
            proc.kill()
            proc.wait()


def test_a_cache_false_call_removes_stale_nocache_dirs_of_dead_owners(tmp_path,
                                                                      monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "600"])
    try:
        folders = {}
        for name, pid, start in [
                ("dead", dead.pid, "1"),
                ("reused", alive.pid, _platform.process_start_time(alive.pid) + "0"),
                ("alive", alive.pid, _platform.process_start_time(alive.pid)),
                ("other-user", dead.pid, "1")]:
            folder = temp / f"pyjoule-nocache-{name}"
            folder.mkdir(mode=0o700)
            (folder / "owner").write_text(f"{pid} {start}\n")
            folders[name] = folder
        os.chown(folders["other-user"], 65534, 65534)  # nobody's: never touched

        @pj.experiment(workers=0, progress=False, cache=False)
        def one(x):
            return x

        assert one(3) == 3
        left = sorted(p.name for p in temp.iterdir())
        assert left == ["pyjoule-nocache-alive", "pyjoule-nocache-other-user"]
    finally:
        alive.kill()
        alive.wait()
        monkeypatch.setattr("tempfile.tempdir", None)


# --------------------------------------------- 6. pids are checked with start times
def test_a_reused_pid_is_neither_believed_alive_nor_killed(platform_mode, tmp_path,
                                                            sleeper):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    start = _platform.process_start_time(sleeper.pid)
    (run_dir / "worker.pid").write_text(f"{sleeper.pid} {start}1\n")  # another process's
    assert not RunDir(str(run_dir)).is_alive()
    PoolBackend(str(run_dir)).cancel()
    local.kill_group(sleeper.pid, grace_s=0.2, start=start + "1")
    assert sleeper.poll() is None and running(sleeper.pid), "an unrelated process was killed"
    (run_dir / "worker.pid").write_text(f"{sleeper.pid} {start}\n")  # it, this time
    assert RunDir(str(run_dir)).is_alive()
    PoolBackend(str(run_dir)).cancel()
    wait_until(lambda: not running(sleeper.pid), "the recorded process to be stopped")


# --------------------------------------------------------------- 7. private files
def test_files_of_a_run_are_private_whatever_the_umask(cache_dir, tmp_path):
    old = os.umask(0o022)
    try:
        @pj.experiment(workers=2, progress=False, errors="ignore")
        def fails(x):
            if x == 1:
                raise ValueError("keep the log")
            return x

        run = fails.submit(pj.grid(x=range(4)))
        run_dir = Path(run._own.run_dir)
        run.wait()
        assert stat.S_IMODE((run_dir / "worker.log").stat().st_mode) == 0o600
        assert stat.S_IMODE((run_dir / "worker.pid").stat().st_mode) == 0o600
        assert stat.S_IMODE((run_dir / "exit").stat().st_mode) == 0o600

        made = tmp_path / "made" / "run"
        _rundir.makedirs_private(str(made / "results"))
        for folder in (made.parent, made, made / "results"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        import pickle

        (made / "tasks.pkl").write_bytes(pickle.dumps([("a", {}), ("b", {})]))
        assert _slurm_task.make_queue(str(made), "w0", ["tasks.pkl"], 1) == 2
        for path in made.rglob("*"):
            if path.name != "tasks.pkl":
                want = 0o700 if path.is_dir() else 0o600
                assert stat.S_IMODE(path.stat().st_mode) == want, path
    finally:
        os.umask(old)


def test_records_are_private(tmp_path):
    import pickle

    import cloudpickle

    old = os.umask(0o022)
    try:
        run_dir = tmp_path / "run"
        _rundir.makedirs_private(str(run_dir))
        (run_dir / "payload.pkl").write_bytes(cloudpickle.dumps(
            {"func": abs, "threads": 1, "timeout_s": None, "capture": True}))
        (run_dir / "tasks.pkl").write_bytes(pickle.dumps([("a", {"x": -1})]))
        assert worker.run(str(run_dir), 0) == 0
        env = dict(os.environ, PYTHONPATH=str(REPO))
        subprocess.run([sys.executable, "-m", "pyjoule.worker", str(run_dir), "--workers",
                        "1"], env=env, check=True, timeout=120)
        recs = list((run_dir / "results").iterdir())
        assert len(recs) >= 2
        for path in [*recs, run_dir / "results", run_dir / "exit", run_dir / "worker.pid"]:
            want = 0o700 if path.is_dir() else 0o600
            assert stat.S_IMODE(path.stat().st_mode) == want, path
    finally:
        os.umask(old)


@pytest.mark.slow
def test_atomic_write_leaves_no_temporary_file_and_never_collides(tmp_path):
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(OSError):
        _rundir.atomic_write(str(target), b"x")  # replacing a directory fails
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]

    path = str(tmp_path / "exit")
    errors = []

    def write_many():
        try:
            for i in range(300):
                _rundir.atomic_write(path, f"{i}\n".encode())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory", "exit"]
