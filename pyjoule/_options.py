"""Experiment options as one typed object, validated in one place, resolved once.

``Options`` holds what one layer said (the decorator, or ``f.options(...)``): every
field not given is ``UNSET``. :func:`resolve` turns the layers into a
:class:`Resolved`, every field concrete, in the documented precedence::

    f.options(...) > @pj.experiment(...) > pj.config(...) > PYJOULE_* environment
    > [tool.pyjoule] in the project's pyproject.toml > defaults

and remembers where each value came from (``Resolved.sources``), for messages and
``pj.config.get(name, source=True)``. :func:`check` is the one validator of option
values: the decorator, ``f.options``, ``pj.config``, the environment and
``pyproject.toml`` all go through it, so a value is refused with the same words
wherever it was written.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from ._errors import OptionError


class _Unset:
    """The type of ``UNSET``: "not given at this layer" (``None`` can be a value)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"


# typed Any so that ``workers: int | None = UNSET`` type-checks in signatures
UNSET: Any = _Unset()

ERRORS = ("raise", "warn", "ignore")
Errors = Literal["raise", "warn", "ignore"]  # what map does when psets failed

# options for which an explicit None is a value (this machine, no scheduler, no time
# limit) that stops the search; for the others None means "not set here"
NONE_IS_VALUE = frozenset({"host", "slurm", "timeout", "executor"})

# options that change a function's identity or what its keys mean: not per call
IDENTITY = ("version", "ignore")

# options that pj.config, the environment and pyproject.toml may also set
GLOBAL = ("cache", "workers", "progress", "host", "threads", "retries", "errors",
          "timeout", "capture", "executor")


def _int(low: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
            f"a whole number >= {low}")


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_path(v: Any) -> bool:
    return isinstance(v, (str, os.PathLike))


# name -> (test, what is expected) for the plain values; host, slurm and ignore are
# normalised by _normalise
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "workers": _int(0),
    "batch": _int(1),
    "threads": _int(1),
    "retries": _int(0),
    "limit": _int(0),
    "timeout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and v > 0, "a number of seconds > 0, or None for no limit"),
    "errors": (lambda v: isinstance(v, str) and v in ERRORS,
               'one of "raise", "warn", "ignore"'),
    "progress": (_is_bool, "True or False"),
    "capture": (_is_bool, "True or False"),
    "shared_cache": (_is_bool, "True or False"),
    "version": (lambda v: isinstance(v, str), "a string"),
    "dims": (lambda v: isinstance(v, dict), 'a dict like {"trace": ("t",)}'),
    "cache": (lambda v: v is False or _is_path(v),
              "a directory (str or Path), or False for no cache"),
    "ssh_config": (_is_path, "a path (str or Path)"),
    "poll_interval_s": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                        and v > 0, "a number of seconds > 0"),
    "progress_interval_s": (lambda v: isinstance(v, (int, float))
                            and not isinstance(v, bool) and v > 0,
                            "a number of seconds > 0"),
}

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")


def check(name: str, value: Any, where: str) -> Any:
    """``value`` for option ``name``, normalised (``host`` -> ``pj.Host``, ``slurm``
    -> ``pj.Slurm``, ``ignore`` -> a tuple); a bad one raises ``pj.OptionError``
    naming the option, the value, ``where`` it was written and what is expected."""
    if value is None and name in NONE_IS_VALUE:
        return None
    try:
        return _normalise(name, value)
    except OptionError as exc:
        raise OptionError(f"{name}={value!r} ({where}) is not valid: {exc}") from None


def problem(name: str, value: Any) -> str | None:
    """What ``value`` must be for ``name``, in words (None if it is valid)."""
    try:
        _normalise(name, value)
    except OptionError as exc:
        return str(exc).removeprefix("expected ")
    return None


def executor_kind(value: Any) -> str | None:
    """Which engine an ``executor=`` value is: ``"ray"``, ``"dask"`` (a
    ``dask.distributed.Client``) or ``"futures"`` (a ``concurrent.futures.Executor``);
    None for anything else. Told from the value's type: dask and ray are not imported."""
    if isinstance(value, str):
        return "ray" if value == "ray" else None
    cls = type(value)
    if (cls.__module__ or "").startswith("distributed") and cls.__name__ == "Client":
        return "dask"
    import concurrent.futures  # a stdlib module, imported only for an executor= value

    return "futures" if isinstance(value, concurrent.futures.Executor) else None


def _normalise(name: str, value: Any) -> Any:
    if name == "executor":
        if executor_kind(value) is None:
            raise OptionError(
                'expected a dask.distributed.Client, a concurrent.futures.Executor '
                '(ProcessPoolExecutor, loky, mpi4py.futures.MPIPoolExecutor), or "ray" '
                "after ray.init()")
        return value
    if name == "host":
        from ._transport.hosts import Host, Hosts

        return Hosts.of(value) if isinstance(value, (list, tuple)) else Host.of(value)
    if name == "slurm":
        from ._slurm import Slurm

        return Slurm.of(value)
    if name == "ignore":
        if isinstance(value, str):  # one name
            return (value,)
        if not isinstance(value, (list, tuple, set, frozenset)) \
                or not all(isinstance(v, str) for v in value):
            raise OptionError("expected a list of argument names, e.g. ignore=['verbose']")
        return tuple(value)
    if name == "log_level":
        if not isinstance(value, str) or value.upper() not in _LEVELS:
            raise OptionError(f"expected one of {', '.join(_LEVELS)}")
        return value
    test, what = _RULES[name]
    if not test(value):
        raise OptionError(f"expected {what}")
    return value


def unknown(names: Any, valid: Any, where: str) -> OptionError:
    """The error for option names nobody knows, with a "did you mean"."""
    names, valid = sorted(names), sorted(valid)
    close = difflib.get_close_matches(names[0], valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return OptionError(f"unknown option(s) {', '.join(map(repr, names))} for {where}.{hint} "
                       f"Valid options: {', '.join(valid)}.")


@dataclasses.dataclass(frozen=True)
class Options:
    """What one layer (the decorator, ``f.options``) said; ``UNSET`` = not said."""

    host: Any = UNSET                     # pj.Host, Hosts (several), None (this machine)
    slurm: Any = UNSET                    # pj.Slurm or None (no scheduler)
    workers: int = UNSET
    batch: int = UNSET
    threads: int = UNSET
    cache: str | os.PathLike[str] | bool = UNSET
    version: str = UNSET
    retries: int = UNSET
    errors: str = UNSET
    timeout: float | None = UNSET
    progress: bool = UNSET
    capture: bool = UNSET
    dims: dict[str, Any] = UNSET
    ignore: tuple[str, ...] = UNSET
    executor: Any = UNSET                 # an engine (see executor_kind) or None

    @classmethod
    def of(cls, where: str, values: Mapping[str, Any]) -> Options:
        """Validated options from keyword arguments (``UNSET`` ones are skipped;
        ``None`` is "not set" except where it is a value: ``NONE_IS_VALUE``)."""
        bad = set(values) - set(NAMES)
        if bad:
            raise unknown(bad, NAMES, where)
        given = {k: check(k, v, where) for k, v in values.items()
                 if v is not UNSET and not (v is None and k not in NONE_IS_VALUE)}
        return cls(**given)

    def given(self) -> dict[str, Any]:
        """The options this layer set, by name (in declaration order)."""
        return {f: v for f in NAMES if (v := getattr(self, f)) is not UNSET}

    def over(self, lower: Options) -> Options:
        """These options, and ``lower``'s where these say nothing."""
        return dataclasses.replace(lower, **self.given())


NAMES = tuple(f.name for f in dataclasses.fields(Options))


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Every option's value in force for one call, and where each came from."""

    host: Any
    slurm: Any
    workers: int
    workers_given: int | None  # from f.options/decorator: ssh and SLURM default otherwise
    batch: int | None
    threads: int
    cache: Path | Literal[False]  # a directory, or False: no cache
    version: str | None
    retries: int
    errors: str
    timeout: float | None
    progress: bool
    capture: bool
    dims: dict[str, Any] | None
    ignore: tuple[str, ...]
    executor: Any           # a dask Client, a concurrent.futures Executor, "ray"; None
    sources: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """What a run is started with (``_dispatch.launch`` reads it): built once per call
    where the backend is chosen (``_dispatch.compose``), so the worker count is the one that
    backend runs with, not the option as given."""

    host: Any               # pj.Host, or None: this machine
    workers: int            # processes the backend starts (0: in this process)
    threads: int
    timeout: float | None
    batch: int | None
    capture: bool
    retries: int
    progress: bool
    executor: Any = None    # the engine the run is handed to (None: a pyjoule backend)

    @classmethod
    def of(cls, resolved: Resolved, workers: int) -> LaunchOptions:
        """The options of ``resolved`` a run starts with, running ``workers``."""
        return cls(host=resolved.host, workers=workers, threads=resolved.threads,
                   timeout=resolved.timeout, batch=resolved.batch,
                   capture=resolved.capture, retries=resolved.retries,
                   progress=resolved.progress, executor=resolved.executor)


_DEFAULTS: dict[str, Any] = {"host": None, "slurm": None, "batch": None, "threads": 1,
                             "version": None, "retries": 0, "errors": "raise",
                             "timeout": None, "progress": True, "capture": True,
                             "dims": None, "ignore": (), "executor": None}


def _check_executor(values: dict[str, Any], sources: Mapping[str, str]) -> None:
    """``executor=`` hands the psets to an engine, which decides where they run and
    on how many workers: ``host=``, ``slurm=`` or an explicit ``workers=`` beside it
    would be ignored, so they are refused."""
    where = sources["executor"]
    for other in ("host", "slurm"):
        if values[other] is not None:
            raise OptionError(
                f"executor= ({where}) and {other}= ({sources[other]}) both say where the "
                f"psets run: pick one (the engine's own workers run them; pass "
                f"{other}=None to keep the executor)")
    if values["workers_given"] is not None:
        raise OptionError(
            f"executor= ({where}) with workers={values['workers_given']} "
            f"({sources['workers']}): the engine's workers decide how many psets run "
            "at once; size the executor or cluster instead")


def resolve(func: Callable[..., Any], decorated: Options, call: Options) -> Resolved:
    """The options in force for ``func``: ``call`` > ``decorated`` > ``pj.config`` >
    environment > the project's ``pyproject.toml`` > defaults."""
    from . import _config
    from ._project import code_folder
    from ._pyproject import settings

    root = _config.project_root(code_folder(func))
    project = settings(root)  # read once for every option
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in NAMES:
        value, source = UNSET, "default"
        for layer, label in ((call, "f.options(...)"), (decorated, "@pj.experiment(...)")):
            if getattr(layer, name) is not UNSET:
                value, source = getattr(layer, name), label
                break
        if value is UNSET and name in GLOBAL:
            value, source = _config.layered(name, root, project)  # (UNSET, ...) if none
        if value is UNSET or (value is None and name not in NONE_IS_VALUE):
            value, source = _DEFAULTS.get(name), "default"
        values[name], sources[name] = value, source
    given = call.workers if call.workers is not UNSET else decorated.workers
    values["workers_given"] = None if given is UNSET else given
    if values["executor"] is not None:
        _check_executor(values, sources)
    if values["workers"] is None:
        values["workers"] = _config.cpu_count()
    if values["cache"] is None:
        path, why = _config.default_location(func, root)
        values["cache"], sources["cache"] = path, f"default: {why}"
    elif values["cache"] is not False:
        values["cache"] = Path(values["cache"]).expanduser()
    return Resolved(**values, sources=sources)
