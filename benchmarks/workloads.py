"""The workloads every peer runs, shared by ``bench.py`` (the child) and ``run.py``.

Kept importable with the standard library only: numpy is imported inside the W4
helpers, so that the W1 floor and the W5 memory figures do not pay for it.

Functions that workers run are module-level (picklable by reference) and read no
module globals, so pyjoule's function identity is the same in every process.
"""

from __future__ import annotations

import time

# --- W1 / W3: no-op ------------------------------------------------------------


def noop(i):
    """The W1/W3 task: nothing but a result."""
    return {"y": 2 * i}


def noop_pset(pset):
    """psweep's calling convention. Result key ends in ``_`` (see BASELINE.md)."""
    return {"y_": 2 * pset["i"]}


# --- W2: calibrated pure-Python CPU ----------------------------------------------


def burn(i, iters):
    """About ``iters * 0.1`` µs of pure-Python CPU (calibrated to ~20 ms by run.py).

    Also returns ``t``, its own wall time, and ``c``, the CPU time its thread got, so
    that the in-run efficiencies (sum of task times / (workers x wall)) can be computed
    with the tasks' speed under the same load. ``c`` leaves out the time the task
    waited for a CPU (taken by the framework's other processes, say).
    """
    t0, c0 = time.perf_counter(), time.thread_time()
    acc = 0
    for k in range(iters):
        acc = (acc * 31 + k) % 1000003
    return {"y": 2 * i, "t": time.perf_counter() - t0, "c": time.thread_time() - c0}


def burn_pset(pset):
    r = burn(pset["i"], pset["iters"])
    return {"y_": r["y"], "t_": r["t"], "c_": r["c"]}


def time_burn(iters, samples=7):
    """Median wall time of ``burn(0, iters)`` in this process, in seconds."""
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        burn(0, iters)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def calibrate_burn(target_s=0.020, warm_s=1.0):
    """``iters`` such that ``burn(i, iters)`` takes about ``target_s`` here.

    Spins for ``warm_s`` first: on this VM an idle CPU runs the first ~0.1-0.2 s of
    work up to 1.7x slower, and a calibration taken then gives tasks far shorter than
    ``target_s`` (12 instead of 20 ms, seen here), which overstates every peer's fixed
    costs."""
    t_end = time.perf_counter() + warm_s
    while time.perf_counter() < t_end:
        burn(0, 10_000)
    iters = 50_000
    for _ in range(4):
        iters = max(1000, int(iters * target_s / time_burn(iters, samples=5)))
    return iters


# --- W4: 10 x 100 x 100 grid, exactly 20 % missing, shuffled ---------------------

W4_SEED = 20240611


def w4_value(a, b, c):
    """The W4 task: a deterministic pseudo-random float in [0, 1) per grid point."""
    k = round(b * 10)
    return {"y": ((a * 7919 + k * 104729 + c * 1299709) % 1000003) / 1000003.0}


def w4_coords(shape=(10, 100, 100)):
    """Grid coordinates: ``a`` int, ``b`` float (0.0, 0.1, ...), ``c`` int."""
    na, nb, nc = shape
    return {"a": list(range(na)), "b": [k / 10 for k in range(nb)], "c": list(range(nc))}


def w4_points(shape=(10, 100, 100), missing=0.2, seed=W4_SEED):
    """Flat indices of the present points, in shuffled (completion-like) order."""
    import numpy as np

    total = shape[0] * shape[1] * shape[2]
    rng = np.random.default_rng(seed)
    n_missing = round(total * missing)
    absent = rng.choice(total, size=n_missing, replace=False)
    present = np.setdiff1d(np.arange(total), absent)
    return rng.permutation(present)


def w4_psets(shape=(10, 100, 100), missing=0.2, seed=W4_SEED):
    """The present psets ``{"a": int, "b": float, "c": int}`` in shuffled order."""
    import numpy as np

    coords = w4_coords(shape)
    ia, ib, ic = np.unravel_index(w4_points(shape, missing, seed), shape)
    a, b, c = coords["a"], coords["b"], coords["c"]
    return [{"a": a[x], "b": b[y], "c": c[z]}
            for x, y, z in zip(ia.tolist(), ib.tolist(), ic.tolist())]


def w4_records(shape=(10, 100, 100), missing=0.2, seed=W4_SEED):
    """The result dicts a framework holds after the run: pset plus ``y``."""
    return [{**p, **w4_value(**p)} for p in w4_psets(shape, missing, seed)]


def w4_expected(shape=(10, 100, 100), missing=0.2, seed=W4_SEED):
    """The dense answer: NaN-filled array of ``y`` over the grid (vectorised ``w4_value``)."""
    import numpy as np

    flat = w4_points(shape, missing, seed)
    ia, ib, ic = np.unravel_index(flat, shape)  # a = ia, round(b * 10) = ib, c = ic
    out = np.full(shape, np.nan)
    out[ia, ib, ic] = ((ia * 7919 + ib * 104729 + ic * 1299709) % 1000003) / 1000003.0
    return out


# --- Scale: a function with a default, so planning has to fill it in -------------


def scale_func(a, b, c, d="x"):
    return {"y": a}


def scale_psets(n):
    """``n`` psets (a multiple of 10,000): a int, b float, c str; ``d`` left to its default."""
    nb = 100
    nc = 100
    na = n // (nb * nc)
    bs = [k / 4 for k in range(nb)]
    cs = [f"c{k}" for k in range(nc)]
    return [{"a": a, "b": b, "c": c} for a in range(na) for b in bs for c in cs]
