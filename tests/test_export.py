"""pj.save / pj.open round-trip results exactly; f.table() goes to CSV as it is."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import sparse
import xarray as xr

import pyjoule as pj


def study(method, seed, lr=None, depth=None, flag=False):
    x = seed + (lr if isinstance(lr, float) else 0) + (depth or 0) + flag
    return {"rmse": 0.1 * x, "steps": seed * 10, "ok": seed % 2 == 0,
            "name": f"{method}-{seed}", "trace": np.arange(3.0) * x}


def assert_same(back, ds):
    """Identical, with the same dtypes and the same backing (dense or sparse)."""
    xr.testing.assert_identical(back, ds)
    assert list(back.data_vars) == list(ds.data_vars)
    for name, var in ds.variables.items():
        assert back[name].dtype == var.dtype, name
        assert type(back[name].data) is type(var.data), name
        if isinstance(var.data, sparse.COO):
            assert back[name].data.fill_value is not None
            assert np.isnan(back[name].data.fill_value) == np.isnan(var.data.fill_value)
    for name in ds.coords:
        assert [type(v) for v in back[name].values.ravel().tolist()] == \
            [type(v) for v in ds[name].values.ravel().tolist()], name


def roundtrip(ds, folder):
    path = folder / "results.nc"
    pj.save(ds, path)
    back = pj.open(path)
    os.unlink(path)  # loaded into memory: the file is no longer needed
    return back


@pytest.fixture
def f(cache_dir):
    return pj.experiment(workers=0)(study)


UNION = pj.product(pj.grid(method="A", lr=[0.1, 0.2])
                   + pj.grid(method="B", depth=[1, 2, 3]), pj.grid(seed=range(3)))


@pytest.mark.slow
@pytest.mark.parametrize("backing", [True, False])
def test_union_of_tuning_grids_roundtrips(f, weird_tmp_path, backing):
    ds = f.map(UNION, sparse=backing)
    assert isinstance(ds.rmse.data, sparse.COO) == backing
    assert None in ds.lr.values.tolist()  # an absent parameter's label
    assert ds.trace.ndim == 5 and ds.name.dtype == object
    back = roundtrip(ds, weird_tmp_path)
    assert_same(back, ds)
    assert back.attrs["function"] == ds.attrs["function"] and back.attrs["func_id"]
    st = pj.stats(ds, over="seed")
    assert_same(roundtrip(st, weird_tmp_path), st)
    b = pj.best(st, "rmse_mean", over=["lr", "depth"])
    assert_same(roundtrip(b, weird_tmp_path), b)


def test_star_scan_with_scalar_and_none_coordinates_roundtrips(f, weird_tmp_path):
    ds = f.map(pj.star(dict(method="A", lr=0.1, seed=0), lr=[0.1, 0.2, 0.3],
                       seed=[0, 1, 2]), sparse=True)
    assert ds.method.item() == "A" and ds.depth.item() is None  # scalar coordinates
    assert_same(roundtrip(ds, weird_tmp_path), ds)


def test_mixed_string_number_and_bool_labels_roundtrip(f, weird_tmp_path):
    space = (pj.grid(method="A", lr=[0.5, "auto"], seed=[0, 1], flag=[True, False])
             + pj.grid(method=3, depth=[2], seed=[0, 1]))
    ds = f.map(space)
    assert ds.lr.values.tolist() == [0.5, "auto", None]
    assert ds.flag.dtype == bool
    ds.attrs.update(note=None, tags=["a", 1], on=True)
    back = roundtrip(ds, weird_tmp_path)
    assert_same(back, ds)
    assert back.attrs["note"] is None and back.attrs["tags"] == ["a", 1]
    assert back.attrs["on"] is True
    labels = np.empty(5, object)
    labels[:] = ["A", 3, None, (1, 2), 2.5]
    made = xr.Dataset({"y": ("k", np.arange(5.0)), "s": ("k", labels.copy())},
                      coords={"k": labels})
    assert_same(roundtrip(made, weird_tmp_path), made)


def test_string_labels_next_to_none_keep_the_none(f, weird_tmp_path):
    ds = f.map(pj.grid(method="A", lr="auto", seed=[0, 1]) + pj.grid(method="B", seed=[0, 1]))
    assert ds.lr.values.tolist() == ["auto", None]
    back = roundtrip(ds, weird_tmp_path)
    assert back.lr.values.tolist() == ["auto", None]  # pandas would make it NaN
    assert_same(back, ds)


def test_huge_sparse_dataset_is_saved_without_densifying(cache_dir, weird_tmp_path):
    def scan(**p):
        return sum(p.values())

    g = pj.experiment(workers=0)(scan)
    ds = g.map(pj.star({f"p{i}": 0 for i in range(10)},
                       **{f"p{i}": list(range(10)) for i in range(10)}))
    assert ds.result.size == 10 ** 10 and isinstance(ds.result.data, sparse.COO)
    path = weird_tmp_path / "star.nc"
    pj.save(ds, path)
    assert path.stat().st_size < 200_000  # 91 values, not 80 GB
    back = pj.open(path)
    assert_same(back, ds)
    pj.save(ds.isel(p0=[0, 1]), path)  # overwrite the file it was read from
    assert pj.open(path).sizes["p0"] == 2


def test_a_plain_netcdf_file_opens_as_xarray_would(weird_tmp_path):
    path = weird_tmp_path / "plain.nc"
    xr.Dataset({"y": ("x", [1.0, 2.0])}, coords={"x": [3, 4]}).to_netcdf(path)
    back = pj.open(path)
    assert back.y.values.tolist() == [1.0, 2.0] and back.x.values.tolist() == [3, 4]
    os.unlink(path)


def test_bad_paths_and_files_give_clear_errors(weird_tmp_path):
    ds = xr.Dataset({"y": ("x", [1.0])})
    with pytest.raises(FileNotFoundError, match="folder .*missing.* does not exist"):
        pj.save(ds, weird_tmp_path / "missing" / "r.nc")
    with pytest.raises(FileNotFoundError, match="no file"):
        pj.open(weird_tmp_path / "nothing.nc")
    text = weird_tmp_path / "notes.nc"
    text.write_text("not a netCDF file\n")
    with pytest.raises(ValueError, match="is not a netCDF file"):
        pj.open(text)
    with pytest.raises(pj.OptionError, match="xarray.Dataset"):
        pj.save(ds.y, weird_tmp_path / "r.nc")
    assert sorted(p.name for p in weird_tmp_path.iterdir()) == ["notes.nc"]  # no temp left


def test_table_goes_to_csv_and_reads_back(cache_dir, weird_tmp_path):
    def scalar(method, seed, lr=None, **extra):
        return {"rmse": seed + (lr or 0) + 0.5, "name": f"{method}{seed}",
                "ok": seed % 2 == 0, "steps": seed * 10}

    g = pj.experiment(workers=0)(scalar)
    g.map(pj.product(pj.grid(method="A", lr=[0.1, 0.2]) + pj.grid(method="B"),
                     pj.grid(seed=[0, 1])) + [dict(method="C", seed=0, tag=3)])
    table = g.table()
    bookkeeping = ["_key", "_func_id", "_status", "_runtime_s", "_host", "_started",
                   "_finished", "_run_id"]
    assert set(bookkeeping) <= set(table.columns)
    assert table.tag.isna().sum() == 6  # the None label of an absent parameter
    path = weird_tmp_path / "table.csv"
    table.to_csv(path, index=False)
    back = pd.read_csv(path, parse_dates=["_started", "_finished"])
    # CSV keeps no types: the parameter columns' None (object columns) read back as NaN
    expected = table.astype({"lr": float, "tag": float})
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["_started"].dt.tz is not None
