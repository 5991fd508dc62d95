"""The axes of a result grid: one coordinate per parameter, labels and one integer code
per result row, vectorised where the column allows (:class:`Axes`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _columns
from .._columns import MISSING


def _label(v: Any) -> Any:
    """A hashable coordinate label for a parameter value."""
    if v is MISSING:
        return None
    if isinstance(v, list):
        return tuple(_label(x) for x in v)
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def _callable_label(v: Any) -> Any:
    from .._callables import is_value, label

    return label(v) if callable(v) and is_value(v) else v


def axis_from_values(values: Sequence[Any]) -> tuple[list, np.ndarray]:
    """Labels (numbers sorted, others first-seen) and one code per value."""
    if set(map(type, values)) == {int}:  # e.g. seeds, sizes, indices: by numpy
        try:
            arr = np.array(values, dtype=np.int64)
        except OverflowError:
            pass
        else:
            uniq, inverse = _unique_inverse(arr)
            return uniq.tolist(), inverse.astype(np.int64, copy=False)
    lookup: dict[Any, int] = {}
    try:
        codes = [lookup.setdefault(v, len(lookup)) for v in values]
        if MISSING in lookup:
            raise TypeError
    except TypeError:
        lookup = {}
        codes = [lookup.setdefault(_label(v), len(lookup)) for v in values]
    labels = list(lookup)
    if any(map(callable, labels)):  # functions and classes go by name (API §1)
        labels = [_callable_label(v) for v in labels]
    codes_arr = np.asarray(codes, dtype=np.int64)
    return _sorted_axis(labels, codes_arr)


_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _sorted_axis(labels: list, codes: np.ndarray) -> tuple[list, np.ndarray]:
    types = set(map(type, labels)) - {type(None)}
    if len(labels) < 2 or not types or not all(
            issubclass(t, _NUMBER_TYPES) and not issubclass(t, (bool, np.bool_))
            for t in types):
        return labels, codes
    if None in labels:
        order = sorted(range(len(labels)), key=lambda i: (labels[i] is None,
                                                          labels[i] if labels[i] is not None
                                                          else 0))
    else:
        order = np.argsort(np.array(labels, dtype=object if int in types and
                                    float in types else None), kind="stable").tolist()
    remap = np.empty(len(labels), np.int64)
    remap[order] = np.arange(len(labels))
    return [labels[i] for i in order], remap[codes]


def axis_from_column(col: tuple) -> tuple[list, np.ndarray]:
    """Like :func:`axis_from_values`, without a Python loop per row when possible."""
    kind, data, _mask, extra = col
    if kind == "num" and data.dtype.kind in "iuf":
        present = _columns.present(col)
        values = data[present]
        uniq, inverse = _unique_inverse(values)
        labels = uniq.tolist()
        if present.all():
            return labels, inverse.astype(np.int64)
        codes = np.full(len(data), len(labels), np.int64)
        codes[present] = inverse
        return labels + [None], codes
    if kind == "cat":
        used = np.unique(data)
        used_real = used[used >= 0]
        order = np.argsort(_first_seen(data, used_real), kind="stable")
        used_real = used_real[order]
        remap = np.full(len(extra) + 1, len(used_real), np.int64)
        remap[used_real] = np.arange(len(used_real))
        labels = [extra[i] for i in used_real.tolist()]
        if (used < 0).any():
            labels.append(None)
        return _sorted_axis(labels, remap[data])
    return axis_from_values(_columns.to_objects(col))


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, in O(n) for small non-negative ints
    (the usual seeds, sizes and indices) instead of a sort."""
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi < 4 * len(values) + 1024:
            seen = np.zeros(hi + 1, bool)
            seen[values] = True
            uniq = np.flatnonzero(seen)
            rank = np.cumsum(seen) - 1
            return uniq.astype(values.dtype), rank[values]
    return np.unique(values, return_inverse=True)


def _first_seen(codes: np.ndarray, which: np.ndarray) -> np.ndarray:
    first = np.full(int(codes.max()) + 1 if len(codes) else 1, len(codes), np.int64)
    np.minimum.at(first, codes[codes >= 0], np.flatnonzero(codes >= 0))
    return first[which]


# --------------------------------------------------------------------- dataset
class Axes:
    """The coordinate system of a Dataset: dimensions, scalar coordinates, codes."""

    def __init__(self, names: Sequence[str], axes: dict[str, tuple[list, np.ndarray]],
                 n_rows: int = 0):
        self.n_rows = n_rows
        self.dims = [n for n in names if len(axes[n][0]) >= 2]
        self.scalars = {n: axes[n][0][0] for n in names if len(axes[n][0]) == 1}
        self.labels = {n: axes[n][0] for n in self.dims}
        self.codes = {n: axes[n][1] for n in self.dims}
        self.shape = tuple(len(self.labels[n]) for n in self.dims)

    @classmethod
    def from_psets(cls, psets: Sequence[dict]) -> Axes:
        names = list(dict.fromkeys(k for p in psets for k in p)) if psets else []
        axes = {n: axis_from_values([p.get(n, MISSING) for p in psets]) for n in names}
        return cls(names, axes)

    @classmethod
    def from_columns(cls, columns: dict) -> Axes:
        names = [n[2:] for n in first_seen(columns, "p:")]
        n_rows = len(next(iter(columns.values()))[1]) if columns else 0
        return cls(names, {n: axis_from_column(columns["p:" + n]) for n in names}, n_rows)

    def cells(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Flat cell index of each row (``rows`` picks rows of the code arrays)."""
        if not self.dims:
            return np.zeros(len(rows) if rows is not None else self.n_rows, np.int64)
        codes = [self.codes[d] if rows is None else self.codes[d][rows] for d in self.dims]
        return np.ravel_multi_index(codes, self.shape)


def first_seen(columns: dict, prefix: str, priority: np.ndarray | None = None) -> list[str]:
    """The names of ``columns`` starting with ``prefix``, in first-seen order: by the
    first row (smallest ``priority``, default the row index) that has a value, ties in
    the columns' own order. One numpy reduction per column, none per row."""
    names = [n for n in columns if n.startswith(prefix)]
    if len(names) < 2:
        return names
    lowest = 0 if priority is None or not len(priority) else int(priority.min())
    first = {}
    for name in names:
        col = columns[name]
        if col[2] is None and col[0] != "cat":  # a value in every row
            first[name] = lowest
            continue
        rows = np.flatnonzero(_columns.present(col))
        if not len(rows):
            first[name] = sys.maxsize
        else:
            first[name] = int(rows[0] if priority is None else priority[rows].min())
    return sorted(names, key=first.__getitem__)  # stable: ties keep the columns' order
