"""``pj.plot``: line plots of a results Dataset with error bands from ``pj.stats``.

This module checks the arguments and prepares the data (means, standard errors and
counts of the plotted slice); ``_figure`` draws. A sparse Dataset is densified only
along the plotted slice; matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ._analysis import (
    OVER_ATTR,
    _as_dataset,
    _check_not_empty,
    _check_var,
    _did_you_mean,
    _dims_arg,
    _expand,
    _is_sparse,
    _single_valued,
    stats,
)
from ._errors import OptionError

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from ._figure import Band

# matplotlib's scales that need no extra argument ("function" needs two functions)
SCALES = ("linear", "log", "symlog", "logit", "asinh")


# without ax=, a new Figure; with one, the figure that holds it (a SubFigure, if so)
@overload
def plot(ds: xr.Dataset | xr.DataArray, var: str | Sequence[str], x: str,
         hue: str | None = None, col: str | None = None, row: str | None = None,
         over: str | Sequence[str] | None = "seed", ax: None = None,
         xscale: str = "linear", yscale: str = "linear", legend: bool = True) -> Figure: ...
@overload
def plot(ds: xr.Dataset | xr.DataArray, var: str | Sequence[str], x: str,
         hue: str | None = None, col: str | None = None, row: str | None = None,
         over: str | Sequence[str] | None = "seed", ax: Axes | None = None,
         xscale: str = "linear", yscale: str = "linear",
         legend: bool = True) -> Figure | SubFigure: ...
def plot(ds: xr.Dataset | xr.DataArray, var: str | Sequence[str], x: str,
         hue: str | None = None, col: str | None = None, row: str | None = None,
         over: str | Sequence[str] | None = "seed", ax: Axes | None = None,
         xscale: str = "linear", yscale: str = "linear",
         legend: bool = True) -> Figure | SubFigure:
    """Line plots of the mean of ``var`` over ``over`` against ``x``, with error bands.

    One line per ``hue`` value, one panel per ``col`` × ``row`` value, and a shaded band
    of mean ± 1 standard error (from ``pj.stats``). The figure has one legend, outside
    the panels: the ``hue`` values, and what the band is, with the real number of
    values behind it (e.g. "mean ± 1 s.e.m. over 5 seeds", or "over 3–5 seeds" when
    some psets failed). Panels share the x axis, and the y axis where they show the
    same variable; axis labels are the names (or ``long_name`` attributes) with the
    ``units`` attribute in brackets. Missing points are gaps (each point has a marker,
    so a point between two gaps still shows); a panel with no value at all says so. On
    a sparse Dataset only the plotted slice is made dense.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Results, dense or ``sparse.COO``-backed.
    var : str or list of str
        The data variable to plot (ignored for a DataArray). Several variables take a
        row of panels each (instead of ``row=``), each row with a y axis of its own.
    x : str
        The dimension on the horizontal axis.
    hue, col, row : str, optional
        Dimensions shown as line colours, panel columns and panel rows. Numeric
        ``hue`` values with three or more labels get the ordered colours of a
        sequential colour map, others distinct colours.
    over : str or list of str or None
        The dimension(s) to average; ``"seed"`` by default. Those the Dataset does
        not have are ignored: without any (e.g. a study with no seeds) the values are
        plotted as they are, with no band, unless ``var`` is ``<base>_mean`` next to
        ``<base>_sem`` and ``<base>_count`` (the output of ``pj.stats``, or of
        ``pj.best`` on it): then the band is mean ± ``<base>_sem``, and the legend
        counts ``<base>_count``. ``over=None`` draws no band. Any of these names
        (``x``, ``hue``, ..., ``over``) may be a parameter swept with one value (a
        scalar coordinate): it counts as a dimension of length 1, so one seed gives
        the line "mean over 1 seed" with no band.
    ax : matplotlib.axes.Axes, optional
        Draw into this panel (without ``col``/``row``) instead of a new figure. The
        legend is then the figure's one legend, merged with the one an earlier
        ``pj.plot`` drew into the same figure: beside the panels in a figure made with
        ``layout="constrained"``, else just right of the rightmost panel (leave room,
        or save with ``bbox_inches="tight"``).
    xscale, yscale : {"linear", "log", "symlog", "logit", "asinh"}
        The axis scales. On a log scale with few ``x`` values, the ticks are the
        values.
    legend : bool
        ``False`` draws no legend (e.g. to make your own from ``fig.axes``).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (made with ``matplotlib.pyplot``, so ``plt.show()`` shows it; in a
        notebook it shows once when the cell ends, whether or not it is assigned).

    Raises
    ------
    pyjoule.OptionError
        Unknown ``var``, dimension or scale, a dimension named twice, a log scale on
        labels that are not numbers, or a dimension of ``var`` with several values
        that is neither plotted nor averaged (the message says to assign it to
        ``hue``/``col``/``row`` or to ``.sel`` one value first).
    pyjoule.SpaceError
        The Dataset has no data variables or no values.

    Examples
    --------
    >>> import xarray as xr, pyjoule as pj
    >>> ds = xr.Dataset({"rmse": (("N", "seed"), [[1.0, 3.0], [2.0, 2.5]])},
    ...                 coords={"N": [10, 20], "seed": [0, 1]})
    >>> fig = pj.plot(ds, "rmse", x="N", xscale="log")  # doctest: +SKIP
    >>> fig.savefig("rmse.png")  # doctest: +SKIP
    """
    import xarray as xr

    chosen: Any = var  # a DataArray's name may be any hashable
    if isinstance(ds, xr.DataArray):
        chosen = ds.name if ds.name is not None else "_value"
    ds, _ = _as_dataset(ds, "plot")
    _check_not_empty(ds, "plot")
    names: list[Any] = [chosen] if isinstance(chosen, str) or chosen is None \
        else list(chosen)
    for name in names:
        _check_var(ds, name, "plot")
    scales = {"x": _check_scale(xscale, "xscale"), "y": _check_scale(yscale, "yscale")}
    if not isinstance(legend, bool):
        raise OptionError(f"pj.plot: legend={legend!r}; use True or False")
    roles = {"x": x, "hue": hue, "col": col, "row": row}
    if len(names) > 1 and row is not None:
        raise OptionError(f"pj.plot: the variables {names} take the rows of panels; drop "
                          f"row={row!r} (use col=) or plot one variable")
    if len(set(names)) < len(names) or not names:
        raise OptionError(f"pj.plot: var= names {names}; name each variable once")
    named = [d for d in roles.values() if d is not None]
    if len(set(named)) < len(named):
        raise OptionError(f"pj.plot: a dimension is named twice in {roles}")
    wanted = [] if over is None else [over] if isinstance(over, str) else list(over)
    layers = [_layer(ds, name, roles, wanted) for name in names]
    ds = _expand(ds, named)  # x, hue, ... swept with one value: an axis of length 1
    from ._figure import draw, join_bands

    bands = [band for *_, band in layers]
    return draw(ds, [layer[:3] for layer in layers], roles, ax, scales=scales,
                band=functools.reduce(join_bands, bands), legend=legend)


def _layer(ds: xr.Dataset, var: str, roles: dict[str, str | None],
           wanted: list[str]) -> tuple[xr.DataArray, xr.DataArray | None, str, Band | None]:
    """``(mean, sem or None, y axis label, band counts or None)`` of one variable."""
    from ._figure import axis_label

    named = [d for d in roles.values() if d is not None]
    single = _single_valued(ds)
    for role, dim in roles.items():
        if dim is not None:
            _dims_arg(dim, list(ds[var].dims), "plot", role, single)
    over = [d for d in wanted if (d in ds[var].dims or d in single) and d not in named]
    ds = _expand(ds, named + over)
    da = ds[var]
    _check_rest(da, named + over)
    carried = _carried(ds, var) if wanted and not over else []
    sliced = ds[[var, *carried]].isel({d: 0 for d in da.dims if d not in named + over})
    if over:
        st = stats(sliced, over=over)
        mean, sem = st[f"{var}_mean"], st[f"{var}_sem"]
        band = band_counts(_densify(st[f"{var}_count"]).values, over)
    elif carried:  # pj.best's output: the error bars of the best cells
        mean, sem, count = (sliced[n] for n in (var, *carried))
        over_names = count.attrs.get(OVER_ATTR, "").split() or ["value"]
        band = band_counts(_densify(count).values, over_names)
    else:
        mean, sem, band = sliced[var], None, None
    # "rmse" for rmse_mean with its error bars: the legend says "mean"
    label = axis_label(da, var[: -len("_mean")] if carried else var)
    return _densify(mean), None if sem is None else _densify(sem), label, band


def _carried(ds: xr.Dataset, var: str) -> list[str]:
    """``[<base>_sem, <base>_count]`` when ``var`` is ``<base>_mean`` of ``pj.stats``
    (or of ``pj.best``, which carries them along) and they lie along the same dims."""
    base = var[: -len("_mean")] if var.endswith("_mean") else None
    names = [f"{base}_sem", f"{base}_count"]
    if base and all(n in ds.data_vars and set(ds[n].dims) == set(ds[var].dims)
                    for n in names):
        return names
    return []


def _check_scale(scale: str, role: str) -> str:
    if scale not in SCALES:
        raise OptionError(f"pj.plot: {role}={scale!r} is not a scale; use one of "
                          f"{list(SCALES)}{_did_you_mean(scale, SCALES)}")
    return scale


def _check_rest(da: xr.DataArray, used: list[str]) -> None:
    rest = [d for d in da.dims if d not in used and da.sizes[d] > 1]
    if rest:
        raise OptionError(
            f"pj.plot: {da.name!r} also varies along {rest}, which are neither plotted "
            f"nor averaged: assign them to hue=, col= or row=, or pick one value first, "
            f"e.g. ds.sel({{{rest[0]!r}: ...}})")


def _densify(da: xr.DataArray) -> xr.DataArray:
    data = da.data.todense() if _is_sparse(da.data) else np.asarray(da.data)
    dense: xr.DataArray = da.copy(data=data.astype(np.float64))
    return dense


def band_counts(count: np.ndarray, over: Sequence[str]) -> Band | None:
    """``(fewest, most, over)``: how many values the plotted points average (they differ
    where psets failed or a ragged study has more seeds in some cells), for the legend."""
    present = count[count > 0]
    if not present.size:
        return None
    return int(present.min()), int(present.max()), tuple(over)
