"""The engines ``executor=`` accepts, seen through the little pyjoule needs of them.

An :class:`Engine` submits a batch (a call of :func:`pyjoule._batch.run_batch` on
the payload and a slice of tasks, both already pickled), waits for any of the
batches in flight, hands back a finished batch's bytes (its framed records), and
cancels. Which engine an ``executor=`` value is is told by :func:`engine_for`
without importing dask or ray: they are imported only by their own adapters, and only
once the user's executor is one of theirs (``import pyjoule`` and building a Dataset
never import them).

Adapters:

- :class:`FuturesEngine`: any :class:`concurrent.futures.Executor`
  (``ProcessPoolExecutor``, loky's, ``mpi4py.futures.MPIPoolExecutor``...);
- ``DaskEngine`` (:mod:`._engine_dask`): a ``dask.distributed.Client``;
- ``RayEngine`` (:mod:`._engine_ray`): ``executor="ray"`` after ``ray.init()``.

A batch that the engine lost (its worker process killed, its node gone, the pool
broken) raises :class:`EngineLost` from :meth:`Engine.result`: its psets that have no
record are then recorded ``lost`` and ``retries=`` runs them again. Any other
exception of a batch is the engine's own failure and propagates.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import OptionError
from .._options import executor_kind


class EngineLost(Exception):
    """The engine lost a batch (its worker died, its node went away): its psets
    without a record are ``lost``."""


class Engine:
    """What pyjoule needs of an engine. Handles are the engine's own futures."""

    #: "futures", "dask" or "ray": recorded with the run, shown in ``pj.runs()``
    kind = "engine"

    def describe(self) -> str:
        """A short description for the run registry and logs ("dask tcp://...")."""
        return self.kind

    def workers(self) -> int:
        """How many batches the engine runs at once now (at least 1)."""
        raise NotImplementedError

    def share(self, blob: bytes) -> Any:
        """``blob`` (the pickled payload, the same for every batch) made ready to be
        passed to many batches: sent once where the engine can (dask's scatter, ray's
        put), else the bytes themselves."""
        return blob

    def submit(self, fn: Callable[..., bytes], *args: Any) -> Any:
        """Start ``fn(*args)`` on the engine; a handle of it."""
        raise NotImplementedError

    def wait_any(self, handles: Sequence[Any], timeout_s: float | None) -> list[Any]:
        """The handles of ``handles`` that finished (successfully or not), waiting up
        to ``timeout_s`` for at least one; [] when none did in time."""
        raise NotImplementedError

    def result(self, handle: Any) -> bytes:
        """A finished batch's bytes; :class:`EngineLost` if the engine lost it."""
        raise NotImplementedError

    def cancel(self, handles: Sequence[Any]) -> None:
        """Cancel the batches of ``handles`` (those not started never start; running
        ones are stopped where the engine can)."""
        raise NotImplementedError


class FuturesEngine(Engine):
    """Any :class:`concurrent.futures.Executor`. A running batch cannot be stopped
    through this interface: cancelling stops the batches not yet started, and the
    results of those running are not used."""

    kind = "futures"

    def __init__(self, executor: cf.Executor):
        self.executor = executor

    def describe(self) -> str:
        return f"{type(self.executor).__module__}.{type(self.executor).__qualname__}"

    def workers(self) -> int:
        for attr in ("_max_workers", "max_workers", "_num_workers", "num_workers"):
            n = getattr(self.executor, attr, None)
            if isinstance(n, int) and n > 0:
                return n
        return os.cpu_count() or 1

    def submit(self, fn: Callable[..., bytes], *args: Any) -> Any:
        try:
            return self.executor.submit(fn, *args)
        except cf.BrokenExecutor:
            fresh = self._reusable_again()
            if fresh is None:  # broken for good: the caller records the rest lost
                raise
            self.executor = fresh
            return fresh.submit(fn, *args)

    def _reusable_again(self) -> cf.Executor | None:
        """loky's reusable executor, broken by a worker's death, made anew (as
        ``loky.get_reusable_executor`` does for its users); None for any other."""
        if type(self.executor).__name__ != "_ReusablePoolExecutor" \
                or not type(self.executor).__module__.startswith("loky"):
            return None
        import loky  # imported already: the user's executor is one of its

        return loky.get_reusable_executor(max_workers=self.workers())  # type: ignore[no-any-return]

    def wait_any(self, handles: Sequence[Any], timeout_s: float | None) -> list[Any]:
        done, _ = cf.wait(handles, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> bytes:
        try:
            return handle.result()  # type: ignore[no-any-return]
        except cf.CancelledError as exc:
            raise EngineLost("the batch was cancelled by the executor") from exc
        except cf.BrokenExecutor as exc:  # BrokenProcessPool, loky's TerminatedWorkerError
            raise EngineLost(f"the executor's worker died: {exc}") from exc

    def cancel(self, handles: Sequence[Any]) -> None:
        for handle in handles:
            handle.cancel()


def engine_for(executor: Any) -> Engine:
    """The :class:`Engine` for an ``executor=`` value: a ``dask.distributed.Client``,
    ``"ray"`` (after ``ray.init()``), or any ``concurrent.futures.Executor`` (told
    apart by :func:`.._options.executor_kind`, which the option's check uses too)."""
    kind = executor_kind(executor)
    if kind == "ray":
        from ._engine_ray import RayEngine

        return RayEngine()
    if kind == "dask":
        from ._engine_dask import DaskEngine

        return DaskEngine(executor)
    if kind == "futures":
        return FuturesEngine(executor)
    if isinstance(executor, str):
        raise OptionError(f'executor={executor!r}: the only engine named by a string is '
                          '"ray"; pass a dask Client or a concurrent.futures Executor '
                          'itself')
    raise OptionError(
        f"executor={executor!r} is not an engine pyjoule knows: pass a "
        "dask.distributed.Client, any concurrent.futures.Executor (ProcessPoolExecutor, "
        'loky, mpi4py.futures.MPIPoolExecutor), or "ray" after ray.init()')
