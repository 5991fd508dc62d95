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
    "load": "_api", "runs": "_api",
    "config": "_config",
    "CacheError": "_errors", "ExperimentError": "_errors", "HashingError": "_errors",
    "OptionError": "_errors", "PyjouleError": "_errors", "RunNotFoundError": "_errors",
    "SerializationError": "_errors", "SpaceError": "_errors",
    "Space": "_space", "grid": "_space", "product": "_space", "star": "_space",
    "zip": "_space",
}

__all__ = [
    "CacheError",
    "Experiment",
    "ExperimentError",
    "HashingError",
    "OptionError",
    "PyjouleError",
    "Run",
    "RunNotFoundError",
    "SerializationError",
    "Space",
    "SpaceError",
    "attach",
    "config",
    "experiment",
    "grid",
    "load",
    "product",
    "runs",
    "star",
    "zip",
]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyjoule' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if _TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from ._api import Experiment, Run, attach, experiment, load, runs
    from ._config import config
    from ._errors import (CacheError, ExperimentError, HashingError, OptionError,
                          PyjouleError, RunNotFoundError, SerializationError, SpaceError)
    from ._space import Space, grid, product, star, zip
