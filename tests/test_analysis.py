"""pj.stats, pj.best and pj.plot on ragged results, dense and sparse."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import sparse
import xarray as xr

import pyjoule as pj

matplotlib.use("Agg")
import matplotlib.pyplot as plt

NOISE = [0.0, 0.3, -0.3, 0.6]


def study(method, N, seed, inflation=None, rho=None):
    if method == "B" and rho == 0.5 and N == 20 and seed == 1:
        raise RuntimeError("diverged")  # a failed pset: a hole in the grid
    if method == "A":
        tuning = abs(inflation - 1.1)
    else:
        tuning = abs(rho - 0.3)
    return {"rmse": {"A": 1.0, "B": 0.8}[method] + 2 * tuning + 10 / N + NOISE[seed],
            "label": f"{method}{seed}"}


# each method with its own tuning parameter; one cell with an extra seed
SPACE = (pj.product(pj.grid(method="A", inflation=[1.0, 1.1, 1.2])
                    + pj.grid(method="B", rho=[0.1, 0.3, 0.5]),
                    pj.grid(N=[10, 20], seed=range(3)))
         + [dict(method="B", rho=0.3, N=10, seed=3)])


@pytest.fixture
def runs(cache_dir):
    """The study as a sparse and a dense Dataset, and its table."""
    f = pj.experiment(workers=0, errors="ignore")(study)
    return f.map(SPACE, sparse=True), f.map(SPACE, sparse=False), f.table()


def cell(ds, **labels):
    """The cell at these labels (``None`` labels too), as plain numbers."""
    at = {d: list(ds[d].values).index(v) for d, v in labels.items()}
    out = {}
    for name, var in ds.isel(at).data_vars.items():
        data = var.data.todense() if isinstance(var.data, sparse.COO) else var.data
        out[name] = np.asarray(data).item()
    return out


def _label(v):
    return None if isinstance(v, float) and np.isnan(v) else v


def _dense(da):
    return da.data.todense() if isinstance(da.data, sparse.COO) else np.asarray(da.data)


# ------------------------------------------------------------------------ stats
@pytest.mark.parametrize("backing", ["sparse", "dense"])
def test_stats_matches_a_groupby_of_the_table_per_cell(runs, backing):
    ds = runs[0] if backing == "sparse" else runs[1]
    assert isinstance(ds.rmse.data, sparse.COO) == (backing == "sparse")
    st = pj.stats(ds, over="seed")
    table = runs[2]
    groups = table.groupby(["method", "inflation", "rho", "N"], dropna=False).rmse
    expected = groups.agg(["mean", "std", "count", "sem"]).reset_index()
    assert len(expected) == 12
    for row in expected.itertuples():
        got = cell(st, method=row.method, inflation=_label(row.inflation),
                   rho=_label(row.rho), N=row.N)
        assert got["rmse_count"] == row.count
        assert got["rmse_mean"] == pytest.approx(row.mean)
        assert got["rmse_std"] == pytest.approx(row.std, nan_ok=True)
        assert got["rmse_sem"] == pytest.approx(row.sem, nan_ok=True)
    # the failed pset is not counted; the extra seed is
    assert cell(st, method="B", inflation=None, rho=0.5, N=20)["rmse_count"] == 2
    assert cell(st, method="B", inflation=None, rho=0.3, N=10)["rmse_count"] == 4
    # cells no pset reached: count 0, NaN statistics
    empty = cell(st, method="A", inflation=1.0, rho=0.1, N=10)
    assert empty["rmse_count"] == 0 and np.isnan(empty["rmse_mean"])
    assert int(_dense(st.rmse_count).sum()) == table.shape[0]
    assert st.rmse_count.dtype.kind == "i"


def test_stats_keeps_other_dims_coords_and_attrs_and_drops_strings(runs):
    st = pj.stats(runs[0], over="seed")
    assert set(st.data_vars) == {"rmse_mean", "rmse_std", "rmse_sem", "rmse_count"}
    assert list(st.rmse_mean.dims) == ["method", "inflation", "N", "rho"]
    assert "seed" not in st.coords and list(st.N.values) == [10, 20]
    assert st.attrs == runs[0].attrs and "func_id" in st.attrs


def test_stats_std_is_nan_with_one_value_and_sem_uses_the_count():
    ds = xr.Dataset({"y": (("x", "seed"), [[1.0, 2.0, 4.0], [5.0, np.nan, np.nan]])},
                    coords={"x": [0, 1], "seed": [0, 1, 2], "run": "r1"})
    st = pj.stats(ds, over="seed")
    assert st.y_count.values.tolist() == [3, 1]
    assert st.y_std.values[0] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert st.y_sem.values[0] == pytest.approx(np.std([1, 2, 4], ddof=1) / np.sqrt(3))
    assert np.isnan(st.y_std.values[1]) and st.y_mean.values[1] == 5.0
    assert st.run.item() == "r1"  # scalar coordinate kept


def test_stats_over_several_dims_and_of_dataarrays():
    ds = xr.Dataset({"y": (("a", "b", "c"), np.arange(8.0).reshape(2, 2, 2))})
    st = pj.stats(ds, over=["a", "c"])
    assert st.y_mean.dims == ("b",)
    assert st.y_mean.values.tolist() == [np.mean([0, 1, 4, 5]), np.mean([2, 3, 6, 7])]
    assert st.y_count.values.tolist() == [4, 4]
    named = pj.stats(ds.y, over="a")
    assert set(named.data_vars) == {"y_mean", "y_std", "y_sem", "y_count"}
    unnamed = pj.stats(xr.DataArray([[1.0, 3.0]], dims=("x", "seed")), over="seed")
    assert set(unnamed.data_vars) == {"mean", "std", "sem", "count"}
    assert unnamed["mean"].values.tolist() == [2.0]


@pytest.mark.slow
def test_huge_ragged_star_scan_is_reduced_without_the_dense_grid(cache_dir):
    # 10 parameters x 10 values x 3 seeds: the dense grid has 3e10 cells (240 GB)
    def scan(seed, **p):
        return sum((i + 1) * p[f"p{i}"] for i in range(10)) + seed

    f = pj.experiment(workers=0)(scan)
    center = {f"p{i}": 0 for i in range(10)}
    axes = {f"p{i}": list(range(10)) for i in range(10)}
    ds = f.map(pj.product(pj.star(center, **axes), pj.grid(seed=[0, 1, 2])))
    assert isinstance(ds.result.data, sparse.COO)
    st = pj.stats(ds, over="seed")
    assert isinstance(st.result_mean.data, sparse.COO)  # 1e10 cells, 91 with values
    assert isinstance(st.result_count.data, sparse.COO)
    assert st.result_count.data.fill_value == 0
    assert st.result_count.data.nnz == 91 and set(st.result_count.data.data) == {3}
    at = dict(center, p3=7)
    assert _dense(st.result_mean.sel(at)) == pytest.approx(4 * 7 + 1.0)
    assert _dense(st.result_std.sel(at)) == pytest.approx(1.0)
    b = pj.best(st, "result_mean", over=["p3", "p4"], mode="max")
    assert isinstance(b.result_mean.data, sparse.COO)
    top = {k: 0 for k in center if k not in ("p3", "p4")}
    assert _dense(b.result_mean.sel(top)) == pytest.approx(5 * 9 + 1.0)
    assert _dense(b.p3.sel(top)) == 0 and _dense(b.p4.sel(top)) == 9
    assert _dense(b.result_count.sel(top)) == 3


# ------------------------------------------------------------------------- best
@pytest.mark.parametrize("backing", ["sparse", "dense"])
def test_best_compares_each_method_at_its_best_tuning(runs, backing):
    ds = runs[0] if backing == "sparse" else runs[1]
    st = pj.stats(ds, over="seed")
    b = pj.best(st, "rmse_mean", over=["inflation", "rho"])
    assert set(b.data_vars) == {"rmse_mean", "rmse_std", "rmse_sem", "rmse_count",
                                "inflation", "rho"}
    assert b.rmse_mean.dims == ("method", "N")
    for method, label, tuned in (("A", "inflation", 1.1), ("B", "rho", 0.3)):
        other = "rho" if label == "inflation" else "inflation"
        for N in (10, 20):
            got = cell(b, method=method, N=N)
            at = {label: tuned, other: None}
            want = cell(st, method=method, N=N, **at)
            assert got[label] == tuned and got[other] is None
            for stat in ("mean", "std", "sem", "count"):
                assert got[f"rmse_{stat}"] == pytest.approx(want[f"rmse_{stat}"])
    assert cell(b, method="B", N=10)["rmse_count"] == 4  # error bars follow


def test_best_max_and_whole_slice_missing():
    ds = xr.Dataset({"acc": (("method", "lr"), [[0.5, 0.9, 0.7], [np.nan] * 3])},
                    coords={"method": ["A", "B"], "lr": [1, 2, 3]})
    for data in (ds, ds.copy(data={"acc": sparse.COO.from_numpy(ds.acc.values,
                                                                fill_value=np.nan)})):
        b = pj.best(data, "acc", over="lr", mode="max")
        assert _dense(b.acc).tolist()[0] == 0.9 and np.isnan(_dense(b.acc)[1])
        assert _dense(b.lr)[0] == 2 and np.isnan(_dense(b.lr)[1])
    full = pj.best(ds.isel(method=[0]), "acc", over="lr")
    assert full.lr.values.tolist() == [1] and full.lr.dtype.kind == "i"
    strings = ds.assign_coords(lr=["low", "mid", "high"])
    labels = pj.best(strings, "acc", over="lr").lr.values.tolist()
    assert labels[0] == "low" and np.isnan(labels[1])
    ties = xr.Dataset({"y": ("k", [2.0, 1.0, 1.0])}, coords={"k": ["a", "b", "c"]})
    assert pj.best(ties, "y", over="k").k.item() == "b"  # the first of equal values


# ----------------------------------------------------------------------- errors
def test_unknown_dim_or_var_names_the_valid_ones(runs):
    ds = runs[0]
    with pytest.raises(pj.OptionError, match=r"did you mean 'seed'") as exc:
        pj.stats(ds, over="seeds")
    assert "['method', 'inflation', 'N', 'seed', 'rho']" in str(exc.value)
    assert isinstance(exc.value, TypeError) and isinstance(exc.value, pj.PyjouleError)
    with pytest.raises(pj.OptionError, match=r"'rmse', 'label'.*did you mean 'rmse'"):
        pj.best(ds, "rmsee", over="seed")
    with pytest.raises(pj.OptionError, match="did you mean 'rho'"):
        pj.best(ds, "rmse", over=["rh"])
    with pytest.raises(pj.OptionError, match="'min' or 'max'"):
        pj.best(ds, "rmse", over="seed", mode="lowest")
    with pytest.raises(pj.OptionError, match=r"hue='methd'.*did you mean 'method'"):
        pj.plot(ds, "rmse", x="N", hue="methd")


def test_empty_datasets_raise_clear_errors(cache_dir):
    f = pj.experiment(workers=0)(study)
    empty = f.map([])
    all_missing = xr.Dataset({"y": ("seed", [np.nan, np.nan])})
    for ds in (empty, all_missing):
        with pytest.raises(pj.SpaceError, match="no data variables|no values"):
            pj.stats(ds, over="seed")
        with pytest.raises(pj.SpaceError):
            pj.best(ds, "y", over="seed")
        with pytest.raises(pj.SpaceError):
            pj.plot(ds, "y", x="seed")
    with pytest.raises(pj.OptionError, match="no numeric data variable"):
        pj.stats(xr.Dataset({"s": ("seed", np.array(["a", "b"], object))}), over="seed")


# ------------------------------------------------------------------------- plot
@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.slow
@pytest.mark.parametrize("backing", ["sparse", "dense"])
def test_plot_draws_mean_lines_with_sem_bands_per_hue(runs, backing):
    ds = runs[0] if backing == "sparse" else runs[1]
    ds = ds.sel({"method": "B", "inflation": None})
    ds = ds.isel(rho=[0, 1, 2])  # the None label of rho belongs to method A
    fig = pj.plot(ds, "rmse", x="rho", hue="N")
    (ax,) = fig.axes
    st = pj.stats(ds, over="seed")
    assert len(ax.lines) == 2  # one per N
    for line, N in zip(ax.lines, (10, 20)):
        np.testing.assert_allclose(line.get_xdata(), [0.1, 0.3, 0.5])
        np.testing.assert_allclose(line.get_ydata(), _dense(st.rmse_mean.sel(N=N)))
        assert line.get_label() == str(N)
    assert len(ax.collections) == 2  # fill_between bands
    band = ax.collections[1].get_paths()[0].vertices
    top = _dense(st.rmse_mean.sel(N=20)) + _dense(st.rmse_sem.sel(N=20))
    assert band[:, 1].max() == pytest.approx(top.max())
    assert ax.get_xlabel() == "rho" and ax.get_ylabel() == "rmse"


@pytest.mark.slow
def test_plot_facets_and_gaps_on_a_ragged_sparse_dataset(runs):
    ds = runs[0].sel(inflation=None)  # method A has no value there: gaps
    fig = pj.plot(ds, "rmse", x="rho", hue="N", col="method")
    assert len(fig.axes) == 2
    a, b = fig.axes
    assert a.get_title() == "method = A" and b.get_title() == "method = B"
    assert len(a.lines) == len(b.lines) == 2
    np.testing.assert_allclose(b.lines[0].get_xdata(), [0.1, 0.3, 0.5, np.nan])
    assert np.isnan(a.lines[0].get_ydata()).all()
    assert np.isfinite(b.lines[0].get_ydata()[:3]).all()
    grid = pj.plot(runs[0], "rmse", x="N", hue="method", col="inflation", row="rho")
    assert len(grid.axes) == 16


def test_plot_without_seeds_has_no_bands_and_draws_into_an_axes():
    ds = xr.Dataset({"y": (("x", "k"), [[1.0, 2.0], [np.nan, 3.0], [4.0, 5.0]])},
                    coords={"x": [1, 2, 3], "k": ["p", "q"]})
    _, ax = plt.subplots()
    fig = pj.plot(ds, "y", x="x", hue="k", ax=ax)
    assert fig is ax.figure and len(ax.lines) == 2 and not ax.collections
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, np.nan, 4.0])
    cats = pj.plot(ds.y, None, x="k", hue="x")  # string labels on x
    assert [t.get_text() for t in cats.axes[0].get_xticklabels()] == ["p", "q"]


def test_plot_asks_to_assign_dims_it_does_not_show(runs):
    with pytest.raises(pj.OptionError, match=r"\['inflation', 'rho'\].*hue=, col= or row="
                       r".*ds\.sel\(\{'inflation': \.\.\.\}\)"):  # sel(method=) is xarray's
        pj.plot(runs[0], "rmse", x="N", hue="method")
    with pytest.raises(pj.OptionError, match="twice"):
        pj.plot(runs[0], "rmse", x="N", hue="N")
