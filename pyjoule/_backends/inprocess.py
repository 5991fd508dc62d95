"""``workers=0``: the worker's code path in the calling process, for ``pdb``."""

from __future__ import annotations

import os

from .. import worker
from .._rundir import RunDir
from .base import Backend, wait_while


class InProcessBackend(Backend):
    """Runs every task inside :meth:`start`. To another process following the run,
    it is alive while the driver (``{"host", "pid", "start"}``, from the registry)
    lives and has not written ``exit``: never taken for dead while it computes."""

    name = "inprocess"

    def __init__(self, run_dir: str | None = None, driver: dict | None = None):
        self.run_dir, self.driver = run_dir, driver

    @classmethod
    def from_record(cls, run_dir: str | None, options: dict) -> InProcessBackend:
        return cls(run_dir, options.get("driver"))

    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        # Runs to completion here: breakpoints in the function stop in this process.
        self.run_dir = run_dir
        worker.run(run_dir, 0, task_files)

    def alive(self) -> bool:
        from .._platform import process_alive

        if self.run_dir is None or not self.driver:
            return False
        if RunDir(self.run_dir).exited():
            return False
        return process_alive(self.driver)

    def wait(self, timeout_s: float) -> bool:
        return wait_while(self.alive, timeout_s)

    def cancel(self) -> None:
        """From another process (``pyjoule cancel``): the run computes in its driver's
        main thread, so interrupt the driver (checked by pid and start time) as a
        Ctrl-C would, and wait for it to stop; its psets stay claimed until then."""
        import signal

        from .._platform import here, process_alive

        if not self.driver or not here(self.driver) or self.driver["pid"] == os.getpid():
            return
        if self.alive() and process_alive(self.driver):
            try:
                os.kill(int(self.driver["pid"]), signal.SIGINT)
            except OSError:
                return
            self.wait(30)
