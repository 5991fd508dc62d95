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
    "limit": ("PYJOULE_LIMIT", int, None),
    "ssh_config": ("PYJOULE_SSH_CONFIG", str, None),
}

_overrides: dict[str, Any] = {}


class config:
    """Set pyjoule options globally, or for a ``with`` block.

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
            raise OptionError(
                f"unknown option(s) {unknown} for pj.config; valid: {sorted(_SETTINGS)}"
            )
        self._previous = {k: _overrides.get(k, _UNSET) for k in options}
        _overrides.update(options)
        if "log_level" in options and options["log_level"]:
            _apply_log_level(options["log_level"])

    def __enter__(self) -> "config":
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self._previous.items():
            if value is _UNSET:
                _overrides.pop(key, None)
            else:
                _overrides[key] = value

    @staticmethod
    def get(name: str, explicit: Any = None) -> Any:
        """The value in force for ``name``: ``explicit`` if not None, then the rest."""
        if explicit is not None:
            return explicit
        if name in _overrides:
            return _overrides[name]
        env, parse, default = _SETTINGS[name]
        text = os.environ.get(env)
        if text is not None and text != "":
            try:
                return parse(text)
            except ValueError:
                raise OptionError(f"environment variable {env}={text!r} is not valid") from None
        return default


_UNSET = object()


def _apply_log_level(level: str) -> None:
    import logging

    logging.getLogger("pyjoule").setLevel(level.upper())


def apply_log_level_from_env() -> None:
    """Honour ``PYJOULE_LOG_LEVEL`` (called once, when pyjoule is imported)."""
    level = os.environ.get("PYJOULE_LOG_LEVEL")
    if level:
        import logging

        logger = logging.getLogger("pyjoule")
        logger.setLevel(level.upper())
        if not logging.getLogger().handlers and not logger.handlers:
            logger.addHandler(logging.StreamHandler())


def project_root(start: str | os.PathLike | None = None) -> Path | None:
    """Nearest ancestor of ``start`` (default: cwd) holding ``pyproject.toml`` or ``.git``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() or (folder / ".git").exists():
            return folder
    return None


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyjoule"


def default_cache_dir() -> Path:
    """``$PYJOULE_CACHE``, else ``.pyjoule/`` in the project root, else the user cache."""
    configured = config.get("cache")
    if configured:
        return Path(configured).expanduser()
    root = project_root()
    return root / ".pyjoule" if root is not None else user_cache_dir()


def default_workers() -> int:
    configured = config.get("workers")
    if configured is not None:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1
