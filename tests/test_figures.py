"""pj.plot's figures as a reader sees them: the docs' figures built from real sweeps,
checked through matplotlib's objects (legends, labels, scales, shared axes), not
pixels; and a parameter swept with one value through pj.stats, pj.best and pj.plot."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import xarray as xr

import pyjoule as pj

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """docs/figures.py run into a temporary folder, with its own cache."""
    spec = importlib.util.spec_from_file_location("docs_figures", DOCS / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("img")
    built = module.build(out, out / "cache")
    yield out, built
    plt.close("all")


def legends(fig) -> tuple[list, list]:
    """The figure's legends and the legends of its panels."""
    return fig.legends, [ax.get_legend() for ax in fig.axes if ax.get_legend()]


def legend_texts(fig) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def inside_a_panel(fig, legend) -> bool:
    """Whether the legend's box overlaps a panel that shows data."""
    fig.canvas.draw()
    box = legend.get_window_extent()
    return any(box.overlaps(ax.get_window_extent()) for ax in fig.axes if ax.axison)


# ------------------------------------------------------------------ the docs' figures
@pytest.mark.slow
def test_the_docs_figures_are_built_and_committed(figures):
    out, built = figures
    assert set(built) == {"convergence", "ragged", "best", "one-seed"}
    for name in built:
        assert (out / f"{name}.png").stat().st_size > 10_000
        assert (DOCS / "img" / f"{name}.png").is_file(), f"commit docs/img/{name}.png"
        assert f"img/{name}.png" in (DOCS / "analysis.md").read_text()


def test_convergence_figure_has_one_figure_legend_saying_what_the_band_is(figures):
    fig = figures[1]["convergence"]
    fig_legends, axes_legends = legends(fig)
    assert len(fig_legends) == 1 and not axes_legends
    assert not inside_a_panel(fig, fig_legends[0])
    texts = legend_texts(fig)
    assert texts[:3] == ["plain", "antithetic", "stratified"]
    assert texts[3] == "mean ± 1 s.e.m.\nover 8 seeds"
    assert fig_legends[0].get_title().get_text() == "method"
    left, right = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["dim = 1", "dim = 4"]
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert len(ax.lines) == 3 and len(ax.collections) == 3  # a band per line
    # the same variable in both panels: one y axis, labelled once, with units of attrs
    assert left.get_shared_y_axes().joined(left, right)
    assert left.get_shared_x_axes().joined(left, right)
    assert left.get_ylabel() == "absolute error" and right.get_ylabel() == ""
    assert left.get_xlabel() == right.get_xlabel() == "samples N"
    # the swept values are the ticks of the log axis
    assert list(left.get_xticks()) == [16, 64, 256, 1024, 4096]


def test_ragged_figure_merges_two_panels_legends_into_one(figures):
    fig = figures[1]["ragged"]
    fig_legends, axes_legends = legends(fig)
    assert len(fig_legends) == 1 and not axes_legends
    assert not inside_a_panel(fig, fig_legends[0])
    # N once per value; failed psets leave 3 of 5 seeds at some EnKF points
    assert legend_texts(fig) == ["10", "20", "40", "mean ± 1 s.e.m.\nover 3–5 seeds"]
    left, right = fig.axes
    assert left.get_xlabel() == "inflation" and right.get_xlabel() == "rho"
    assert left.get_ylabel() == "rmse" and right.get_ylabel() == ""  # shared y


def test_best_figure_keeps_the_error_bars_of_the_best_cells(figures):
    fig = figures[1]["best"]
    (ax,) = fig.axes
    assert legend_texts(fig) == ["EnKF", "LETKF", "mean ± 1 s.e.m.\nover 5 seeds"]
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    for band in ax.collections:  # a band with some width at every N
        assert np.ptp(band.get_paths()[0].vertices[:, 1]) > 0
    assert ax.get_ylabel() == "rmse" and ax.get_xlabel() == "N"  # not "rmse_mean"


def test_one_seed_figure_says_so_and_draws_no_band(figures):
    fig = figures[1]["one-seed"]
    (ax,) = fig.axes
    assert legend_texts(fig) == ["plain", "stratified", "mean over 1 seed\n(no error band)"]
    assert len(ax.lines) == 2
    for band in ax.collections:  # fill_between of NaN: nothing to see
        assert not any(len(p.vertices) for p in band.get_paths())
    assert ax.get_xscale() == "log"


# --------------------------------------------------------------------- plot options
def seeds_dataset(n_seeds=4):
    rng = np.random.default_rng(0)
    y = rng.random((3, 2, n_seeds))
    return xr.Dataset({"loss": (("lr", "opt", "seed"), y, {"units": "nats"})},
                      coords={"lr": ("lr", [0.01, 0.1, 1.0], {"units": "1/step"}),
                              "opt": ["sgd", "adam"], "seed": range(n_seeds)})


def test_scales_are_validated_with_a_suggestion():
    ds = seeds_dataset()
    with pytest.raises(pj.OptionError, match=r"xscale='logg'.*did you mean 'log'"):
        pj.plot(ds, "loss", x="lr", hue="opt", xscale="logg")
    with pytest.raises(pj.OptionError, match=r"yscale='Log'.*'linear', 'log', 'symlog'"):
        pj.plot(ds, "loss", x="lr", hue="opt", yscale="Log")
    with pytest.raises(pj.OptionError,
                       match=r"xscale='log' needs numbers.*\['sgd', 'adam'\]"):
        pj.plot(ds, "loss", x="opt", hue="lr", xscale="log")
    with pytest.raises(pj.OptionError, match="legend="):
        pj.plot(ds, "loss", x="lr", hue="opt", legend="yes")
    fig = pj.plot(ds, "loss", x="lr", hue="opt", xscale="log", yscale="symlog")
    assert (fig.axes[0].get_xscale(), fig.axes[0].get_yscale()) == ("log", "symlog")


def test_units_in_labels_and_a_legend_without_hue():
    ds = seeds_dataset()
    fig = pj.plot(ds.sel(opt="adam"), "loss", x="lr")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "lr [1/step]" and ax.get_ylabel() == "loss [nats]"
    assert legend_texts(fig) == ["mean ± 1 s.e.m.\nover 4 seeds"]
    assert not ax.get_legend()
    bare = pj.plot(ds.sel(opt="adam"), "loss", x="lr", legend=False)
    assert not bare.legends and not bare.axes[0].get_legend()
    no_seed = pj.plot(ds.isel(seed=0, drop=True).sel(opt="adam"), "loss", x="lr")
    assert not no_seed.legends  # nothing to explain: one line, no band
    st = pj.stats(ds, over="seed")
    assert st.loss_count.attrs == {"pyjoule_over": "seed"}  # a count has no units
    assert pj.plot(st, "loss_mean", x="lr", hue="opt").axes[0].collections
    assert not pj.plot(st, "loss_mean", x="lr", hue="opt", over=None).axes[0].collections


def test_panels_share_axes_and_an_empty_panel_says_so():
    ds = seeds_dataset()
    ds["loss"][:, 1, :] = np.nan  # adam never ran
    fig = pj.plot(ds, "loss", x="lr", col="opt")
    sgd, adam = fig.axes
    assert sgd.get_shared_y_axes().joined(sgd, adam)
    assert not adam.axison and [t.get_text() for t in adam.texts] == ["no values"]
    assert sgd.axison and sgd.get_ylabel() == "loss [nats]"
    fig = pj.plot(ds.transpose("opt", ...), "loss", x="lr", row="opt")
    top, bottom = fig.axes
    # the bottom panel is empty: the top one carries the x axis' labels
    assert top.get_xlabel() == "lr [1/step]"
    fig.canvas.draw()
    assert [t.get_text() for t in top.get_xticklabels()]  # [] where hidden
    assert not bottom.axison


@pytest.mark.slow
def test_several_variables_take_a_row_each_with_their_own_y_axis():
    ds = seeds_dataset()
    ds["time"] = 60 * ds.loss.assign_attrs(units="s")
    fig = pj.plot(ds, ["loss", "time"], x="lr", hue="opt", col="seed", over=None,
                  xscale="log")
    assert len(fig.axes) == 8 and len(fig.legends) == 1
    grid = np.array(fig.axes).reshape(2, 4)
    top, bottom = grid[0], grid[1]
    # the same variable shares its y axis along the row; two variables do not
    assert top[0].get_shared_y_axes().joined(top[0], top[3])
    assert not top[0].get_shared_y_axes().joined(top[0], bottom[0])
    assert top[0].get_shared_x_axes().joined(top[0], bottom[3])
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["loss [nats]", "time [s]"]
    assert [ax.get_ylabel() for ax in grid[:, 1]] == ["", ""]
    assert [ax.get_title() for ax in top] == [f"seed = {k}" for k in range(4)]
    assert [ax.get_title() for ax in bottom] == [""] * 4  # a column is titled once
    fig.canvas.draw()
    assert [t.get_text() for t in bottom[0].get_xticklabels()] == ["0.01", "0.1", "1"]
    assert bottom[0].get_ylim()[1] > 10 > top[0].get_ylim()[1]
    averaged = pj.plot(ds, ["loss", "time"], x="lr", hue="opt")
    assert legend_texts(averaged)[-1] == "mean ± 1 s.e.m.\nover 4 seeds"
    with pytest.raises(pj.OptionError, match=r"take the rows of panels; drop row='seed'"):
        pj.plot(ds, ["loss", "time"], x="lr", hue="opt", row="seed")
    with pytest.raises(pj.OptionError, match="ax= draws a single panel"):
        pj.plot(ds, ["loss", "time"], x="lr", hue="opt", ax=plt.subplots()[1])
    with pytest.raises(pj.OptionError, match="did you mean 'time'"):
        pj.plot(ds, ["loss", "tme"], x="lr", hue="opt")


def test_ax_in_a_figure_without_constrained_layout_keeps_it_and_one_legend():
    ds = seeds_dataset()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(12, 3))
    fig.colorbar(c.imshow(np.eye(3)), ax=c)  # switching its layout would break this
    pj.plot(ds.sel(opt="sgd"), "loss", x="lr", ax=b)
    pj.plot(ds.sel(opt="adam"), "loss", x="lr", ax=a)
    assert fig.get_layout_engine() is None
    fig_legends, axes_legends = legends(fig)
    assert not fig_legends and len(axes_legends) == 1  # one, merged
    (legend,) = axes_legends
    assert legend.axes is max(fig.axes, key=lambda ax: ax.get_position().x1)
    assert [t.get_text() for t in legend.get_texts()] == ["mean ± 1 s.e.m.\nover 4 seeds"]
    fig.savefig(io.BytesIO(), format="png")  # the layout still draws
    assert not inside_a_panel(fig, legend)


def test_ordered_colours_for_numeric_hues_and_distinct_ones_for_names():
    ds = seeds_dataset()
    numeric = pj.plot(ds.sel(opt="sgd"), "loss", x="seed", hue="lr", over=None)
    colors = [line.get_color() for line in numeric.axes[0].lines]
    viridis = matplotlib.colormaps["viridis"]
    assert np.allclose(colors[0], viridis(0.0)) and len(set(map(tuple, colors))) == 3
    named = pj.plot(ds, "loss", x="lr", hue="opt")
    assert [line.get_color() for line in named.axes[0].lines] == ["C0", "C1"]


# ------------------------------------------------- a parameter swept with one value
def noisy(method, N, seed):
    return {"err": 1 / N + 0.01 * seed + (0.5 if method == "b" else 0.0)}


def test_stats_best_and_plot_accept_a_seed_swept_with_one_value(cache_dir):
    f = pj.experiment(workers=0)(noisy)
    ds = f.map(pj.grid(method=["a", "b"], N=[10, 100], seed=[3]))
    assert "seed" not in ds.dims and ds.seed.item() == 3  # a scalar coordinate
    st = pj.stats(ds, over="seed")
    assert st.err_mean.dims == ("method", "N") and "seed" not in st.coords
    assert st.err_count.values.tolist() == [[1, 1], [1, 1]]
    np.testing.assert_allclose(st.err_mean.values, ds.err.values)
    assert np.isnan(st.err_std.values).all() and np.isnan(st.err_sem.values).all()
    # the same answer as from a study whose seed dimension has one label
    wide = pj.stats(ds.expand_dims("seed"), over="seed")
    xr.testing.assert_identical(st, wide)
    b = pj.best(st, "err_mean", over="method")
    assert b.method.values.tolist() == ["a", "a"] and b.err_count.values.tolist() == [1, 1]
    raw = pj.best(ds, "err", over=["seed", "N"], mode="max")
    assert raw.seed.values.tolist() == [3, 3] and raw.N.values.tolist() == [10, 10]
    fig = pj.plot(ds, "err", x="N", hue="method")
    assert legend_texts(fig)[-1] == "mean over 1 seed\n(no error band)"
    point = pj.plot(ds.sel(N=10), "err", x="N", hue="method")  # x with one value
    assert point.axes[0].lines[0].get_xdata().tolist() == [10.0]


def test_a_name_that_is_neither_a_dimension_nor_a_scalar_coordinate_raises(cache_dir):
    f = pj.experiment(workers=0)(noisy)
    ds = f.map(pj.grid(method=["a", "b"], N=[10, 100], seed=[3]))
    with pytest.raises(pj.OptionError,
                       match=r"over='seeds' is not a dimension; the dimensions are "
                             r"\['method', 'N'\], and \['seed'\] have one value; "
                             r"did you mean 'seed'\?"):
        pj.stats(ds, over="seeds")
    with pytest.raises(pj.OptionError, match="did you mean 'seed'"):
        pj.best(ds, "err", over="sed")
    with pytest.raises(pj.OptionError, match="hue='sed'.*did you mean 'seed'"):
        pj.plot(ds, "err", x="N", hue="sed")
    labelled = ds.assign_coords(tag=("N", ["small", "large"]))  # along N, not scalar
    with pytest.raises(pj.OptionError, match="over='tag' is not a dimension"):
        pj.stats(labelled, over="tag")
