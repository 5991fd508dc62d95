"""Configuration: one module, one precedence order.

explicit argument > ``pj.config(...)`` > ``PYJOULE_*`` environment variable >
``[tool.pyjoule]`` in the project's ``pyproject.toml`` (see ``_pyproject``) > default.
An experiment's own options come first (see ``_options.resolve``).

Every environment variable pyjoule reads is listed in ``_SETTINGS`` (and in
``docs/configuration.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _caches
from ._errors import OptionError


def _to_bool(text: str) -> bool:
    return text.strip().lower() not in ("", "0", "false", "no", "off")


def _to_cache(text: str) -> str | bool:
    return False if text.strip().lower() in ("0", "false", "off", "no") else text


# name -> (environment variable or None, parser, default)
_SETTINGS: dict[str, tuple[str | None, Callable[[str], Any], Any]] = {
    "cache": ("PYJOULE_CACHE", _to_cache, None),
    "workers": ("PYJOULE_WORKERS", int, None),
    "progress": ("PYJOULE_PROGRESS", _to_bool, True),
    "log_level": ("PYJOULE_LOG_LEVEL", str, None),
    "poll_interval_s": ("PYJOULE_POLL_INTERVAL", float, None),
    "progress_interval_s": ("PYJOULE_PROGRESS_INTERVAL", float, 30.0),
    "limit": ("PYJOULE_LIMIT", int, None),
    "ssh_config": ("PYJOULE_SSH_CONFIG", str, None),
    "shared_cache": ("PYJOULE_SHARED_CACHE", _to_bool, False),
    # defaults for every experiment's options of the same names (no variable)
    "host": (None, str, None),
    "threads": (None, int, 1),
    "retries": (None, int, 0),
    "errors": (None, str, "raise"),
    "timeout": (None, float, None),
    "capture": (None, _to_bool, True),
    "executor": (None, str, None),  # an object: pj.config only (no variable, no file)
}

# what [tool.pyjoule] in a project's pyproject.toml may set: not limit (a debugging
# aid of one session), shared_cache (trust is the user's, not a file's), log_level and
# poll_interval_s (read too often to look for the file each time)
PROJECT_KEYS = ("cache", "workers", "progress", "host", "threads", "retries", "errors",
                "timeout", "capture", "progress_interval_s", "ssh_config")


def _check(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for setting ``name`` (None if it is)."""
    from ._options import problem

    return problem(name, value)


#: what ``pj.config(...)`` set, by name: the process's settings (lifetime: the
#: process; ``pj.config(name=None)`` or leaving a ``with pj.config(...)`` block
#: removes one). State, not a cache: never cleared behind the user's back.
_overrides: dict[str, Any] = {}


class _ConfigType(type):
    def __repr__(cls) -> str:  # ``pj.config`` at a prompt: what is in force
        return "pj.config(" + ", ".join(f"{k}={config.get(k)!r}" for k in _SETTINGS) + ")"


class config(metaclass=_ConfigType):
    """Set pyjoule options globally, or for a ``with`` block.

    ``pj.config(workers=4)`` sets an option from now on; ``with pj.config(...):``
    sets it only inside the block. Setting an option to ``None`` returns it to its
    ``PYJOULE_*`` environment variable, ``pyproject.toml`` or default. Precedence:
    ``f.options(...)`` > decorator > ``pj.config`` > environment variable >
    ``[tool.pyjoule]`` in the project's ``pyproject.toml`` > default;
    ``pj.config.get(name, source=True)`` says which one gave a value.

    Parameters
    ----------
    **options
        Settings by name, from the list below. ``None`` returns a setting to its
        environment variable or default. An unknown name or a bad value raises
        ``pj.OptionError``.

    Other Parameters
    ----------------
    cache : str, Path or False
        Cache directory (``PYJOULE_CACHE``); ``False`` disables caching.
    workers : int
        Worker processes when the decorator does not say (``PYJOULE_WORKERS``).
    progress : bool
        Progress bars and progress log lines (``PYJOULE_PROGRESS``).
    log_level : str
        Level of the ``pyjoule`` logger (``PYJOULE_LOG_LEVEL``).
    poll_interval_s : float
        Fixed interval between result polls (``PYJOULE_POLL_INTERVAL``).
    progress_interval_s : float
        Seconds between progress lines where there is no terminal or notebook
        (``PYJOULE_PROGRESS_INTERVAL``, default 30).
    limit : int
        Run only the first N missing psets of any map (``PYJOULE_LIMIT``).
    ssh_config : str or Path
        The ssh config host aliases are read from (``PYJOULE_SSH_CONFIG``).
    shared_cache : bool
        Accept a cache owned by another user of your group, or group-writable
        (``PYJOULE_SHARED_CACHE``); never world-writable. Anyone who can write to it
        can run code in your process: only for a group that trusts each other.
    host : str or Host
        Default host of every experiment (see ``pj.experiment`` for this option and
        the five below), where neither ``f.options`` nor the decorator says.
    threads : int
        Default BLAS/OpenMP threads per worker process.
    retries : int
        Default re-runs of psets that failed for infrastructure reasons.
    errors : {"raise", "warn", "ignore"}
        Default of what ``map`` does when some psets failed.
    timeout : float
        Default seconds per pset.
    capture : bool
        Default of keeping each pset's stdout/stderr.
    executor : Executor, dask Client or "ray"
        Default engine every experiment's psets are handed to (see
        ``pj.experiment``); set here only, not by a variable or a file.

    Examples
    --------
    >>> import pyjoule as pj
    >>> with pj.config(progress=False):
    ...     pj.config.get("progress")
    False
    >>> with pj.config(retries=2):
    ...     pj.config.get("retries", source=True)
    (2, 'pj.config(...)')
    """

    def __init__(self, **options: Any):
        from ._options import check, unknown

        bad = set(options) - set(_SETTINGS)
        if bad:
            raise unknown(bad, _SETTINGS, "pj.config")
        checked = {name: None if value is None else check(name, value, "pj.config")
                   for name, value in options.items()}
        self._previous = {k: _overrides.get(k, _UNSET) for k in options}
        for name, value in checked.items():
            if value is None:  # back to the environment variable or the default
                _overrides.pop(name, None)
            else:
                _overrides[name] = value
        if "log_level" in options:
            _apply_log_level(config.get("log_level"))

    def __enter__(self) -> config:
        return self

    def __exit__(self, *exc: Any) -> None:
        for key, value in self._previous.items():
            if value is _UNSET:
                _overrides.pop(key, None)
            else:
                _overrides[key] = value
        if "log_level" in self._previous:
            _apply_log_level(config.get("log_level"))

    @staticmethod
    def get(name: str, explicit: Any = None, *, source: bool = False) -> Any:
        """The value in force for ``name``: ``explicit`` if not None, then ``pj.config``,
        the environment variable, ``[tool.pyjoule]`` in the project's
        ``pyproject.toml`` (the project of the script or notebook being run, else of
        the cwd), the default. For ``workers`` and ``cache`` the default is what a run
        would use: this machine's CPUs, the default directory. With ``source=True``:
        ``(value, where it came from)``."""
        if name not in _SETTINGS:
            from ._options import unknown

            raise unknown({name}, _SETTINGS, "pj.config.get")
        if explicit is not None:
            value, where = explicit, "passed explicitly"
        else:
            value, where = _layered(name)
        if value is None and name == "workers":
            value, where = default_workers(), "default: the CPUs available"
        if value is None and name == "cache" and where == "default":
            path, why = cache_choice()
            value, where = path, f"default: {why}"
        return (value, where) if source else value

    @staticmethod
    def sources() -> dict[str, tuple[Any, str]]:
        """Every setting: ``{name: (value in force, where it came from)}``."""
        return {name: config.get(name, source=True) for name in _SETTINGS}


def _configured(name: str, explicit: Any = None) -> Any:
    """What was set for ``name`` (argument, ``pj.config``, environment, the project's
    ``pyproject.toml``), else its default from ``_SETTINGS``."""
    if explicit is not None:
        return explicit
    return _layered(name)[0]


_PROJECT: Any = object()  # "the project of the running code" (found when needed)


def _layered(name: str, root: Any = _PROJECT) -> tuple[Any, str]:
    """``name``'s value and source from ``pj.config``, the environment, then
    ``pyproject.toml`` of the project ``root``; else its default."""
    value, where = layered(name, root)
    if where == "unset":
        return _SETTINGS[name][2], "default"
    return value, where


def layered(name: str, root: Any = _PROJECT,
            project: tuple[dict[str, Any], str] | None = None) -> tuple[Any, str]:
    """Like :func:`_layered`, but ``(UNSET, "unset")`` where no layer sets ``name``
    (``root``: the project folder, None for none; default: the running code's;
    ``project``: its settings, already read by ``_pyproject.settings``)."""
    from ._options import UNSET

    if name in _overrides:
        return _overrides[name], "pj.config(...)"
    env, parse, _default = _SETTINGS[name]
    text = os.environ.get(env) if env else None
    if text is not None and text != "":
        try:
            value = parse(text)
            problem = _check(name, value)
        except ValueError:
            problem = _check(name, None) or "valid"
        if problem:
            raise OptionError(f"environment variable {env}={text!r} is not valid: "
                              f"it must be {problem}; fix or unset it")
        return value, f"environment variable {env}"
    if name in PROJECT_KEYS:
        if project is None:
            from ._pyproject import settings

            if root is _PROJECT:
                from ._project import code_folder

                root = project_root(code_folder())
            project = settings(root)
        table, label = project
        if name in table:
            return table[name], label
    return UNSET, "unset"


_UNSET = object()


def _apply_log_level(level: str | None) -> None:
    """Set the ``pyjoule`` logger's level; with no logging set up, show its lines on
    stderr (otherwise INFO lines would go nowhere)."""
    import logging

    logger = logging.getLogger("pyjoule")
    logger.setLevel(level.upper() if level else logging.NOTSET)
    if level and not logging.getLogger().handlers and not logger.handlers:
        logger.addHandler(logging.StreamHandler())


def apply_log_level_from_env() -> None:
    """Honour ``PYJOULE_LOG_LEVEL`` (called once, when the API is imported)."""
    if os.environ.get("PYJOULE_LOG_LEVEL"):
        _apply_log_level(config.get("log_level"))


def project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """Nearest ancestor of ``start`` (default: the folder of the script or notebook
    being run, else the cwd: see ``_project``) holding ``pyproject.toml`` or
    ``.git`` that is the user's own.

    The search never goes above the home directory (when ``start`` is inside it) and
    stops at the first folder that is not the user's own or that others can write
    to (a shared ``/tmp``, a group's directory): a project file planted there by
    another user must not choose the cache pyjoule unpickles from, nor the folder it
    syncs to a host. A marker file (or ``.git``) owned by someone else is ignored.
    """
    from ._private import problem

    if start is None:
        from ._project import code_folder

        start = code_folder()
    here = Path(start).resolve()
    home = _home()
    for folder in (here, *here.parents):
        try:
            st = folder.stat()
        except OSError:
            return None
        if problem(st) is not None:
            return None
        for marker in ("pyproject.toml", ".git"):
            try:
                mark = os.lstat(folder / marker)
            except OSError:
                continue
            if problem(mark) is None:
                return folder
        if home is not None and folder == home:
            return None
    return None


#: cache: ``$HOME`` as given -> resolved (looked for on every call); see reset_caches
_homes: dict[str, Path] = {}


def reset_caches() -> None:
    """Forget what this module remembers about the file system (the resolved home
    folder), e.g. after a test moved ``$HOME`` to a folder it then replaced."""
    _homes.clear()


def _home() -> Path | None:
    """The user's home directory (resolved), if it exists (kept per ``$HOME``: it is
    looked for on every call of an experiment)."""
    text = os.path.expanduser("~")
    if text in _homes:
        return _homes[text]
    try:
        home = Path(text).resolve()
    except (OSError, RuntimeError):
        return None
    if not home.is_dir():
        return None
    _homes[text] = home
    return home


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyjoule"


def default_cache_dir(func: Callable[..., Any] | None = None, *, start: str | None = None) -> Path:
    """``$PYJOULE_CACHE``, else ``.pyjoule/`` in the project root, else the user cache.

    The project is the one of ``func``'s file (without ``func``: of the script or
    notebook being run, else the cwd's; ``start``: of that folder), so a script's
    cache does not depend on the folder it is started from."""
    return cache_choice(func, start=start)[0]


def cache_choice(func: Callable[..., Any] | None = None, *,
                 start: str | None = None) -> tuple[Path, str]:
    """The cache (see :func:`default_cache_dir`) and why it is that one, in words for
    ``pyjoule runs`` and ``pj.runs()``. A cache set to ``False`` (no cache) is an
    experiment's business: listings look where the cache would be."""
    if start is None:
        from ._project import code_folder

        start = code_folder(func)
    root = project_root(start)
    configured, where = layered("cache", root)
    if configured:  # as the listings have always named them
        where = {"pj.config(...)": "pj.config(cache=...)",
                 "environment variable PYJOULE_CACHE": "PYJOULE_CACHE"}.get(where, where)
        return Path(configured).expanduser(), f"set by {where}"
    return default_location(start, root)


def default_location(start: Any, root: Path | None) -> tuple[Path, str]:
    """``.pyjoule/`` in the project ``root``, else the user cache (``start``: the
    folder of the code, or its function, for the message)."""
    if root is not None:
        return root / ".pyjoule", f"the project {root}"
    if callable(start):
        from ._project import code_folder

        start = code_folder(start)
    return user_cache_dir(), f"the user cache: {start} is in no project of yours"


def default_workers() -> int:
    """Worker processes where no option says: ``pj.config``, ``PYJOULE_WORKERS``,
    ``pyproject.toml``, else the CPUs available."""
    configured = _configured("workers")
    if configured is not None:
        return int(configured)
    return cpu_count()


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_overrides", _overrides)
_caches.declare(__name__, "_homes", _homes)
