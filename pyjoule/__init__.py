"""pyjoule: sweep a function over parameter sets, cache every result, get a Dataset.

>>> import pyjoule as pj
>>> @pj.experiment
... def simulate(method, N, seed=0): ...
>>> ds = simulate.sweep(method=["EnKF", "PF"], N=[10, 20], seed=range(8))  # doctest: +SKIP
"""

from ._api import Experiment, Run, attach, experiment, load, runs
from ._config import config
from ._errors import (
    CacheError,
    ExperimentError,
    HashingError,
    OptionError,
    PyjouleError,
    RunNotFoundError,
    SerializationError,
    SpaceError,
)
from ._space import Space, grid, product, star, zip

__version__ = "0.1.0"

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
