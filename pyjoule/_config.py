"""Configuration: one module, one precedence order.

explicit argument > ``pj.config(...)`` > ``PYJOULE_*`` environment variable > default.

Every environment variable pyjoule reads is listed in ``_SETTINGS`` (and in
``docs/configuration.md``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ._errors import OptionError


def _to_bool(text: str) -> bool:
    return text.strip().lower() not in ("", "0", "false", "no", "off")


def _to_cache(text: str):
    return False if text.strip().lower() in ("0", "false", "off", "no") else text


# name -> (environment variable, parser, default)
_SETTINGS: dict[str, tuple[str, Callable[[str], Any], Any]] = {
    "cache": ("PYJOULE_CACHE", _to_cache, None),
    "workers": ("PYJOULE_WORKERS", int, None),
    "progress": ("PYJOULE_PROGRESS", _to_bool, True),
    "log_level": ("PYJOULE_LOG_LEVEL", str, None),
    "poll_interval_s": ("PYJOULE_POLL_INTERVAL", float, None),
    "progress_interval_s": ("PYJOULE_PROGRESS_INTERVAL", float, 30.0),
    "limit": ("PYJOULE_LIMIT", int, None),
    "ssh_config": ("PYJOULE_SSH_CONFIG", str, None),
    "shared_cache": ("PYJOULE_SHARED_CACHE", _to_bool, False),
}

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")


def _check(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for setting ``name`` (None if it is)."""
    if name in ("workers", "limit"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return "a whole number >= 0"
    elif name in ("progress", "shared_cache") and not isinstance(value, bool):
        return "True or False"
    elif name in ("poll_interval_s", "progress_interval_s"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            return "a number of seconds > 0"
    elif name == "log_level" and (not isinstance(value, str) or value.upper() not in _LEVELS):
        return f"one of {', '.join(_LEVELS)}"
    elif name == "cache" and value is not False and not isinstance(value, (str, os.PathLike)):
        return "a directory (str or Path), or False for no cache"
    elif name == "ssh_config" and not isinstance(value, (str, os.PathLike)):
        return "a path (str or Path)"
    return None


_overrides: dict[str, Any] = {}


class _ConfigType(type):
    def __repr__(cls) -> str:  # ``pj.config`` at a prompt: what is in force
        return "pj.config(" + ", ".join(f"{k}={cls.get(k)!r}" for k in _SETTINGS) + ")"


class config(metaclass=_ConfigType):
    """Set pyjoule options globally, or for a ``with`` block.

    ``pj.config(workers=4)`` sets an option from now on; ``with pj.config(...):``
    sets it only inside the block. Setting an option to ``None`` returns it to its
    ``PYJOULE_*`` environment variable or default. Precedence: explicit argument >
    ``pj.config`` > environment variable > default.

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

    Examples
    --------
    >>> import pyjoule as pj
    >>> with pj.config(progress=False):
    ...     pj.config.get("progress")
    False
    """

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(_SETTINGS))
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], list(_SETTINGS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OptionError(f"unknown option(s) {unknown} for pj.config{hint} "
                              f"(valid: {', '.join(sorted(_SETTINGS))})")
        for name, value in options.items():
            problem = value is not None and _check(name, value)
            if problem:
                raise OptionError(f"pj.config({name}={value!r}): {name} must be {problem}")
        self._previous = {k: _overrides.get(k, _UNSET) for k in options}
        for name, value in options.items():
            if value is None:  # back to the environment variable or the default
                _overrides.pop(name, None)
            else:
                _overrides[name] = value
        if "log_level" in options:
            _apply_log_level(config.get("log_level"))

    def __enter__(self) -> "config":
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self._previous.items():
            if value is _UNSET:
                _overrides.pop(key, None)
            else:
                _overrides[key] = value
        if "log_level" in self._previous:
            _apply_log_level(config.get("log_level"))

    @staticmethod
    def get(name: str, explicit: Any = None) -> Any:
        """The value in force for ``name``: ``explicit`` if not None, then ``pj.config``,
        the environment variable, the default. For ``workers`` and ``cache`` the
        default is what a run would use: this machine's CPUs, the default directory."""
        value = _configured(name, explicit)
        if value is None and name == "workers":
            return default_workers()
        if value is None and name == "cache":
            return default_cache_dir()
        return value


def _configured(name: str, explicit: Any = None) -> Any:
    """What was set for ``name`` (argument, ``pj.config``, environment), else its
    default from ``_SETTINGS``."""
    if explicit is not None:
        return explicit
    if name in _overrides:
        return _overrides[name]
    env, parse, default = _SETTINGS[name]
    text = os.environ.get(env)
    if text is not None and text != "":
        try:
            value = parse(text)
            problem = _check(name, value)
        except ValueError:
            problem = _check(name, None) or "valid"
        if problem:
            raise OptionError(f"environment variable {env}={text!r} is not valid: "
                              f"it must be {problem}; fix or unset it")
        return value
    return default


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


def project_root(start: str | os.PathLike | None = None) -> Path | None:
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


def _home() -> Path | None:
    """The user's home directory (resolved), if it exists."""
    try:
        home = Path(os.path.expanduser("~")).resolve()
    except (OSError, RuntimeError):
        return None
    return home if home.is_dir() else None


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyjoule"


def default_cache_dir(func: Callable | None = None, *, start: str | None = None) -> Path:
    """``$PYJOULE_CACHE``, else ``.pyjoule/`` in the project root, else the user cache.

    The project is the one of ``func``'s file (without ``func``: of the script or
    notebook being run, else the cwd's; ``start``: of that folder), so a script's
    cache does not depend on the folder it is started from."""
    return cache_choice(func, start=start)[0]


def cache_choice(func: Callable | None = None, *,
                 start: str | None = None) -> tuple[Path, str]:
    """The default cache (see :func:`default_cache_dir`) and why it is that one, in
    words for ``pyjoule runs`` and ``pj.runs()``."""
    configured = _configured("cache")
    if configured:
        source = "pj.config(cache=...)" if "cache" in _overrides else "PYJOULE_CACHE"
        return Path(configured).expanduser(), f"set by {source}"
    if start is None:
        from ._project import code_folder

        start = code_folder(func)
    root = project_root(start)
    if root is not None:
        return root / ".pyjoule", f"the project {root}"
    return user_cache_dir(), f"the user cache: {start} is in no project of yours"


def default_workers() -> int:
    configured = _configured("workers")
    if configured is not None:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
