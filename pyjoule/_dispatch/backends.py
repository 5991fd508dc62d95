"""The backend objects dispatch works with: prepared for a new run (``prepare_ssh``,
``prepare_slurm``) or rebuilt from a registered run's description
(``make_backend``). The one place that knows the backends by name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import _private


def prepare_ssh(host, identity: Callable[[], Any]):
    """The SSH backend for ``host``, with the project of the running code (or, with
    no project, the folder of the script or notebook) synced there, wherever the
    process was started from; ``identity()`` gives the packages the function uses,
    for a folder with no project of its own."""
    from .. import _project
    from .._backends.ssh import SSHBackend
    from .._transport.env import requirements_from

    root = _project.project_of()
    if root is None:  # a script's or notebook's folder: synced only if the user's alone
        root = _project.code_folder()
        why = _private.problem(os.stat(root))
        if why is not None:  # e.g. /tmp: others' files would be imported on the host
            from .._errors import HostError

            raise HostError(
                f"pyjoule will not copy {root} to the host: {why}, so files another user "
                "put there would run there as your code. Work from a folder of your own "
                "(ideally with a pyproject.toml), not a shared one.")
    return SSHBackend.prepare(host, root, lambda: requirements_from(identity().components))


def prepare_slurm(host, slurm, identity: Callable[[], Any], batch: int | None):
    """The SLURM backend: sbatch on ``host`` over SSH (its project synced as for
    :func:`prepare_ssh`), or this machine's sbatch when ``host`` is None."""
    from .._backends.slurm import SlurmBackend

    ssh = prepare_ssh(host, identity) if host is not None else None
    backend = SlurmBackend(slurm, ssh=ssh, batch=batch)
    backend.check()  # a misspelt option fails now, before anything is written
    return backend


def make_backend(backend_name: str, run_dir: str | None = None,
                 options: dict | None = None):
    """The backend object for a registered run (imported lazily: only dispatch needs them)."""
    if backend_name == "slurm":
        from .._backends.slurm import SlurmBackend

        return SlurmBackend.from_description(run_dir, options or {})
    if backend_name == "inprocess":
        from .._backends.inprocess import InProcessBackend

        return InProcessBackend(run_dir, (options or {}).get("driver"))
    if backend_name == "ssh":
        from .._backends.ssh import SSHBackend

        return SSHBackend.from_description(run_dir, options or {})
    from .._backends.pool import PoolBackend

    return PoolBackend(run_dir)
