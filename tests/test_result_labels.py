"""Coordinate labels of results: one-valued tuples, lists, dicts and arrays, values equal
as numbers (1, 1.0, True), None next to strings, and first-seen order of dims, data
variables and table columns (API.md section 4)."""

from __future__ import annotations

import numpy as np
import pytest

import pyjoule as pj

from conftest import run_script


def exp(tmp_path, func):
    return pj.experiment(workers=0, cache=str(tmp_path / "cache"), progress=False)(func)


def g2(shape, scale=1.0):
    return {"y": float(np.prod(shape)) * scale}


def labelled(shape, scale=1.0):
    """y tells dicts, arrays and None apart."""
    if shape is None:
        return {"y": -1.0 * scale}
    if isinstance(shape, dict):
        return {"y": float(sum(shape.values())) * scale}
    return {"y": float(np.prod(shape)) * scale}


def sim(method, N=1, flag=False):
    """y tells 1 from 1.0 from True: a result that went missing would show."""
    kind = {bool: 100.0, int: 1.0, float: 10.0}[type(N)]
    return {"y": kind * N + (0.5 if flag else 0.0)}


def kw(**params):
    return {"y": float(len(params))}


# ------------------------------------------------- one-valued tuples and lists
@pytest.mark.parametrize("space, label", [
    (pj.grid(shape=[(2, 3)], scale=[1.0, 2.0]), (2, 3)),
    (pj.grid(shape=[[2, 3]], scale=[1.0, 2.0]), (2, 3)),  # a list is the same pset
    (pj.grid(shape=[(2, 3, 4)], scale=[1.0, 2.0]), (2, 3, 4)),
    ([{"shape": (2, 3)}], (2, 3)),
    ([{"shape": [2, 3]}, {"shape": [2, 3], "scale": 2.0}], (2, 3)),
])
def test_a_one_valued_tuple_or_list_parameter_is_a_scalar_coordinate(tmp_path, space,
                                                                     label):
    ds = exp(tmp_path, g2).map(space)
    assert "shape" not in ds.dims
    assert ds["shape"].ndim == 0
    assert ds["shape"].values[()] == label
    size = float(np.prod(label))
    assert np.asarray(ds.y).ravel().tolist() == [size * s for s in
                                                 np.atleast_1d(ds.scale.values)]


def test_one_valued_labels_are_the_labels_of_many_valued_ones(tmp_path):
    """Whatever a dimension's labels are (tuples, dict and array texts), a one-valued
    parameter of the same value has the same label."""
    f = exp(tmp_path, labelled)
    values = [(2, 3), {"a": 1}, np.array([2, 3])]
    many = f.map([{"shape": v} for v in values])
    assert many["shape"].values.tolist() == [(2, 3), "{'a': 1}", "array([2, 3])"]
    for i, value in enumerate(values):
        one = f.map([{"shape": value}, {"shape": value, "scale": 2.0}])
        assert one["shape"].ndim == 0
        assert one["shape"].values[()] == many["shape"].values[i]
        assert one.y.values.tolist() == [many.y.values[i] * s for s in (1.0, 2.0)]


def test_a_one_valued_tuple_coordinate_survives_save_and_open(tmp_path):
    ds = exp(tmp_path, g2).map(pj.grid(shape=[(2, 3)], scale=[1.0, 2.0]))
    pj.save(ds, tmp_path / "r.nc")
    back = pj.open(tmp_path / "r.nc")
    assert back["shape"].values[()] == (2, 3)
    assert type(back["shape"].values[()]) is tuple
    assert back.y.values.tolist() == ds.y.values.tolist()


def test_pj_load_gives_one_valued_tuples_as_a_scalar_coordinate_too(tmp_path):
    f = exp(tmp_path, g2)
    f.map(pj.grid(shape=[(2, 3)], scale=[1.0, 2.0]))
    ds = pj.load(f)
    assert ds["shape"].values[()] == (2, 3) and ds.y.values.tolist() == [6.0, 12.0]


# ------------------------------------------------ values equal as numbers
def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("sparse", [False, True])
def test_psets_equal_as_numbers_are_never_lost_silently(tmp_path, caplog, sparse):
    f = exp(tmp_path, sim)
    psets = [{"method": "a", "N": 1}, {"method": "a", "N": 2}, {"method": "a", "N": 1.0}]
    with caplog.at_level("WARNING", logger="pyjoule"):
        ds = f.map(psets, sparse=sparse)
    (msg,) = _warnings(caplog)  # one warning, naming the parameter and the values
    assert "'N'" in msg and "1 and 1.0" in msg and "f.table()" in msg
    assert "1 result is not in the Dataset" in msg
    # the cell labelled 1 holds the result of N=1 (the first pset), not of N=1.0
    y = ds.y.data.todense() if sparse else ds.y.values
    assert ds.N.values.tolist() == [1, 2] and y.tolist() == [1.0, 2.0]
    table = f.table()
    assert len(table) == 3 and sorted(table.y) == [1.0, 2.0, 10.0]


def test_true_and_1_are_different_psets_and_the_dataset_says_which_is_missing(tmp_path,
                                                                            caplog):
    f = exp(tmp_path, sim)
    with caplog.at_level("WARNING", logger="pyjoule"):
        ds = f.map([{"method": "a", "N": True}, {"method": "a", "N": 1}])
    (msg,) = _warnings(caplog)
    assert "'N'" in msg and "True and 1" in msg
    assert ds.y.item() == 100.0  # N=True came first
    assert len(f.table()) == 2


def test_pj_load_warns_about_psets_that_share_a_cell(tmp_path, caplog):
    f = exp(tmp_path, sim)
    f.map([{"method": "a", "N": 1}, {"method": "a", "N": 2}, {"method": "a", "N": 1.0}])
    caplog.clear()
    with caplog.at_level("WARNING", logger="pyjoule"):
        ds = pj.load(f)
    (msg,) = _warnings(caplog)
    assert msg.startswith("pj.load: 1 result is not in the Dataset")
    assert "1 and 1.0" in msg
    assert ds.sizes["N"] == 2 and np.count_nonzero(~np.isnan(ds.y.values)) == 2


def test_ints_next_to_floats_and_psets_that_differ_elsewhere_do_not_warn(tmp_path,
                                                                         caplog):
    f = exp(tmp_path, sim)
    with caplog.at_level("WARNING", logger="pyjoule"):
        ds = f.map(pj.grid(method=["a"], N=[0, 0.5, 2]))
        both = f.map([{"method": "a", "N": 1}, {"method": "b", "N": 1.0}])
    assert _warnings(caplog) == []
    assert ds.N.values.tolist() == [0.0, 0.5, 2.0] and ds.y.values.tolist() == [0, 5, 2]
    assert both.y.values.tolist() == [1.0, 10.0]


# ---------------------------------------------------- None next to other labels
def test_none_stays_none_next_to_dict_and_string_labels(tmp_path):
    f = exp(tmp_path, labelled)
    ds = f.map([{"shape": {"a": 1}}, {"shape": None}])
    assert ds["shape"].values.tolist() == ["{'a': 1}", None]
    assert ds.y.sel(shape=[None]).item() == -1.0
    g = exp(tmp_path, kw)
    ds = g.map([{"tag": "x"}, {"other": 1}])  # no 'tag': the label None
    assert ds["tag"].values.tolist() == ["x", None]
    assert pj.load(g)["tag"].values.tolist() == ["x", None]


# ------------------------------------------------------------ first-seen order
def grows(x):
    """Later psets return more keys, each dict listing its newest key first."""
    return {f"k{i}": float(x + i) for i in reversed(range(x + 1))}


def test_data_variables_follow_the_first_seen_order_of_returned_keys(tmp_path):
    f = exp(tmp_path, grows)
    want = [f"k{i}" for i in range(6)]
    assert list(f.map(pj.grid(x=range(6))).data_vars) == want
    assert list(pj.load(f).data_vars) == want
    assert [c for c in f.table().columns if c.startswith("k")] == want


def test_parameters_absent_from_early_psets_come_last_everywhere(tmp_path):
    f = exp(tmp_path, kw)
    psets = [{f"p{j}": i for j in reversed(range(i + 1))} for i in range(6)]
    want = [f"p{i}" for i in range(6)]
    ds = f.map(psets)
    assert list(ds.dims) == want
    assert list(pj.load(f).dims) == want
    assert [c for c in f.table().columns if c.startswith("p")] == want


_UNION_SCRIPT = """
import pyjoule as pj

def s(method, N, seed, rho=0.0, inflation=1.0):
    return {"y": 1.0}

def two(x):
    return {"a": 1.0, "b": 2.0} if x == 0 else {"b": 2.0, "a": 1.0}

f = pj.experiment(workers=0, progress=False)(s)
space = (pj.grid(method=["a", "b"], rho=[0.1, 0.2], N=[1, 2], seed=[0, 1])
         + pj.grid(method=["a", "b"], inflation=[1.1, 1.2], N=[1, 2], seed=[0, 1]))
dims = list(f.map(space).dims)
table = [c for c in f.table().columns if not c.startswith("_") and c != "y"]
g = pj.experiment(workers=0, progress=False)(two)
print(dims == table, list(g.map(pj.grid(x=[0, 1, 2])).data_vars) == ["a", "b"])
"""


@pytest.mark.slow
def test_table_columns_and_data_variables_do_not_depend_on_the_hash_seed(cache_dir):
    for seed in ("1", "3", "5"):
        env = {"PYTHONHASHSEED": seed, "PYJOULE_CACHE": str(cache_dir / seed)}
        out = run_script(cache_dir.parent, _UNION_SCRIPT, env=env).stdout.split()
        assert out == ["True", "True"], f"PYTHONHASHSEED={seed}: {out}"
