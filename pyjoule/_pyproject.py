"""Project settings: ``[tool.pyjoule]`` in the project's ``pyproject.toml``.

The project is the one ``_config.project_root`` finds for the code (the function's
file, the script or notebook). Its settings come after ``pj.config`` and the
environment and before the defaults. The file is trusted only if it passes the
ownership check pyjoule applies to everything it loads (``_private.problem``): a
setting such as ``cache`` chooses the folder pyjoule unpickles from, and ``host`` the
machine it sends code to, so a file another user could have written is ignored with a
warning. Unknown keys and bad values raise ``pj.OptionError`` naming the file.

The parsed table is kept per file and read again only when the file changes (one
``stat`` per call).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from . import _caches

log = logging.getLogger("pyjoule")

# path -> ((inode, mtime, size), settings, label)
_seen: dict[str, tuple[tuple[int, int, int], dict[str, Any], str]] = {}
_warned: set[tuple[str, str]] = set()


def settings(root: Path | None) -> tuple[dict[str, Any], str]:
    """``({setting: value}, "pyproject.toml [tool.pyjoule] at PATH")`` for the project
    at ``root``; ``({}, "")`` when there is no project, no file or no table."""
    if root is None:
        return {}, ""
    path = os.path.join(root, "pyproject.toml")
    try:
        st = os.stat(path)  # a symbolic link is judged by what it names
    except OSError:
        return {}, ""
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    seen = _seen.get(path)
    if seen is not None and seen[0] == key:
        return seen[1], seen[2]
    from ._private import problem

    why = problem(st)
    if why is not None:
        if (path, why) not in _warned:
            _warned.add((path, why))
            log.warning("ignoring [tool.pyjoule] in %s: %s, and its settings choose "
                        "where pyjoule loads code from (chmod go-w it if it is yours)",
                        path, why)
        return {}, ""
    table = _read(path)
    label = f"pyproject.toml [tool.pyjoule] at {path}"
    _seen[path] = (key, table, label)
    return table, label


def _read(path: str) -> dict[str, Any]:
    """The checked ``[tool.pyjoule]`` table of the file at ``path``."""
    from ._config import PROJECT_KEYS
    from ._errors import OptionError
    from ._options import check, unknown

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # Python 3.10 only
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("pyjoule", {})
    if not isinstance(table, dict):
        raise OptionError(f"[tool.pyjoule] in {path} must be a table of settings")
    where = f"[tool.pyjoule] in {path}"
    bad = set(table) - set(PROJECT_KEYS)
    if bad:
        raise unknown(bad, PROJECT_KEYS, where)
    out = {name: check(name, value, where) for name, value in table.items()}
    if isinstance(out.get("cache"), str):  # relative to the project, not to the cwd
        out["cache"] = str(Path(path).parent / Path(out["cache"]).expanduser())
    return out


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_seen", _seen)
_caches.declare(__name__, "_warned", _warned)
