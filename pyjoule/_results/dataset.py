"""Result columns scattered onto an :class:`~.axes.Axes` grid: the ``xarray.Dataset``,
each variable dense (one numpy assignment) or sparse (``sparse.COO``, already sorted)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .. import _caches, _columns
from .._xrimport import defer_duck_array_imports
from .axes import Axes, first_seen

log = logging.getLogger("pyjoule")

DENSE_FACTOR = 8  # dense while the grid has at most 8x as many cells as psets ...
DENSE_MAX_BYTES = 256 * 2**20  # ... and each variable stays under 256 MB

# (parameter, data variable) renames already logged: one WARNING per process each
_renames_logged: set[tuple[str, str]] = set()


def reset_warnings() -> None:
    """Log each rename of a result named like a parameter again (for tests)."""
    _renames_logged.clear()


def build_dataset(axes: Axes, cells: np.ndarray, columns: dict, *, n_psets: int,
                  sparse: bool | str = "auto", dims: dict | None = None,
                  attrs: dict | None = None, priority: np.ndarray | None = None):
    """The Dataset of result columns placed at ``cells`` of the ``axes`` grid.

    ``priority`` orders the rows for first-seen order of the data variables (default:
    the rows' own order). Each cell must hold at most one row (see
    :func:`drop_collisions`).
    """
    import xarray as xr

    defer_duck_array_imports()
    dims = dims or {}
    size = int(np.prod(axes.shape)) if axes.shape else 1
    data_vars = {}
    for name in first_seen(columns, "v:", priority):
        col = columns[name]
        var = name[2:]
        if var in axes.labels or var in axes.scalars:  # a parameter's name already
            renamed = f"{var}_result"
            if (var, renamed) not in _renames_logged:
                _renames_logged.add((var, renamed))
                log.warning("the function returns a key %r, which is also a parameter: "
                            "it is the data variable %r of the Dataset", var, renamed)
            var = renamed
        data_vars[var] = _variable(var, col, axes, cells, size, n_psets, sparse,
                                   dims.get(var))
    coords: dict[str, Any] = {d: _coord(axes.labels[d]) for d in axes.dims}
    coords.update({k: _scalar_coord(v) for k, v in axes.scalars.items()})
    return xr.Dataset(data_vars, coords=coords, attrs=attrs or {})


def _coord(labels: list):
    if set(map(type, labels)) == {int}:
        try:
            return np.array(labels, dtype=np.int64)
        except OverflowError:
            pass
    arr = np.empty(len(labels), object)
    arr[:] = labels
    if all(isinstance(x, str) for x in labels):
        return _object_index(arr)
    bools = [isinstance(x, (bool, np.bool_)) for x in labels]
    numbers = all(isinstance(x, (int, float, np.integer, np.floating)) for x in labels)
    # one numeric dtype only where that loses nothing a user could see: numpy would
    # turn [True, 2] into ints and ["A", 3] into strings
    if all(bools) or (numbers and not any(bools)):
        typed = np.array(labels)
        if typed.dtype.kind in "biuf" and typed.shape == (len(labels),):
            return typed
    return _object_index(arr)


def _object_index(arr: np.ndarray):
    """An object index of exactly these labels: from a bare array, pandas (3) would
    infer a string dtype for strings next to ``None`` and turn the ``None`` into NaN."""
    import pandas as pd

    return pd.Index(arr, dtype=object, tupleize_cols=False)


_PLAIN_SCALARS = (str, bytes, bool, int, float, complex, np.generic, type(None))


def _scalar_coord(label: Any) -> Any:
    """A one-valued parameter's coordinate: plain scalars as they are, anything else
    (a tuple from a list or tuple value, ...) in a 0-d object array, which xarray
    would otherwise read as ``(dims, data)``."""
    if isinstance(label, _PLAIN_SCALARS):
        return label
    arr = np.empty((), object)
    arr[()] = label
    return arr


def _variable(var, col, axes: Axes, cells, size, n_psets, sparse, names):
    kind, data, _, _ = col
    present = _columns.present(col)
    where = cells[present]
    extra_shape = data.shape[1:] if kind == "arr" else ()
    extra_dims = tuple(names) if names else tuple(f"{var}_dim_{i}"
                                                  for i in range(len(extra_shape)))
    if len(extra_dims) != len(extra_shape):
        raise ValueError(f"dims={{{var!r}: {names}}} names {len(extra_dims)} dimensions "
                         f"but the returned arrays have shape {extra_shape}")
    values = (data[present] if kind in ("num", "arr")
              else _columns.to_array(_columns.take(col, np.flatnonzero(present))))
    dims = tuple(axes.dims) + extra_dims
    per_cell = int(np.prod(extra_shape)) if extra_shape else 1
    use_sparse = sparse
    if sparse == "auto":
        nbytes = size * per_cell * 8
        use_sparse = size > DENSE_FACTOR * max(n_psets, 1) or nbytes > DENSE_MAX_BYTES
    if use_sparse and values.dtype.kind in "biuf" and axes.dims:
        return dims, _sparse_array(axes.shape, where, values, extra_shape)
    return dims, _dense_array(axes.shape, where, values, extra_shape, size)


def _dense_array(shape, where, values, extra_shape, size):
    full = len(where) == size and _covers(where, size)
    dtype = values.dtype
    if not full and dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    if dtype.kind in "biufc":
        out = np.full((size,) + extra_shape, np.nan if not full else 0, dtype)
    else:
        out = np.full((size,) + extra_shape, np.nan, object)
    out[where] = values
    return out.reshape(tuple(shape) + extra_shape)


def _covers(where: np.ndarray, size: int) -> bool:
    """Whether the cells ``where`` (in ``range(size)``) include every cell: one pass,
    where ``np.unique`` hashed or sorted them (1.8 s of a 1M-pset re-call)."""
    seen = np.zeros(size, bool)
    seen[where] = True
    return bool(seen.all())


def _sparse_array(shape, where, values, extra_shape):
    import sparse as sp

    size = int(np.prod(shape))
    if size <= 16 * max(len(where), 1):
        # few empty cells: place rows by cell in O(cells), no sort (a later row of
        # the same cell, e.g. 1 and 1.0, overwrites an earlier one)
        slot = np.full(size, -1, np.int64)
        slot[where] = np.arange(len(where))
        order = slot[slot >= 0]
        where, values = where[order], values[order].astype(np.float64)
    else:
        order = np.argsort(where, kind="stable")
        where, values = where[order], values[order].astype(np.float64)
        if len(where) > 1:  # the same cell twice (e.g. 1 and 1.0): keep the last
            keep = np.append(where[1:] != where[:-1], True)
            where, values = where[keep], values[keep]
    coords = np.array(np.unravel_index(where, shape), dtype=np.int64).reshape(len(shape), -1)
    if extra_shape:
        inner = np.array(np.unravel_index(np.arange(int(np.prod(extra_shape))), extra_shape))
        m = inner.shape[1]
        coords = np.concatenate([np.repeat(coords, m, axis=1),
                                 np.tile(inner, len(where))], axis=0)
        values = values.reshape(len(where), -1).ravel()
    return sp.COO(coords, values, shape=tuple(shape) + extra_shape, fill_value=np.nan,
                  has_duplicates=False, sorted=True)


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_renames_logged", _renames_logged)
