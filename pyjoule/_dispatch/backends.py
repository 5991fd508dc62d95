"""The backend objects dispatch works with, through the backend registry
(:mod:`.._backends.registry`): prepared for a new run from the call's options, or
rebuilt from a registered run's description. Dispatch names a backend; what each one
needs to start (a synced project on a host, a cluster's checked options) is the
backend's own :meth:`~.._backends.base.Backend.prepare`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._backends import registry

if TYPE_CHECKING:
    from .._backends.base import Backend


def prepare(name: str, *, host: Any = None, slurm: Any = None,
            identity: Callable[[], Any] | None = None, batch: int | None = None,
            executor: Any = None) -> Backend:
    """The backend ``name`` for a new run (``identity()`` gives the function's
    identity, asked only by a backend that syncs a project without one of its own;
    ``executor``: the engine of the ``executor`` backend)."""
    return registry.create(name, host=host, slurm=slurm, identity=identity, batch=batch,
                           executor=executor)


def make_backend(backend_name: str, run_dir: str | None = None,
                 options: dict | None = None) -> Backend:
    """The backend object of a registered run (imported lazily: only dispatch needs
    the backends)."""
    return registry.from_record(backend_name, run_dir, options or {})
