"""A process pool on this machine: the worker program in its own session, so that it
survives the caller (a restarted notebook kernel can attach to it) and can be stopped
as one process group. Forked from the caller when that is safe (a single-threaded
script), else started as ``python -m pyjoule.worker RUN_DIR`` (notebooks)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from .. import worker
from .._transport import local
from .base import Backend


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    """Sleep until ``pid`` exits or ``timeout_s`` passes, waking at once on exit.

    ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms; a pidfd (Linux 5.3+)
    becomes readable the moment the process ends, so short runs end without a lag.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or an old kernel: plain sleep
        time.sleep(timeout_s)
        return
    try:
        select.select([fd], [], [], timeout_s)
    finally:
        os.close(fd)


class PoolBackend(Backend):
    name = "pool"

    def __init__(self, run_dir: str | None = None):
        self.run_dir = run_dir
        self.proc: subprocess.Popen | local.ForkedChild | None = None

    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        self.run_dir = run_dir
        log_path = os.path.join(run_dir, "worker.log")
        if local.can_fork():
            # The same worker program, forked from this process instead of started
            # afresh: no interpreter start-up and imports (about 70 ms a run).
            self.proc = local.fork_detached(lambda: worker.run(run_dir, workers, task_files),
                                            log_path=log_path)
        else:
            argv = [sys.executable, "-m", "pyjoule.worker", run_dir, "--workers",
                    str(workers)]
            if task_files:
                argv += ["--tasks", *task_files]
            env = dict(os.environ)
            # The worker imports the user's modules the way the caller does.
            env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
            env["PYTHONUNBUFFERED"] = "1"  # prints reach worker.log (and capture=False's echo) at once
            self.proc = local.spawn(argv, log_path=log_path, env=env)
        # Written here too, so a crash before the worker writes its own is still seen.
        with open(os.path.join(run_dir, "worker.pid"), "w") as fh:
            fh.write(f"{self.proc.pid} {worker.process_start_time(self.proc.pid)}\n")

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.run_dir is not None and worker.is_alive(self.run_dir)

    def wait(self, timeout_s: float) -> bool:
        if self.proc is not None:
            if self.proc.poll() is not None:
                return True
            _wait_for_exit(self.proc.pid, timeout_s)
            return self.proc.poll() is not None
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.05, timeout_s))
        return True

    def cancel(self) -> None:
        pid = self._pid()
        if pid:
            local.kill_group(pid)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def _pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        if self.run_dir and worker.is_alive(self.run_dir):
            with open(os.path.join(self.run_dir, "worker.pid")) as fh:
                return int(fh.read().split()[0])
        return None
