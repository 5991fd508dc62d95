"""The one module that makes Linux-only calls (/proc, prctl, pidfd), each with a
portable fallback, so that the client may be a Mac.

``LINUX`` says whether the Linux probes are used; tests switch it off to check that
the fallbacks keep the behaviour. ``PYJOULE_PORTABLE_ONLY=1`` in the environment
switches it off in a whole process and its workers: a test switch (CI runs the
local-engine tests a second time with it, so the paths a Mac takes are tested on
every commit), not a setting for users. psutil, when a fallback uses it, is imported
lazily and only there: the worker's import closure stays the standard library. Other
modules may add a function here, with its fallback and a test that forces the
fallback. Windows is not supported (fork, process groups, POSIX signals):
:func:`require_posix` says so clearly. Also here, built on those: a process as a run
records it (host, pid, start time: :func:`me`) and whether it still runs.
"""

from __future__ import annotations

import os
import socket
import sys
import time

PORTABLE_ONLY = os.environ.get("PYJOULE_PORTABLE_ONLY", "") not in ("", "0")
LINUX = sys.platform.startswith("linux") and os.path.isdir("/proc/self") \
    and not PORTABLE_ONLY

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 on), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _psutil_process(pid: int):
    """psutil's view of ``pid``, or None (no such process, or no psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        return psutil.Process(pid)
    except (psutil.Error, ValueError):
        return None


def _ps_state(pid: int) -> str:
    """The process state letter(s) ``ps`` gives for ``pid`` ("" if none, or no ps)."""
    import subprocess

    try:
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


# ------------------------------------------------------------------ processes
def process_start_time(pid: int) -> str:
    """When ``pid`` started, as text: tells a live process from a reused pid. "" when
    unknown (no such process, or neither /proc nor psutil). Compare only values read
    on the same machine: the Linux and psutil forms differ."""
    if LINUX:
        fields = _stat_fields(pid)
        return fields[19] if fields and len(fields) > 19 else ""  # field 22: starttime
    proc = _psutil_process(pid)
    if proc is None:
        return ""
    try:
        return f"{proc.create_time():.2f}"
    except Exception:  # noqa: BLE001 - psutil.Error: gone meanwhile, or denied
        return ""


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped by its parent."""
    if LINUX:
        fields = _stat_fields(pid)
        return bool(fields and fields[0] == "Z")
    try:
        import psutil  # noqa: F401
    except ImportError:  # e.g. a worker on a host without it: ask ps (slow, rare)
        return _ps_state(pid).startswith("Z")
    proc = _psutil_process(pid)
    if proc is None:
        return False
    try:
        return proc.status() == "zombie"
    except Exception:  # noqa: BLE001
        return False


def is_running(pid: int, start: str = "") -> bool:
    """Whether ``pid`` runs (not a zombie) and, if ``start`` is given, is the process
    that started then, not a later one that got its pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: certainly not ours
        return False
    if is_zombie(pid):
        return False
    return not start or process_start_time(pid) in (start, "")


# a process as recorded for a run (its driver, its finisher): host, pid, start time
_HOST = socket.gethostname()


def me() -> dict:
    """This process, as recorded for a run it starts or finishes."""
    pid = os.getpid()
    return {"host": _HOST, "pid": pid, "start": process_start_time(pid)}


def here(proc: dict) -> bool:
    """Whether the recorded process is (or was) on this machine."""
    return proc.get("host") == _HOST


def process_alive(proc: dict | None) -> bool:
    """Whether the recorded process still runs. Unknown (no record, another host's
    process) counts as alive: a run is taken for dead only on evidence."""
    if not proc or proc.get("host") != _HOST or not proc.get("pid"):
        return True
    pid = int(proc["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has the pid now: ours is gone
        return False
    if is_zombie(pid):
        return False
    start = process_start_time(pid)
    return not (proc.get("start") and start and start != proc["start"])


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: a group
    leader cancelled from another process stays one until its own parent reaps it."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if LINUX:
        try:
            entries = os.listdir("/proc")
        except OSError:
            return True
        for entry in entries:
            if entry.isdigit():
                fields = _stat_fields(int(entry))
                if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                    return True
        return False
    try:
        import psutil
    except ImportError:  # the group exists: assume it runs
        return True
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != "zombie":
                return True
        except (OSError, psutil.Error):
            continue
    return False


def child_exited(pid: int) -> bool:
    """Whether this process's child ``pid`` has exited, leaving it unreaped (its pid,
    and the id of the process group it leads, stay held until the caller reaps it).

    Linux: ``waitid(WNOWAIT)``. Elsewhere (macOS has no ``os.waitid``): the child is
    a zombie, or gone."""
    if LINUX and hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return not is_running(pid)


# ------------------------------------------------------------------- waiting
def pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None."""
    if not LINUX:
        return None
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # an old kernel or Python, or already reaped
        return None


def wait_for_exit(pid: int, timeout_s: float, fds=()) -> None:
    """Sleep until ``pid`` exits, one of ``fds`` is readable or ``timeout_s`` passes.

    A pidfd wakes the moment the process ends; elsewhere this checks in steps of
    20 ms whether ``pid`` is still running."""
    import select

    fd = pidfd(pid)
    if fd is not None:
        try:
            select.select([fd, *fds], [], [], timeout_s)
        finally:
            os.close(fd)
        return
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not is_running(pid):
            return
        step = min(0.02, left)
        if fds:
            if select.select(list(fds), [], [], step)[0]:
                return
        else:
            time.sleep(step)


# ------------------------------------------------------------ this process
def set_process_name(name: bytes) -> None:
    """Set the name ``ps``/``top`` show (Linux; elsewhere nothing), so users can tell
    workers apart; children inherit it."""
    if not LINUX:
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_NAME, name, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent(sig: int, parent: int, *, watch: bool = True) -> bool:
    """Have ``sig`` sent to this process when ``parent`` (its parent now) dies.

    Linux: PR_SET_PDEATHSIG (the kernel sends it; True). Elsewhere, with ``watch``, a
    daemon thread checks ``os.getppid()`` twice a second and sends ``sig`` itself
    (False); without ``watch`` the caller checks :func:`parent_died` in its own loop
    (a process that forks later should not have threads). If ``parent`` has died
    already, ``sig`` is sent at once."""
    armed = False
    if LINUX:
        try:
            import ctypes

            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0,
                                                             0) == 0
        except (OSError, AttributeError):
            armed = False
    if parent_died(parent):  # it died before the call took effect
        os.kill(os.getpid(), sig)
        return armed
    if not armed and watch:
        import threading

        def _watch():
            while not parent_died(parent):
                time.sleep(0.5)
            os.kill(os.getpid(), sig)

        threading.Thread(target=_watch, name="pyjoule-parent-watch", daemon=True).start()
    return armed


def parent_died(parent: int) -> bool:
    """Whether this process's parent is no longer ``parent`` (it died; init or a
    subreaper adopted this process)."""
    return os.getppid() != parent


# ---------------------------------------------------------------- file systems
def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _mounts(mountinfo: str | os.PathLike | None) -> list[tuple[str, str]] | None:
    """(mount point, file system type) of every mount, in mount order; None when
    unknown. Linux: ``/proc/self/mountinfo`` (or the file ``mountinfo``); elsewhere
    psutil's partitions."""
    if mountinfo is not None or LINUX:
        try:
            with open(mountinfo or "/proc/self/mountinfo", encoding="utf-8",
                      errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return None
        mounts = []
        for line in lines:
            fields = line.split()
            if "-" not in fields or len(fields) < 5:
                continue
            after = fields[fields.index("-") + 1:]
            if after:
                mounts.append((_unescape(fields[4]), after[0]))
        return mounts
    try:
        import psutil

        return [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]
    except Exception:  # noqa: BLE001 - no psutil, or a system it cannot read
        return None


def filesystem_type(path: str | os.PathLike,
                    mountinfo: str | os.PathLike | None = None) -> str | None:
    """The type of the file system ``path`` is on ("ext4", "nfs4", "apfs", ...), from
    the longest mount point that is a prefix of its real path; None when unknown."""
    mounts = _mounts(mountinfo)
    if mounts is None:
        return None
    real = os.path.realpath(path)
    best, kind = -1, None
    for point, fstype in mounts:
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # later mounts over the same point win
            best, kind = len(point), fstype
    return kind


# ------------------------------------------------------------------ support
def require_posix() -> None:
    """Raise a clear ``PyjouleError`` on Windows, where the local engine cannot work
    (it forks, runs workers as process groups and signals them)."""
    if os.name == "nt" or sys.platform.startswith(("win32", "cygwin")):
        from ._errors import PyjouleError

        raise PyjouleError(
            "Windows is not supported: pyjoule's local engine needs fork, process "
            "groups and POSIX signals. Use WSL (Windows Subsystem for Linux: install "
            "Python and pyjoule inside it and run your scripts there), or run on a "
            "Linux or macOS machine; remote hosts and SLURM clusters are Linux anyway.")
