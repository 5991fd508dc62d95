"""Where the user's code is, and so which project it belongs to: never the cwd alone.

``python scripts/study.py`` run from the project root, from ``scripts/`` or from the
folder above must use one cache and give its functions one name and identity, so the
project is searched from the file that defines the function (a notebook's functions:
the notebook's folder), with the rules of :func:`pyjoule._config.project_root` (not
above home, never a folder others own or can write). The cwd decides only when no
file says more: ``python -c``, an interactive prompt, and commands such as
``pyjoule runs`` that have no code of the user's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ._config import project_root


def _starting_dir() -> str:
    """The folder a Jupyter kernel started in (the notebook's), even after a chdir."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001 - an odd IPython: the cwd will do
        shell = None
    start = getattr(shell, "starting_dir", None)
    return start if isinstance(start, str) and os.path.isdir(start) else os.getcwd()


def notebook_path(space: Mapping) -> str | None:
    """The notebook a kernel runs, where the front end says: Jupyter sets
    ``__session__`` (from ``JPY_SESSION_NAME``), VS Code ``__vsc_ipynb_file__``."""
    for key in ("__vsc_ipynb_file__", "__session__"):
        value = space.get(key)
        if not isinstance(value, str) or not value.endswith(".ipynb"):
            continue
        if os.path.isabs(value):
            return value
        # relative to the server's root; the kernel starts in the notebook's folder
        return os.path.join(_starting_dir(), os.path.basename(value))
    return None


def main_path() -> str | None:
    """The script or notebook ``__main__`` runs (absolute), or None: ``python -c``, a
    prompt, or an installed program (a console script, ``python -m pytest``) whose
    file says nothing about the user's project."""
    main = sys.modules.get("__main__")
    space = vars(main) if main is not None else {}
    spec = space.get("__spec__")
    if getattr(spec, "name", "").partition(".")[0] == "pyjoule":  # python -m pyjoule
        return None
    path = space.get("__file__")
    if isinstance(path, str) and path:
        path = os.path.realpath(path)
        return None if _installed(path) else path
    return notebook_path(space)


def _installed(path: str) -> bool:
    """Whether ``path`` is part of an installed environment, not a user's project."""
    from ._identity import _is_library_file

    return _is_library_file(path) or any(
        path.startswith(os.path.realpath(p).rstrip(os.sep) + os.sep)
        for p in {sys.prefix, sys.exec_prefix})


def code_path(func=None) -> str | None:
    """The file that defines ``func`` (its module's file; for ``__main__`` the script
    or notebook), or without ``func`` the script or notebook being run; None when
    nothing says."""
    if func is None:
        return main_path()
    module = getattr(func, "__module__", None)
    if module == "__main__" or not isinstance(module, str):
        return main_path()
    path = getattr(sys.modules.get(module), "__file__", None)
    if not isinstance(path, str):
        code = getattr(func, "__code__", None)
        path = getattr(code, "co_filename", None)
    if isinstance(path, str) and os.path.isabs(path) and os.path.exists(path):
        return os.path.realpath(path)
    return None


def code_folder(func=None) -> str:
    """The folder of :func:`code_path`, else the cwd."""
    path = code_path(func)
    return os.path.dirname(path) if path else os.path.realpath(os.getcwd())


def project_of(func=None) -> Path | None:
    """The project (see ``project_root``) of ``func``'s code, or of the running script
    or notebook; None when it is in none."""
    return project_root(code_folder(func))


def identity_root(func=None) -> str:
    """The folder names and identities are relative to: the code's project, else the
    code's own folder (a script or notebook with no project)."""
    root = project_of(func)
    return str(root) if root is not None else code_folder(func)
