"""Cache entries → ``xarray.Dataset`` (dense or sparse) and ``pandas.DataFrame``.

Assembly is vectorised: every parameter becomes an integer code per result row, the
codes become one flat cell index, and each variable is scattered with one numpy
assignment (dense) or handed to ``sparse.COO`` already sorted (sparse).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Sequence

import numpy as np

from . import _columns
from ._columns import MISSING
from ._xrimport import defer_duck_array_imports

log = logging.getLogger("pyjoule")

DENSE_FACTOR = 8  # dense while the grid has at most 8x as many cells as psets ...
DENSE_MAX_BYTES = 256 * 2**20  # ... and each variable stays under 256 MB


# ------------------------------------------------------------------------ axes
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
    from ._callables import is_value, label

    return label(v) if callable(v) and is_value(v) else v


def axis_from_values(values: Sequence[Any]) -> tuple[list, np.ndarray]:
    """Labels (numbers sorted, others first-seen) and one code per value."""
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
    kind, data, mask, extra = col
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
    def from_psets(cls, psets: Sequence[dict]) -> "Axes":
        names = list(dict.fromkeys(k for p in psets for k in p)) if psets else []
        axes = {n: axis_from_values([p.get(n, MISSING) for p in psets]) for n in names}
        return cls(names, axes)

    @classmethod
    def from_columns(cls, columns: dict) -> "Axes":
        names = [n[2:] for n in first_seen(columns, "p:")]
        n_rows = len(next(iter(columns.values()))[1]) if columns else 0
        return cls(names, {n: axis_from_column(columns["p:" + n]) for n in names}, n_rows)

    def cells(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Flat cell index of each row (``rows`` picks rows of the code arrays)."""
        if not self.dims:
            return np.zeros(len(rows) if rows is not None else self.n_rows, np.int64)
        codes = [self.codes[d] if rows is None else self.codes[d][rows] for d in self.dims]
        return np.ravel_multi_index(codes, self.shape)


_renames_logged: set[tuple[str, str]] = set()


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


# ------------------------------------------------------------------ collisions
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
    from ._hashing import canonical_bytes

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


def _coord(labels: list):
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
    full = len(np.unique(where)) == size if len(where) == size else False
    dtype = values.dtype
    if not full and dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    if dtype.kind in "biufc":
        out = np.full((size,) + extra_shape, np.nan if not full else 0, dtype)
    else:
        out = np.full((size,) + extra_shape, np.nan, object)
    out[where] = values
    return out.reshape(tuple(shape) + extra_shape)


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


# ----------------------------------------------------------------------- table
def build_table(ids: Sequence[str], columns: dict, func_id: str, failures=()):
    """One row per pset: parameters, results and the bookkeeping columns.

    Parameter columns hold the values as recorded (API §4): ints stay int64 (object
    when some rows lack the parameter: ``42, None, 43``, never ``42.0, nan, 43.0``),
    so that ``f.map(table[parameter_columns])`` finds every pset again.
    """
    import pandas as pd

    data: dict[str, Any] = {}
    for name in first_seen(columns, "p:") + first_seen(columns, "v:"):
        key = name[2:] if name[2:] not in data else name
        col = columns[name]
        data[key] = _parameter_column(col) if name[:2] == "p:" else _table_column(col)
    data["_key"] = list(ids)
    data["_func_id"] = func_id
    data["_status"] = "done"
    for name in ("runtime_s", "host", "started", "finished", "run_id"):
        col = columns.get("b:" + name)
        data["_" + name] = _table_column(col) if col is not None else [None] * len(ids)
    frame = pd.DataFrame(data)
    if failures:
        frame = pd.concat([frame, _failure_rows(failures, func_id)], ignore_index=True)
    for name in ("_started", "_finished"):
        frame[name] = pd.to_datetime(frame[name].astype(float), unit="s", utc=True)
    return frame


def _parameter_column(col: tuple):
    """A parameter column as exact values: ``None`` (object dtype) where missing."""
    kind, data, mask = col[:3]
    if kind == "num" and mask is None:
        return data
    column = np.empty(len(data), object)
    column[:] = [None if v is MISSING else v for v in _columns.to_objects(col)]
    return column


def _table_column(col: tuple):
    kind = col[0]
    if kind == "num":
        return _columns.to_array(col)
    values = _columns.to_objects(col)
    return [None if v is MISSING else v for v in values]


def _failure_rows(failures, func_id: str):
    import pandas as pd

    rows = []
    for rec in failures:
        row = dict(rec.get("kwargs", {}))
        row.update(_key=rec["pset_id"], _func_id=func_id, _status="failed",
                   _runtime_s=rec.get("runtime_s"), _host=rec.get("host"),
                   _started=rec.get("started"), _finished=rec.get("finished"),
                   _run_id=rec.get("run_id"))
        rows.append(row)
    return pd.DataFrame(rows)


def failures_frame(failures: Sequence[dict]):
    """``run.failures``: parameters + error_type, message, traceback, reason, log."""
    import pandas as pd

    rows = []
    for rec in failures:
        row = dict(rec.get("kwargs", {}))
        row.update(error_type=rec.get("error_type"), message=rec.get("message"),
                   traceback=rec.get("traceback"), reason=rec.get("reason"),
                   log=_log_text(rec), _key=rec["pset_id"])
        rows.append(row)
    cols = ["error_type", "message", "traceback", "reason", "log", "_key"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


def _log_text(rec: dict) -> str:
    parts = []
    if rec.get("stdout"):
        parts.append(rec["stdout"])
    if rec.get("stderr"):
        parts.append(rec["stderr"])
    if rec.get("log_path"):
        parts.append(f"(worker log: {rec['log_path']})")
    return "".join(parts)


# ------------------------------------------------------------- from the store
def dataset_for(store, func_id: str, ids: Sequence[str], psets: Sequence[dict], *,
                sparse: bool | str = "auto", dims: dict | None = None,
                attrs: dict | None = None, found: dict | None = None):
    """The Dataset of the cached results among ``ids``, on the grid of ``psets``.

    Returns ``(dataset, n_found, n_read)``: fewer rows read than found means damaged
    cache segments were dropped (the caller recomputes them).
    """
    if found is None:
        found = store.lookup(func_id, ids)
    got_ids, columns = store.read_columns(func_id, found)
    axes = Axes.from_psets(psets)
    pos = dict(zip(ids, range(len(ids))))
    rows = np.fromiter((pos[p] for p in got_ids), np.int64, len(got_ids))
    cells, columns = drop_collisions(axes, axes.cells(rows), columns, rows,
                                     lambda i: psets[rows[i]], "f.map")
    ds = build_dataset(axes, cells, columns, n_psets=len(ids), sparse=sparse,
                       dims=dims, attrs=attrs, priority=rows)
    return ds, len(found), len(got_ids)


def dataset_of_all(store, func_id: str, *, sparse: bool | str = "auto",
                   dims: dict | None = None, attrs: dict | None = None):
    """The Dataset of everything cached for ``func_id`` (``pj.load``)."""
    got_ids, columns = store.read_all_columns(func_id, with_ids=False)
    axes = Axes.from_columns(columns)
    names = [n for n in columns if n.startswith("p:")]

    def values_of(i: int) -> dict:
        row = {n[2:]: _columns.to_objects(_columns.take(columns[n], np.array([i])))[0]
               for n in names}
        return {k: v for k, v in row.items() if v is not MISSING}

    cells, columns = drop_collisions(axes, axes.cells(), columns, None, values_of,
                                     "pj.load")
    return build_dataset(axes, cells, columns, n_psets=axes.n_rows, sparse=sparse,
                         dims=dims, attrs=attrs)


def table_for(store, func_id: str, ids: Sequence[str] | None = None, failures=(),
              output: bool = False):
    """The table of the cached psets among ``ids`` in their order, or of all of them in
    the order they were first computed (``ids=None``; entries are numbered as stored);
    ``output=True`` adds ``_stdout`` and ``_stderr``."""
    found = store.lookup(func_id, ids)
    got_ids, columns = store.read_columns(func_id, found)  # in stored order
    if ids is not None and got_ids:
        pos = dict(zip(ids, range(len(ids))))
        order = np.argsort(np.fromiter((pos[p] for p in got_ids), np.int64, len(got_ids)),
                           kind="stable")
        if (np.diff(order) != 1).any():
            got_ids = [got_ids[i] for i in order.tolist()]
            columns = {n: _columns.take(c, order) for n, c in columns.items()}
    table = build_table(got_ids, columns, func_id, failures)
    if output:  # _stdout, _stderr
        from ._output import with_columns

        table = with_columns(table, store, found, failures)
    return table
