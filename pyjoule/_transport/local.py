"""Run commands on this machine. Every command pyjoule starts goes through
:func:`spawn` or :func:`run`, and is logged at DEBUG in its shell-quoted form."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from .. import _platform
from .base import Result, Transport, remote_error

log = logging.getLogger("pyjoule")


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
        timeout: float | None = 300, input: bytes | None = None) -> Result:
    """Run ``argv`` here and wait for it (no shell: every word arrives as it is)."""
    command = shlex.join(argv)
    log.debug("run: %s", command if len(command) < 300 else command[:300] + " ...")
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(list(argv), capture_output=True, env=full_env, cwd=cwd,
                              timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)
    except FileNotFoundError as exc:
        return Result(command, 127, b"", str(exc).encode())
    return Result(command, proc.returncode, proc.stdout, proc.stderr)


class LocalTransport(Transport):
    """:class:`.base.Transport` on this machine: :func:`run` under ``umask 077`` (what
    a command creates is private, as on a host, without changing this process's
    umask); ``put`` and ``get`` are plain file writes and reads."""

    local = True

    @property
    def where(self) -> str:
        return "this machine"

    @property
    def key(self) -> str:
        return "local"

    def run(self, argv: Sequence[str], *, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            idempotent: bool = True, secret_env: Mapping[str, str] | None = None) -> Result:
        full_env = {**(env or {}), **(secret_env or {})}
        res = run(["sh", "-c", 'umask 077 && exec "$@"', "sh", *argv], cwd=cwd,
                  env=full_env or None, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise remote_error(self.where, res)
        return res

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        from .._rundir import atomic_write

        atomic_write(path, data, mode)

    def get(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()


def spawn(argv: Sequence[str], *, log_path: str, env: dict | None = None,
          cwd: str | None = None, pass_fds: Sequence[int] = ()) -> subprocess.Popen:
    """Start ``argv`` detached in its own session (so its group can be killed, and a
    terminal's Ctrl-C reaches only the driver, which then decides what to stop)."""
    log.debug("spawn: %s", shlex.join(argv))
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # private
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True, pass_fds=tuple(pass_fds))
    finally:
        os.close(fd)


def kill_group(pid: int, grace_s: float = 2.0, start: str = "") -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left.

    ``start``: the leader's recorded start time. If a process with that pid runs but
    started at another time, the pid was reused by an unrelated process: nothing is
    signalled. (A leader that is gone leaves its group id to its group: the id is not
    reused while the group lives.)"""
    if start and not _same_leader(pid, start):
        log.debug("kill_group: pid %d is no longer the process recorded (start %s)",
                  pid, start)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not _platform.group_alive(pid):
                return
            time.sleep(0.02)


def _same_leader(pid: int, start: str) -> bool:
    """False if ``pid`` now names a process that started at another time than ``start``."""
    now = _platform.process_start_time(pid)
    return not now or now == start


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class ForkedChild:
    """A forked process with the part of ``Popen``'s interface pyjoule uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            wait_for_exit(self.pid, 0.05 if left is None else min(left, 0.05))
        return self.returncode


wait_for_exit = _platform.wait_for_exit  # wakes the moment the process ends (a pidfd)


def can_fork() -> bool:
    """Forking is safe only in a single-threaded process (no Jupyter kernel threads,
    no user threads holding locks the child would inherit)."""
    import threading

    return hasattr(os, "fork") and threading.active_count() == 1


def fork_detached(target: Callable[[], int], *, log_path: str) -> ForkedChild:
    """Run ``target()`` in a forked child in its own session, output to ``log_path``.

    Saves starting a new interpreter (about 70 ms): the child already has everything
    imported. Use only when :func:`can_fork`. The child ends with ``os._exit`` whatever
    happens in it: it never unwinds into the caller's code.
    """
    import gc

    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    # Keep the garbage collector off the caller's objects in the child: walking them
    # would copy every page of a large driver (xarray, pandas) into the child.
    gc.freeze()
    pid = os.fork()
    if pid:
        gc.unfreeze()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - for life
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 - for life
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = target()
        except BaseException:  # noqa: BLE001 - the child must end here, whatever happens
            try:
                import traceback

                traceback.print_exc()
            except BaseException:  # noqa: BLE001 - stderr is closed
                pass
        finally:
            try:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except BaseException:  # noqa: BLE001 - closed, or None
                        pass
            finally:
                os._exit(code if isinstance(code, int) else 1)
    os.close(log_fd)
    log.debug("forked worker %d", pid)
    return ForkedChild(pid)
