"""One measurement in a fresh interpreter: ``bench.py --workload W --variant V ...``.

``run.py`` starts this script once per (workload, variant, repeat). The script does
its imports first (timed as ``import_s``), then times only the measured region with
``perf_counter``, checks every result *outside* the timed region, and prints one line
``BENCH-RESULT {json}`` (times in seconds, memory in MiB from ``ru_maxrss``).
``--setup`` runs the untimed populate step of W3/W4/scale instead.

=====================================================================================
Scale: ``pyjoule_plan(f, space)`` below runs pyjoule's planning step (identity, fill
defaults, hash, cache lookup; nothing executed) on a space of 1,000,000 psets, through
internals (``_dispatch.plan``), since the public API has no plan-only call.
=====================================================================================

Every pyjoule variant goes through the public API only (API.md): ``pj.experiment``,
``f.map(space)``, ``f.map(space, sparse=True)`` and ``pj.load(f)``.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()  # before any import the variant pays for

import argparse
import json
import os
import resource
import sys
import traceback

pc = time.perf_counter
MARK = "BENCH-RESULT "


class Unavailable(Exception):
    """pyjoule (or the part of it a variant needs) has not landed yet."""


def pyjoule_plan(f, space):
    """Planning as ``f.map`` does it (identity, fill defaults, hash, split cached / in
    flight / to run against the cache), without running anything."""
    from pyjoule import _dispatch

    store = f._store()
    return _dispatch.plan(store, f._func_id_for(store), f._signature, space)


# --- helpers ----------------------------------------------------------------------


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def imports_done():
    return {"import_s": pc() - T0, "rss_after_import_mib": maxrss_mib()}


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_list(results, start, key="y"):
    """``results[k][key] == 2 * (start + k)`` for every k."""
    bad = [k for k, r in enumerate(results) if r[key] != 2 * (start + k)]
    check(not bad, f"{len(bad)} wrong results, first at {bad[:3]}")


def check_df(df, n, start=0):
    """psweep's DataFrame: exactly the psets asked for, once each, with ``y_ == 2*i``."""
    i = sorted(int(v) for v in df["i"])
    check(i == list(range(start, start + n)), f"psweep returned {len(i)} rows, expected {n} unique")
    check(all(int(y) == 2 * int(x) for x, y in zip(df["i"], df["y_"])), "psweep: wrong y_")


def check_ds_i(ds, n, start=0):
    """pyjoule's W1/W2/W3 Dataset: dimension ``i`` = start..start+n-1, ``y == 2*i``."""
    import numpy as np

    i = ds["i"].values
    check(np.array_equal(i, np.arange(start, start + n)),
          f"coordinate i wrong: {i[:5]}... ({i.size})")
    y = np.asarray(ds["y"].values)
    check(np.array_equal(y, 2 * i), "y != 2*i")


def dense_values(da):
    data = da.data
    return data.todense() if hasattr(data, "todense") else data


def import_pyjoule():
    """pyjoule's imports: the package plus xarray, its result type."""
    import xarray  # noqa: F401  (counted as one of pyjoule's imports)

    import pyjoule

    if not hasattr(pyjoule, "experiment"):
        raise Unavailable("pyjoule.experiment not available yet")
    return pyjoule


def pj_exp(pj, func, a):
    return pj.experiment(workers=a.workers, cache=a.cache, progress=False)(func)


# --- W1 (and W5): 10,000 no-ops, 2 workers, cold --------------------------------------
# seconds = e2e (pool start + map + shutdown); warm_s = a second map with other psets.


def w1_floor(a):
    from workloads import noop

    out = imports_done()
    n = a.n
    t0 = pc()
    res = [noop(i) for i in range(n)]
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    res2 = [noop(i) for i in range(n, 2 * n)]
    out["warm_s"] = pc() - t0
    check_list(res, 0)
    check_list(res2, n)
    return out


def w1_pool(a):
    import multiprocessing as mp

    from workloads import noop

    out = imports_done()
    n = a.n
    t0 = pc()
    pool = mp.Pool(a.workers)
    res = pool.map(noop, range(n))
    pool.close()
    pool.join()
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    with mp.Pool(a.workers) as pool:  # warm: a started pool, other psets
        pool.map(noop, range(2 * a.workers))
        t0 = pc()
        res2 = pool.map(noop, range(n, 2 * n))
        out["warm_s"] = pc() - t0
    check_list(res, 0)
    check_list(res2, n)
    return out


def w1_joblib(a):
    from joblib import Parallel, delayed

    from workloads import noop

    out = imports_done()
    n = a.n
    t0 = pc()
    res = Parallel(n_jobs=a.workers)(delayed(noop)(i) for i in range(n))
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()  # loky's executor is reused: warm
    res2 = Parallel(n_jobs=a.workers)(delayed(noop)(i) for i in range(n, 2 * n))
    out["warm_s"] = pc() - t0
    check_list(res, 0)
    check_list(res2, n)
    return out


def w1_psweep(a):
    import psweep as ps

    from workloads import noop_pset

    out = imports_done()
    n = a.n
    params = [{"i": i} for i in range(n)]
    params2 = [{"i": i} for i in range(n, 2 * n)]
    t0 = pc()
    df = ps.run(noop_pset, params, calc_dir=os.path.join(a.cache, "calc"), poolsize=a.workers)
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    df2 = ps.run(noop_pset, params2, calc_dir=os.path.join(a.cache, "calc2"), poolsize=a.workers)
    out["warm_s"] = pc() - t0
    check_df(df, n)
    check_df(df2, n, start=n)
    return out


def w1_pyjoule(a):
    pj = import_pyjoule()
    from workloads import noop

    out = imports_done()
    n = a.n
    space = [{"i": i} for i in range(n)]
    space2 = [{"i": i} for i in range(n, 2 * n)]
    t0 = pc()
    f = pj_exp(pj, noop, a)
    ds = f.map(space)
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    ds2 = f.map(space2)
    out["warm_s"] = pc() - t0
    check_ds_i(ds, n)
    check_ds_i(ds2, n, start=n)
    return out


# --- W2: 200 x ~20 ms pure-Python CPU, 2 workers ---------------------------------------


def w2_serial(a):
    from workloads import burn

    out = imports_done()
    t0 = pc()
    res = [burn(i, a.iters) for i in range(a.n)]
    out["seconds"] = pc() - t0
    out["task_sum_s"] = sum(r["t"] for r in res)
    out["task_cpu_s"] = sum(r["c"] for r in res)
    check_list(res, 0)
    return out


def w2_probe(a):
    """The task time, sampled in a fresh process between the other runs (for the ideal)."""
    from workloads import time_burn

    out = imports_done()
    out["seconds"] = time_burn(a.iters, samples=11)
    return out


def w2_pool(a):
    import multiprocessing as mp

    from workloads import burn

    out = imports_done()
    args = [(i, a.iters) for i in range(a.n)]
    t0 = pc()
    with mp.Pool(a.workers) as pool:
        res = pool.starmap(burn, args)
    out["seconds"] = pc() - t0
    out["task_sum_s"] = sum(r["t"] for r in res)
    out["task_cpu_s"] = sum(r["c"] for r in res)
    check_list(res, 0)
    return out


def w2_joblib(a):
    from joblib import Parallel, delayed

    from workloads import burn

    out = imports_done()
    t0 = pc()
    res = Parallel(n_jobs=a.workers)(delayed(burn)(i, a.iters) for i in range(a.n))
    out["seconds"] = pc() - t0
    out["task_sum_s"] = sum(r["t"] for r in res)
    out["task_cpu_s"] = sum(r["c"] for r in res)
    check_list(res, 0)
    return out


def w2_psweep(a):
    import psweep as ps

    from workloads import burn_pset

    out = imports_done()
    params = [{"i": i, "iters": a.iters} for i in range(a.n)]
    t0 = pc()
    df = ps.run(burn_pset, params, calc_dir=os.path.join(a.cache, "calc"), poolsize=a.workers)
    out["seconds"] = pc() - t0
    out["task_sum_s"] = float(df["t_"].astype(float).sum())
    out["task_cpu_s"] = float(df["c_"].astype(float).sum())
    check_df(df, a.n)
    return out


def w2_pyjoule(a):
    pj = import_pyjoule()
    from workloads import burn

    out = imports_done()
    space = [{"i": i, "iters": a.iters} for i in range(a.n)]
    t0 = pc()
    f = pj_exp(pj, burn, a)
    ds = f.map(space)
    out["seconds"] = pc() - t0
    out["task_sum_s"] = float(ds["t"].sum())
    out["task_cpu_s"] = float(ds["c"].sum())
    check_ds_i(ds, a.n)
    return out


# --- W3: re-call 10,000 cached psets (cache populated by --setup, fresh process) -----
# seconds = first re-call in this fresh process; warm_s = a second re-call.


def _w3_floor_key(pset):
    import hashlib

    return hashlib.sha256(json.dumps(pset, sort_keys=True).encode()).hexdigest()


def w3_floor_setup(a):
    import pickle

    from workloads import noop

    index = {_w3_floor_key({"i": i}): noop(i) for i in range(a.n)}
    with open(os.path.join(a.cache, "index.pkl"), "wb") as fh:
        pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)


def w3_floor(a):
    import hashlib  # noqa: F401  (the measured code's import)
    import pickle

    out = imports_done()
    space = [{"i": i} for i in range(a.n)]

    def recall():
        with open(os.path.join(a.cache, "index.pkl"), "rb") as fh:
            index = pickle.load(fh)
        return [index[_w3_floor_key(p)] for p in space]

    t0 = pc()
    res = recall()
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    res2 = recall()
    out["warm_s"] = pc() - t0
    check_list(res, 0)
    check_list(res2, 0)
    return out


def w3_joblib_setup(a):
    from joblib import Memory

    from workloads import noop

    f = Memory(a.cache, verbose=0).cache(noop)
    check_list([f(i) for i in range(a.n)], 0)


def w3_joblib(a):
    from joblib import Memory

    from workloads import noop

    out = imports_done()
    t0 = pc()
    f = Memory(a.cache, verbose=0).cache(noop)
    res = [f(i) for i in range(a.n)]
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    res2 = [f(i) for i in range(a.n)]
    out["warm_s"] = pc() - t0
    check_list(res, 0)
    check_list(res2, 0)
    return out


def w3_psweep_setup(a):
    import psweep as ps

    from workloads import noop_pset

    df = ps.run(noop_pset, [{"i": i} for i in range(a.n)], calc_dir=a.cache, poolsize=a.workers)
    check_df(df, a.n)


def w3_psweep(a):
    import psweep as ps

    from workloads import noop_pset

    out = imports_done()
    space = [{"i": i} for i in range(a.n)]
    t0 = pc()
    df = ps.run(noop_pset, space, calc_dir=a.cache, poolsize=a.workers, skip_dups=True)
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    df2 = ps.run(noop_pset, space, calc_dir=a.cache, poolsize=a.workers, skip_dups=True)
    out["warm_s"] = pc() - t0
    check_df(df, a.n)  # also catches psweep re-running and duplicating rows
    check_df(df2, a.n)
    return out


def w3_pyjoule_setup(a):
    pj = import_pyjoule()
    from workloads import noop

    check_ds_i(pj_exp(pj, noop, a).map([{"i": i} for i in range(a.n)]), a.n)


def w3_pyjoule(a):
    pj = import_pyjoule()
    from workloads import noop

    out = imports_done()
    space = [{"i": i} for i in range(a.n)]
    t0 = pc()
    f = pj_exp(pj, noop, a)
    ds = f.map(space)
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    t0 = pc()
    ds2 = f.map(space)
    out["warm_s"] = pc() - t0
    check_ds_i(ds, a.n)
    check_ds_i(ds2, a.n)
    return out


# --- W4: 80,000 results on a 10x100x100 grid -> arrays ---------------------------------
# first_s = first assembly in this fresh process, warm_s = a second one (the headline,
# as in BASELINE.md), first_use_s = first ``.sel`` + ``.mean`` on the result.


def _shape(a):
    return tuple(int(x) for x in a.shape.split("x"))


def w4_numpy(a):
    import numpy as np

    from workloads import w4_coords, w4_expected, w4_records

    out = imports_done()
    shape = _shape(a)
    records = w4_records(shape)  # what a framework holds in memory after the run
    out["n"] = len(records)
    coords = {k: np.asarray(v) for k, v in w4_coords(shape).items()}

    def scatter():
        idx = tuple(np.searchsorted(coords[k], np.array([r[k] for r in records])) for k in "abc")
        y = np.full(shape, np.nan)
        y[idx] = np.array([r["y"] for r in records], dtype=float)
        return y

    t0 = pc()
    y1 = scatter()
    out["first_s"] = pc() - t0
    t0 = pc()
    y2 = scatter()
    out["warm_s"] = out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    expected = w4_expected(shape)
    check(np.array_equal(y1, expected, equal_nan=True), "numpy scatter: wrong values")
    check(np.array_equal(y2, expected, equal_nan=True), "numpy scatter: wrong values")
    return out


def w4_pyjoule_setup(a):
    pj = import_pyjoule()
    from workloads import w4_psets, w4_value

    pj_exp(pj, w4_value, a).map(w4_psets(_shape(a)))


def _w4_pyjoule(a, assemble, want_sparse):
    pj = import_pyjoule()
    import numpy as np

    from workloads import w4_coords, w4_expected, w4_psets, w4_value

    out = imports_done()
    shape = _shape(a)
    space = w4_psets(shape)
    out["n"] = len(space)
    f = pj_exp(pj, w4_value, a)
    t0 = pc()
    ds = assemble(pj, f, space)
    out["first_s"] = pc() - t0
    t0 = pc()
    mean = ds["y"].sel(a=3).mean().data  # not float(): sparse refuses to densify implicitly
    out["first_use_s"] = pc() - t0
    mean = float(mean.todense() if hasattr(mean, "todense") else mean)
    t0 = pc()
    ds2 = assemble(pj, f, space)
    out["warm_s"] = out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    expected = w4_expected(shape)
    coords = w4_coords(shape)
    for d in (ds, ds2):
        check(d["y"].dims == ("a", "b", "c"), f"dims {d['y'].dims}")
        for k in "abc":
            check(list(d[k].values) == coords[k], f"coordinate {k} wrong")
        is_sparse = hasattr(d["y"].data, "todense")
        check(is_sparse == want_sparse, f"backing: sparse={is_sparse}, expected {want_sparse}")
        check(np.array_equal(dense_values(d["y"]), expected, equal_nan=True), "wrong values")
    out["backing"] = type(ds["y"].data).__module__.split(".")[0]
    if not np.isclose(mean, np.nanmean(expected[3])):
        out["note"] = f"y.sel(a=3).mean() = {mean}, expected {np.nanmean(expected[3])}"
    return out


def w4_pyjoule_load(a):
    return _w4_pyjoule(a, lambda pj, f, space: pj.load(f), want_sparse=False)


def w4_pyjoule_map(a):
    return _w4_pyjoule(a, lambda pj, f, space: f.map(space), want_sparse=False)


def w4_pyjoule_load_sparse(a):
    return _w4_pyjoule(a, lambda pj, f, space: pj.load(f, sparse=True), want_sparse=True)


def w4_pyjoule_map_sparse(a):
    return _w4_pyjoule(a, lambda pj, f, space: f.map(space, sparse=True), want_sparse=True)


# --- Scale: plan 1,000,000 psets (10,000 of them cached by --setup) ---------------------


def scale_pyjoule_setup(a):
    pj = import_pyjoule()
    from workloads import scale_func, scale_psets

    pj_exp(pj, scale_func, a).map(scale_psets(a.n)[: a.cached])


def scale_pyjoule(a):
    pj = import_pyjoule()
    from workloads import scale_func, scale_psets

    out = imports_done()
    f = pj_exp(pj, scale_func, a)
    space = scale_psets(a.n)
    out["rss_space_mib"] = maxrss_mib()
    t0 = pc()
    plan = pyjoule_plan(f, space)
    out["seconds"] = pc() - t0
    out["rss_peak_mib"] = maxrss_mib()
    out["plan"] = repr(plan)[:200]
    return out


VARIANTS = {
    ("w1", "floor"): w1_floor,
    ("w1", "pool"): w1_pool,
    ("w1", "joblib"): w1_joblib,
    ("w1", "psweep"): w1_psweep,
    ("w1", "pyjoule"): w1_pyjoule,
    ("w2", "probe"): w2_probe,
    ("w2", "serial"): w2_serial,
    ("w2", "pool"): w2_pool,
    ("w2", "joblib"): w2_joblib,
    ("w2", "psweep"): w2_psweep,
    ("w2", "pyjoule"): w2_pyjoule,
    ("w3", "floor"): w3_floor,
    ("w3", "joblib"): w3_joblib,
    ("w3", "psweep"): w3_psweep,
    ("w3", "pyjoule"): w3_pyjoule,
    ("w4", "numpy"): w4_numpy,
    ("w4", "pyjoule-load"): w4_pyjoule_load,
    ("w4", "pyjoule-map"): w4_pyjoule_map,
    ("w4", "pyjoule-load-sparse"): w4_pyjoule_load_sparse,
    ("w4", "pyjoule-map-sparse"): w4_pyjoule_map_sparse,
    ("scale", "pyjoule"): scale_pyjoule,
}
# W5 is W1 again, with run.py sampling the process tree's memory.
VARIANTS.update({("w5", v): fn for (w, v), fn in list(VARIANTS.items()) if w == "w1"})

SETUPS = {
    ("w3", "floor"): w3_floor_setup,
    ("w3", "joblib"): w3_joblib_setup,
    ("w3", "psweep"): w3_psweep_setup,
    ("w3", "pyjoule"): w3_pyjoule_setup,
    ("w4", "pyjoule"): w4_pyjoule_setup,
    ("scale", "pyjoule"): scale_pyjoule_setup,
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--setup", action="store_true", help="populate the cache, untimed")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", default=None, help="directory this run may use")
    p.add_argument("--iters", type=int, default=0, help="W2: burn() iterations")
    p.add_argument("--shape", default="10x100x100", help="W4 grid")
    p.add_argument("--cached", type=int, default=10_000, help="scale: psets cached by --setup")
    a = p.parse_args(argv)
    key = (a.workload, a.variant)
    out = {"workload": a.workload, "variant": a.variant, "n": a.n, "setup": a.setup}
    try:
        fn = SETUPS[key] if a.setup else VARIANTS[key]
        res = fn(a)
        out.update(res or {})
        out["ok"] = True
    except Unavailable as exc:
        out.update(ok=False, unavailable=str(exc))
    except Exception as exc:  # noqa: BLE001 - report, do not crash: run.py shows it in the table
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc())
    out["total_s"] = pc() - T0
    sys.stdout.flush()
    print(MARK + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
