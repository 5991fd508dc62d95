"""Backends by name: the built-in ones, and any a plugin registers.

The built-in backends (``pool``, also called ``local``; ``inprocess``; ``ssh``;
``slurm``; ``multi``: several SSH hosts; ``executor``: an engine the user runs) are
imported when first asked for: ``import pyjoule`` stays light and imports no paramiko.
:func:`create` builds a backend for a new run (:meth:`.base.Backend.prepare`),
:func:`from_record` one for a registered run (:meth:`.base.Backend.from_record`).

>>> from pyjoule._backends import registry
>>> registry.get("local").__name__
'PoolBackend'
>>> "slurm" in registry.names()
True
>>> registry.get("pbs")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pyjoule.OptionError: no backend named 'pbs'; the backends are: executor, inprocess, ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .. import _caches
from .._errors import OptionError

if TYPE_CHECKING:
    from .base import Backend

# name -> (module, class), imported on first use
_BUILTIN = {
    "pool": ("pyjoule._backends.pool", "PoolBackend"),
    "local": ("pyjoule._backends.pool", "PoolBackend"),
    "inprocess": ("pyjoule._backends.inprocess", "InProcessBackend"),
    "ssh": ("pyjoule._backends.ssh", "SSHBackend"),
    "multi": ("pyjoule._backends.multi", "MultiBackend"),
    "slurm": ("pyjoule._backends.slurm", "SlurmBackend"),
    "executor": ("pyjoule._backends.executor", "ExecutorBackend"),
}
# the classes registered by register(): the registry of this process, not a cache
_registered: dict[str, type[Backend]] = {}


def register(name: str, cls: type[Backend]) -> None:
    """Make ``cls`` (a :class:`.base.Backend`) the backend called ``name``."""
    from .base import Backend

    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise OptionError(f"backend {name!r}: {cls!r} is not a Backend subclass")
    _registered[name] = cls


def unregister(name: str) -> None:
    """Forget the backend ``name`` registered (a built-in one stays)."""
    _registered.pop(name, None)


def get(name: str) -> type[Backend]:
    """The backend class called ``name``."""
    cls = _registered.get(name)
    if cls is not None:
        return cls
    if name not in _BUILTIN:
        raise OptionError(f"no backend named {name!r}; the backends are: "
                          f"{', '.join(names())}")
    module, attr = _BUILTIN[name]
    cls = getattr(importlib.import_module(module), attr)
    return cls  # type: ignore[no-any-return]


def names() -> list[str]:
    """Every backend name, sorted."""
    return sorted({*_BUILTIN, *_registered})


def create(name: str, *, host=None, slurm=None, identity=None,
           batch: int | None = None, executor=None) -> Backend:
    """A backend called ``name`` for a new run (see :meth:`.base.Backend.prepare`);
    ``executor`` is passed only when given (a plugin's ``prepare`` need not know it)."""
    extra = {} if executor is None else {"executor": executor}
    return get(name).prepare(host=host, slurm=slurm, identity=identity, batch=batch,
                             **extra)


def from_record(name: str, run_dir: str | None, options: dict | None = None) -> Backend:
    """The backend of a registered run (see :meth:`.base.Backend.from_record`)."""
    return get(name).from_record(run_dir, options or {})


# reset_all() leaves the built-in backends, as a new process has before a plugin's import
_caches.declare(__name__, "_registered", _registered)
