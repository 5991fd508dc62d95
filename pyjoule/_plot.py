"""``pj.plot``: line plots of a results Dataset with error bands from ``pj.stats``.

A sparse Dataset is densified only along the plotted slice; matplotlib is imported
when a plot is drawn.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._analysis import _as_dataset, _check_not_empty, _check_var, _dims_arg, _is_sparse, stats
from ._errors import OptionError


def plot(ds, var: str, x: str, hue: str | None = None, col: str | None = None,
         row: str | None = None, over: str | Sequence[str] | None = "seed", ax=None):
    """Line plots of the mean of ``var`` over ``over`` against ``x``, with error bands.

    One line per ``hue`` value, one panel per ``col`` × ``row`` value, and a shaded band
    of mean ± standard error (from ``pj.stats``). Missing points are gaps (each point
    has a marker, so a point between two gaps still shows). On a sparse Dataset only
    the plotted slice is made dense.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Results, dense or ``sparse.COO``-backed.
    var : str
        The data variable to plot (ignored for a DataArray).
    x : str
        The dimension on the horizontal axis.
    hue, col, row : str, optional
        Dimensions shown as line colours, panel columns and panel rows.
    over : str or list of str or None
        The dimension(s) to average; ``"seed"`` by default. Those the Dataset does
        not have are ignored: without any (e.g. a study with no seeds) the values are
        plotted as they are, with no band.
    ax : matplotlib.axes.Axes, optional
        Draw into this panel (without ``col``/``row``) instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (made with ``matplotlib.pyplot``, so ``plt.show()`` shows it; in a
        notebook it shows once when the cell ends, whether or not it is assigned).

    Raises
    ------
    pyjoule.OptionError
        Unknown ``var`` or dimension, a dimension named twice, or a dimension of
        ``var`` with several values that is neither plotted nor averaged (the message
        says to assign it to ``hue``/``col``/``row`` or to ``.sel`` one value first).
    pyjoule.SpaceError
        The Dataset has no data variables or no values.

    Examples
    --------
    >>> import xarray as xr, pyjoule as pj
    >>> ds = xr.Dataset({"rmse": (("N", "seed"), [[1.0, 3.0], [2.0, 2.5]])},
    ...                 coords={"N": [10, 20], "seed": [0, 1]})
    >>> fig = pj.plot(ds, "rmse", x="N")  # doctest: +SKIP
    >>> fig.savefig("rmse.png")  # doctest: +SKIP
    """
    import xarray as xr

    if isinstance(ds, xr.DataArray):
        var = ds.name if ds.name is not None else "_value"
    ds, _ = _as_dataset(ds, "plot")
    _check_not_empty(ds, "plot")
    _check_var(ds, var, "plot")
    da = ds[var]
    roles = {"x": x, "hue": hue, "col": col, "row": row}
    named = [d for d in roles.values() if d is not None]
    for role, dim in roles.items():
        if dim is not None:
            _dims_arg(dim, list(da.dims), "plot", role)
    if len(set(named)) < len(named):
        raise OptionError(f"pj.plot: a dimension is named twice in {roles}")
    over = [] if over is None else [over] if isinstance(over, str) else list(over)
    over = [d for d in over if d in da.dims and d not in named]
    _check_rest(da, named + over)
    sliced = ds[[var]].isel({d: 0 for d in da.dims if d not in named + over})
    if over:
        st = stats(sliced, over=over)
        mean, sem = st[f"{var}_mean"], st[f"{var}_sem"]
    else:
        mean, sem = sliced[var], None
    return _draw(ds, var, _densify(mean), None if sem is None else _densify(sem),
                 roles, ax)


def _check_rest(da, used: list[str]) -> None:
    rest = [d for d in da.dims if d not in used and da.sizes[d] > 1]
    if rest:
        raise OptionError(
            f"pj.plot: {da.name!r} also varies along {rest}, which are neither plotted "
            f"nor averaged: assign them to hue=, col= or row=, or pick one value first, "
            f"e.g. ds.sel({{{rest[0]!r}: ...}})")


def _densify(da):
    data = da.data.todense() if _is_sparse(da.data) else np.asarray(da.data)
    return da.copy(data=data.astype(np.float64))


def _axis_values(ds, dim: str | None) -> list:
    return [None] if dim is None else list(ds[dim].values)


def _positions(labels: np.ndarray) -> tuple[np.ndarray, list | None]:
    """Numbers for the x axis, and tick labels when the coordinate is not numeric."""
    if labels.dtype.kind in "iuf":
        return labels.astype(np.float64), None
    values = labels.tolist()
    if all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool)
           for v in values):
        return np.array([np.nan if v is None else v for v in values], float), None
    return np.arange(len(values), dtype=float), [str(v) for v in values]


_FIGURE_CLASS = None


def _figure_class():
    """A matplotlib ``Figure`` that a notebook shows once: pyplot's inline backend
    shows every figure a cell made when the cell ends, and IPython would show the one
    ``pj.plot(...)`` returns as the cell's value a second time. Whichever shows it
    first takes it out of pyplot's figures."""
    import matplotlib
    from matplotlib.figure import Figure

    from ._progress import _in_jupyter

    if "inline" not in matplotlib.get_backend() or not _in_jupyter():
        return Figure  # a script, a terminal, a GUI backend: as matplotlib does
    global _FIGURE_CLASS
    if _FIGURE_CLASS is None:
        import matplotlib.pyplot as plt

        class PlotFigure(Figure):
            def _ipython_display_(self):
                from IPython.core.pylabtools import print_figure
                from IPython.display import display

                display({"image/png": print_figure(self, "png")}, raw=True)
                # shown: out of pyplot's list, so the cell's end does not show it again
                if plt.fignum_exists(self.number):
                    plt.close(self)

        _FIGURE_CLASS = PlotFigure
    return _FIGURE_CLASS


def _draw(ds, var: str, mean, sem, roles: dict, ax):
    import matplotlib.pyplot as plt

    x, hue, col, row = roles["x"], roles["hue"], roles["col"], roles["row"]
    rows, cols = _axis_values(ds, row), _axis_values(ds, col)
    if ax is not None and len(rows) * len(cols) > 1:
        raise OptionError("pj.plot: ax= draws a single panel; drop col=/row= or ax=")
    if ax is None:
        fig, axes = plt.subplots(len(rows), len(cols), squeeze=False, sharex=True,
                                 sharey=True, figsize=(4 * len(cols), 3 * len(rows)),
                                 layout="constrained", FigureClass=_figure_class())
    else:
        fig, axes = ax.figure, np.array([[ax]])
    xs, ticks = _positions(ds[x].values)
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            panel = axes[i][j]
            at = {d: k for d, k in ((row, i), (col, j)) if d is not None}
            for k, hv in enumerate(_axis_values(ds, hue)):
                sel = dict(at, **({hue: k} if hue is not None else {}))
                _line(panel, xs, mean.isel(sel).transpose(x).values,
                      None if sem is None else sem.isel(sel).transpose(x).values,
                      None if hue is None else str(hv))
            title = " | ".join(f"{d} = {v}" for d, v in ((row, rv), (col, cv))
                               if d is not None)
            panel.set_title(title)
            if ticks is not None:
                panel.set_xticks(xs, ticks)
            panel.set_xlabel(x)
            panel.set_ylabel(var)
            if hue is not None:
                panel.legend(title=hue)
    return fig


def _line(panel, xs: np.ndarray, y: np.ndarray, sem: np.ndarray | None, label) -> None:
    (line,) = panel.plot(xs, y, marker="o", markersize=3, label=label)
    if sem is not None:
        panel.fill_between(xs, y - sem, y + sem, color=line.get_color(), alpha=0.25,
                           linewidth=0)
