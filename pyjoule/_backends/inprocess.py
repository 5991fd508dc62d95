"""``workers=0``: the worker's code path in the calling process, for ``pdb``."""

from __future__ import annotations

from .. import worker
from .base import Backend


class InProcessBackend(Backend):
    name = "inprocess"

    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        # Runs to completion here: breakpoints in the function stop in this process.
        worker.run(run_dir, 0, task_files)

    def alive(self) -> bool:
        return False

    def wait(self, timeout_s: float) -> bool:
        return True

    def cancel(self) -> None:
        pass
