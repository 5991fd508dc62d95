"""The :class:`~.engines.Engine` of Ray (``executor="ray"`` after ``ray.init()``).

Imported only once the user asked for ``executor="ray"`` (:func:`.engines.engine_for`),
so ``import pyjoule`` never imports ray. Batches are Ray tasks with ``max_retries=0``:
Ray would otherwise re-run a batch whose worker crashed, and pyjoule wants to know,
record its psets ``lost`` and let ``retries=`` decide. The payload is put once in the
object store. What Ray reports as a loss (a worker crashed or was killed for memory,
a node or the owner gone, an object lost, a task cancelled) is
:class:`~.engines.EngineLost`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray
import ray.exceptions as rex

from .._errors import OptionError
from .engines import Engine, EngineLost

# what ray.get raises when Ray lost a batch rather than the batch failing
# (ObjectLostError covers OwnerDiedError, ObjectReconstructionFailedError...)
_LOST = (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError,
         rex.LocalRayletDiedError, rex.OutOfMemoryError, rex.TaskCancelledError,
         rex.RaySystemError)


class RayEngine(Engine):
    """Ray, as initialised in this process by the user's ``ray.init()``."""

    kind = "ray"

    def __init__(self) -> None:
        if not ray.is_initialized():
            raise OptionError('executor="ray": call ray.init() first (ray.init() for '
                              'this machine, ray.init(address="auto") to join a running '
                              'cluster)')
        self._remote: dict[Callable[..., bytes], Any] = {}

    def describe(self) -> str:
        return f"ray {ray.get_runtime_context().gcs_address}"

    def workers(self) -> int:
        """The CPUs of the cluster (a batch takes one)."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def share(self, blob: bytes) -> Any:
        return ray.put(blob)

    def submit(self, fn: Callable[..., bytes], *args: Any) -> Any:
        remote = self._remote.get(fn)
        if remote is None:  # one Ray function per Python function, exported once
            remote = self._remote[fn] = ray.remote(max_retries=0)(fn)
        return remote.remote(*args)

    def wait_any(self, handles: Sequence[Any], timeout_s: float | None) -> list[Any]:
        handles = list(handles)
        if not handles:
            return []
        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout_s, fetch_local=False)
        if not ready:
            return []
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0,
                            fetch_local=False)
        return list(ready)

    def result(self, handle: Any) -> bytes:
        try:
            return ray.get(handle)  # type: ignore[no-any-return]
        except _LOST as exc:
            raise EngineLost(f"Ray lost the batch: {type(exc).__name__}: {exc}") from exc

    def cancel(self, handles: Sequence[Any]) -> None:
        """Batches not started never start; running ones are stopped by killing
        their worker process (``force=True``)."""
        for handle in handles:
            ray.cancel(handle, force=True)
