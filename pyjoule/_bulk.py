"""Work on a million objects at once (:func:`gc_paused`).

Planning, ingesting and assembling a call of 1,000,000 psets create millions of
dicts and tuples that live on. Each 700 of them start a pass of Python's cyclic
garbage collector, and the passes over the older generations walk everything that
lives: the same 1M-pset step took 2.3x as long with the collector as without it.
None of that work makes reference cycles, so the collector is paused for it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting still
    frees everything). Nests, and leaves a collector that was off, off. Never around
    code that runs the user's function or starts a process (a forked child would
    inherit the pause)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
