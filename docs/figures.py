"""Build the figures of docs/analysis.md from small real sweeps.

    python -m uv run --frozen python docs/figures.py   # writes docs/img/*.png

Each figure is what ``pj.plot`` draws by default (plus the options the page shows), so
the page shows the library's real output; tests/test_figures.py runs ``build`` into a
temporary folder and checks the figures' structure.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np

import pyjoule as pj

IMG = Path(__file__).resolve().parent / "img"
DPI = 110


def integrate(method, N, dim, seed):
    """Monte Carlo estimate of the integral of prod(x_i^2) over [0, 1]^dim (3^-dim)."""
    rng = np.random.default_rng([seed, N, dim])
    if method == "plain":
        u = rng.random((N, dim))
        values = np.prod(3 * u ** 2, axis=1)
    elif method == "antithetic":
        u = rng.random((N // 2, dim))
        values = (np.prod(3 * u ** 2, axis=1) + np.prod(3 * (1 - u) ** 2, axis=1)) / 2
    else:  # stratified along the first coordinate
        u = rng.random((N, dim))
        u[:, 0] = (np.arange(N) + u[:, 0]) / N
        values = np.prod(3 * u ** 2, axis=1)
    return {"error": abs(values.mean() - 1.0)}


def assimilate(method, N, seed, inflation=None, rho=None):
    """The ragged study of docs/analysis.md, where LETKF gains less from a larger
    ensemble, and small ensembles with little inflation diverge for some seeds (failed
    psets: holes in the grid)."""
    rng = np.random.default_rng([seed, method == "EnKF"])
    if method == "EnKF":
        if N == 10 and inflation == 1.0 and seed % 2:
            raise FloatingPointError("filter diverged")
        skill = 1 / np.sqrt(N) + 4 * (inflation - 1.05) ** 2
    else:
        skill = 0.12 + 0.5 / np.sqrt(N) + 2 * (rho - 0.3) ** 2
    return {"rmse": skill + 0.05 * rng.standard_normal()}


def convergence(cache: Path):
    """method × N × dim × 8 seeds: log-log error curves, one panel per dimension."""
    f = pj.experiment(cache=cache, workers=0, progress=False)(integrate)
    ds = f.map(pj.grid(method=["plain", "antithetic", "stratified"],
                       N=[16, 64, 256, 1024, 4096], dim=[1, 4], seed=range(8)))
    ds["N"].attrs["long_name"] = "samples N"
    ds["error"].attrs["long_name"] = "absolute error"
    return pj.plot(ds, "error", x="N", hue="method", col="dim", xscale="log",
                   yscale="log")


def ragged_study(cache: Path):
    f = pj.experiment(cache=cache, workers=0, progress=False, errors="ignore")(assimilate)
    return f.map(pj.product(
        pj.grid(method="EnKF", inflation=[1.0, 1.05, 1.1, 1.2])
        + pj.grid(method="LETKF", rho=[0.1, 0.3, 0.5]),
        pj.grid(N=[10, 20, 40], seed=range(5)),
    ))


def ragged(cache: Path):
    """Two methods, each with its own tuning parameter, some psets failed: each
    method against its own parameter, side by side, with one legend."""
    import matplotlib.pyplot as plt

    ds = ragged_study(cache)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3), sharey=True,
                                      layout="constrained")
    pj.plot(ds.sel({"method": "EnKF", "rho": None}), "rmse", x="inflation", hue="N",
            ax=left)
    pj.plot(ds.sel({"method": "LETKF", "inflation": None}), "rmse", x="rho", hue="N",
            ax=right)
    left.set_title("EnKF")
    right.set_title("LETKF")
    return fig


def best(cache: Path):
    """The methods each at its best tuning, with the error bars of the best cells."""
    st = pj.stats(ragged_study(cache), over="seed")
    b = pj.best(st, "rmse_mean", over=["inflation", "rho"])
    return pj.plot(b, "rmse_mean", x="N", hue="method", xscale="log")


def one_seed(cache: Path):
    """A debug run with one seed: ``seed`` is a scalar coordinate, the legend says
    "over 1 seed" and there is no band."""
    f = pj.experiment(cache=cache, workers=0, progress=False)(integrate)
    ds = f.map(pj.grid(method=["plain", "stratified"], N=[16, 64, 256, 1024], dim=2,
                       seed=[0]))
    return pj.plot(ds, "error", x="N", hue="method", xscale="log")


FIGURES = {"convergence": convergence, "ragged": ragged, "best": best,
           "one-seed": one_seed}


def build(out: Path, cache: Path) -> dict:
    """Every figure, saved as ``out/<name>.png``; returns ``{name: Figure}``."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name, make in FIGURES.items():
        fig = make(cache)
        fig.savefig(out / f"{name}.png", dpi=DPI)
        figures[name] = fig
    return figures


if __name__ == "__main__":
    matplotlib.use("Agg")
    with tempfile.TemporaryDirectory() as tmp:
        names = build(Path(sys.argv[1]) if len(sys.argv) > 1 else IMG, Path(tmp) / "cache")
    print("wrote", ", ".join(f"{n}.png" for n in names))
