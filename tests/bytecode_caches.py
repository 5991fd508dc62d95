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
import sysconfig
from pathlib import Path


def _stale(source: Path) -> bool:
    """True unless ``source`` has a bytecode cache that Python would use: the header
    holds the source's mtime and size (what the import system checks)."""
    try:
        with open(importlib.util.cache_from_source(str(source)), "rb") as fh:
            head = fh.read(16)
        st = source.stat()
    except (OSError, NotImplementedError, ValueError):
        return True
    if len(head) < 16 or head[:4] != importlib.util.MAGIC_NUMBER:
        return True
    if int.from_bytes(head[4:8], "little") & 1:  # hash-based: valid as long as it exists
        return False
    return (int.from_bytes(head[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
            or int.from_bytes(head[12:16], "little") != st.st_size & 0xFFFFFFFF)


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


def compile_missing(site_dirs=None) -> list[Path]:
    """Compile the stale packages of ``site_dirs`` (default: this interpreter's
    environment); return them."""
    if site_dirs is None:
        paths = sysconfig.get_paths()
        site_dirs = [paths["purelib"], paths["platlib"]]
    stale = stale_packages(site_dirs)
    for path in stale:
        if path.is_dir():
            compileall.compile_dir(path, quiet=2, workers=0)
        else:
            compileall.compile_file(path, quiet=2)
    return stale
