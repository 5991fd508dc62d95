"""Small pieces the test servers (sshd_server.py, slurm_cluster.py) share: running a
setup command, installing Debian packages, a lock between processes, writing a file
only when its text changes and stopping processes. Standard library only."""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def run(*argv: str, env: dict[str, str] | None = None) -> None:
    """Run a setup command; RuntimeError with its output when it fails."""
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()}")


def missing_packages(packages: dict[str, list[str]]) -> list[str]:
    """The apt packages (name -> programs it provides) whose programs are not here."""
    return [package for package, programs in packages.items()
            if not all(shutil.which(program) for program in programs)]


def apt_install(packages: dict[str, list[str]], recommends: bool = True) -> None:
    """Install what :func:`missing_packages` finds missing, with apt."""
    missing = missing_packages(packages)
    if not missing:
        return
    # another job may hold the dpkg lock: wait for it instead of failing
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", *lock, "update", "-q", env=env)
    extra = [] if recommends else ["--no-install-recommends"]
    run("apt-get", "install", "-y", "-q", *extra, *lock, *missing, env=env)


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialize setup, start and stop between processes (an exclusive flock)."""
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def own(path: Path, account: pwd.struct_passwd | None, mode: int) -> None:
    """Set the mode, and the owner when ``account`` is given."""
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, mode)


def write(path: Path, text: str, mode: int, account: pwd.struct_passwd | None = None
          ) -> bool:
    """Replace ``path`` by ``text`` atomically unless it holds it; True if it changed."""
    if path.exists() and path.read_text() == text:
        own(path, account, mode)
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    own(tmp, account, mode)
    os.replace(tmp, path)
    return True


def processes() -> list[tuple[int, int, str, str]]:
    """(pid, parent pid, command name, state letter) of every process, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # the name is in parentheses and may contain spaces and parentheses itself
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            out.append((int(entry), int(ppid), name, state))
    return out


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended. Not ``kill -0``: PID 1 here reaps late, and a
    zombie still "exists" though it has let go of everything."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def kill_and_wait(pids: list[int], sig: int, timeout: float = 5) -> None:
    """Send ``sig`` and wait until the processes are gone; SIGKILL after ``timeout``."""
    for current in (sig, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, current)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while not all(gone(pid) for pid in pids):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return
    raise RuntimeError(f"processes {pids} did not exit after SIGKILL")
