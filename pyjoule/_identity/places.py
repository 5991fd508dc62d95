"""Whose code a file is (the standard library's, an installed package's, the user's
project's), which distribution a module comes from, and the name results are filed under."""

from __future__ import annotations

import functools
import os
import sys
import types

from .. import _caches
from .._project import identity_root, notebook_path

_THIRD_PARTY_DIRS = frozenset({"site-packages", "dist-packages"})
_MEMO_SIZE = 4096


def is_under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or inside it (both real paths; no I/O)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # pyjoule/


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside pyjoule, for warnings that point
    at the user's line (``sweep`` goes through ``map``, ``result`` through ``wait``)."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and is_under(os.path.abspath(frame.f_code.co_filename), _PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


@functools.lru_cache(maxsize=1)
def _library_dirs() -> frozenset[str]:
    import sysconfig  # lazy: needed once per process

    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return frozenset(os.path.realpath(paths[k]) for k in keys)


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _is_library_file(path: str) -> bool:
    """Whether `path` belongs to the standard library or an installed package."""
    path = os.path.realpath(path)
    if _THIRD_PARTY_DIRS.intersection(path.split(os.sep)):
        return True
    return any(is_under(path, directory) for directory in _library_dirs())


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _is_project_file(path: str, root: str) -> bool:
    return is_under(os.path.realpath(path), root) and not _is_library_file(path)


def _in_library(func: types.FunctionType) -> bool:
    # functools.wraps copies __module__, so a library's wrapper may claim "__main__"
    file = func.__code__.co_filename
    return os.path.isabs(file) and _is_library_file(file)


@functools.cache
def _distribution(top: str) -> tuple[str, str]:
    """(distribution name, version) for a top-level import name."""
    from importlib import metadata  # lazy: tens of ms to import (xarray does anyway)

    def candidates():
        yield top
        yield from metadata.packages_distributions().get(top, ())  # slow: only if needed

    for name in candidates():
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return top, str(version) if version is not None else "unknown"



def _module_file(full: str) -> str | None:
    """The file of module `full`, found without importing anything."""
    module = sys.modules.get(full)
    if module is not None:
        return getattr(module, "__file__", None)
    from importlib.machinery import PathFinder

    spec, path, parts = None, None, full.split(".")
    for i in range(len(parts)):
        try:
            spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return spec.origin


# ------------------------------------------------------------------ naming


def module_label(module: str | None, root: str | None = None) -> str:
    """The name results are filed under for functions of ``module``.

    A module's own name; for ``__main__``, where the code is: the module run with
    ``python -m``, else the script's or notebook's path relative to the project root,
    dotted and without its suffix (``scripts/run.py`` -> ``scripts.run``), so that two
    scripts' ``simulate`` are not one function. ``__main__`` when nothing says more
    (``python -c``, an interactive prompt).

    Examples
    --------
    >>> module_label("physics.models")
    'physics.models'
    """
    if module != "__main__":
        return module if isinstance(module, str) and module else "__main__"
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and isinstance(spec.name, str) and spec.name not in ("", "__main__"):
        return spec.name.removesuffix(".__main__")
    space = vars(main) if main is not None else {}
    path = space.get("__file__")
    if not isinstance(path, str) or not path:
        path = notebook_path(space)
    if not path:
        return "__main__"
    path = os.path.realpath(path)
    root = root or identity_root()
    rel = os.path.relpath(path, root) if is_under(path, root) else os.path.basename(path)
    stem = os.path.splitext(rel)[0]
    return ".".join(part for part in stem.split(os.sep) if part) or "__main__"


def clear_caches() -> None:
    """Forget what this process learnt about files and distributions: which files are
    a library's or the project's, the library folders, distribution versions.

    They are remembered for the life of the process (a package installed or upgraded
    meanwhile keeps its old version here); tests that change these call this.
    """
    for cached in (_library_dirs, _is_library_file, _is_project_file, _distribution):
        cached.cache_clear()


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_library_dirs", _library_dirs, reset=_library_dirs.cache_clear)
_caches.declare(__name__, "_is_library_file", _is_library_file, reset=_is_library_file.cache_clear)
_caches.declare(__name__, "_is_project_file", _is_project_file, reset=_is_project_file.cache_clear)
_caches.declare(__name__, "_distribution", _distribution, reset=_distribution.cache_clear)
