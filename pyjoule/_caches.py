"""Every piece of module-level mutable state of pyjoule, declared in one place.

pyjoule keeps a little state for the life of a process: memos (a file's digest by its
mtime, parsed ssh configs, a cluster's facts), warnings given once, open connections.
Each module that keeps such state declares it here, with what empties it, so that a
test (or anything that needs a fresh process without starting one) resets all of it
with one call, :func:`reset_all`, and nobody reaches into private names to do so.

tests/test_structure.py finds module-level mutable state by parsing pyjoule/ (containers
assigned at module level and changed later, ``global`` statements, ``lru_cache``'d
functions) and fails on any that is not declared here (or in its allowlist, while the
modules move to this registry).

>>> from pyjoule import _caches
>>> _memo: dict = _caches.declare("pyjoule._example", "_memo", {})
>>> _memo["key"] = 1
>>> _caches.reset_all()
>>> _memo
{}
>>> _caches.forget("pyjoule._example", "_memo")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# "module.name" -> what empties it; this registry is the one state not in itself
_RESETS: dict[str, Callable[[], None]] = {}


def declare(module: str, name: str, container: T,
            reset: Callable[[], None] | None = None) -> T:
    """Declare ``module.name`` as process state and return ``container`` (a dict, set,
    list or anything with ``clear()``); ``reset`` replaces ``container.clear`` where
    emptying means more (closing connections, resetting a global to None)."""
    clear = reset if reset is not None else container.clear  # type: ignore[attr-defined]
    _RESETS[f"{module}.{name}"] = clear
    return container


def forget(module: str, name: str) -> None:
    """Remove a declaration (for the state of a module that is unloaded, and tests)."""
    _RESETS.pop(f"{module}.{name}", None)


def declared() -> list[str]:
    """The declared state, as sorted ``module.name`` strings."""
    return sorted(_RESETS)


def reset_all() -> None:
    """Empty every declared cache and reset every declared global, as in a new process."""
    for reset in list(_RESETS.values()):
        reset()
