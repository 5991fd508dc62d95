"""Analysis helpers on top of xarray: ``pj.stats``, ``pj.best`` and ``pj.plot``.

They work on the Datasets ``f.map`` returns, dense or ``sparse.COO``-backed (fill value
NaN). A sparse variable is reduced from its COO coordinates and values, so the dense
grid of a ragged study is never built; a result is sparse again only when its own grid
is large next to the cells that hold a value (the rule of ``f.map(sparse="auto")``).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

from ._errors import OptionError, SpaceError
from ._results import DENSE_FACTOR, DENSE_MAX_BYTES

_STATS = ("mean", "std", "sem", "count")
OVER_ATTR = "pyjoule_over"  # on v_count: the dimensions pj.stats reduced, space-separated


# --------------------------------------------------------------- argument checks
def _did_you_mean(name: Any, choices: Sequence[Any]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _as_dataset(obj: Any, fn: str) -> tuple[xr.Dataset, bool]:
    """``(dataset, from_array)``: a DataArray becomes a one-variable Dataset."""
    import xarray as xr

    if isinstance(obj, xr.DataArray):
        return obj.to_dataset(name=obj.name if obj.name is not None else "_value"), True
    if isinstance(obj, xr.Dataset):
        return obj, False
    raise OptionError(f"pj.{fn} takes an xarray.Dataset (as f.map returns) or DataArray, "
                      f"not {type(obj).__name__}")


def _check_not_empty(ds: xr.Dataset, fn: str) -> None:
    if not ds.data_vars:
        raise SpaceError(f"pj.{fn}: the Dataset has no data variables (was anything "
                         f"computed? an empty space gives an empty Dataset)")
    if not any(_has_values(ds[v].data) for v in ds.data_vars):
        raise SpaceError(f"pj.{fn}: the Dataset has no values: every cell of "
                         f"{list(ds.data_vars)} is missing")


def _check_var(ds: xr.Dataset, var: Any, fn: str) -> None:
    if var not in ds.data_vars:
        names = list(ds.data_vars)
        raise OptionError(f"pj.{fn}: {var!r} is not a data variable of the Dataset; its "
                          f"data variables are {names}{_did_you_mean(var, names)}")


def _dims_arg(dims: Any, valid: Sequence[Hashable], fn: str, role: str,
              single: Sequence[str] = ()) -> list[str]:
    """The names ``dims`` (a name or a list), each a dimension or, since a parameter
    swept with one value is a scalar coordinate rather than a dimension, in
    ``single``."""
    names = [dims] if isinstance(dims, str) else list(dims)
    if not names:
        raise OptionError(f"pj.{fn}: {role}= names no dimension; choose from {list(valid)}")
    for name in names:
        if name not in valid and name not in single:
            also = f", and {list(single)} have one value" if single else ""
            raise OptionError(f"pj.{fn}: {role}={name!r} is not a dimension; the "
                              f"dimensions are {list(valid)}{also}"
                              f"{_did_you_mean(name, [*valid, *single])}")
    return names


def _single_valued(ds: xr.Dataset) -> list[str]:
    """Parameters swept with one value: scalar coordinates, not dimensions (API.md §4:
    a debug run with one seed, the last round of an iterative search)."""
    return [str(k) for k, c in ds.coords.items() if c.ndim == 0 and k not in ds.dims]


def _expand(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """``ds`` with those of ``names`` that are scalar coordinates made dimensions of
    length 1 (last, so the other dimensions keep their order), so that reducing over
    a parameter works the same whether it took one value or several."""
    single = [n for n in names if n not in ds.dims and n in ds.coords]
    for name in single:
        ds = ds.expand_dims(name, axis=-1)
    return ds


# ---------------------------------------------------------------- array helpers
def _is_sparse(data: Any) -> bool:
    # no sparse array can exist before sparse is imported: do not import it (numba)
    mod = sys.modules.get("sparse")
    return mod is not None and isinstance(data, mod.SparseArray)


def _coo(data: Any) -> Any:  # a sparse.COO (sparse has no type information)
    import sparse

    return data if isinstance(data, sparse.COO) else sparse.COO(data)


def _nan_fill(data: Any) -> bool:
    fill = data.fill_value
    return isinstance(fill, (float, np.floating)) and bool(np.isnan(fill))


def _has_values(data: Any) -> bool:
    if _is_sparse(data):
        if not _nan_fill(data):
            return bool(data.size > 0)
        return bool((~np.isnan(_coo(data).data.astype(float))).any())
    arr = np.asarray(data)
    if arr.dtype.kind in "fc":
        return bool((~np.isnan(arr)).any())
    if arr.dtype.kind == "O":
        return any(not _missing(v) for v in arr.ravel().tolist())
    return arr.size > 0


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and bool(np.isnan(v)))


def _entries(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """COO coordinates ``(ndim, n)`` and float values of the non-missing cells."""
    coo = _coo(data)
    values = coo.data.astype(np.float64)
    ok = ~np.isnan(values)
    return coo.coords[:, ok], values[ok]


def _use_sparse(from_sparse: bool, n_cells: int, shape: tuple[int, ...]) -> bool:
    """The rule of ``f.map(sparse="auto")``, applied to a result's grid."""
    size = int(np.prod(shape)) if shape else 1
    return bool(from_sparse and shape and (size > DENSE_FACTOR * max(n_cells, 1)
                                           or size * 8 > DENSE_MAX_BYTES))


def _place(cells: np.ndarray, values: np.ndarray, shape: tuple[int, ...], as_sparse: bool,
           fill: Any) -> Any:
    """``values`` at the flat ``cells`` (sorted, unique) of a grid of ``shape``."""
    if as_sparse:
        import sparse

        coords = np.array(np.unravel_index(cells, shape), np.int64).reshape(len(shape), -1)
        return sparse.COO(coords, values, shape=shape, fill_value=fill, sorted=True,
                          has_duplicates=False)
    out = np.full(int(np.prod(shape)) if shape else 1, fill,
                  object if values.dtype.kind == "O" else values.dtype)
    out[cells] = values
    return out.reshape(shape)


def _cell_index(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if not shape:
        return np.zeros(coords.shape[1], np.int64)
    index: np.ndarray = np.ravel_multi_index(tuple(coords), shape)
    return index


# ------------------------------------------------------------------------ stats
def stats(ds: xr.Dataset | xr.DataArray, over: str | Sequence[str] = "seed") -> xr.Dataset:
    """Mean, standard deviation, standard error and count over some dimensions.

    Missing cells (NaN, the fill value of holes and failed psets) are ignored, never
    counted, so each cell's error bar uses the seeds it really has.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Results, dense or ``sparse.COO``-backed (as ``f.map`` returns them).
    over : str or list of str
        The dimension(s) to reduce, e.g. ``"seed"``. A parameter swept with one value
        (a scalar coordinate, as ``f.map`` makes it) is reduced as a dimension of
        length 1: ``v_mean`` is the value, ``v_count`` 1, and ``v_std`` and ``v_sem``
        NaN, as in any cell with one value (one run says nothing of the spread).

    Returns
    -------
    xarray.Dataset
        For every numeric data variable ``v``: ``v_mean``; ``v_std``, the sample
        standard deviation (``ddof=1``; NaN where fewer than two values); ``v_sem``
        = ``v_std / sqrt(v_count)``; ``v_count`` (int). A DataArray gives the same
        four, named after it (``mean``, ``std``, ... if it has no name). The other
        dimensions, the coordinates that do not lie along ``over`` and the attributes
        are kept (``v_count`` has no ``units``, and its attribute ``pyjoule_over``
        names the ``over`` dimensions, for ``pj.plot``'s legend). Non-numeric
        variables are left out. A sparse variable is reduced without building its
        dense grid, and its statistics are sparse again (fill NaN, count fill 0) only
        when their grid has more than 8 cells per cell with a value, or would exceed
        256 MB; otherwise they are dense.

    Raises
    ------
    pyjoule.OptionError
        ``over`` names neither a dimension nor a scalar coordinate of the Dataset (the
        message lists them).
    pyjoule.SpaceError
        The Dataset has no data variables or no values.

    Examples
    --------
    >>> import numpy as np, xarray as xr, pyjoule as pj
    >>> ds = xr.Dataset({"rmse": (("N", "seed"), [[1.0, 3.0], [2.0, np.nan]])},
    ...                 coords={"N": [10, 20], "seed": [0, 1]})
    >>> s = pj.stats(ds, over="seed")
    >>> s.rmse_mean.values.tolist(), s.rmse_count.values.tolist()
    ([2.0, 2.0], [2, 1])
    >>> s.rmse_std.values.tolist()  # one seed at N=20: no spread
    [1.4142135623730951, nan]
    """
    import xarray as xr

    ds, from_array = _as_dataset(ds, "stats")
    _check_not_empty(ds, "stats")
    over = _dims_arg(over, list(ds.dims), "stats", "over", _single_valued(ds))
    ds = _expand(ds, over)
    numeric = [v for v in ds.data_vars if ds[v].dtype.kind in "biuf"]
    if not numeric:
        raise OptionError(f"pj.stats: no numeric data variable to reduce; the Dataset has "
                          f"{ {v: str(ds[v].dtype) for v in ds.data_vars} }")
    data_vars = {}
    for var in numeric:
        da = ds[var]
        keep = [d for d in da.dims if d not in over]
        for stat, data in zip(_STATS, _moments(da, over)):
            data_vars[f"{var}_{stat}"] = xr.Variable(keep, data, attrs=da.attrs)
        data_vars[f"{var}_count"].attrs = _count_attrs(da.attrs, over)
    if from_array and numeric == ["_value"]:  # an unnamed DataArray
        data_vars = {k.rsplit("_", 1)[1]: v for k, v in data_vars.items()}
    coords = {k: c.variable for k, c in ds.coords.items() if not set(c.dims) & set(over)}
    return xr.Dataset(data_vars, coords=coords, attrs=dict(ds.attrs))


def _count_attrs(attrs: dict[Any, Any], over: Sequence[str]) -> dict[Any, Any]:
    """A count has no units; it records what it counts (``OVER_ATTR``), so that a plot
    of the means after ``pj.best`` can still say "over 5 seeds"."""
    out = {k: v for k, v in attrs.items() if k not in ("units", "long_name")}
    return {**out, OVER_ATTR: " ".join(over)}


def _moments(da: xr.DataArray, over: Sequence[str]) -> tuple[Any, Any, Any, Any]:
    axes = tuple(da.dims.index(d) for d in over if d in da.dims)
    if _is_sparse(da.data) and _nan_fill(da.data):
        keep_axes = [i for i in range(da.ndim) if i not in axes]
        shape = tuple(da.shape[i] for i in keep_axes)
        return _sparse_moments(da.data, keep_axes, shape)
    data = da.data.todense() if _is_sparse(da.data) else np.asarray(da.data)
    return _dense_moments(data.astype(np.float64), axes)


def _dense_moments(x: np.ndarray, axes: tuple[int, ...]) -> tuple[Any, Any, Any, Any]:
    ok = ~np.isnan(x)
    count = ok.sum(axis=axes).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, x, 0.0).sum(axis=axes) / count
        dev = np.where(ok, x - np.expand_dims(mean, axes), 0.0)
        std = np.sqrt((dev ** 2).sum(axis=axes) / (count - 1))
    std = np.where(count >= 2, std, np.nan)
    return mean, std, std / np.sqrt(np.maximum(count, 1)), count


def _sparse_moments(data: Any, keep_axes: list[int],
                    shape: tuple[int, ...]) -> tuple[Any, Any, Any, Any]:
    coords, values = _entries(data)
    cells, inverse = np.unique(_cell_index(coords[keep_axes], shape), return_inverse=True)
    count = np.bincount(inverse, minlength=len(cells))
    mean = np.bincount(inverse, values, minlength=len(cells)) / np.maximum(count, 1)
    squares = np.bincount(inverse, (values - mean[inverse]) ** 2, minlength=len(cells))
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.where(count >= 2, np.sqrt(squares / (count - 1)), np.nan)
    sem = std / np.sqrt(np.maximum(count, 1))
    as_sparse = _use_sparse(True, len(cells), shape)
    return (_place(cells, mean, shape, as_sparse, np.nan),
            _place(cells, std, shape, as_sparse, np.nan),
            _place(cells, sem, shape, as_sparse, np.nan),
            _place(cells, count.astype(np.int64), shape, as_sparse, 0))


# ------------------------------------------------------------------------- best
def best(ds: xr.Dataset, var: str, over: str | Sequence[str],
         mode: str = "min") -> xr.Dataset:
    """The best value of ``var`` over some dimensions, and where it is reached.

    For a fair comparison of methods, each at its best tuning: reduce the tuning
    parameters with ``best``, after averaging the seeds with ``pj.stats``, e.g.
    ``pj.best(pj.stats(ds, over="seed"), "rmse_mean", over=["inflation"])``.

    Parameters
    ----------
    ds : xarray.Dataset
        Results, dense or ``sparse.COO``-backed, or the output of ``pj.stats``.
    var : str
        The data variable to optimise.
    over : str or list of str
        The dimensions to optimise over (the tuning parameters). A parameter swept
        with one value (a scalar coordinate) counts as a dimension of length 1: its
        value is the best, at its one label.
    mode : {"min", "max"}
        Whether the best value is the smallest or the largest.

    Returns
    -------
    xarray.Dataset
        On the remaining dimensions: ``var``, its best value (missing values ignored;
        NaN where the whole slice is missing); for each ``over`` dimension ``d`` a
        variable ``d`` holding the coordinate label at which the best is reached (NaN
        where the whole slice is missing: ``None`` is a label of its own, an absent
        parameter; ties go to the first label in the order of the ``over`` dims);
        and, when ``var`` is ``<base>_mean``, the variables ``<base>_std``,
        ``<base>_sem`` and ``<base>_count`` of the Dataset taken at the same place,
        so error bars follow. Other variables are dropped. From a sparse
        ``var`` the result is sparse only under the rule of ``pj.stats``, and
        non-numeric labels are always dense.

    Raises
    ------
    pyjoule.OptionError
        Unknown ``var``, ``over`` dimension or ``mode`` (the message lists the valid
        ones).
    pyjoule.SpaceError
        The Dataset has no data variables or no values.

    Examples
    --------
    >>> import numpy as np, xarray as xr, pyjoule as pj
    >>> ds = xr.Dataset({"rmse": (("method", "inflation"), [[0.3, 0.2, 0.4],
    ...                                                      [0.5, np.nan, 0.1]])},
    ...                 coords={"method": ["A", "B"], "inflation": [1.0, 1.1, 1.2]})
    >>> b = pj.best(ds, "rmse", over="inflation")
    >>> b.rmse.values.tolist(), b.inflation.values.tolist()
    ([0.2, 0.1], [1.1, 1.2])
    """
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise OptionError(f"pj.best takes an xarray.Dataset, not {type(ds).__name__} "
                          f"(use da.to_dataset() for a DataArray)")
    _check_not_empty(ds, "best")
    _check_var(ds, var, "best")
    if mode not in ("min", "max"):
        raise OptionError(f"pj.best: mode={mode!r}; use 'min' or 'max'")
    over = _dims_arg(over, list(ds[var].dims), "best", "over", _single_valued(ds))
    ds = _expand(ds, over)
    da = ds[var]
    keep = [d for d in da.dims if d not in over]
    da = da.transpose(*keep, *over)
    shape = tuple(da.sizes[d] for d in keep)
    carried = _carried(ds, var, da.dims)
    from_sparse = _is_sparse(da.data) and _nan_fill(da.data)
    if from_sparse:
        cells, full, values = _best_sparse(da.data, len(keep), shape, mode)
    else:
        cells, full, values = _best_dense(_dense(da.data), len(keep), mode)
    as_sparse = _use_sparse(from_sparse, len(cells), shape)
    out = {var: xr.Variable(keep, _place(cells, values, shape, as_sparse, np.nan),
                            attrs=da.attrs)}
    for name in carried:
        taken = _take(ds[name].transpose(*da.dims).data, full)
        fill = 0 if taken.dtype.kind in "iu" else np.nan
        out[name] = xr.Variable(keep, _place(cells, taken, shape, as_sparse, fill),
                                attrs=ds[name].attrs)
    for i, dim in enumerate(over):
        out[dim] = xr.Variable(keep, _labels(ds[dim].values, full[len(keep) + i], cells,
                                             shape, as_sparse))
    coords = {k: c.variable for k, c in ds.coords.items()
              if not set(c.dims) & set(over) and k not in over}
    return xr.Dataset(out, coords=coords, attrs=dict(ds.attrs))


def _carried(ds: xr.Dataset, var: str, dims: tuple[Hashable, ...]) -> list[str]:
    if not var.endswith("_mean"):
        return []
    base = var[: -len("_mean")]
    names = [f"{base}_{s}" for s in _STATS[1:]]
    return [n for n in names if n in ds.data_vars and set(ds[n].dims) == set(dims)]


def _dense(data: Any) -> np.ndarray:
    return data.todense() if _is_sparse(data) else np.asarray(data)


def _best_dense(x: np.ndarray, n_keep: int,
                mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells with a value, their full coordinates (``(ndim, n)``) and best values."""
    x = x.astype(np.float64)
    keep_shape, over_shape = x.shape[:n_keep], x.shape[n_keep:]
    flat = x.reshape(keep_shape + (-1,)) if over_shape else x[..., None]
    filled = np.where(np.isnan(flat), np.inf if mode == "min" else -np.inf, flat)
    idx = (filled.argmin(-1) if mode == "min" else filled.argmax(-1)).ravel()
    present = ~np.isnan(flat).all(-1).ravel()
    cells = np.flatnonzero(present)
    values = flat.reshape(-1, flat.shape[-1])[cells, idx[cells]]
    keep_coords = (np.array(np.unravel_index(cells, keep_shape), np.int64) if n_keep
                   else np.zeros((0, len(cells)), np.int64))
    over_coords = np.array(np.unravel_index(idx[cells], over_shape), np.int64)
    return cells, np.concatenate([keep_coords, over_coords.reshape(-1, len(cells))]), values


def _best_sparse(data: Any, n_keep: int, shape: tuple[int, ...],
                 mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coords, values = _entries(data)
    cell = _cell_index(coords[:n_keep], shape)
    # sort by cell, then by value (best first); ties keep COO order: the first label
    order = np.lexsort((values if mode == "min" else -values, cell))
    first = np.ones(len(order), bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    pick = order[first]
    return cell[pick], coords[:, pick], values[pick]


def _take(data: Any, full: np.ndarray) -> np.ndarray:
    """The values of ``data`` at the full coordinates ``full`` (``(ndim, n)``)."""
    if not _is_sparse(data):
        taken: np.ndarray = np.asarray(data)[tuple(full)]
        return taken
    coo = _coo(data)
    where = np.ravel_multi_index(tuple(full), coo.shape)
    loc = coo.linear_loc()
    order = np.argsort(loc, kind="stable")
    pos = np.minimum(np.searchsorted(loc[order], where), max(len(loc) - 1, 0))
    found = (loc[order][pos] == where) if len(loc) else np.zeros(len(where), bool)
    values = coo.data[order][pos] if len(loc) else np.zeros(len(where), coo.dtype)
    return np.where(found, values, coo.fill_value).astype(coo.dtype)


def _labels(coord: np.ndarray, codes: np.ndarray, cells: np.ndarray,
            shape: tuple[int, ...], as_sparse: bool) -> Any:
    labels = coord[codes]
    size = int(np.prod(shape)) if shape else 1
    if len(cells) == size:  # nothing missing: keep the coordinate's dtype
        return _place(cells, labels, shape, False, 0)
    if coord.dtype.kind in "iuf":
        return _place(cells, labels.astype(np.float64), shape, as_sparse, np.nan)
    # NaN, not None, marks a missing slice: None is a real label (an absent parameter)
    out = np.empty(len(cells), object)
    out[:] = labels.tolist()
    return _place(cells, out, shape, False, np.nan)
