"""The results page's data: what is cached per function, the Dataset of a function
version (``pj.load``'s), the plot choices read from a query string, the PNG, and the
downloads (CSV: the ``f.table()`` rows; netCDF: ``pj.save`` of the Dataset).

Drawing goes through ``pj.plot`` with ``ax=`` on a ``Figure`` made here, never through
pyplot (its global list of figures is not for server threads); matplotlib's own state
(fonts, text layout) is not thread-safe either, so one figure is drawn at a time.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _caches
from .._errors import PyjouleError

if TYPE_CHECKING:
    import xarray as xr

    from .._store import Store

NONE = ""  # the "(none)" option of the colour and average selects
AT = "at."  # query keys fixing a dimension that is neither plotted nor averaged
_DRAW = threading.Lock()
# process state, declared (pyjoule/_caches.py): a test empties it with reset_all()
_LOADED: OrderedDict[tuple, xr.Dataset] = _caches.declare(
    __name__, "_LOADED", OrderedDict())  # a few recent Datasets
_LOADED_MAX = 4
_DRAWN: OrderedDict[tuple, bytes] = _caches.declare(
    __name__, "_DRAWN", OrderedDict())  # the last few PNGs
_DRAWN_MAX = 16
_LOADED_LOCK = threading.Lock()


@dataclass
class Choice:
    """What to plot: the variable, the x, colour and averaged dimensions, and the
    index of the value shown for every other dimension with several values."""

    var: str
    x: str
    hue: str = NONE
    over: str = NONE
    at: dict[str, int] = field(default_factory=dict)

    def query(self) -> list[tuple[str, str]]:
        """The query string's pairs (for the plot's and the downloads' links)."""
        pairs = [("var", self.var), ("x", self.x), ("hue", self.hue), ("over", self.over)]
        return pairs + [(AT + d, str(i)) for d, i in self.at.items()]


# ------------------------------------------------------------------ what is cached
def versions(store: Store) -> list[dict]:
    """The function versions that hold results (``store.versions()`` rows), grouped
    by name as ``cache info`` groups them, each group newest first: ``[{"name",
    "versions": [...]}]``."""
    from .._repair import by_name

    out = []
    for name, vs in sorted(by_name(store.versions()).items()):
        vs = sorted(vs, key=lambda v: (v["newest"] or 0, v["last_used"] or 0), reverse=True)
        out.append({"name": name, "versions": vs})
    return out


def version(store: Store, func_id: str) -> dict | None:
    """The ``store.versions()`` row of ``func_id``, or None when it holds nothing."""
    for v in store.versions():
        if v["func_id"] == func_id and v["entries"]:
            return v
    return None


def dataset(store: Store, ver: dict) -> xr.Dataset:
    """``pj.load``'s Dataset of the version ``ver``; the last few are kept while the
    version's entries do not change (a run adding results makes a new one)."""
    from .._results import dataset_of_all

    key = _key(store, ver)
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    ds = dataset_of_all(store, ver["func_id"],
                        attrs={"function": ver["name"], "func_id": ver["func_id"]})
    with _LOADED_LOCK:
        _LOADED[key] = ds
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return ds


def _key(store: Store, ver: dict) -> tuple:
    return (str(store.root), ver["func_id"], ver["entries"], ver["segments"], ver["newest"])


# ------------------------------------------------------------------ choices
def plottable(ds: xr.Dataset) -> list[str]:
    """The numeric data variables (strings and objects cannot be plotted)."""
    return [str(n) for n, v in ds.data_vars.items() if v.dtype.kind in "biuf"]


def labels(ds: xr.Dataset, dim: str) -> list[str]:
    """The values of ``dim``'s coordinate as text (for the selects)."""
    values = ds[dim].values.tolist() if dim in ds.coords else range(ds.sizes[dim])
    return [str(v) for v in values]


def choose(ds: xr.Dataset, query: Mapping[str, str]) -> tuple[Choice, list[str]]:
    """The choice a query string asks for, with defaults for what it leaves out, and
    the messages for what it gets wrong (an unknown variable or dimension, one
    dimension in two roles, a bad index): each wrong field falls back to its default."""
    errors: list[str] = []
    names = plottable(ds)
    if not names:
        raise PyjouleError("no numeric result to plot: the function returns "
                           f"{list(map(str, ds.data_vars)) or 'nothing'}")
    var = query.get("var") or names[0]
    if var not in names:
        errors.append(f"unknown variable {var!r}: choose one of {names}"
                      if var not in ds.data_vars else
                      f"the variable {var!r} is not numeric: choose one of {names}")
        var = names[0]
    dims = [str(d) for d in ds[var].dims]
    if not dims:
        raise PyjouleError(f"nothing varies: {var!r} has one value (one pset cached)")
    roles: dict[str, str] = {}
    x = _default_x(ds, dims)
    for role, default in (("x", x), ("hue", _default_hue(ds, dims, x)),
                          ("over", "seed" if "seed" in dims else NONE)):
        asked = query.get(role)
        value = default if asked is None else asked
        if value != NONE and value not in dims:
            errors.append(f"unknown dimension {value!r} for {role}: {var!r} has {dims}")
            value = default
        if value != NONE and value in roles.values():
            if value == asked:
                errors.append(f"{value!r} is already plotted: pick another dimension "
                              f"for {role}")
            value = NONE
        roles[role] = value
    if roles["x"] == NONE:
        errors.append("choose a dimension for x")
        roles["x"] = _default_x(ds, dims)
    used = set(roles.values())
    at = {}
    for d in dims:
        if d in used or ds.sizes[d] < 2:
            continue
        raw = query.get(AT + d)
        if raw is None:
            at[d] = _fullest(ds[var], d)
        elif raw.isdigit() and int(raw) < ds.sizes[d]:
            at[d] = int(raw)
        else:
            errors.append(f"no value number {raw!r} of {d!r}")
            at[d] = _fullest(ds[var], d)
    return Choice(var, roles["x"], roles["hue"], roles["over"], at), errors


def _default_x(ds: xr.Dataset, dims: list[str]) -> str:
    """The longest dimension that is not a seed (the first of the longest)."""
    candidates = [d for d in dims if d != "seed"] or dims
    if not candidates:
        return NONE
    return max(candidates, key=lambda d: ds.sizes[d])


def _default_hue(ds: xr.DataArray | xr.Dataset, dims: list[str], x: str) -> str:
    """The shortest other dimension of 2 to 10 values, not a seed: the methods a study
    compares, one line each (none when there is no such dimension)."""
    candidates = [d for d in dims if d not in (x, "seed") and 2 <= ds.sizes[d] <= 10]
    return min(candidates, key=lambda d: ds.sizes[d]) if candidates else NONE


def _fullest(da: xr.DataArray, dim: str) -> int:
    """The index along ``dim`` with the most values of ``da`` (in a ragged study most
    values of a dimension have holes: the default shows the one with data)."""
    from .._analysis import _entries, _is_sparse

    axis = da.dims.index(dim)
    if _is_sparse(da.data):
        coords, _ = _entries(da.data)
        counts = np.bincount(coords[axis], minlength=da.shape[axis])
    else:
        ok = ~np.isnan(np.asarray(da.data, dtype=np.float64))
        counts = ok.sum(axis=tuple(i for i in range(ok.ndim) if i != axis))
    return int(np.argmax(counts))


# ------------------------------------------------------------------ outputs
def png_for(store: Store, ver: dict, ds: xr.Dataset, choice: Choice) -> bytes:
    """:func:`png`, kept for the few last choices: the page draws the plot to check it
    (and say why not), and the ``<img>`` it links to is then not drawn again."""
    key = (*_key(store, ver), tuple(choice.query()))
    with _LOADED_LOCK:
        if key in _DRAWN:
            return _DRAWN[key]
    body = png(ds, choice)
    with _LOADED_LOCK:
        _DRAWN[key] = body
        while len(_DRAWN) > _DRAWN_MAX:
            _DRAWN.popitem(last=False)
    return body


def png(ds: xr.Dataset, choice: Choice) -> bytes:
    """The plot of ``choice`` as a PNG: mean (over ``choice.over``) with its error
    band, as ``pj.plot`` draws it; the fixed values in the title. Raises
    ``OptionError``/``SpaceError`` (with ``pj.plot``'s message) for what it refuses."""
    from matplotlib.figure import Figure

    from .._figure import LEGEND_WIDTH, PANEL_SIZE
    from .._plot import plot

    sel = ds.isel(choice.at)
    with _DRAW:
        fig = Figure(figsize=(PANEL_SIZE[0] * 1.4 + LEGEND_WIDTH, PANEL_SIZE[1] * 1.4),
                     layout="constrained")
        ax = fig.add_subplot()
        plot(sel, choice.var, x=choice.x, hue=choice.hue or None, over=choice.over or None,
             ax=ax)
        if choice.at:
            fixed = ", ".join(f"{d} = {sel[d].values.item()}" for d in choice.at)
            fig.suptitle(fixed, parse_math=False)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=100)
    return out.getvalue()


def csv(store: Store, func_id: str) -> bytes:
    """The cached psets of the version as CSV: ``f.table()``'s columns, one row each."""
    from .._results import table_for

    return table_for(store, func_id).to_csv(index=False).encode()


def netcdf(ds: xr.Dataset) -> bytes:
    """``pj.save`` of the Dataset (sparse stays sparse; ``pj.open`` reads it back)."""
    from .._export import save

    with tempfile.TemporaryDirectory(prefix="pyjoule-ui-") as tmp:  # 0700
        path = os.path.join(tmp, "data.nc")
        save(ds, path)
        with open(path, "rb") as f:
            return f.read()


def filename(name: str, suffix: str) -> str:
    """A download's file name: the function's last name part, safe in a header."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.rsplit(".", 1)[-1])
    return f"{stem or 'results'}.{suffix}"


def describe(ds: xr.Dataset) -> dict[str, Any]:
    """Sizes for the page: dimensions with their lengths, variables."""
    return {"dims": {str(d): int(n) for d, n in ds.sizes.items()},
            "vars": [str(v) for v in ds.data_vars]}
