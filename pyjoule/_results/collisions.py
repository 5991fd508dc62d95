"""Psets whose values are equal as coordinate labels (``1`` and ``1.0``) fall on one
cell of the grid: keep the first, and say so once."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .. import _columns
from .._columns import MISSING
from .axes import Axes

log = logging.getLogger("pyjoule")


def drop_collisions(axes: Axes, cells: np.ndarray, columns: dict,
                    priority: np.ndarray | None, values_of, where: str):
    """Keep one row per cell: the first by ``priority`` (default: row order).

    Two psets can share a cell when their values are different psets but equal as
    coordinate labels (``1`` and ``1.0``, ``True`` and ``1``, arrays whose ``repr`` is
    abbreviated). A pandas index cannot hold such labels apart (alignment and
    ``.sel`` need unique labels), so the Dataset keeps the first and one WARNING names
    the parameter and the values; ``f.table()`` has every pset. ``values_of(i)`` gives
    the parameter values of row ``i`` (only called for a few colliding rows).

    Returns ``(cells, columns)``, unchanged (the same objects) when nothing collides,
    which is checked with one ``bincount`` (or one sort for a very sparse grid).
    """
    n = len(cells)
    if n < 2:
        return cells, columns
    size = int(np.prod(axes.shape)) if axes.shape else 1
    if size <= 16 * n + 1024:
        if int(np.bincount(cells, minlength=size).max()) <= 1:
            return cells, columns
    else:
        ordered = np.sort(cells)
        if not (ordered[1:] == ordered[:-1]).any():
            return cells, columns
    prio = np.arange(n) if priority is None else priority
    order = np.lexsort((prio, cells))
    sorted_cells = cells[order]
    repeat = np.concatenate([[False], sorted_cells[1:] == sorted_cells[:-1]])
    group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(n)))
    losers, winners = order[repeat], order[group_start[repeat]]
    keep = np.ones(n, bool)
    keep[losers] = False
    rows = np.flatnonzero(keep)
    log.warning("%s", _collision_message(losers, winners, values_of, where))
    return cells[rows], {name: _columns.take(col, rows) for name, col in columns.items()}


def _collision_message(losers, winners, values_of, where: str) -> str:
    from .._hashing import canonical_bytes

    def same(a: Any, b: Any) -> bool:
        if a is MISSING or b is MISSING:
            return a is b
        try:
            return canonical_bytes(a) == canonical_bytes(b)
        except Exception:  # noqa: BLE001 - a value the hashing does not know
            return type(a) is type(b) and repr(a) == repr(b)

    def show(v: Any) -> str:
        return "(absent)" if v is MISSING else repr(v)

    pairs: dict[str, list[str]] = {}
    alike = False
    for lose, win in zip(losers[:20].tolist(), winners[:20].tolist()):
        a, b = values_of(win), values_of(lose)
        differ = [n for n in dict.fromkeys([*a, *b])
                  if not same(a.get(n, MISSING), b.get(n, MISSING))]
        alike = alike or not differ
        for name in differ:
            text = f"{show(a.get(name, MISSING))} and {show(b.get(name, MISSING))}"
            if text not in pairs.setdefault(name, []) and len(pairs[name]) < 3:
                pairs[name].append(text)
    parts = [f"parameter {name!r}: {', '.join(v)}" for name, v in pairs.items()]
    if alike:  # a column of ints and floats is stored as floats: 1 and 1.0 read alike
        parts.append("values stored alike, such as 1 and 1.0 in a column of ints and "
                     "floats, which the cache keeps as floats")
    what = "; ".join(parts)
    n = len(losers)
    return (f"{where}: {n} result{'s are' if n != 1 else ' is'} not in the Dataset: "
            f"different psets have values that are equal as coordinate labels ({what}), "
            f"so they fall on one cell and the Dataset shows the first of them; "
            f"f.table() has every pset, or make the values consistent (one type per "
            f"parameter, e.g. all floats)")
