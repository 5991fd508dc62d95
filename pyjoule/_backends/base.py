"""The interface every backend implements."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def wait_while(alive: Callable[[], bool], timeout_s: float) -> bool:
    """Look at ``alive()`` every 50 ms for up to ``timeout_s``; True once it is false
    (for a backend that can only look, not be woken)."""
    deadline = time.monotonic() + timeout_s
    while alive():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(0.05, left))
    return True


def load_failure(result, where: str, not_done: str, error_class):
    """The error for a pre-flight (``worker --check``) that failed on ``where``: the
    function or a module it needs cannot be loaded there. ``not_done`` says what did
    not happen ("nothing was started there")."""
    stderr = result.stderr.decode("utf-8", "replace").strip()
    tail = "\n".join(stderr.splitlines()[-12:])
    return error_class(
        f"the function cannot be loaded on {where}, so {not_done} (a module missing "
        f"from the environment there, or one not in the project?). It said:\n{tail}",
        result.command, result.returncode, stderr)


class Backend:
    """Runs the tasks of one run directory somewhere.

    A backend is registered by name (:mod:`.registry`) and built one of two ways:
    :meth:`prepare` for a new run (what can fail early fails there: a host
    connected and synced, sbatch options checked against the cluster), or
    :meth:`from_record` for a run another call registered (from what
    :meth:`describe` returned then). Then :meth:`start` it on a run directory;
    :meth:`alive` and :meth:`wait` are its poll (each takes in what changed: a
    host's streamed results, the scheduler's states), :meth:`cancel` stops it,
    :meth:`tidy` removes what it left elsewhere, :meth:`worker_log` says where the
    worker wrote. Backends know nothing of the cache: the dispatcher reads what the
    worker wrote."""

    name = "base"
    run_dir: str | None = None

    def __init__(self, run_dir: str | None = None):
        self.run_dir = run_dir

    @classmethod
    def prepare(cls, *, host=None, slurm=None, identity=None,
                batch: int | None = None, executor=None) -> Backend:
        """A backend for a new run: ``host`` (a ``pj.Host``, None: this machine),
        ``slurm`` (a ``pj.Slurm``), ``identity()`` (the function's identity, asked
        only when needed), ``batch``, ``executor`` (an ``executor=`` value, passed
        only to the backend of that name). By default a backend needs none of them."""
        return cls()

    @classmethod
    def from_record(cls, run_dir: str | None, options: dict) -> Backend:
        """The backend of the registered run in ``run_dir``; ``options``: the run's
        registry options (what :meth:`describe` returned, and more)."""
        return cls(run_dir)

    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        """Whether the worker may still write records."""
        raise NotImplementedError

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the worker to end; True once it has."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop the worker and every process it started."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What another process needs to follow this run (kept in the run registry)."""
        return {}

    def tidy(self, keep_log: bool) -> None:
        """Remove what the backend left outside the local run directory."""

    def worker_log(self, run_dir: str) -> str | None:
        """Where the worker's own output went, for failures that name no log of their
        own (a lost or timed-out pset): a path here, or ``host:path`` on a host."""
        from .._rundir import RunDir

        path = RunDir(run_dir).log
        return path if os.path.exists(path) else None

    def settle(self) -> None:
        """Wait for the processes that ended this run to be gone (a local pool's
        supervisor exits after it said it is done). Called once the caller has what it
        needs, so that the exit overlaps with building the Dataset."""

    def job_ids(self) -> list[str] | None:
        """The scheduler's ids of what this run submitted (None: no scheduler)."""
        return None

    def orphan_reasons(self, pset_ids: list[str]) -> dict[str, dict]:
        """For psets the worker never reported on: ``{pset_id: {"reason", "message",
        "log_path"}}`` where the backend knows better than "lost"."""
        return {}

    def running_slots(self) -> int | None:
        """Worker processes running now, when the backend knows (None: it does not)."""
        return None

    def settle_start(self) -> str:
        """For a run whose driver died while starting it: ``"started"`` if its workers
        started (follow it), else ``"abandoned"``, and from now on no worker of it
        will compute (see ``RunDir.decide_fate``). Here: the local run directory."""
        from .._rundir import ABANDONED, RunDir

        if self.run_dir is None:
            raise ValueError("settle_start() needs the backend of a registered run")
        return RunDir(self.run_dir).decide_fate(ABANDONED)
