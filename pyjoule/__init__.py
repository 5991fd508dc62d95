"""pyjoule: sweep a function over parameter sets, cache every result, get a Dataset.

>>> import pyjoule as pj
>>> @pj.experiment
... def simulate(method, N, seed=0): ...
>>> ds = simulate.sweep(method=["EnKF", "PF"], N=[10, 20], seed=range(8))  # doctest: +SKIP

Names are imported on first use (PEP 562), so ``import pyjoule`` and the worker
(``python -m pyjoule.worker``, started on every host) load almost nothing.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Experiment": "_api", "Run": "_api", "attach": "_api", "experiment": "_api",
    "load": "_api", "runs": "_api", "ui": "_api",
    "best": "_analysis", "plot": "_plot", "stats": "_analysis",
    "config": "_config",
    "open": "_export", "save": "_export",
    "AuthenticationError": "_errors", "CacheError": "_errors",
    "ExperimentError": "_errors", "HashingError": "_errors", "HostError": "_errors",
    "HostKeyError": "_errors", "OptionError": "_errors", "PyjouleError": "_errors",
    "RemoteCommandError": "_errors", "RunNotFoundError": "_errors",
    "SerializationError": "_errors", "SlurmError": "_errors", "SpaceError": "_errors",
    "WorkerTraceback": "_errors",
    "Slurm": "_slurm",
    "Host": "_transport.hosts",
    "Space": "_space", "grid": "_space", "product": "_space", "star": "_space",
    "zip": "_space",
}

__all__ = [
    "AuthenticationError",
    "CacheError",
    "Experiment",
    "ExperimentError",
    "HashingError",
    "Host",
    "HostError",
    "HostKeyError",
    "OptionError",
    "PyjouleError",
    "RemoteCommandError",
    "Run",
    "RunNotFoundError",
    "SerializationError",
    "Slurm",
    "SlurmError",
    "Space",
    "SpaceError",
    "WorkerTraceback",
    "attach",
    "best",
    "config",
    "experiment",
    "grid",
    "load",
    "plot",
    "product",
    "runs",
    "save",
    "star",
    "stats",
    "ui",
    "zip",
]


# Public, but left out of __all__ so that ``from pyjoule import *`` cannot hide the
# builtin ``open``: use it as ``pj.open(path)``.
_PUBLIC_NOT_STARRED = ("open",)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyjoule' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_PUBLIC_NOT_STARRED))


if _TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from ._analysis import best, stats
    from ._api import Experiment, Run, attach, experiment, load, runs, ui
    from ._config import config
    from ._errors import (
        AuthenticationError,
        CacheError,
        ExperimentError,
        HashingError,
        HostError,
        HostKeyError,
        OptionError,
        PyjouleError,
        RemoteCommandError,
        RunNotFoundError,
        SerializationError,
        SlurmError,
        SpaceError,
        WorkerTraceback,
    )
    from ._export import open, save
    from ._plot import plot
    from ._slurm import Slurm
    from ._space import Space, grid, product, star, zip
    from ._transport.hosts import Host
