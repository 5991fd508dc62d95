"""Bytecode caches for the test environment where Python may not write them itself.

The suite starts hundreds of fresh interpreters that import numpy, pandas and xarray.
Where PYTHONDONTWRITEBYTECODE is set (some sandboxes and CI machines), an environment
synced without ``--compile-bytecode`` has no ``.pyc`` files, and every one of those
imports compiles from source (xarray + pandas: ~2.4 s instead of ~0.5 s). pyproject.toml
no longer asks uv to compile, since uv then recompiles the whole environment on every
``uv run`` (issue #15, item 16). So the session compiles what is missing, once:
checking takes a few milliseconds, compiling a fresh environment half a minute.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import sys
import sysconfig
from pathlib import Path


def _stale(source: Path) -> bool:
    """True if ``source`` has no bytecode cache at least as new as itself."""
    try:
        cached = Path(importlib.util.cache_from_source(str(source)))
        return cached.stat().st_mtime < source.stat().st_mtime
    except (OSError, NotImplementedError, ValueError):
        return True


def stale_packages(site_dirs) -> list[Path]:
    """The top-level packages and modules of ``site_dirs`` whose ``__init__``/module has
    no current bytecode cache (a cheap proxy for the package: one stat or two each)."""
    found = []
    for site in dict.fromkeys(map(Path, site_dirs)):
        try:
            entries = list(os.scandir(site))
        except OSError:
            continue
        for e in entries:
            path = Path(e.path)
            if e.is_dir() and (path / "__init__.py").is_file():
                if _stale(path / "__init__.py"):
                    found.append(path)
            elif e.name.endswith(".py") and e.is_file() and _stale(path):
                found.append(path)
    return found


def compile_missing() -> list[Path]:
    """Compile the stale packages of this interpreter's environment; return them."""
    if not sys.dont_write_bytecode:
        return []  # Python writes its caches on import
    paths = sysconfig.get_paths()
    stale = stale_packages([paths["purelib"], paths["platlib"]])
    for path in stale:
        if path.is_dir():
            compileall.compile_dir(path, quiet=2, workers=0)
        else:
            compileall.compile_file(path, quiet=2)
    return stale
