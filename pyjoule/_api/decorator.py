"""The typed signatures of ``@pj.experiment`` and ``f.options``.

Every option is a keyword parameter with a type and a numpy-style description, so an
IDE completes ``workers=`` and shows what it does, ``help(pj.experiment)`` lists them,
and a type checker refuses ``workers="4"``. Defaults are ``UNSET`` ("not given here":
the next layer of the precedence decides, see ``_options``). A name that is no option
lands in ``**not_an_option`` (typed ``NoReturn``, so a type checker flags it too) and
raises ``pj.OptionError`` with a "did you mean".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    NoReturn,
    ParamSpec,
    TypeVar,
    overload,
)

from .._options import IDENTITY, NAMES, UNSET, Errors, Options, unknown

if TYPE_CHECKING:
    from .._slurm import Slurm
    from .._transport.hosts import Host
    from .decorated import Experiment

_E = TypeVar("_E", bound="OptionsMethod")
_P = ParamSpec("_P")  # the decorated function's parameters and return type: the
_R = TypeVar("_R")  # Experiment takes and returns the same (f(...) is typed as func)


def _given(params: Mapping[str, Any], extra: Mapping[str, Any], where: str) -> Options:
    """The options among a typed function's ``locals()``; unknown names refused."""
    if extra:
        refused = sorted(set(extra) & set(IDENTITY))
        if refused and where == "f.options":
            raise _identity_error(refused)
        raise unknown(extra, [n for n in NAMES if where != "f.options"
                              or n not in IDENTITY], where)
    return Options.of(where, {k: v for k, v in params.items() if k in NAMES})


def _identity_error(names: Sequence[str]) -> Exception:
    from .._errors import OptionError

    return OptionError(
        f"f.options() cannot change {', '.join(names)}: they change the function's "
        "identity or what its cache keys mean. Decorate the function anew, e.g. "
        f"pj.experiment(f.func, {names[0]}=...)")


@overload
def experiment(func: Callable[_P, _R], *, host: str | Host | Sequence[str | Host] | None = ...,
               slurm: Mapping[str, Any] | Slurm | None = ..., workers: int = ...,
               batch: int = ..., threads: int = ...,
               cache: str | os.PathLike[str] | bool = ..., version: str = ...,
               retries: int = ..., errors: Errors = ..., timeout: float | None = ...,
               progress: bool = ..., capture: bool = ..., dims: dict[str, Any] = ...,
               ignore: Sequence[str] = ..., executor: Any = ...) -> Experiment[_P, _R]: ...
@overload
def experiment(func: None = None, *, host: str | Host | Sequence[str | Host] | None = ...,
               slurm: Mapping[str, Any] | Slurm | None = ..., workers: int = ...,
               batch: int = ..., threads: int = ...,
               cache: str | os.PathLike[str] | bool = ..., version: str = ...,
               retries: int = ..., errors: Errors = ..., timeout: float | None = ...,
               progress: bool = ..., capture: bool = ..., dims: dict[str, Any] = ...,
               ignore: Sequence[str] = ..., executor: Any = ...
               ) -> Callable[[Callable[_P, _R]], Experiment[_P, _R]]: ...
def experiment(func: Callable[..., Any] | None = None, *,
               host: str | Host | Sequence[str | Host] | None = UNSET,
               slurm: Mapping[str, Any] | Slurm | None = UNSET,
               workers: int = UNSET, batch: int = UNSET, threads: int = UNSET,
               cache: str | os.PathLike[str] | bool = UNSET, version: str = UNSET,
               retries: int = UNSET, errors: Errors = UNSET, timeout: float | None = UNSET,
               progress: bool = UNSET, capture: bool = UNSET,
               dims: dict[str, Any] = UNSET, ignore: Sequence[str] = UNSET,
               executor: Any = UNSET, **not_an_option: NoReturn) -> Any:
    """Turn a function into an experiment that sweeps, caches and returns Datasets.

    Use it bare (``@pj.experiment``) or with options
    (``@pj.experiment(workers=4, timeout=60)``). Every option is keyword-only and
    optional, and is checked here: an unknown name or a bad value raises
    ``pj.OptionError`` (with a "did you mean"). An option not given comes from
    ``pj.config``, a ``PYJOULE_*`` variable or ``[tool.pyjoule]`` in the project's
    ``pyproject.toml`` where those can set it, else its default. ``f.options(...)``
    changes the execution options of a decorated function.

    Parameters
    ----------
    func : callable, optional
        The function, when used bare. Its keyword arguments are the parameters that
        psets set; it returns a dict (one Dataset variable per key) or any value.
    host : str, Host, a list of them, or None
        Run on this host over SSH: an ``~/.ssh/config`` alias, ``user@name:port``
        or a ``pj.Host``; a list of hosts splits the sweep over all of them.
        ``None``: this machine (the default).
    slurm : dict, Slurm or None
        Run as SLURM array jobs with these sbatch options (on ``host``, or with
        this machine's ``sbatch``); see ``pj.Slurm``.
    workers : int
        Worker processes (per array task under ``slurm=``); default the CPUs
        available (``PYJOULE_WORKERS``), the host's CPUs with ``host=``,
        ``cpus_per_task`` with ``slurm=``. ``0`` runs in the calling process.
    batch : int
        Most psets a worker process takes at once; under ``slurm=``, psets per
        batch of an array task. Default: chosen automatically.
    threads : int
        BLAS/OpenMP threads per worker process; default 1.
    cache : str, Path or False
        Cache directory; default ``$PYJOULE_CACHE``, else ``.pyjoule/`` in the
        project root, else ``~/.cache/pyjoule``. ``False``: compute, keep nothing.
    version : str
        Pins the function's identity: code edits no longer invalidate its results;
        change the string to invalidate them.
    retries : int
        Re-runs of psets that failed for infrastructure reasons (``timeout``,
        ``lost``; under SLURM also ``node_failure``, ``out_of_memory``,
        ``preempted``); default 0.
    errors : {"raise", "warn", "ignore"}
        What ``map`` does when some psets failed; default ``"raise"``
        (``pj.ExperimentError``).
    timeout : float or None
        Seconds per pset; a pset running longer fails with reason ``timeout`` and
        its worker process is replaced. ``None``: no limit (the default).
    progress : bool
        A progress bar (a widget in Jupyter); default ``True`` (``PYJOULE_PROGRESS``).
    capture : bool
        Keep each pset's stdout/stderr, successful or not (``failures``,
        ``f.table(output=True)``, ``pyjoule logs``); default ``True``. With
        ``False``, what the local pool's workers print shows on this process's stdout
        as they print it.
    dims : dict
        Dimension names of array results, e.g. ``{"trace": ("t",)}``.
    ignore : list of str
        Names of arguments that do not change the result (``verbose``, an output
        folder): passed to the function, left out of the cache key.
    executor : Executor, dask Client or "ray"
        Hand the psets, in batches, to an engine you run: any
        ``concurrent.futures.Executor`` (``ProcessPoolExecutor``, loky's,
        ``mpi4py.futures.MPIPoolExecutor``), a ``dask.distributed.Client``, or
        ``"ray"`` after ``ray.init()``. Cached psets are never submitted; results
        reach the cache as each batch ends. Not with ``host=``, ``slurm=`` or
        ``workers=`` (the engine's workers run them). See docs/executors.md.
    **not_an_option
        None: any other name raises ``pj.OptionError`` (and is a type error).

    Returns
    -------
    Experiment
        Calls like ``func``, and has ``map``, ``sweep``, ``submit``, ``table``,
        ``options``, ... (used with options only: a decorator that makes one).

    Examples
    --------
    >>> import pyjoule as pj
    >>> @pj.experiment(cache=False, progress=False, workers=0)
    ... def square(x):
    ...     return x * x
    >>> float(square.sweep(x=[1, 2, 3]).result.sum())
    14.0
    """
    from .decorated import Experiment

    opts = _given(locals(), not_an_option, "@pj.experiment")
    if func is None:
        return lambda f: Experiment._of(f, opts)
    if not callable(func):
        from .._errors import OptionError

        raise OptionError("@pj.experiment decorates a function; pass options as keywords")
    return Experiment._of(func, opts)


class OptionsMethod:
    """``f.options(...)``, for ``Experiment``: a copy with other execution options."""

    _call: Options

    def options(self: _E, *, host: str | Host | Sequence[str | Host] | None = UNSET,
                slurm: Mapping[str, Any] | Slurm | None = UNSET,
                workers: int = UNSET, batch: int = UNSET, threads: int = UNSET,
                cache: str | os.PathLike[str] | bool = UNSET, retries: int = UNSET,
                errors: Errors = UNSET, timeout: float | None = UNSET,
                progress: bool = UNSET, capture: bool = UNSET,
                dims: dict[str, Any] = UNSET, executor: Any = UNSET,
                **not_an_option: NoReturn) -> _E:
        """The same experiment (same function, identity and cache entries) with
        other execution options; the decorated function is left as it was.

        ``f.options(workers=64, errors="ignore").map(space)`` runs with those
        options; every option not given here keeps the decorator's value (or
        ``pj.config``'s, ...). Options can be chained:
        ``f.options(host="cluster").options(workers=8)``. None of them changes a
        cache key: a result computed through one is found through the other.
        ``version`` and ``ignore`` change the function's identity or what its keys
        mean, so they are refused (``pj.OptionError``): decorate anew
        with ``pj.experiment(f.func, version=...)``.

        Parameters
        ----------
        host : str, Host or None
            Run on this host over SSH; ``None``: this machine.
        slurm : dict, Slurm or None
            Run as SLURM array jobs with these sbatch options; ``None``: no scheduler.
        workers : int
            Worker processes (per array task under SLURM); ``0`` runs in the
            calling process.
        batch : int
            Most psets a worker process (or SLURM array task batch) takes at once.
        threads : int
            BLAS/OpenMP threads per worker process.
        cache : str, Path or False
            Cache directory (a different cache holds other entries, under the same
            keys); ``False``: compute, keep nothing.
        retries : int
            Re-runs of psets that failed for infrastructure reasons.
        errors : {"raise", "warn", "ignore"}
            What ``map`` does when some psets failed.
        timeout : float or None
            Seconds per pset; ``None``: no limit.
        progress : bool
            Show a progress bar.
        capture : bool
            Keep each pset's stdout/stderr.
        dims : dict
            Dimension names of array results, e.g. ``{"trace": ("t",)}``.
        executor : Executor, dask Client or "ray"
            Hand the psets in batches to this engine; ``None``: pyjoule's own.
        **not_an_option
            None: ``version``, ``ignore`` or any other name raises
            ``pj.OptionError``.

        Returns
        -------
        Experiment
            A new experiment object; ``f`` itself is unchanged.
        """
        opts = _given(locals(), not_an_option, "f.options")
        return self._with_call_options(opts.over(self._call))

    def _with_call_options(self: _E, call: Options) -> _E:
        raise NotImplementedError
