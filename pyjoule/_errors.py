"""The exception tree. Every error pyjoule raises derives from :class:`PyjouleError`.

Errors that are also a standard error (a bad option is a ``TypeError``, a bad space a
``ValueError``) inherit from both, so ``except TypeError`` keeps working for users who
do not know about pyjoule's classes.

Every class here is public (``pj.ExperimentError``) and says so where it is printed:
its ``__module__`` is ``pyjoule``, so a traceback ends with
``pyjoule.ExperimentError: ...``, not the private module's name; pickle finds the
classes there too (``pyjoule`` exports them).
"""

from __future__ import annotations

from typing import Any


class PyjouleError(Exception):
    """Base class of every exception pyjoule raises."""


class OptionError(PyjouleError, TypeError):
    """An unknown or invalid option, argument name or parameter key."""


class SpaceError(PyjouleError, ValueError):
    """A parameter space that cannot be built (unequal lengths, overlapping keys)."""


class HashingError(PyjouleError, TypeError):
    """A parameter value of a type pyjoule cannot hash canonically."""


class SerializationError(PyjouleError, TypeError):
    """The function (or a value it needs) cannot be pickled to send it to a worker."""


class CacheError(PyjouleError, OSError):
    """The cache directory cannot be used (not writable, not a pyjoule cache)."""


class RunNotFoundError(PyjouleError, KeyError):
    """No run with that id in the run registry."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ExperimentError(PyjouleError):
    """Some psets failed under ``errors="raise"``.

    Attributes
    ----------
    failures : pandas.DataFrame
        One row per failed pset: the parameters, ``error_type``, ``message``,
        ``traceback``, ``reason`` and ``log``.
    dataset : xarray.Dataset
        Everything that did succeed.
    """

    def __init__(self, message: str, failures: Any = None, dataset: Any = None):
        super().__init__(message)
        self.failures = failures
        self.dataset = dataset


class WorkerTraceback(PyjouleError):
    """The traceback of an exception the function raised in a worker, attached as the
    ``__cause__`` of that exception when ``f(**kw)`` raises it again in the caller
    (as ``concurrent.futures`` attaches a process pool's remote traceback)."""


class HostError(PyjouleError, ConnectionError):
    """A remote host cannot be reached or used (unknown name, refused, no uv, ...)."""


class HostKeyError(HostError):
    """The host's key is not in known_hosts, or differs from the one recorded there."""


class AuthenticationError(HostError):
    """The host refused every key (and password or code) pyjoule could offer."""


class RemoteCommandError(PyjouleError):
    """A command on a remote host failed: carries the command, exit code and stderr."""

    def __init__(self, message: str, command: str = "", returncode: int | None = None,
                 stderr: str = ""):
        super().__init__(message)
        self.command, self.returncode, self.stderr = command, returncode, stderr


class SlurmError(RemoteCommandError):
    """SLURM refused or failed a request (sbatch, squeue, scancel): carries SLURM's own
    message, the command and its exit code."""


for _cls in list(globals().values()):  # see the module docstring
    if isinstance(_cls, type) and issubclass(_cls, PyjouleError):
        _cls.__module__ = "pyjoule"
del _cls
