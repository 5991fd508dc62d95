"""Issue #15 items 1, 5, 6: ``ignore=``, the values users put in spaces (DataFrames,
callables, ``pd.NA``, duplicates) and the table as a faithful record, end to end
through the real pool and cache."""

from __future__ import annotations

import os

import pytest

import pyjoule as pj

from conftest import calls, run_script
from conftest import log_call as _log_call


# ------------------------------------------------------------------ ignore=
def write_out(x, out_dir, verbose=False):
    _log_call(f"{x}-{verbose}")
    with open(os.path.join(out_dir, f"x{x}.txt"), "w") as fh:
        fh.write(str(x))
    return {"y": 2 * x, "verbose": verbose}


def test_ignored_arguments_are_passed_but_not_keyed(cache_dir, call_log, tmp_path):
    f = pj.experiment(workers=2, ignore=["verbose", "out_dir"])(write_out)
    out = tmp_path / "out"
    out.mkdir()
    ds = f.map(pj.grid(x=[1, 2], out_dir=str(out), verbose=True))
    assert sorted(calls(call_log)) == ["1-True", "2-True"]  # the function got them
    assert bool(ds.verbose.sel(x=1))
    assert sorted(p.name for p in out.iterdir()) == ["x1.txt", "x2.txt"]
    assert list(ds.dims) == ["x"] and "verbose" not in ds.coords and "out_dir" not in ds.coords
    # other values of the ignored arguments: the same psets, all cached
    other = tmp_path / "other"
    other.mkdir()
    again = f.map(pj.grid(x=[1, 2], out_dir=str(other), verbose=False))
    assert len(calls(call_log)) == 2 and not list(other.iterdir())
    assert bool(again.verbose.sel(x=2))  # the cached result of the first call
    assert f(x=1, out_dir="/nonexistent") == {"y": 2, "verbose": True}
    table = f.table()
    # parameter columns: x only (``verbose`` here is the returned value's column)
    assert [c for c in table.columns if not c.startswith("_")] == ["x", "y", "verbose"]
    assert pj.load(f).sizes == {"x": 2}


def test_psets_differing_only_in_ignored_arguments_run_once(cache_dir, call_log, tmp_path):
    f = pj.experiment(workers=2, ignore=["verbose"])(write_out)
    space = [dict(x=5, out_dir=str(tmp_path), verbose=v) for v in (True, False, True)]
    with pytest.warns(UserWarning, match=r"2 of the 3 psets .*differ only in the ignored"):
        ds = f.map(space)
    assert calls(call_log) == ["5-True"]  # the first one's value was passed
    assert int(ds.y) == 10


def test_unknown_ignored_name_fails_at_decoration():
    with pytest.raises(pj.OptionError, match="did you mean 'verbose'"):
        pj.experiment(ignore=["verbos"])(write_out)
    with pytest.raises(pj.OptionError, match="list of argument names"):
        pj.experiment(ignore=[1])(write_out)
    f = pj.experiment(ignore="verbose")(write_out)  # one name
    assert f._signature.ignore == {"verbose"}


# ---------------------------------------------------------- callables as values
def relu(x):
    return max(x, 0.0)


class Doubler:
    def __call__(self, x):
        return 2 * x


def apply(act, x):
    _log_call(f"{getattr(act, '__name__', 'obj')}:{x}")
    return act()(x) if isinstance(act, type) else act(x)


def test_functions_and_classes_are_values_labelled_by_name(cache_dir, call_log):
    import math

    f = pj.experiment(workers=2)(apply)
    acts = [relu, math.fabs, Doubler, lambda x: x, lambda x: -x]
    ds = f.map(pj.grid(act=acts, x=[-1.0, 3.0]))
    labels = list(ds.act.values)
    assert labels[:3] == ["test_day_one.relu", "math.fabs", "test_day_one.Doubler"]
    assert labels[3].startswith("<lambda>@") and labels[4].startswith("<lambda>@")
    assert labels[3] != labels[4]  # two lambdas, two labels
    assert ds.result.sel(act=labels[4], x=3.0) == -3.0  # the function got the object
    assert ds.result.sel(act="test_day_one.Doubler", x=-1.0) == -2.0
    assert len(calls(call_log)) == 10
    f.map(pj.grid(act=acts, x=[-1.0, 3.0]))
    assert len(calls(call_log)) == 10  # all cached
    table = f.table()
    assert set(table["act"]) == set(labels)
    # pj.load sees the psets in the order they were computed: 2 workers race, so the
    # labels are the same, their order may differ (first seen = first computed)
    assert sorted(pj.load(f).act.values) == sorted(labels)


def test_callable_values_are_keyed_by_their_code_across_processes(tmp_path):
    source = """
        import pyjoule as pj
        from pyjoule._hashing import pset_id

        def helper(x):
            return x + {k}

        print(pset_id({{"f": helper, "g": lambda x: x, "h": len}}))
    """
    ids = [run_script(tmp_path, source.format(k=k)).stdout.strip() for k in (1, 1, 2)]
    assert ids[0] == ids[1]  # stable across processes
    assert ids[0] != ids[2]  # an edited helper is another value


def test_bound_methods_are_not_values(cache_dir):
    f = pj.experiment(workers=0)(apply)
    with pytest.raises(TypeError, match="bound method"):
        f(act=[].append, x=1)


# ------------------------------------------------------------------ DataFrames
def model(method, n=None, lr=0.1, shape=(1,), flag=False, tag="a"):
    _log_call(f"{method}")
    return {"score": len(method) + (n or 0)}


def test_a_dataframe_is_a_space_also_inside_product(cache_dir, call_log):
    import pandas as pd

    df = pd.DataFrame({"method": ["EnKF", "PF", "PF"],
                       "n": pd.array([10, None, 30], dtype="Int64"),
                       "lr": [0.5, float("nan"), 0.25]})
    f = pj.experiment(workers=2)(model)
    ds = f.map(df)
    assert len(calls(call_log)) == 3
    assert list(ds.n.values) == [10, 30, None]  # ints stay ints, the NA is None
    assert float(ds.score.sel({"method": "PF", "n": 30, "lr": 0.25})) == 32
    ds = f.map(pj.product(df, pj.grid(flag=[False, True])))
    assert ds.sizes["flag"] == 2 and len(calls(call_log)) == 6  # 3 cached
    both = pj.grid(method="KF") + df.iloc[:1]
    assert both == [{"method": "KF"}, {"method": "EnKF", "n": 10, "lr": 0.5}]
    assert type(df.iloc[:1] + pj.grid(method="KF")) is pj.Space


def test_pd_na_is_the_missing_value_none(cache_dir, call_log):
    import pandas as pd

    f = pj.experiment(workers=0)(model)
    f(method="x", n=None)
    f(method="x", n=pd.NA)
    assert calls(call_log) == ["x"]


# --------------------------------------------------------- the table's record
def test_the_table_is_a_faithful_record(cache_dir, call_log):
    f = pj.experiment(workers=2)(model)
    space = (pj.grid(method=["b", "a"], n=[42, None, 43])
             + [{"method": "c", "shape": (2, 3), "flag": True, "tag": "z", "lr": 1}]
             + pj.grid(method="d", lr=[0.5, 2.0]))
    f.map(space)
    assert len(calls(call_log)) == 9
    table = f.table()
    assert table["_key"].is_unique and len(table) == 9
    assert sorted(map(repr, table["n"])) == ["42", "42", "43", "43"] + ["None"] * 5
    assert table["n"].dtype == object and {type(v) for v in table["n"]} == {int, type(None)}
    lr = dict(zip(table["method"] + table["lr"].map(repr), table["lr"]))
    assert type(lr["c1"]) is int and type(lr["d0.5"]) is float  # 1 stays 1, not 1.0
    assert table["flag"].dtype == bool and table["tag"].tolist().count("z") == 1
    assert tuple(table.loc[table.method == "c", "shape"].item()) == (2, 3)
    # the parameter columns give every pset back: nothing is recomputed
    params = ["method", "n", "lr", "shape", "flag", "tag"]
    f.map(table[params])
    assert len(calls(call_log)) == 9
    assert f.table(table[params])["_key"].tolist() == table["_key"].tolist()
    # rows of f.table(space) follow the space, in its order
    mine = [{"method": "d", "lr": 2.0}, {"method": "a", "n": 43}, {"method": "b", "n": 42}]
    assert f.table(mine)[["method", "n", "lr"]].values.tolist() == [
        ["d", None, 2.0], ["a", 43, 0.1], ["b", 42, 0.1]]


def test_table_rows_follow_first_computation(cache_dir):
    f = pj.experiment(workers=0)(model)
    for method in ["z", "y", "x"]:
        f(method=method)
    f.map([{"method": m} for m in ["w", "x", "v"]])
    assert f.table()["method"].tolist() == ["z", "y", "x", "w", "v"]
    assert f.table()["n"].tolist() == [None] * 5


def hang_once(x, marker, act=abs):
    if not os.path.exists(marker):
        open(marker, "w").close()
        import time

        time.sleep(120)  # killed by the timeout; the retry finds the marker
    return act(x)


@pytest.mark.slow
def test_a_retry_passes_ignored_arguments_and_functions_again(cache_dir, tmp_path):
    f = pj.experiment(workers=1, timeout=2, retries=1, ignore=["marker"])(hang_once)
    marker = str(tmp_path / "marker")
    ds = f.map([{"x": -3, "marker": marker, "act": lambda v: 10 * v}])
    assert int(ds.result) == -30
    assert "marker" not in f.table().columns


def test_psets_of_functions_hash_alike_on_the_fast_path_and_the_walk():
    import math
    from collections import OrderedDict

    from pyjoule._hashing import pset_ids

    psets = [{"a": 1, "act": relu, "cls": Doubler, "b": "é"}, {"f": math.fabs},
             {"x": None, "g": lambda v: v}, {"m": [].append}]
    for pset in psets[:3]:  # OrderedDict is not a dict: it takes the general walk
        assert pset_ids([pset]) == pset_ids([OrderedDict(pset)])
    with pytest.raises(TypeError, match="bound method"):
        pset_ids(psets[3:])


def test_array_parameters_keep_their_dtype_in_the_table(cache_dir, call_log):
    import numpy as np

    f = pj.experiment(workers=0)(model)
    space = [{"method": "m", "shape": np.array([1, 2], dtype=np.int32)},
             {"method": "m", "shape": np.array([1, 2], dtype=np.int64)}]
    f.map(space)
    table = f.table()
    assert [a.dtype for a in table["shape"]] == [np.int32, np.int64]
    f.map(table[["method", "shape"]])
    assert len(calls(call_log)) == 2  # both found again
