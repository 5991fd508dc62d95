"""Save a results Dataset to a netCDF4 file and open it again, identical.

netCDF cannot hold what pyjoule's Datasets often contain, so some variables are
stored in another form and marked, and ``pj.open`` turns them back:

- a ``sparse.COO`` variable ``v`` becomes ``v__coords`` (ndim × nnz ints) and
  ``v__data`` (nnz values); the attribute ``pyjoule_sparse`` of ``v__data`` records
  the dims, shape and fill value. Nothing is made dense.
- an object or unicode array (labels mixing strings, numbers and ``None``, strings
  with NaN holes) is stored as one JSON text per element, its dtype in the attribute
  ``pyjoule_json``; tuples, dicts and numpy arrays inside are tagged so they come back
  as themselves.
- attributes netCDF cannot hold (``None``, bools, lists, dicts) travel as one JSON
  attribute ``pyjoule_attrs``.

The file's global attribute ``pyjoule_format`` marks all this; a netCDF file without
it opens as xarray would open it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

from ._errors import OptionError

FORMAT = 1
_FORMAT, _JSON, _SPARSE, _ATTRS, _LAYOUT = ("pyjoule_format", "pyjoule_json",
                                            "pyjoule_sparse", "pyjoule_attrs",
                                            "pyjoule_layout")


# ------------------------------------------------------------------ JSON values
def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, tuple):
        return {"tuple": [_jsonable(x) for x in v]}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[_jsonable(k), _jsonable(x)] for k, x in v.items()]}
    if isinstance(v, np.ndarray) and v.dtype.kind in "biufUO":
        return {"ndarray": _jsonable(v.tolist()), "dtype": v.dtype.str, "shape": v.shape}
    raise OptionError(f"pj.save cannot store a value of type {type(v).__name__} ({v!r}); "
                      f"convert it to numbers, strings, lists or numpy arrays first")


def _restore(obj: Any) -> Any:
    # the only JSON objects _jsonable writes are the tags
    if isinstance(obj, list):
        return [_restore(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if "tuple" in obj:
        return tuple(_restore(x) for x in obj["tuple"])
    if "dict" in obj:
        return {_restore(k): _restore(x) for k, x in obj["dict"]}
    items = _restore(obj["ndarray"])
    if np.dtype(obj["dtype"]).kind == "O":
        out = np.empty(len(items), object)
        out[:] = items
        return out.reshape(obj["shape"])
    return np.array(items, dtype=obj["dtype"]).reshape(obj["shape"])


def _encode_array(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    flat = [json.dumps(_jsonable(v)) for v in arr.ravel().tolist()]
    out = np.empty(len(flat), object)
    out[:] = flat
    shape: tuple[int, ...] = arr.shape
    return out.reshape(shape)


def _decode_array(arr: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    flat = [_restore(json.loads(s)) for s in np.asarray(arr, object).ravel().tolist()]
    shape: tuple[int, ...] = arr.shape
    if np.dtype(dtype).kind == "U":
        return np.array(flat, dtype=dtype).reshape(shape)
    out = np.empty(len(flat), object)
    out[:] = flat
    return out.reshape(shape)


def _split_attrs(attrs: dict[Any, Any]) -> dict[Any, Any]:
    """The attributes netCDF holds as they are, plus the others as one JSON text."""
    native: dict[Any, Any] = {}
    other: dict[Any, Any] = {}
    for key, value in attrs.items():
        plain = (isinstance(value, (str, int, float, np.integer, np.floating))
                 and not isinstance(value, (bool, np.bool_)))
        (native if plain else other)[key] = value
    if other:
        native[_ATTRS] = json.dumps(_jsonable(other))
    return native


def _join_attrs(attrs: dict[Any, Any]) -> dict[Any, Any]:
    attrs = dict(attrs)
    other = attrs.pop(_ATTRS, None)
    if other is not None:
        attrs.update(_restore(json.loads(other)))
    return attrs


# --------------------------------------------------------------------- save
def save(ds: xr.Dataset, path: str | os.PathLike[str]) -> None:
    """Write a results Dataset to a netCDF4 file that ``pj.open`` reads back identical.

    Sparse (``sparse.COO``) variables are stored as their coordinates and values, so a
    ragged study is never made dense; object coordinates (``None`` labels, labels
    mixing strings and numbers) and string variables are stored as JSON text, so they
    come back exactly. The file is written under a temporary name and then renamed:
    a reader never sees half a file.

    Parameters
    ----------
    ds : xarray.Dataset
        Results (``f.map``, ``pj.stats``, ``pj.best``, ...), with its attributes.
    path : str or os.PathLike
        The file to write (``.nc`` by convention); an existing file is replaced.

    Raises
    ------
    FileNotFoundError
        The folder of ``path`` does not exist.

    Examples
    --------
    >>> import os, tempfile, xarray as xr, pyjoule as pj
    >>> ds = xr.Dataset({"rmse": ("method", [0.2, 0.3])},
    ...                 coords={"method": ["A", None]}, attrs={"function": "sim"})
    >>> path = os.path.join(tempfile.mkdtemp(), "study.nc")
    >>> pj.save(ds, path)
    >>> pj.open(path).identical(ds)
    True
    """
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise OptionError(f"pj.save takes an xarray.Dataset, not {type(ds).__name__} "
                          f"(use da.to_dataset() for a DataArray)")
    target = Path(os.fspath(path))
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"pj.save: the folder {str(folder)!r} does not exist; "
                                f"create it first (os.makedirs) or choose another path")
    out: dict[str, xr.Variable] = {}
    for name, var in ds.variables.items():
        out.update(_encode_variable(str(name), var))
    layout = {"data_vars": [str(n) for n in ds.data_vars],
              "coords": [str(n) for n in ds.coords]}
    attrs = _split_attrs(dict(ds.attrs))
    attrs.update({_FORMAT: FORMAT, _LAYOUT: json.dumps(layout)})
    encoded = xr.Dataset(out, attrs=attrs)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        encoded.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _encode_variable(name: str, var: xr.Variable) -> dict[str, xr.Variable]:
    import xarray as xr

    from ._analysis import _coo, _is_sparse

    attrs = _split_attrs(dict(var.attrs))
    if _is_sparse(var.data):
        coo = _coo(var.data)
        fill = coo.fill_value.item() if isinstance(coo.fill_value, np.generic) \
            else coo.fill_value
        meta = {"name": name, "dims": list(var.dims), "shape": list(coo.shape),
                "fill_value": fill, "dtype": coo.dtype.str}
        attrs[_SPARSE] = json.dumps(meta)
        nnz, ndim = f"{name}__nnz", f"{name}__ndim"
        return {f"{name}__coords": xr.Variable((ndim, nnz), coo.coords.astype(np.int64)),
                f"{name}__data": xr.Variable((nnz,), coo.data, attrs=attrs)}
    data = np.asarray(var.data)
    if data.dtype.kind in "OU":
        attrs[_JSON] = data.dtype.str
        data = _encode_array(data)
    return {name: xr.Variable(var.dims, data, attrs=attrs)}


# --------------------------------------------------------------------- open
# pj.open mirrors xr.open_dataset
def open(path: str | os.PathLike[str]) -> xr.Dataset:  # noqa: A001
    """Read a file written by ``pj.save``, into memory, as the Dataset that was saved.

    Same dims, coordinates, dtypes, attributes and backing (dense numpy or
    ``sparse.COO``). The file is closed before returning, so it can be deleted or
    overwritten at once. A netCDF file not written by pyjoule opens as
    ``xarray.open_dataset`` would open it (loaded into memory).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a netCDF file.

    Examples
    --------
    >>> import os, tempfile, xarray as xr, pyjoule as pj
    >>> path = os.path.join(tempfile.mkdtemp(), "study.nc")
    >>> pj.save(xr.Dataset({"y": ("x", [1.0, 2.0])}, coords={"x": [0, 1]}), path)
    >>> pj.open(path).y.values.tolist()
    [1.0, 2.0]
    """
    import xarray as xr

    from ._xrimport import defer_duck_array_imports

    file = os.fspath(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"pj.open: no file {file!r}")
    defer_duck_array_imports()  # no dask (0.4 s) unless the process imported it
    try:
        with xr.open_dataset(file, engine="netcdf4") as raw:
            raw = raw.load()
    except (OSError, ValueError) as exc:
        raise ValueError(f"pj.open: {file!r} is not a netCDF file (pj.save writes "
                         f"netCDF4 files): {exc}") from exc
    if _FORMAT not in raw.attrs:
        return _without_encoding(raw)
    return _decode(raw)


def _decode(raw: xr.Dataset) -> xr.Dataset:
    import xarray as xr

    attrs = dict(raw.attrs)
    attrs.pop(_FORMAT)
    layout = json.loads(attrs.pop(_LAYOUT))
    variables: dict[str, xr.Variable] = {}
    for key, var in raw.variables.items():
        name = str(key)  # netCDF names are strs
        if _SPARSE in var.attrs:
            variables.update(_decode_sparse(raw, var))
        elif not (name.endswith("__coords") and f"{name[:-8]}__data" in raw.variables
                  and _SPARSE in raw[f"{name[:-8]}__data"].attrs):
            variables[name] = _decode_dense(var)
    return xr.Dataset({n: variables[n] for n in layout["data_vars"]},
                      coords={n: variables[n] for n in layout["coords"]},
                      attrs=_join_attrs(attrs))


def _decode_sparse(raw: xr.Dataset, var: xr.Variable) -> dict[str, xr.Variable]:
    import sparse
    import xarray as xr

    attrs = dict(var.attrs)
    meta = json.loads(attrs.pop(_SPARSE))
    name = meta["name"]
    coords = np.asarray(raw[f"{name}__coords"].values, np.int64)
    data = np.asarray(var.values, dtype=meta["dtype"])
    coo = sparse.COO(coords.reshape(len(meta["shape"]), -1), data,
                     shape=tuple(meta["shape"]), fill_value=meta["fill_value"],
                     has_duplicates=False)
    return {name: xr.Variable(meta["dims"], coo, attrs=_join_attrs(attrs))}


def _decode_dense(var: xr.Variable) -> xr.Variable:
    import xarray as xr

    attrs = dict(var.attrs)
    data = np.asarray(var.values)
    dtype = attrs.pop(_JSON, None)
    if dtype is not None:
        data = _decode_array(data, dtype)
    if data.dtype == object and data.ndim == 1:  # a label None stays None, not NaN
        from ._results import _object_index

        data = _object_index(data)
    return xr.Variable(var.dims, data, attrs=_join_attrs(attrs))


def _without_encoding(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding = {}
    return ds
