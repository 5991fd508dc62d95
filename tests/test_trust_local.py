"""The local trust boundary of the cache: only the user's own files are unpickled.

A real second Unix user (``pjother``, created here as tests/sshd_server.py creates
``pjhost``) plants a project file and a poisoned cache in a shared, sticky,
world-writable directory (like /tmp); the victim's pyjoule must neither use it nor
run its payload. Everything pyjoule creates is private (0700 / 0600) whatever the
umask.
"""

from __future__ import annotations

import logging
import os
import pickle
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule import _private
from pyjoule._config import project_root
from pyjoule._store import SEG_HEADER, SEG_MAGIC, Store, digest

from conftest import REPO, run_script

OTHER = "pjother"


@pytest.fixture(scope="session")
def other_user() -> pwd.struct_passwd:
    """A real second Unix user (created once, kept: like pjhost)."""
    try:
        return pwd.getpwnam(OTHER)
    except KeyError:
        pass
    problem = None
    if os.geteuid() != 0:
        problem = "creating a second user needs root"
    elif shutil.which("useradd") is None:
        problem = "no useradd"
    else:
        done = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                               OTHER], capture_output=True, text=True)
        if done.returncode == 0:
            return pwd.getpwnam(OTHER)
        problem = f"useradd failed: {done.stderr.strip()}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the second user {OTHER}: {problem}")
    pytest.skip(problem)


@pytest.fixture
def shared_dir():
    """A directory like /tmp: root's, world-writable and sticky (others can enter it:
    pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pj-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_other(user: pwd.struct_passwd, *argv: str) -> None:
    """Run ``argv`` as the other user (runuser), failing loudly."""
    subprocess.run(["runuser", "-u", user.pw_name, "--", *argv], check=True,
                   capture_output=True, text=True)


def chown_tree(path: Path, user: pwd.struct_passwd, dir_mode: int, file_mode: int) -> None:
    for folder, _, files in os.walk(path):
        os.chown(folder, user.pw_uid, user.pw_gid)
        os.chmod(folder, dir_mode)
        for name in files:
            os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid)
            os.chmod(os.path.join(folder, name), file_mode)


VICTIM = """
import os, pyjoule as pj

@pj.experiment(workers=0)
def f(x):
    with open(os.environ["COUNT_FILE"], "a") as fh:
        fh.write("ran\\n")
    return x * 2

print("VALUE", f(x=1))
print("CACHE", pj.config.get("cache"))
"""


class Payload:
    """Unpickling it creates the marker file: stands for any code an attacker wants."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def poison(cache: Path, marker: Path) -> None:
    """Replace every segment of ``cache`` by one whose parts unpickle the payload, and
    make the index agree (sizes, checksums), as an attacker writing there would."""
    conn = sqlite3.connect(cache / "index.sqlite")
    rows = conn.execute("SELECT seg_id, path FROM segments").fetchall()
    assert rows, "nothing to poison: the planting run cached nothing"
    for seg_id, rel in rows:
        evil = pickle.dumps(Payload(str(marker)))
        blob = SEG_HEADER.pack(SEG_MAGIC, len(evil)) + evil + evil
        (cache / rel).write_bytes(blob)
        conn.execute("UPDATE segments SET nbytes=?, len_a=?, digest_a=?, digest_b=? "
                     "WHERE seg_id=?", (len(blob), len(evil), digest(evil), digest(evil),
                                        seg_id))
    conn.commit()
    conn.close()


@pytest.mark.slow
def test_a_planted_project_and_cache_in_a_shared_dir_are_not_used(other_user, shared_dir,
                                                                   tmp_path):
    """pjother plants pyproject.toml and a poisoned, world-writable .pyjoule/ in a
    shared parent directory; the victim working below it gets its own cache and the
    payload never runs."""
    victim = shared_dir / "victim"
    victim.mkdir(mode=0o700)
    count, marker = tmp_path / "count", tmp_path / "PWNED"
    env = {"COUNT_FILE": str(count), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
           "HOME": str(tmp_path / "home"), "PYJOULE_PROGRESS": "0"}
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("PYJOULE_")}
    planted = shared_dir / ".pyjoule"
    # the attacker's cache holds the victim's own function (same code, same id)...
    proc = run_script(victim, VICTIM, env={**env_clean, **env, "PYJOULE_CACHE": str(planted)})
    assert "VALUE 2" in proc.stdout
    poison(planted, marker)
    # ... and the payload is real: the cache's owner running it does get it run
    proc = run_script(victim, VICTIM, env={**env_clean, **env, "PYJOULE_CACHE": str(planted)},
                      check=False)
    assert marker.exists(), proc.stderr
    marker.unlink()
    # now the other user's, world-writable, with their project file next to it
    chown_tree(planted, other_user, 0o777, 0o666)
    as_other(other_user, "touch", str(shared_dir / "pyproject.toml"))
    assert (shared_dir / "pyproject.toml").stat().st_uid == other_user.pw_uid
    count.unlink()

    proc = run_script(victim, VICTIM, env={**env_clean, **env})
    assert "VALUE 2" in proc.stdout
    assert f"CACHE {tmp_path / 'xdg' / 'pyjoule'}" in proc.stdout
    assert not marker.exists()
    assert count.read_text() == "ran\n"  # computed afresh, in the victim's own cache
    for _ in range(2):  # and a second call takes it from there
        run_script(victim, VICTIM, env={**env_clean, **env})
    assert count.read_text() == "ran\n" and not marker.exists()

    # pointed at the planted cache on purpose, pyjoule refuses it, saying why
    proc = run_script(victim, VICTIM, env={**env_clean, **env, "PYJOULE_CACHE": str(planted)},
                      check=False)
    assert proc.returncode != 0 and not marker.exists()
    assert "CacheError" in proc.stderr
    assert str(planted) in proc.stderr and OTHER in proc.stderr and "0o777" in proc.stderr


def test_store_open_refuses_a_cache_of_another_user_naming_owner_mode_and_fix(
        other_user, shared_dir):
    cache = shared_dir / "cache"
    Store(cache).check_writable()
    Store(cache).db  # noqa: B018 - an index, with its -wal/-shm
    os.chown(cache, other_user.pw_uid, other_user.pw_gid)
    with pytest.raises(pj.CacheError) as info:
        Store.open(cache)
    text = str(info.value)
    assert str(cache) in text and OTHER in text and "0o700" in text
    assert "PYJOULE_CACHE" in text and "shared_cache" in text


@pytest.mark.parametrize("name, what", [("", "cache directory"),
                                        ("index.sqlite", "cache index"),
                                        ("index.sqlite-wal", "log"),
                                        ("data", "data directory"),
                                        ("runs", "run directory")])
def test_a_part_of_the_cache_writable_by_others_is_refused(tmp_path, name, what):
    cache = tmp_path / "cache"
    store = Store(cache)
    store.db.execute("INSERT INTO meta VALUES ('x', 'y')")  # open: its -wal file exists
    os.chmod(cache / name, 0o777 if (cache / name).is_dir() else 0o666)
    with pytest.raises(pj.CacheError) as info:
        Store.open(cache)
    store.close()
    text = str(info.value)
    assert what in text and str(cache / name).rstrip("/") in text and "0o" in text
    assert f"chmod go-w {cache / name}".rstrip("/") in text


def test_a_group_writable_cache_of_another_user_is_used_only_with_shared_cache(
        other_user, shared_dir):
    cache = shared_dir / "group-cache"
    Store(cache).db  # noqa: B018
    chown_tree(cache, other_user, 0o2770, 0o660)
    with pytest.raises(pj.CacheError):
        Store.open(cache)
    with pj.config(shared_cache=True):
        assert Store.open(cache).lookup("f") == {}
        os.chmod(cache, 0o2777)  # world-writable: never, even shared
        with pytest.raises(pj.CacheError) as info:
            Store(cache).lookup("f")  # a first connection checks again
        assert "every user" in str(info.value)


def test_shared_cache_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv("PYJOULE_SHARED_CACHE", "1")
    assert pj.config.get("shared_cache") is True
    monkeypatch.setenv("PYJOULE_SHARED_CACHE", "0")
    assert pj.config.get("shared_cache") is False
    with pytest.raises(pj.OptionError):
        pj.config(shared_cache="yes")


def test_a_run_directory_of_another_user_is_not_unpickled(other_user, shared_dir, tmp_path):
    """pj.attach reads the run's request.pkl: only from a run directory of the user's
    own. (The cache's runs/ folder is checked as well; here it is the run's own.)"""
    cache = tmp_path / "cache"
    script = f"""
import pyjoule as pj

@pj.experiment(cache={str(cache)!r}, workers=1)
def f(x):
    return x

run = f.submit(pj.grid(x=[1, 2]))
run.wait()
print("RUN", run.id)
"""
    proc = run_script(tmp_path, script, env={"PYJOULE_PROGRESS": "0"})
    run_id = proc.stdout.split("RUN ")[1].split()[0]
    run_dir = cache / "runs" / run_id
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    os.chown(run_dir, other_user.pw_uid, other_user.pw_gid)
    with pytest.raises(pj.CacheError) as info:
        pj.attach(run_id, cache=cache)
    assert str(run_dir) in str(info.value) and OTHER in str(info.value)


# ------------------------------------------------------------------ project root
def test_project_root_search_stops_at_home(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    home = tmp_path / "home"
    work = home / "notebooks"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    assert project_root(work) is None  # the marker above home is not adopted
    (home / ".git").mkdir()
    assert project_root(work) == home.resolve()
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    (home / ".git").rmdir()
    assert project_root(work) == tmp_path.resolve()  # not under home: no such limit


def test_project_root_never_adopts_what_others_own_or_can_write(other_user, shared_dir):
    project = shared_dir / "project"
    (project / "src").mkdir(parents=True, mode=0o700)
    os.chmod(project, 0o700)
    (project / "pyproject.toml").write_text("")
    assert project_root(project / "src") == project
    os.chown(project / "pyproject.toml", other_user.pw_uid, other_user.pw_gid)
    assert project_root(project / "src") is None  # someone else's marker
    os.chown(project / "pyproject.toml", 0, 0)
    os.chmod(project, 0o777)
    assert project_root(project / "src") is None  # others can write the folder
    os.chmod(project, 0o700)
    os.chown(project, other_user.pw_uid, other_user.pw_gid)
    assert project_root(project / "src") is None  # someone else's folder
    os.chown(project, 0, 0)
    assert project_root(project / "src") == project


# ---------------------------------------------------------------- private modes
MODES_SCRIPT = """
import os, pyjoule as pj

@pj.experiment(cache=os.environ["CACHE"], workers=2)
def f(x):
    print("out", x)
    if x == 3:
        raise ValueError("three")
    return x

try:
    f.map(pj.grid(x=range(8)))
except pj.ExperimentError:
    pass
print(f(x=1))
for name in ("index.sqlite-wal", "index.sqlite-shm"):  # they exist while it is open
    mode = os.stat(os.path.join(os.environ["CACHE"], name)).st_mode & 0o7777
    print("MODE", name, oct(mode))
"""


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_everything_under_a_cache_is_private_whatever_the_umask(tmp_path, umask):
    cache = tmp_path / "cache"
    script = tmp_path / "modes.py"
    script.write_text(MODES_SCRIPT)
    env = dict(os.environ, CACHE=str(cache), PYJOULE_PROGRESS="0",
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script)], env=env, check=True, cwd=tmp_path,
                          preexec_fn=lambda: os.umask(umask), capture_output=True, text=True)
    assert "MODE index.sqlite-wal 0o600" in proc.stdout
    assert "MODE index.sqlite-shm 0o600" in proc.stdout
    wrong = []
    for folder, dirs, files in os.walk(cache):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if stat.S_IMODE(st.st_mode) != want:
                wrong.append((path, oct(stat.S_IMODE(st.st_mode))))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert not wrong
    names = {p.name for p in cache.rglob("*")}
    assert {"index.sqlite", "request.pkl"} <= names
    assert any(n.endswith(".seg") for n in names) and "worker.log" in names


def test_an_existing_cache_created_readable_by_others_is_made_private(tmp_path):
    cache = tmp_path / "cache"
    for folder in (cache, cache / "data", cache / "runs"):
        folder.mkdir(mode=0o755)
        os.chmod(folder, 0o755)
    Store.open(cache)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in (cache, cache / "data",
                                                          cache / "runs")} == {"0o700"}


# ------------------------------------------------------------ network file systems
NFS_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/group\\040share rw,relatime shared:2 - nfs4 fs:/export rw,vers=4.2
41 40 0:41 / /mnt/group\\040share/local rw,relatime shared:3 - ext4 /dev/sdb1 rw
"""


def test_network_file_system_detection_from_mountinfo(tmp_path, caplog):
    info = tmp_path / "mountinfo"
    info.write_text(NFS_MOUNTINFO)
    assert _private.network_filesystem("/mnt/group share/x/.pyjoule", mountinfo=info) == "nfs4"
    assert _private.network_filesystem("/mnt/group share/local/c", mountinfo=info) is None
    assert _private.network_filesystem("/mnt/group sharex", mountinfo=info) is None
    # unknown (no mountinfo, as on macOS): no warning, no failure
    assert _private.filesystem_type("/", mountinfo=tmp_path / "absent") is None
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        _private.warn_if_network("/mnt/group share/c1", mountinfo=info)
        _private.warn_if_network("/mnt/group share/c1", mountinfo=info)  # once
        _private.warn_if_network("/mnt/group share/local/c2", mountinfo=info)
        _private.warn_if_network("/mnt/group share/c3", mountinfo=tmp_path / "absent")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "c1" in warnings[0] and "nfs4" in warnings[0]
    assert "across hosts" in warnings[0]


def test_the_real_mount_table_names_a_tmpfs_and_a_local_disk(tmp_path):
    if not os.path.exists("/proc/self/mountinfo"):
        pytest.skip("no /proc/self/mountinfo (not Linux)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr}")
    try:
        assert _private.filesystem_type(mnt / "cache") == "tmpfs"
        assert _private.network_filesystem(mnt / "cache") is None
        assert _private.filesystem_type(tmp_path) not in (None, "tmpfs") or \
            _private.filesystem_type("/proc") == "proc"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_new_shared_cache_is_group_writable_and_an_own_private_one_stays_private(
        tmp_path):
    own = tmp_path / "own"
    Store.open(own)
    with pj.config(shared_cache=True):
        cache = tmp_path / "group"
        Store(cache).lookup("f")
        assert oct(stat.S_IMODE(cache.stat().st_mode)) == "0o2770"
        assert oct(stat.S_IMODE((cache / "data").stat().st_mode)) == "0o2770"
        assert oct(stat.S_IMODE((cache / "index.sqlite").stat().st_mode)) == "0o660"
        Store(own).lookup("f")  # opting in never loosens a private cache
        assert oct(stat.S_IMODE(own.stat().st_mode)) == "0o700"


def test_a_shared_script_folder_is_never_synced_to_a_host(tmp_path):
    """With no project of the user's above it, the script's (or notebook's) own folder
    would be synced: never a folder others can write to, like /tmp."""
    from conftest import REPO

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    script = shared / "study.py"
    script.write_text(
        "import pyjoule as pj\n"
        "from pyjoule import _dispatch\n"
        "try:\n"
        "    _dispatch.prepare('ssh', host='nobody@127.0.0.1:1', identity=lambda: None)\n"
        "except pj.HostError as exc:\n"
        "    print(exc)\n")
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert f"will not copy {shared} to the host" in out.stdout, out.stdout + out.stderr
    assert "writable by every user" in out.stdout
