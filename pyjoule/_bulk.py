"""Work on a million objects at once (:func:`gc_paused`).

Planning, ingesting and assembling a call of 1,000,000 psets create millions of
dicts and tuples that live on. Each 700 of them start a pass of Python's cyclic
garbage collector, and the passes over the older generations walk everything that
lives: the same 1M-pset step took 2.3x as long with the collector as without it.
None of that work makes reference cycles, so the collector is paused for it.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def gc_paused(func: F) -> F:
    """Run ``func`` with the cyclic garbage collector paused (reference counting
    still frees everything). Nests, and leaves a collector that was off, off. Never
    on code that runs the user's function or starts a process (a forked child would
    inherit the pause). A plain function, not a ``contextlib`` decorator: a warning
    from inside still points at the user's line (``user_stacklevel`` skips pyjoule's
    frames, not the standard library's)."""

    @functools.wraps(func)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused  # type: ignore[return-value]
