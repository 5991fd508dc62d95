"""Dataset and table assembly (pyjoule._results) from a real Store, without a pool.

Entries are written with ``Store.ingest`` as a run would write them, then read back
through ``dataset_for``, ``dataset_of_all``, ``table_for`` and ``failures_frame``: the
shape of the grid, dense or sparse, dtypes, labels of function-valued parameters and
the columns of the failures frame.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import sparse

from pyjoule import _callables
from pyjoule._hashing import pset_ids
from pyjoule._results import dataset_for, dataset_of_all, failures_frame, first_seen, table_for
from pyjoule._store import Store

FUNC = "a" * 32
RUN = "run-units"


@pytest.fixture
def store(weird_tmp_path):
    s = Store(weird_tmp_path / "cache")
    yield s
    s.close()


def put(store: Store, psets: list[dict], values: list, failed: tuple = ()) -> list[str]:
    """Ingest one record per pset (``values[i]`` its result) and, for the indices in
    ``failed``, a failure instead; return the psets' ids."""
    ids = pset_ids(psets)
    records = []
    for i, (pid, pset, value) in enumerate(zip(ids, psets, values)):
        rec = {"pset_id": pid, "status": "done", "value": value,
               "kwargs": _callables.recorded({pid: pset})[pid], "runtime_s": 0.5,
               "started": 1000.0 + i, "finished": 1000.5 + i, "host": "node-1",
               "run_id": RUN}
        if i in failed:
            rec.update(status="failed", value=None, error_type="ValueError",
                       message=f"bad {i}", traceback="Traceback ...", reason="exception",
                       stdout="printed\n")
        records.append(rec)
    store.ingest(FUNC, RUN, records)
    return ids


def grid(**axes) -> list[dict]:
    psets = [{}]
    for name, values in axes.items():
        psets = [{**p, name: v} for p in psets for v in values]
    return psets


# ------------------------------------------------------------------------ dense
def test_a_full_grid_is_dense_and_keeps_integer_results(store):
    psets = grid(a=[3, 1, 2], b=["x", "y"])
    ids = put(store, psets, [{"y": p["a"] * 10 + (p["b"] == "y"), "z": p["a"] / 2}
                             for p in psets])
    ds, n_found, n_read = dataset_for(store, FUNC, ids, psets)
    assert (n_found, n_read) == (6, 6)
    assert ds.y.dims == ("a", "b") and dict(ds.sizes) == {"a": 3, "b": 2}
    assert ds.a.values.tolist() == [1, 2, 3]  # numbers are sorted
    assert ds.a.dtype == np.int64 and ds.b.values.tolist() == ["x", "y"]
    assert type(ds.y.data) is np.ndarray and ds.y.dtype == np.int64
    assert ds.z.dtype == np.float64
    assert int(ds.y.sel(a=3, b="y")) == 31 and float(ds.z.sel(a=1, b="x")) == 0.5
    assert list(ds.data_vars) == ["y", "z"]


def test_a_missing_cell_is_nan_and_makes_integers_float(store):
    psets = grid(a=[1, 2], b=[10, 20])
    ids = put(store, psets[:3], [{"y": i} for i in range(3)])
    ds, n_found, n_read = dataset_for(store, FUNC, pset_ids(psets), psets)
    assert (n_found, n_read) == (3, 3) and ids == pset_ids(psets)[:3]
    assert ds.y.dtype == np.float64
    assert math.isnan(float(ds.y.sel(a=2, b=20)))
    assert ds.y.values.tolist()[0] == [0.0, 1.0]


def test_a_one_valued_parameter_is_a_scalar_coordinate(store):
    psets = grid(a=[1, 2, 3], seed=[7])
    ids = put(store, psets, [p["a"] ** 2 for p in psets])
    ds, _, _ = dataset_for(store, FUNC, ids, psets)
    assert ds.result.dims == ("a",)  # a bare return value is the variable "result"
    assert "seed" not in ds.dims and int(ds.seed) == 7
    assert ds.result.values.tolist() == [1, 4, 9]


def test_a_result_key_named_like_a_parameter_is_renamed(store, caplog):
    psets = grid(a=[1, 2])
    ids = put(store, psets, [{"a": p["a"] + 100} for p in psets])
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        ds, _, _ = dataset_for(store, FUNC, ids, psets)
    assert list(ds.data_vars) == ["a_result"]
    assert ds.a_result.values.tolist() == [101, 102]


def test_array_results_get_their_own_dims(store):
    psets = grid(a=[1, 2])
    ids = put(store, psets, [{"trace": np.full(4, p["a"], np.float32)} for p in psets])
    ds, _, _ = dataset_for(store, FUNC, ids, psets, dims={"trace": ["t"]})
    assert ds.trace.dims == ("a", "t") and ds.trace.shape == (2, 4)
    assert ds.trace.sel(a=2).values.tolist() == [2.0] * 4
    with pytest.raises(ValueError, match="names 2 dimensions"):
        dataset_for(store, FUNC, ids, psets, dims={"trace": ["t", "u"]})


# ----------------------------------------------------------------------- sparse
def test_a_thin_grid_is_sparse_and_reads_back_its_cells(store):
    psets = [{"a": i, "b": i} for i in range(30)]  # a 30x30 grid holding 30 values
    ids = put(store, psets, [{"y": float(i)} for i in range(30)])
    ds, _, _ = dataset_for(store, FUNC, ids, psets)
    assert isinstance(ds.y.data, sparse.COO) and ds.y.shape == (30, 30)
    assert ds.y.data.nnz == 30 and math.isnan(ds.y.data.fill_value)
    dense = ds.y.data.todense()
    assert np.diagonal(dense).tolist() == [float(i) for i in range(30)]
    assert math.isnan(dense[0, 1])
    forced, _, _ = dataset_for(store, FUNC, ids, psets, sparse=False)
    assert type(forced.y.data) is np.ndarray
    assert np.array_equal(forced.y.values, dense, equal_nan=True)


def test_ragged_parameters_and_results_leave_none_labels_and_holes(store):
    psets = [{"a": 1}, {"a": 2}, {"a": 3, "c": "z"}]
    values = [{"y": 1.0}, {"y": 2.0}, {"y": 3.0, "extra": "only here"}]
    ids = put(store, psets, values)
    ds, _, _ = dataset_for(store, FUNC, ids, psets)
    assert ds.c.values.tolist() == [None, "z"]  # first seen: the psets without c
    assert ds.y.dims == ("a", "c")
    assert float(ds.y.sel(a=3, c="z")) == 3.0 and math.isnan(float(ds.y.sel(a=3, c=None)))
    assert ds.extra.dtype == object
    assert ds.extra.sel(a=3, c="z").item() == "only here"
    hole = ds.extra.sel(a=1, c=None).item()
    assert isinstance(hole, float) and math.isnan(hole)


def test_dataset_of_all_reads_the_grid_from_the_stored_parameters(store):
    psets = grid(a=[2, 1], b=[0.5, 0.25])
    put(store, psets, [{"y": p["a"] + p["b"]} for p in psets])
    ds = dataset_of_all(store, FUNC)
    assert ds.a.values.tolist() == [1, 2] and ds.b.values.tolist() == [0.25, 0.5]
    assert float(ds.y.sel(a=2, b=0.25)) == 2.25


def test_psets_equal_as_labels_keep_the_first_and_warn(store, caplog):
    psets = [{"a": 1}, {"a": 1.0}, {"a": 2}]
    ids = put(store, psets, [{"y": 10}, {"y": 20}, {"y": 30}])
    assert len(set(ids)) == 3
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        ds, n_found, _ = dataset_for(store, FUNC, ids, psets)
    assert n_found == 3 and ds.y.values.tolist() == [10, 30]
    assert "1 result is not in the Dataset" in caplog.text
    assert "parameter 'a': 1 and 1.0" in caplog.text


# ------------------------------------------------------------ function values
def relu(x):
    return max(x, 0)


def tanh(x):
    return math.tanh(x)


def test_function_valued_parameters_are_labelled_by_name(store):
    local = lambda x: x  # noqa: E731 -- a lambda's name is shared: it gets a digest
    psets = [{"act": f, "n": n} for f in (relu, tanh, np.sin, local) for n in (1, 2)]
    ids = put(store, psets, [{"y": float(i)} for i in range(len(psets))])
    ds, _, _ = dataset_for(store, FUNC, ids, psets)
    labels = ds.act.values.tolist()
    assert labels[:3] == [f"{__name__}.relu", f"{__name__}.tanh", "numpy.sin"]
    assert labels[3].startswith("<lambda>@") and len(labels[3]) == len("<lambda>@") + 8
    assert float(ds.y.sel(act="numpy.sin", n=2)) == 5.0
    stored = dataset_of_all(store, FUNC)  # the cache records the labels themselves
    assert stored.act.values.tolist() == labels


# ------------------------------------------------------------------------ table
def test_table_keeps_parameter_dtypes_and_bookkeeping(store):
    psets = [{"a": 1, "k": 42, "s": "x"}, {"a": 2}, {"a": 3, "k": 43, "s": "z"}]
    ids = put(store, psets, [{"y": 0.5}, {"y": 1.5}, {"y": 2.5}])
    table = table_for(store, FUNC, ids[::-1])
    assert table["_key"].tolist() == ids[::-1]  # in the order asked for
    assert table["a"].dtype == np.int64 and table["a"].tolist() == [3, 2, 1]
    assert table["k"].tolist() == [43, None, 42]  # ints stay ints: None, not NaN
    assert table["s"].iloc[0] == "z" and pd.isna(table["s"].iloc[1])
    assert table["_status"].tolist() == ["done"] * 3
    assert table["_func_id"].unique().tolist() == [FUNC]
    assert table["_run_id"].unique().tolist() == [RUN]
    assert str(table["_started"].dtype).startswith("datetime64") and table["_started"].dt.tz
    assert table["_runtime_s"].tolist() == [0.5] * 3


def test_table_adds_the_failures_as_rows(store):
    psets = grid(a=[1, 2, 3])
    ids = put(store, psets, [{"y": p["a"]} for p in psets], failed=(1,))
    failures = store.failures(RUN)
    table = table_for(store, FUNC, ids, failures=failures)
    assert table["_status"].tolist() == ["done", "done", "failed"]
    assert table["_key"].tolist() == [ids[0], ids[2], ids[1]]
    assert math.isnan(table["y"].iloc[2])


# --------------------------------------------------------------------- failures
FAILURE_COLUMNS = ["error_type", "message", "traceback", "reason", "log", "_key"]


def test_failures_frame_has_parameters_and_error_columns(store):
    psets = grid(a=[1, 2, 3])
    ids = put(store, psets, [None] * 3, failed=(0, 2))
    frame = failures_frame(sorted(store.failures(RUN), key=lambda r: r["kwargs"]["a"]))
    assert list(frame.columns) == ["a", *FAILURE_COLUMNS]
    assert frame["a"].tolist() == [1, 3] and frame["_key"].tolist() == [ids[0], ids[2]]
    assert frame["message"].tolist() == ["bad 0", "bad 2"]
    assert frame["error_type"].unique().tolist() == ["ValueError"]
    assert frame["log"].tolist() == ["printed\n"] * 2


def test_failures_frame_of_no_failures_still_has_its_columns():
    frame = failures_frame([])
    assert len(frame) == 0 and list(frame.columns) == FAILURE_COLUMNS


# ---------------------------------------------------------------- first-seen order
def test_variables_come_in_the_order_of_the_first_pset_asked_for_holding_them(store):
    psets = [{"a": 1}, {"a": 2}, {"a": 3}]
    values = [{"x": 1.0}, {"x": 2.0}, {"late": 5.0, "x": 3.0}]
    put(store, psets[::-1], values[::-1])  # stored: the pset with "late" first
    ids = pset_ids(psets)
    _, columns = store.read_columns(FUNC, store.lookup(FUNC, ids))
    assert first_seen(columns, "v:") == ["v:late", "v:x"]  # by stored row
    ds, _, _ = dataset_for(store, FUNC, ids, psets)
    assert list(ds.data_vars) == ["x", "late"]  # by the order of the psets asked for
