"""The remote side of the trust boundary, against the real test sshd and SLURM.

* ``pj.Host(env=...)`` values: in the worker's environment, nowhere else (no argv on
  the host, no local file, no log line, no error text).
* The host computes but does not choose local paths: every name in its answers is
  checked; the sync receiver deletes only inside its folder.
* What pyjoule creates on the host is private (0700 / 0600).
* A remote worker.pid is believed (and signalled) only with its start time.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import uv_project

import pyjoule as pj
from pyjoule import _host_answers as _names
from pyjoule._backends.ssh import SSHBackend, append_pulled
from pyjoule._transport import ssh, sync

from conftest import run_script


@pytest.fixture
def project(weird_tmp_path, sshd, monkeypatch):
    """A user's project (locked with real uv) whose study runs on the test host."""
    root = uv_project(weird_tmp_path / "study", "study")
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    monkeypatch.setenv("PYJOULE_CACHE", str(root / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    return root


@pytest.fixture
def workdir(sshd):
    """A fresh pyjoule workdir on the host (so everything in it is this test's)."""
    name = f"pj-trust-{uuid.uuid4().hex[:8]}"
    yield f"~/{name}", sshd.home / name
    sshd.run(f"rm -rf ~/{name}", check=False)


def _secret() -> tuple[str, str]:
    """A value with shell syntax in it, and the token any copy of it would contain."""
    token = uuid.uuid4().hex
    return f"tok {token} $(id);'q' \"d\"", token


def _files_holding(folder: Path, token: str) -> list[str]:
    hits = []
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            try:
                if token.encode() in Path(path).read_bytes():
                    hits.append(path)
            except OSError:
                pass
    return hits


class ArgvWatch:
    """Reads every process's command line from /proc, over and over, while a run goes
    on (the host is this machine): any argv that ever shows ``token`` is kept."""

    def __init__(self, token: str):
        self.token, self.seen, self.looks = token.encode(), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/cmdline", "rb") as fh:
                            cmd = fh.read()
                    except OSError:
                        continue
                    if self.token in cmd:
                        self.seen.append(cmd)
            self.looks += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _loose_modes(sshd, folder: Path) -> list[str]:
    """What in ``folder`` on the host has any group or other permission bit."""
    out = sshd.run(f"find {folder} ! -type l -perm /077 -printf '%m %p\\n'").stdout
    return out.splitlines()


# ------------------------------------------------------------------ 1. secrets
ENV_STUDY = """
    import hashlib, logging, os, sys
    import pyjoule as pj

    logging.basicConfig(filename=os.environ["LOG_FILE"], level=logging.DEBUG)
    secret = os.environ["PJ_TEST_SECRET"]  # in this process's memory only
    digest = hashlib.sha256(secret.encode()).hexdigest()
    workdir = os.environ["WORKDIR"]
    host = pj.Host("pjtest", workdir=workdir, env={"PJ_SECRET": secret})

    @pj.experiment(host=host, workers=2)
    def look(i):
        import hashlib, os, subprocess, time
        value = os.environ.get("PJ_SECRET", "")
        argv = subprocess.run(["ps", "-eo", "args"], capture_output=True,
                              text=True).stdout
        loose = subprocess.run(["find", os.path.expanduser(workdir), "!", "-type", "l",
                                "-perm", "/077"], capture_output=True, text=True).stdout
        time.sleep(0.3)
        return {"env_ok": hashlib.sha256(value.encode()).hexdigest() == digest,
                "in_ps": bool(value) and value in argv,
                "workers_seen": argv.count("pyjoule.worker"), "loose": loose.strip()}

    ds = look.sweep(i=range(4))
    print(sorted(set(ds.env_ok.values.tolist())), sorted(set(ds.in_ps.values.tolist())),
          int(ds.workers_seen.min()) >= 1, repr(set(ds.loose.values.tolist())))
"""


@pytest.mark.slow
def test_host_env_values_reach_the_worker_and_nowhere_else(project, sshd, workdir,
                                                           weird_tmp_path):
    secret, token = _secret()
    log_file = weird_tmp_path / "debug.log"
    with ArgvWatch(token) as watch:
        out = run_script(project, ENV_STUDY, timeout=300,
                         env={"PJ_TEST_SECRET": secret, "LOG_FILE": str(log_file),
                              "WORKDIR": workdir[0]}).stdout.strip()
    # the worker has the value; no process on the host ever had it in its argv
    assert out == "[True] [False] True {''}", out
    assert watch.looks > 10 and watch.seen == []
    # no local file holds it: the cache (index.sqlite, its WAL, run directories), the
    # project, the DEBUG log of the whole run (paramiko's lines included)
    assert log_file.stat().st_size > 1000 and "ssh pjtest:" in log_file.read_text()
    assert _files_holding(weird_tmp_path, token) == []
    # ... while the run registry does keep the names, for a later process
    cache = project / ".pyjoule"
    assert any(b"PJ_SECRET" in Path(p).read_bytes() for p in cache.glob("index.sqlite*"))
    # what pyjoule created on the host is private: during the run (the function's own
    # look at the run directory: payload, tasks, host.env, worker.pid, results, log)
    # and after it (projects, envs, lib)
    assert _loose_modes(sshd, workdir[1]) == []


def test_a_failing_remote_command_shows_env_names_and_masks_values(ssh_host):
    secret, token = _secret()
    conn = ssh.connect(ssh_host)
    with pytest.raises(pj.RemoteCommandError) as err:
        conn.run(["sh", "-c", 'echo "got $PJ_SECRET" >&2; exit 3'],
                 secret_env={"PJ_SECRET": secret})
    text = str(err.value)
    assert "PJ_SECRET=***" in text and "got ***" in text, text
    assert token not in text and token not in err.value.stderr
    assert token not in err.value.command


def test_a_failing_setup_line_that_prints_a_value_shows_stars(project, workdir,
                                                              weird_tmp_path):
    secret, token = _secret()
    out = run_script(project, """
        import logging, os, sys
        import pyjoule as pj

        logging.basicConfig(filename=os.environ["LOG_FILE"], level=logging.DEBUG)
        host = pj.Host("pjtest", workdir=os.environ["WORKDIR"],
                       env={"PJ_SECRET": os.environ["S"]},
                       setup=['echo "leaked: $PJ_SECRET" >&2; exit 4'])
        print(repr(host))

        @pj.experiment(host=host)
        def f(i):
            return i

        try:
            f.sweep(i=[1])
        except pj.PyjouleError as exc:
            print(type(exc).__name__, exc)
    """, env={"S": secret, "LOG_FILE": str(weird_tmp_path / "d.log"),
              "WORKDIR": workdir[0]}, timeout=300).stdout
    assert "RemoteCommandError" in out and "setup line 1" in out and "leaked: ***" in out
    assert "'PJ_SECRET': '***'" in out  # the Host's repr names the variable only
    assert token not in out
    assert _files_holding(weird_tmp_path, token) == []


RETRY_FUNC = """
import os

def f(path):
    with open(path, "w") as fh:
        fh.write(os.environ.get("PJ_SECRET", "<none>"))
    return 1
"""


def _write_run(run_dir: Path, tasks_name: str, psets: list[dict]) -> None:
    from pyjoule._dispatch import pickle_function

    ns = {"__name__": "__main__"}
    exec(RETRY_FUNC, ns)  # a __main__ function: pickled by value, as a script's
    payload = {"func": ns["f"], "threads": 1, "timeout_s": None, "capture": False,
               "batch": None}
    (run_dir / "payload.pkl").write_bytes(pickle_function(ns["f"], payload))
    tasks = [(f"p{i}", pset) for i, pset in enumerate(psets)]
    (run_dir / tasks_name).write_bytes(pickle.dumps(tasks))


@pytest.mark.slow
def test_a_retry_by_a_process_that_knows_only_the_names_still_has_the_values(
        project, sshd, workdir, tmp_path):
    secret, token = _secret()
    host = pj.Host(sshd.alias, ssh_config=sshd.ssh_config, workdir=workdir[0],
                   env={"PJ_SECRET": secret})
    first = SSHBackend.for_project(host, project)
    run_dir = tmp_path / "runs" / f"r{uuid.uuid4().hex[:10]}"
    (run_dir / "results").mkdir(parents=True)
    out_dir = sshd.home / workdir[1].name / "out"
    _write_run(run_dir, "tasks.pkl", [{"path": str(out_dir / "first")}])
    sshd.run(f"mkdir -p {out_dir}")
    try:
        first.start(str(run_dir), 1)
        assert first.wait(120)
        assert (out_dir / "first").read_text() == secret
        # what the registry keeps, read by a process with no pj.Host of its own
        description = json.loads(json.dumps(first.describe()))
        assert token not in json.dumps(description)
        again = SSHBackend.from_description(str(run_dir), description)
        assert again.host.env == {} and again.env_names == ["PJ_SECRET"]
        _write_run(run_dir, "retry-1.pkl", [{"path": str(out_dir / "retry")}])
        with ArgvWatch(token) as watch:
            again.start(str(run_dir), 1, ["retry-1.pkl"])
            assert again.wait(120)
        assert (out_dir / "retry").read_text() == secret and watch.seen == []
        # once the run's folder is gone, the names alone are not enough: a clear error
        again.tidy(keep_log=False)
        with pytest.raises(pj.HostError, match="only the names .*PJ_SECRET") as err:
            again.start(str(run_dir), 1, ["retry-1.pkl"])
        assert token not in str(err.value)
    finally:
        first.tidy(keep_log=False)
        ssh.close_all()


@pytest.mark.slow
def test_a_slurm_wave_submitted_by_a_process_that_knows_only_the_names_has_the_values(
        slurm, project, sshd, workdir, tmp_path, monkeypatch):
    from pyjoule import _slurm
    from pyjoule._backends.slurm import SlurmBackend

    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.3")
    secret, token = _secret()
    host = pj.Host(sshd.alias, ssh_config=sshd.ssh_config, workdir=workdir[0],
                   env={"PJ_SECRET": secret})
    first = SlurmBackend(_slurm.Slurm(time="00:05:00"),
                         ssh=SSHBackend.for_project(host, project))
    run_dir = tmp_path / "runs" / f"r{uuid.uuid4().hex[:10]}"
    (run_dir / "results").mkdir(parents=True)
    out_dir = workdir[1] / "out"
    _write_run(run_dir, "tasks.pkl", [{"path": str(out_dir / "w0")}])
    sshd.run(f"mkdir -p {out_dir}")
    try:
        with ArgvWatch(token) as watch:
            first.start(str(run_dir), 1)
            assert first.wait(120)
            assert (out_dir / "w0").read_text() == secret
            description = json.loads(json.dumps(first.describe()))
            assert token not in json.dumps(description)
            again = SlurmBackend.from_description(str(run_dir), description)
            assert again.ssh.host.env == {}
            _write_run(run_dir, "retry-1.pkl", [{"path": str(out_dir / "w1")}])
            again.start(str(run_dir), 1, ["retry-1.pkl"])
            assert again.wait(120)
        assert (out_dir / "w1").read_text() == secret and watch.seen == []
        remote = first.remote_dir()
        modes = sshd.run(f"stat -c '%a %n' {remote}/w0.sh {remote}/w1.sh {remote}/host.env"
                         f" {remote}").stdout.split("\n")
        assert [m.split()[0] for m in modes if m] == ["600", "600", "600", "700"], modes
        assert token not in sshd.run(f"cat {remote}/w0.sh {remote}/w1.sh").stdout
    finally:
        first.tidy(keep_log=False)
        ssh.close_all()


# ------------------------------------------------------- 2. names from the host
BAD_NAMES = ["../evil.rec", "/tmp/evil.rec", "a/b.rec", "..", "x\0.rec", "notes.txt",
             ".hidden.rec", "a..rec/..", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_pull_answer_naming_a_strange_file_is_refused_and_writes_nothing(tmp_path, name):
    folder = tmp_path / "run" / "results"
    folder.mkdir(parents=True)
    (folder / "ok.rec").write_bytes(b"old")
    answer = json.dumps({"files": [["ok.rec", 3], [name, 4]], "alive": True}).encode() \
        + b"\nnewEVIL"
    with pytest.raises(pj.HostError, match="box7 answered .*refused, nothing was written"):
        append_pulled(str(folder), answer, "box7")
    assert (folder / "ok.rec").read_bytes() == b"old"  # not even the good file grew
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["ok.rec"]


def test_a_pull_answer_that_is_no_json_is_refused(tmp_path):
    with pytest.raises(pj.HostError, match="box7 answered a pull"):
        append_pulled(str(tmp_path), b"Welcome to box7!\n...", "box7")


def test_the_worker_result_file_names_pass():
    for name in ("inline-12-1700000000000000000.rec", "supervisor-4242.rec",
                 "w4242-3.rec", "1234_5-b3-supervisor-99.rec", "1234_5-b3-w99-1.rec"):
        _names.check_result_files([[name, 1]], "box")


@pytest.mark.parametrize("answer", [
    {"claimed": {"w0": ["000001.12_3/../../../x"]}},
    {"claimed": {"w0": ["000001.../x"]}},
    {"claimed": {"../w0": []}},
    {"pending": {"/etc": 1}},
    {"ends": {"../../x": "0 done"}},
    {"logs": {"12_3/../../x": "tail"}},
])
def test_a_probe_answer_naming_a_strange_task_or_batch_is_refused(answer):
    with pytest.raises(pj.HostError, match="not a plain name"):
        _names.check_probe(answer, "cluster")
    _names.check_probe({"claimed": {"w0": ["000001.12_3"]}, "pending": {"w0": 2},
                        "ends": {"12_3": "0 done"}, "logs": {"12_3": None}}, "cluster")


def _receive(dest: Path, deleted: list[str], members: dict[str, bytes] | None = None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (members or {}).items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        control = json.dumps({"deleted": deleted, "manifest": {}}).encode()
        info = tarfile.TarInfo(sync.CONTROL)
        info.size = len(control)
        tar.addfile(info, io.BytesIO(control))
    return subprocess.run([sys.executable, "-c", sync._RECEIVER, str(dest)],
                          input=buf.getvalue(), capture_output=True)


@pytest.mark.parametrize("name", ["../outside/victim", "link/victim", "/abs/victim",
                                  "sub/../../outside/victim"])
def test_the_sync_receiver_deletes_nothing_outside_its_folder(tmp_path, name):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    (dest / "link").symlink_to(outside)
    name = name.replace("/abs", str(outside.parent).rstrip("/") + "/outside") \
        if name.startswith("/abs") else name
    res = _receive(dest, [name, "sub/gone"])
    assert res.returncode != 0 and b"refusing to delete" in res.stderr
    assert (outside / "victim").read_text() == "keep me"


def test_the_sync_receiver_deletes_a_link_not_its_target_and_makes_files_private(
        tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    (dest / "link").symlink_to(outside / "victim")
    (dest / "gone.py").write_text("x")
    old = os.umask(0o022)
    try:
        res = _receive(dest, ["link", "gone.py"], {"pkg/tool.sh": b"#!/bin/sh\n"})
    finally:
        os.umask(old)
    assert res.returncode == 0, res.stderr
    assert not (dest / "link").is_symlink() and not (dest / "gone.py").exists()
    assert (outside / "victim").read_text() == "keep me"
    assert (dest / "pkg" / "tool.sh").stat().st_mode & 0o777 == 0o700  # owner's x kept
    assert (dest / "pkg").stat().st_mode & 0o777 == 0o700
    assert (dest / sync.MANIFEST).stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_a_host_manifest_listing_paths_outside_the_project_deletes_nothing(
        ssh_host, sshd, tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    conn = ssh.connect(ssh_host)
    dest = f"~/pj-trust-sync-{uuid.uuid4().hex[:6]}/proj"
    victim = f"~/{dest.split('/')[1]}/victim"
    try:
        sync.sync(conn, root, dest)
        sshd.run(f"echo keep > {victim}")
        # the host's manifest now claims files above the project folder
        planted = {"../victim": [1, 1, "x"], "/etc/hostname": [1, 1, "x"],
                   "a.py": [1, 1, "stale"]}
        sshd.run(f"echo '{json.dumps(planted)}' > {dest}/{sync.MANIFEST}")
        stats = sync.sync(conn, root, dest)
        assert stats.deleted == 0 and stats.sent == 1
        assert sshd.run(f"cat {victim}").stdout.strip() == "keep"
    finally:
        sshd.run(f"rm -rf ~/{dest.split('/')[1]}", check=False)


def test_a_replaced_host_script_cannot_write_outside_the_run(ssh_host, sshd, tmp_path,
                                                             monkeypatch):
    """End to end over the real sshd: the host answers a pull (and a SLURM look) with
    names of its choosing, as a changed script on it would."""
    from pyjoule import _slurm
    from pyjoule._backends import _host_scripts, _slurm_watch
    from pyjoule._backends import slurm as slurm_backend

    run_dir = tmp_path / "cache" / "runs" / "r1"
    (run_dir / "results").mkdir(parents=True)
    target = tmp_path / "cache" / "evil.rec"
    evil = ("import json, sys\nsys.stdout.buffer.write(json.dumps({'files': "
            "[['../../evil.rec', 4]], 'alive': True}).encode() + b'\\nEVIL')\n")
    monkeypatch.setattr(_host_scripts, "PULL", evil)
    backend = SSHBackend(ssh_host, project="/", python="python3", lib="/",
                         run_dir=str(run_dir))
    with pytest.raises(pj.HostError, match="pjtest answered .*'../../evil.rec'"):
        backend.alive()
    assert not target.exists() and list((run_dir / "results").iterdir()) == []

    probe = ("import json, sys\nsys.stdout.buffer.write(json.dumps({'squeue': {}, "
             "'claimed': {'w0': ['000000.1_0/../../../../evil']}, 'files': []}).encode()"
             " + b'\\n')\n")
    monkeypatch.setattr(_slurm_watch, "_probe_source", lambda: probe)
    look = slurm_backend.SlurmBackend(_slurm.Slurm(), ssh=backend, run_dir=str(run_dir))
    with pytest.raises(pj.HostError, match="claimed batch"):
        look._look()
    assert look.claims == {}
    ssh.close_all()


# --------------------------------------------------------- 4. pids on the host
def _start_time(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[19]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_a_worker_pid_of_another_process_is_neither_believed_nor_killed(ssh_host, sshd,
                                                                        tmp_path):
    conn = ssh.connect(ssh_host)
    run_id = f"r{uuid.uuid4().hex[:10]}"
    run_dir = tmp_path / "runs" / run_id
    (run_dir / "results").mkdir(parents=True)
    backend = SSHBackend(ssh_host, project="/", python="python3", lib="/",
                         run_dir=str(run_dir))
    remote = backend.remote_dir()
    # a process of the host user's that merely got the pid (its own session, as a
    # worker's: a killpg of that pid would hit it)
    pid = int(conn.run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & "
                        "echo $!"]).text.strip())
    try:
        conn.run(["mkdir", "-p", f"{remote}/results"])
        for round_ in range(3):
            conn.run(["sh", "-c", 'printf "%s 12345\\n" "$2" > "$1/worker.pid"', "sh",
                      remote, str(pid)])
            backend._alive = None
            assert backend.alive() is False
            backend.cancel()
            assert _running(pid), f"round {round_}: the unrelated process was killed"
        # the same pid with its true start time is believed, and stopped by cancel
        conn.run(["sh", "-c", 'printf "%s %s\\n" "$2" "$3" > "$1/worker.pid"', "sh",
                  remote, str(pid), _start_time(pid)])
        backend._alive = None
        assert backend.alive() is True
        backend.cancel()
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(pid)
    finally:
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)
        conn.run(["rm", "-rf", remote], check=False)
        ssh.close_all()


# ------------------------------------------------------ 3. SLURM: private too
SLURM_STUDY = """
    import os, sys
    import pyjoule as pj

    workdir = os.environ["WORKDIR"]
    host = pj.Host("pjtest", workdir=workdir, env={"PJ_SECRET": os.environ["S"]})
    LENGTH = len(os.environ["S"])

    @pj.experiment(host=host, slurm={"time": "00:05:00"}, workers=1)
    def look(i):
        import glob, os, subprocess
        home = os.path.expanduser(workdir)
        loose = subprocess.run(["find", home, "!", "-type", "l", "-perm", "/077"],
                               capture_output=True, text=True).stdout.strip()
        scripts = glob.glob(os.path.join(home, "runs", "*", "w0.sh"))
        modes = sorted({oct(os.stat(p).st_mode & 0o777) for p in scripts})
        value = os.environ.get("PJ_SECRET", "")
        in_script = bool(value) and any(value in open(p).read() for p in scripts)
        return {"loose": loose, "modes": ",".join(modes), "in_script": in_script,
                "env_ok": len(value) == LENGTH}

    ds = look.sweep(i=range(3))
    print(repr(set(ds.loose.values.tolist())), set(ds.modes.values.tolist()),
          set(ds.in_script.values.tolist()), set(ds.env_ok.values.tolist()))
"""


@pytest.mark.slow
def test_a_slurm_run_over_ssh_keeps_its_files_private(slurm, project, sshd, workdir,
                                                      weird_tmp_path, monkeypatch):
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.3")
    secret, token = _secret()
    with ArgvWatch(token) as watch:
        out = run_script(project, SLURM_STUDY, env={"S": secret, "WORKDIR": workdir[0]},
                         timeout=400).stdout.strip()
    # during the run: nothing with group/other bits, the job script 0600, no value in
    # it, and the value in the job's environment
    assert out == "{''} {'0o600'} {False} {True}", out
    assert watch.seen == []
    assert _loose_modes(sshd, workdir[1]) == []
    assert _files_holding(weird_tmp_path, token) == []
