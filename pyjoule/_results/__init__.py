"""Cache entries → ``xarray.Dataset`` (dense or sparse) and ``pandas.DataFrame``.

Assembly is vectorised: every parameter becomes an integer code per result row, the
codes become one flat cell index, and each variable is scattered with one numpy
assignment (dense) or handed to ``sparse.COO`` already sorted (sparse).

The modules: :mod:`.axes` (coordinates and codes), :mod:`.dataset` (dense and sparse
variables), :mod:`.collisions` (psets equal as labels), :mod:`.table` (the table and the
failures frame); here, reading them from the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .. import _bulk, _columns
from .._columns import MISSING
from .axes import Axes, axis_from_column, axis_from_values, first_seen
from .collisions import drop_collisions
from .dataset import DENSE_FACTOR, DENSE_MAX_BYTES, build_dataset, reset_warnings
from .dataset import _object_index as _object_index  # re-exported: _export uses it
from .table import build_table, failures_frame

__all__ = ["DENSE_FACTOR", "DENSE_MAX_BYTES", "Axes", "axis_from_column",
           "axis_from_values", "build_dataset", "build_table", "dataset_for",
           "dataset_of_all", "drop_collisions", "failures_frame", "first_seen",
           "reset_warnings", "table_for"]


@_bulk.gc_paused
def dataset_for(store, func_id: str, ids: Sequence[str], psets: Sequence[dict], *,
                sparse: bool | str = "auto", dims: dict | None = None,
                attrs: dict | None = None, found: Mapping[str, int] | None = None,
                locs: np.ndarray | None = None):
    """The Dataset of the cached results among ``ids``, on the grid of ``psets``.

    ``found`` (``{pset_id: loc}``) or ``locs`` (the same in the order of ``ids``, -1:
    not cached) say where they are, when known; else they are looked up.
    Returns ``(dataset, n_found, n_read)``: fewer rows read than found means damaged
    cache segments were dropped (the caller recomputes them).
    """
    if locs is None:
        if found is None:
            locs = store.locate(func_id, ids)
        else:
            locs = np.fromiter((found.get(p, -1) for p in ids), np.int64, len(ids))
    rows, columns, n_found = store.read_columns_at(func_id, locs)
    axes = Axes.from_psets(psets)
    cells, columns = drop_collisions(axes, axes.cells(rows), columns, rows,
                                     lambda i: psets[rows[i]], "f.map")
    ds = build_dataset(axes, cells, columns, n_psets=len(ids), sparse=sparse,
                       dims=dims, attrs=attrs, priority=rows)
    return ds, n_found, len(rows)


def dataset_of_all(store, func_id: str, *, sparse: bool | str = "auto",
                   dims: dict | None = None, attrs: dict | None = None):
    """The Dataset of everything cached for ``func_id`` (``pj.load``)."""
    _ids, columns = store.read_all_columns(func_id, with_ids=False)
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
        from .._output import with_columns

        table = with_columns(table, store, found, failures)
    return table
