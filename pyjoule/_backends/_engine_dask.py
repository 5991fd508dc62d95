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

dask cannot stop a task that runs (it drops its result; the worker's thread finishes
it), so a batch runs inside :func:`_stoppable`: :meth:`DaskEngine.cancel` raises
``KeyboardInterrupt`` in the threads running the cancelled batches (what
:func:`pyjoule._execute.execute` lets through, between two bytecodes of the pset),
and the batch ends with :class:`BatchStopped` instead of taking its worker down.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import distributed
from distributed.client import FutureCancelledError, FuturesCancelledError
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from .. import _caches
from .engines import Engine, EngineLost

# a future in one of these states will not change any more (a "lost" one is
# recomputed by dask and becomes pending again)
_FINISHED = frozenset({"finished", "error", "cancelled"})
# what a batch's result raises when dask lost it rather than the batch failing
_LOST = (KilledWorker, FutureCancelledError, CommClosedError)


# in a worker process: the batches running now (thread id -> batch key), and those
# being stopped
_RUNNING: dict[int, str] = _caches.declare(__name__, "_RUNNING", {})
_STOPPING: set[str] = _caches.declare(__name__, "_STOPPING", set())
_LOCK = threading.Lock()


class BatchStopped(Exception):
    """A batch stopped by :meth:`DaskEngine.cancel` while it ran."""


def _stoppable(key: str, fn: Callable[..., bytes], *args: Any) -> bytes:
    """``fn(*args)`` on a dask worker, registered so that :func:`_stop` can stop it.

    ``KeyboardInterrupt`` must not leave a task (dask's worker would shut down); one
    that :func:`_stop` raised can only arrive while the thread is registered."""
    ident = threading.get_ident()
    try:
        with _LOCK:
            _RUNNING[ident] = key
        try:
            return fn(*args)
        finally:
            with _LOCK:
                del _RUNNING[ident]
    except KeyboardInterrupt:
        if key not in _STOPPING:
            raise
        _STOPPING.discard(key)
        raise BatchStopped(key) from None


def _payload(blob: bytes) -> bytes:
    """The payload, as a task's result (:meth:`DaskEngine.share` without workers)."""
    return blob


def _stop(keys: list[str]) -> int:
    """Run on each worker by :meth:`DaskEngine.cancel`: interrupt the threads running
    one of ``keys``; how many."""
    wanted = set(keys)
    stopped = 0
    with _LOCK:
        for ident, key in _RUNNING.items():
            if key in wanted:
                _STOPPING.add(key)
                stopped += ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
    return stopped


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
        """The payload as a future that the batches take as argument: sent once to
        each worker now (workers that join later fetch it from a peer). With no worker
        yet (a dask-jobqueue cluster whose jobs wait in the queue), where dask's
        scatter would wait for one and then time out, it is a task that returns it,
        run on the first worker to come."""
        if not self.client.nthreads():
            return self.client.submit(_payload, blob, pure=False)
        return self.client.scatter(blob, broadcast=True, hash=False)

    def submit(self, fn: Callable[..., bytes], *args: Any) -> Any:
        key = f"pyjoule-batch-{uuid.uuid4().hex}"
        return self.client.submit(_stoppable, key, fn, *args, key=key)

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
        """Batches not started never start; running ones are interrupted (the pset
        running finishes its current bytecode, C calls included)."""
        if not handles:
            return
        self.client.cancel(list(handles), force=True)
        self.client.run(_stop, [h.key for h in handles], on_error="ignore")
