"""Drawing for ``pj.plot``: a figure that can go in a paper as it is.

One legend per figure, outside the panels (never one per panel, never over the data),
that says what the band is and over how many values; panels that share their axes
(they show one variable); axis labels with units; ordered colours for ordered hues;
ragged grids where an empty panel says so and its neighbours carry the tick labels.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _caches
from ._errors import OptionError

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

#: ``(fewest, most, over)``: how many values the points of a band average, over what
Band = tuple[int, int, tuple[str, ...]]
#: ``(mean, sem or None, y axis label)`` of one plotted variable
Layer = tuple["xr.DataArray", "xr.DataArray | None", str]
#: a legend entry: its handle (a line, or a band and its line) and label
Entry = tuple["Artist | tuple[Artist, ...]", str]

BAND_ALPHA = 0.25
GREY = "0.45"
PANEL_SIZE = (3.6, 2.7)  # inches per panel: two columns fit a page width
LEGEND_WIDTH = 1.9  # inches added for the legend beside the panels


def draw(ds: xr.Dataset, layers: list[Layer], roles: dict[str, str | None],
         ax: Axes | None, *, scales: dict[str, str], band: Band | None,
         legend: bool) -> Figure | SubFigure:
    """The figure: for each layer ``(mean, sem or None, y label)`` of a variable, the
    mean (and ``mean ± sem``) against ``roles["x"]``. Several variables take a row of
    panels each, with a y axis of their own; one variable shares its y axis across
    all panels."""
    x, hue, col, row = roles["x"], roles["hue"], roles["col"], roles["row"]
    cols, hues = _axis_values(ds, col), _axis_values(ds, hue)
    if len(layers) > 1:  # (title, layer, selection) per row of panels
        rows: list[tuple[Any, Layer, dict[Hashable, int]]] = \
            [(None, layer, {}) for layer in layers]
    else:
        rows = [(rv, layers[0], {} if row is None else {row: i})
                for i, rv in enumerate(_axis_values(ds, row))]
    xs, ticks = _positions(ds[x].values)
    if scales["x"] != "linear" and ticks is not None:
        raise OptionError(f"pj.plot: xscale={scales['x']!r} needs numbers on the x axis; "
                          f"the labels of {x!r} are {ticks}")
    colors = _colors(hues)
    with_legend = legend and (hue is not None or band is not None)
    fig, axes = _panels(ax, len(rows), len(cols), with_legend, sharey=len(layers) == 1)
    empty = np.zeros(axes.shape, bool)
    for i, (rv, (mean, sem, _), at_row) in enumerate(rows):
        for j, cv in enumerate(cols):
            panel = axes[i][j]
            at = dict(at_row, **({col: j} if col is not None else {}))
            for k, (color, hv) in enumerate(zip(colors, hues)):
                sel = dict(at, **({hue: k} if hue is not None else {}))
                _line(panel, xs, mean.isel(sel).transpose(x).values,
                      None if sem is None else sem.isel(sel).transpose(x).values, color,
                      None if hue is None else str(hv))
            empty[i][j] = np.isnan(mean.isel(at).values).all()
            if i == 0 or len(layers) == 1:  # several variables: columns titled once
                panel.set_title(" | ".join(f"{d} = {v}" for d, v in ((row, rv), (col, cv))
                                           if d is not None))
            _scales(panel, xs, ticks, scales)
    ylabels = [label for _, (_, _, label), _ in rows]
    if ax is None:
        _mark_empty(axes, empty)
        _label_edges(axes, empty, axis_label(ds[x], x), ylabels)
    else:
        _label_given(ax, axis_label(ds[x], x), ylabels[0])
    if legend:
        entries: list[Entry] = \
            [(_hue_handle(c), str(h)) for c, h in zip(colors, hues)] if hue else []
        _legend(fig, ax, entries, None if hue is None else axis_label(ds[hue], hue), band)
    return fig


def axis_label(coord: xr.DataArray, name: Hashable) -> str:
    """The xarray convention: ``long_name`` (or the name) and ``[units]``."""
    label = str(coord.attrs.get("long_name", name))
    units = coord.attrs.get("units")
    return f"{label} [{units}]" if units not in (None, "") else label


def _axis_values(ds: xr.Dataset, dim: str | None) -> list[Any]:
    return [None] if dim is None else list(ds[dim].values)


def _positions(labels: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Numbers for the x axis, and tick labels when the coordinate is not numeric."""
    if labels.dtype.kind in "iuf":
        return labels.astype(np.float64), None
    values = labels.tolist()
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
           for v in values):
        return np.array([np.nan if v is None else v for v in values], float), None
    return np.arange(len(values), dtype=float), [str(v) for v in values]


def _colors(hues: list[Any]) -> list[Any]:  # matplotlib colours
    """Distinct colours for categories; an ordered colour map for three or more numbers,
    so that the reader sees N=10, 20, 40 as a progression."""
    numeric = all(isinstance(h, (int, float, np.integer, np.floating))
                  and not isinstance(h, (bool, np.bool_)) for h in hues)
    if len(hues) < 3 or not numeric:
        return [f"C{k % 10}" for k in range(len(hues))]
    from matplotlib import colormaps

    # viridis without its last, pale yellow sixth: every line stays readable on white
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.82, len(hues))]


def _panels(ax: Axes | None, n_rows: int, n_cols: int, with_legend: bool,
            sharey: bool) -> tuple[Figure | SubFigure, np.ndarray]:
    if ax is not None:
        if n_rows * n_cols > 1:
            raise OptionError("pj.plot: ax= draws a single panel; drop col=/row= (and "
                              "plot one variable) or ax=")
        return ax.figure, np.array([[ax]])
    import matplotlib.pyplot as plt

    width = PANEL_SIZE[0] * n_cols + (LEGEND_WIDTH if with_legend else 0)
    # one variable: one y axis for all panels; several: one per variable (its row)
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, sharex=True,
                             sharey=True if sharey else "row",
                             figsize=(width, PANEL_SIZE[1] * n_rows),
                             layout="constrained", FigureClass=_figure_class())
    return fig, axes


def _line(panel: Axes, xs: np.ndarray, y: np.ndarray, sem: np.ndarray | None, color: Any,
          label: str | None) -> None:
    # labelled, so that a user's own ax.legend() still works on a panel
    panel.plot(xs, y, marker="o", markersize=3.5, linewidth=1.5, color=color, label=label)
    if sem is not None:
        panel.fill_between(xs, y - sem, y + sem, color=color, alpha=BAND_ALPHA,
                           linewidth=0)


def _scales(panel: Axes, xs: np.ndarray, ticks: list[str] | None,
            scales: dict[str, str]) -> None:
    panel.set_xscale(scales["x"])
    panel.set_yscale(scales["y"])
    if ticks is not None:
        panel.set_xticks(xs, ticks)
        return
    values = np.unique(xs[np.isfinite(xs)])
    if scales["x"] == "log" and 1 < len(values) <= 12 and (values > 0).all():
        # log ticks at powers of ten would leave most swept values unlabelled
        from matplotlib.ticker import FuncFormatter, NullFormatter

        panel.set_xticks(values)
        panel.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        panel.xaxis.set_minor_formatter(NullFormatter())


def _mark_empty(axes: np.ndarray, empty: np.ndarray) -> None:
    """A panel of a ragged grid with no value says so, without axes to misread."""
    if empty.all():
        return
    for panel in axes[empty]:
        panel.set_axis_off()
        panel.text(0.5, 0.5, "no values", transform=panel.transAxes, ha="center",
                   va="center", color=GREY)


def _label_edges(axes: np.ndarray, empty: np.ndarray, xlabel: str,
                 ylabels: list[str]) -> None:
    """Axis labels and tick labels on the outer panels that have values: the lowest of
    each column, the leftmost of each row (an empty panel does not hide them)."""
    n_rows, n_cols = axes.shape
    shown = ~empty if not empty.all() else np.ones_like(empty)
    for j in range(n_cols):
        rows = np.flatnonzero(shown[:, j])
        if len(rows):
            bottom = axes[rows[-1]][j]
            bottom.xaxis.set_tick_params(which="both", labelbottom=True)
            bottom.set_xlabel(xlabel)
    for i in range(n_rows):
        cols = np.flatnonzero(shown[i])
        if len(cols):
            left = axes[i][cols[0]]
            left.yaxis.set_tick_params(which="both", labelleft=True)
            left.set_ylabel(ylabels[i])


def _label_given(ax: Axes, xlabel: str, ylabel: str) -> None:
    """Labels on the user's panel, except along an axis it shares with a panel that
    carries them (``plt.subplots(sharey=True)`` shows them on the outer panels only)."""
    spec = ax.get_subplotspec()
    inner_x = spec is not None and not spec.is_last_row()
    inner_y = spec is not None and not spec.is_first_col()
    if not (inner_x and len(ax.get_shared_x_axes().get_siblings(ax)) > 1):
        ax.set_xlabel(xlabel)
    if not (inner_y and len(ax.get_shared_y_axes().get_siblings(ax)) > 1):
        ax.set_ylabel(ylabel)


def band_text(band: Band) -> str:
    """"mean ± 1 s.e.m. over 8 seeds" from ``(fewest, most, over)``: a range where
    points average different numbers of values, and "over 1 seed" honestly."""
    lo, hi, over = band
    amount = f"{hi}" if lo == hi else f"{lo}–{hi}"
    if len(over) == 1:
        what = _plural(over[0], hi)
    else:
        what = f"{_plural('pset', hi)} ({' × '.join(over)})"
    if hi < 2:
        return f"mean over {amount} {what}\n(no error band)"
    return f"mean ± 1 s.e.m.\nover {amount} {what}"


def _plural(name: str, n: int) -> str:
    if n == 1:
        return name
    return name + ("es" if name.endswith(("s", "x", "ch", "sh")) else "s")


def _hue_handle(color: Any) -> Artist:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, marker="o", markersize=3.5, linewidth=1.5)


def _band_handle(band: Band) -> Artist | tuple[Artist, ...]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    line = Line2D([], [], color=GREY, marker="o", markersize=3.5, linewidth=1.5)
    if band[1] < 2:
        return line
    return (Patch(color=GREY, alpha=BAND_ALPHA, linewidth=0), line)


def _legend(fig: Figure | SubFigure, ax: Axes | None, entries: list[Entry],
            title: str | None, band: Band | None) -> None:
    """The figure's one legend, outside the panels on the right: the hue values, then
    what the band is. Drawing into a given ``ax`` merges with the legend an earlier
    ``pj.plot`` left in that figure (each label once, the counts' ranges joined), so
    two panels of one figure still have one legend."""
    old = getattr(fig, "_pyjoule_legend", None) if ax is not None else None
    if old is not None:
        legend, old_entries, old_title, old_band = old
        legend.remove()
        known = {label for _, label in entries}
        entries = [e for e in old_entries if e[1] not in known] + entries
        title = title if old_title in (None, title) else f"{old_title} / {title}"
        band = join_bands(old_band, band)
    shown = entries + ([(_band_handle(band), band_text(band))] if band else [])
    if not shown:
        return
    from matplotlib.legend_handler import HandlerTuple

    # a (band, line) tuple is a handle too (HandlerTuple), which matplotlib's type
    # stubs do not allow: handles are Any here
    handles: list[Any] = [h for h, _ in shown]
    labels = [label for _, label in shown]
    style: dict[str, Any] = dict(title=title, frameon=False, alignment="left",
                 handler_map={tuple: HandlerTuple(ndivide=1)})
    if _constrained(fig):
        legend = fig.legend(handles, labels, loc="outside right upper", **style)
    else:  # no room can be made: beside the rightmost panel, outside it
        legend = _rightmost(fig).legend(handles, labels, loc="upper left",
                                        bbox_to_anchor=(1.02, 1), borderaxespad=0,
                                        **style)
    setattr(fig, "_pyjoule_legend", (legend, entries, title, band))  # noqa: B010


def join_bands(a: Band | None, b: Band | None) -> Band | None:
    if a is None or b is None:
        return a or b
    over = a[2] if a[2] == b[2] else tuple(dict.fromkeys(a[2] + b[2]))
    return min(a[0], b[0]), max(a[1], b[1]), over


def _constrained(fig: Figure | SubFigure) -> bool:
    """Whether the figure uses constrained layout, which makes room for a legend at
    ``loc="outside ..."`` (elsewhere that legend lands on a panel). A user's figure is
    not switched to it: that breaks figures with colorbars made before."""
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    root = fig.get_figure(root=True)  # the layout is the whole figure's
    return isinstance(root.get_layout_engine(), ConstrainedLayoutEngine)


def _rightmost(fig: Figure | SubFigure) -> Axes:
    """The panel furthest right (the top one of those), where a legend beside it
    covers no other panel."""
    def edge(ax: Axes) -> tuple[float, float]:
        box = ax.get_position()
        return round(box.x1, 3), box.y1

    return max(fig.axes, key=edge)


_FIGURE_CLASS: type[Figure] | None = None


def _figure_class() -> type[Figure]:
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
            def _ipython_display_(self) -> None:
                from IPython.core.pylabtools import print_figure
                from IPython.display import display

                display({"image/png": print_figure(self, "png")}, raw=True)
                # shown: out of pyplot's list, so the cell's end does not show it again
                if plt.fignum_exists(self.number):
                    plt.close(self)

        _FIGURE_CLASS = PlotFigure
    return _FIGURE_CLASS


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_FIGURE_CLASS", _FIGURE_CLASS,
                reset=lambda: globals().update(_FIGURE_CLASS=None))
