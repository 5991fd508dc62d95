"""The :class:`~._engines.Engine` of a ``dask.distributed.Client`` (``executor=client``).

Imported only once the user's executor is a dask Client (:func:`.engines.engine_for`),
so ``import pyjoule`` never imports dask. The payload is scattered once to every worker
and each batch is one task (``pure=False``: two batches with equal arguments are still
two runs). What dask reports as a loss (a worker killed more often than the
scheduler's ``allowed-failures``, the scheduler or the connection to it gone, a future
cancelled by anyone but pyjoule) is :class:`~.engines.EngineLost`: the batch's psets
are recorded ``lost`` and ``retries=`` runs them again. Note that dask itself re-runs a
batch whose worker died, up to ``distributed.scheduler.allowed-failures`` times (3 by
default), before it reports the loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import distributed
from distributed.client import FutureCancelledError, FuturesCancelledError
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from .engines import Engine, EngineLost

# a future in one of these states will not change any more (a "lost" one is
# recomputed by dask and becomes pending again)
_FINISHED = frozenset({"finished", "error", "cancelled"})
# what a batch's result raises when dask lost it rather than the batch failing
_LOST = (KilledWorker, FutureCancelledError, CommClosedError)


class DaskEngine(Engine):
    """A ``dask.distributed.Client``: batches are the client's futures."""

    kind = "dask"

    def __init__(self, client: distributed.Client):
        self.client = client

    def describe(self) -> str:
        return f"dask {self.client.scheduler.address}"

    def workers(self) -> int:
        """The threads of the workers connected now; 1 while a cluster that scales
        (dask-jobqueue waiting for its jobs) has none yet."""
        return max(1, sum(self.client.nthreads().values()))

    def share(self, blob: bytes) -> Any:
        """The payload sent once to each worker now (workers that join later fetch it
        from a peer); a future that the batches take as argument."""
        return self.client.scatter(blob, broadcast=True, hash=False)

    def submit(self, fn: Callable[..., bytes], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False)

    def wait_any(self, handles: Sequence[Any], timeout_s: float | None) -> list[Any]:
        done = [h for h in handles if h.status in _FINISHED]
        if done or not handles:
            return done
        try:
            distributed.wait(list(handles), timeout=timeout_s, return_when="FIRST_COMPLETED")
        except (TimeoutError, asyncio.TimeoutError, FuturesCancelledError):
            pass  # none in time; or some were cancelled: those are done too
        return [h for h in handles if h.status in _FINISHED]

    def result(self, handle: Any) -> bytes:
        try:
            return handle.result()  # type: ignore[no-any-return]
        except _LOST as exc:
            raise EngineLost(f"dask lost the batch: {type(exc).__name__}: {exc}") from exc

    def cancel(self, handles: Sequence[Any]) -> None:
        """Batches not started never start. dask cannot stop a task that runs: its
        result is dropped and the worker's thread finishes it."""
        if handles:
            self.client.cancel(list(handles), force=True)
