"""A process pool on this machine: the worker program in its own session, so that it
survives the caller (a restarted notebook kernel can attach to it) and can be stopped
as one process group. Forked from the caller when that is safe (a single-threaded
script), else started as ``python -m pyjoule.worker RUN_DIR`` (notebooks).

The supervisor tells the caller, through a pipe, the moment every task is
accounted for (``exit`` written), so that the caller ingests the last results while
the pool's processes exit: about 8 ms sooner than waiting for the exit itself. The
supervisor is reaped (:meth:`PoolBackend.settle`) after the Dataset is built, so that
its exit overlaps with that too (another ~3 ms).

A run of a throw-away cache (``cache=False``, see :func:`throwaway`) is the
exception: nobody else could use its results, so its supervisor dies with the caller
and removes that cache's directory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from .. import _platform

_platform.require_posix()  # Windows: a clear error, not a failure deep in a fork

from .. import _private, worker  # noqa: E402
from .._rundir import RunDir  # noqa: E402
from .._transport import local  # noqa: E402
from .base import Backend  # noqa: E402

log = logging.getLogger("pyjoule")


# roots of this process's cache=False caches: process state (not a cache), kept by
# throwaway(root) and throwaway(root, add=False)
_THROWAWAY: set[str] = set()


def throwaway(root: str, add: bool = True) -> None:
    """Register (or, with ``add=False``, forget) ``root`` as a throw-away cache of this
    process: pools of runs under it die with this process and remove it."""
    root = os.path.abspath(root)
    if add:
        _THROWAWAY.add(root)
    else:
        _THROWAWAY.discard(root)


def _throwaway_root(run_dir: str) -> str | None:
    path = os.path.abspath(run_dir)
    for root in _THROWAWAY:
        if path.startswith(root + os.sep):
            return root
    return None


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class PoolBackend(Backend):
    name = "pool"

    def __init__(self, run_dir: str | None = None):
        self.run_dir = run_dir
        self.proc: subprocess.Popen | local.ForkedChild | None = None
        self._start_time = ""  # of self.proc: its pid is signalled only while it matches
        self._done: int | None = None  # read end: a byte arrives once all is accounted for

    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        if self.proc is not None:  # a retry: the last attempt's supervisor has ended
            self._reap(self.proc)
        self.run_dir = run_dir
        log_path = RunDir(run_dir).log
        _close(self._done)
        done_r, done_w = os.pipe()  # a byte comes through once every pset is accounted for
        orphan_dir = _throwaway_root(run_dir)
        parent = os.getpid() if orphan_dir else None
        try:
            if local.can_fork():
                # The same worker program, forked from this process instead of started
                # afresh: no interpreter start-up and imports (about 70 ms a run).
                controller = worker.thread_controller()  # the child inherits the scan
                self.proc = local.fork_detached(
                    lambda: worker.run(run_dir, workers, task_files, done_fd=done_w,
                                       controller=controller, parent=parent,
                                       orphan_dir=orphan_dir),
                    log_path=log_path)
            else:
                argv = [sys.executable, "-m", "pyjoule.worker", run_dir, "--workers",
                        str(workers), "--done-fd", str(done_w)]
                if task_files:
                    argv += ["--tasks", *task_files]
                if parent is not None:
                    argv += ["--parent", str(parent), "--orphan-dir", orphan_dir]
                env = dict(os.environ)
                # The worker imports the user's modules the way the caller does.
                env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
                # prints reach worker.log (and capture=False's echo) at once
                env["PYTHONUNBUFFERED"] = "1"
                if _private.shared():  # the worker checks the run directory as the caller does
                    env["PYJOULE_SHARED_CACHE"] = "1"
                self.proc = local.spawn(argv, log_path=log_path, env=env, pass_fds=[done_w])
        except BaseException:
            os.close(done_r)
            raise
        finally:
            os.close(done_w)
        self._done = done_r
        # Written here too, so a crash before the worker writes its own is still seen.
        self._start_time = worker.process_start_time(self.proc.pid)
        RunDir(run_dir).write_pid(self.proc.pid, self._start_time)

    def _exited(self) -> bool:
        """The supervisor wrote ``exit`` (every task accounted for), or is gone."""
        if self.run_dir is not None and RunDir(self.run_dir).exited():
            return True
        if self.proc is not None:
            return self.proc.poll() is not None
        return self.run_dir is None or not RunDir(self.run_dir).is_alive()

    def alive(self) -> bool:
        return not self._exited()

    def wait(self, timeout_s: float) -> bool:
        if self.proc is not None:
            if self._exited():
                return True
            fds = [self._done] if self._done is not None else []
            local.wait_for_exit(self.proc.pid, timeout_s, fds)
            return self._exited()
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.05, timeout_s))
        return True

    def tidy(self, keep_log: bool) -> None:
        """Close the done pipe. The supervisor said it is done and is stopping its
        children (idle by then): it is reaped in :meth:`settle`, a few ms later."""
        _close(self._done)
        self._done = None
        if self.proc is not None:
            self.proc.poll()
        if self.run_dir is not None:
            # a supervisor killed outright leaves what its children forked: stop it
            rd = RunDir(self.run_dir)
            if rd.kill_orphans():
                log.debug("run dir %s: killed what its worker processes left", self.run_dir)
            rd.forget_children()

    def settle(self) -> None:
        if self.proc is not None and self._exited():
            self._reap(self.proc)

    @staticmethod
    def _reap(proc) -> None:
        if proc.poll() is not None:
            return
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # stuck stopping its children: stop them all
            local.kill_group(proc.pid)  # not reaped yet: the pid is still its

    def __del__(self):
        _close(self._done)
        if self.proc is not None and self.proc.poll() is None and self._exited():
            try:  # not settled (an exception on the way): leave no zombie behind
                self.proc.wait(1)
            except Exception:  # noqa: BLE001 - never raise from __del__
                pass

    def cancel(self) -> None:
        leader = self._leader()
        if leader:
            pid, start = leader
            local.kill_group(pid, start=start)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def _leader(self) -> tuple[int, str] | None:
        """The supervisor's pid and start time: never a pid alone (it may be reused)."""
        if self.proc is not None:
            return self.proc.pid, self._start_time
        return RunDir(self.run_dir).leader() if self.run_dir else None
