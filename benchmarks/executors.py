"""``executor=`` on dask (issue #17): pyjoule on a dask cluster against the cluster alone.

    uv run --group bench --group dask python benchmarks/executors.py           # full run
    uv run --group bench --group dask python benchmarks/executors.py --quick   # smoke test

Every measurement runs in a fresh interpreter (``--one WORKLOAD VARIANT``) that starts
its own ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` first
and warms up on 2 other psets (not timed: both sides need it, and imports, the first
tasks and the payload's first unpickling are one-time costs), then times only the
measured region:

- W1: 10,000 no-op psets (``workloads.noop``);
- W2: 200 psets of ~20 ms of pure-Python CPU (``workloads.burn``, calibrated here once);
- big: 100,000 no-op psets through pyjoule, with the client's peak RSS growth.

Variants: ``client.map`` (``client.map(func, ...)`` of the bare function, then
``client.gather``: dask's own cost per task, nothing persisted) and ``pyjoule``
(``pj.experiment(executor=client, cache=DIR, progress=False)(func).sweep(...)``: every
result persisted in a fresh cache and the Dataset built); for W2 also ``2 tasks`` (one
``client.submit`` per worker, each running its half of the psets in a loop: the least
any client can ask of dask, so its efficiency is the ceiling on this machine). Round-robin
repeats, medians.
W2's efficiency is the CPU the tasks' threads got over (2 workers × wall), as in
``run.py``. The client process also hosts the ``LocalCluster``'s scheduler, so its
memory includes the scheduler's. Writes markdown to ``benchmarks/_out/executors.md``
(``--output`` for elsewhere); the figures go into ``docs/benchmarks.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "_out"
MARK = "BENCH-RESULT "
# the workers unpickle workloads' functions by reference: they must find the module
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import workloads  # noqa: E402 - found through the sys.path entry above

FULL = {"w1": 10_000, "w2": 200, "big": 100_000}
QUICK = {"w1": 1_000, "w2": 40, "big": 10_000}
W2_RATIO_TARGET, W2_EFFICIENCY_TARGET, BIG_RSS_TARGET_MIB = 1.2, 0.9, 300


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_busy_s() -> float:
    """CPU seconds the machine spent busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    """CPU seconds of this process, all threads (the client's, the scheduler's, and
    pyjoule's feeder and ingest): what the driver takes from the 2 cores."""
    t = os.times()
    return t.user + t.system


# ------------------------------------------------------------------ the child
def _burn_share(lo: int, hi: int, iters: int) -> list:
    """One worker's whole share of W2 in one task: the floor of what dask costs."""
    return [workloads.burn(i, iters) for i in range(lo, hi)]


def one(workload: str, variant: str, n: int, iters: int) -> dict:
    """One measurement in this (fresh) interpreter."""
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    client.run(lambda: None)  # the workers are up and connected
    func = workloads.noop if workload in ("w1", "big") else workloads.burn
    kwargs = {} if func is workloads.noop else {"iters": iters}
    warm = dict.fromkeys(kwargs, 1000)  # one-time costs (imports, first tasks) first
    if variant == "2 tasks":  # W2's ceiling here: one task per worker, nothing else
        client.gather(client.map(func, range(-2, 0), **warm))
        out = {"rss_before_mib": rss_mib()}
        cpu0 = _cpu()
        t0 = time.perf_counter()
        halves = client.gather([client.submit(_burn_share, 0, n // 2, iters, pure=False),
                                client.submit(_burn_share, n // 2, n, iters, pure=False)])
        out["seconds"] = time.perf_counter() - t0
        out["client_cpu_s"] = _cpu() - cpu0
        rows = halves[0] + halves[1]
    elif variant == "client.map":
        client.gather(client.map(func, range(-2, 0), **warm))
        out: dict = {"rss_before_mib": rss_mib()}
        cpu0 = _cpu()
        t0 = time.perf_counter()
        futures = client.map(func, range(n), **kwargs)
        results = client.gather(futures)
        out["seconds"] = time.perf_counter() - t0
        out["client_cpu_s"] = _cpu() - cpu0
        rows = results
    else:
        import xarray  # noqa: F401 - pyjoule's result type: imported before, as in bench.py

        import pyjoule as pj

        cache = tempfile.mkdtemp(prefix="pj-exec-bench-")
        f = pj.experiment(executor=client, cache=cache, progress=False)(func)
        f.sweep(i=range(-2, 0), **{k: [v] for k, v in warm.items()})
        out = {"rss_before_mib": rss_mib()}
        cpu0 = _cpu()
        t0 = time.perf_counter()
        ds = f.sweep(i=range(n), **{k: [v] for k, v in kwargs.items()})
        out["seconds"] = time.perf_counter() - t0
        out["client_cpu_s"] = _cpu() - cpu0
        ds = ds.squeeze(drop=True).sel(i=range(n))
        rows = [{"y": int(y)} for y in ds["y"].values]
        if "c" in ds:
            rows = [{"y": int(y), "c": float(c)} for y, c in zip(ds["y"].values,
                                                                ds["c"].values)]
        out["entries"] = f.cache_info()["entries"] - 2  # the warm-up's
    out["peak_rss_growth_mib"] = \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - out["rss_before_mib"]
    bad = [k for k, r in enumerate(rows) if r["y"] != 2 * k]
    assert len(rows) == n and not bad, f"wrong results at {bad[:3]}"
    if "c" in rows[0]:
        out["efficiency"] = sum(r["c"] for r in rows) / (2 * out["seconds"])
    client.close()
    cluster.close()
    return out


# ----------------------------------------------------------------- the driver
def measure(workload: str, variant: str, n: int, iters: int, timeout_s: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", workload, variant,
           "--n", str(n), "--iters", str(iters)]
    busy0, t0 = cpu_busy_s(), time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    wall = time.monotonic() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{workload}/{variant} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(MARK):])
    result["machine_busy_share"] = (cpu_busy_s() - busy0) / (wall * (os.cpu_count() or 1))
    return result


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _busy(by_variant: dict) -> float:
    return statistics.median(r["machine_busy_share"] for runs in by_variant.values()
                             for r in runs)


def report(results: dict, sizes: dict, iters: int, repeats: int) -> str:
    def cell(key, variant, fmt="{:.3f}"):
        runs = results.get(key, {}).get(variant, [])
        if not runs:
            return "–"
        vals = sorted(r["seconds"] for r in runs)
        return f"{fmt.format(_median(runs, 'seconds'))} ({vals[0]:.3f}–{vals[-1]:.3f})"

    lines = ["| workload | `client.map` s | pyjoule `executor=client` s | ratio | "
             "client CPU s (map / pyjoule) | other |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, label in (("w1", f"W1: {sizes['w1']:,} no-ops"),
                       ("w2", f"W2: {sizes['w2']} × ~20 ms CPU")):
        pj_runs = results[key]["pyjoule"]
        ratio = _median(pj_runs, "seconds") / _median(results[key]["client.map"], "seconds")
        other = ""
        if key == "w2":
            eff = _median(pj_runs, "efficiency")
            eff_map = _median(results[key]["client.map"], "efficiency")
            ok = ratio <= W2_RATIO_TARGET and eff >= W2_EFFICIENCY_TARGET
            floor = results[key].get("2 tasks")
            ceiling = f", 2 tasks {_median(floor, 'efficiency'):.2f}" if floor else ""
            other = (f"efficiency {eff:.2f} (client.map {eff_map:.2f}{ceiling}); "
                     f"targets ratio ≤ "
                     f"{W2_RATIO_TARGET}, efficiency ≥ {W2_EFFICIENCY_TARGET}: "
                     f"{'met' if ok else 'MISSED'}")
        cpu = (f"{_median(results[key]['client.map'], 'client_cpu_s'):.2f} / "
               f"{_median(pj_runs, 'client_cpu_s'):.2f}")
        lines.append(f"| {label} | {cell(key, 'client.map')} | {cell(key, 'pyjoule')} | "
                     f"{ratio:.2f} | {cpu} | {other} |")
    big = results["big"]["pyjoule"]
    growth = _median(big, "peak_rss_growth_mib")
    lines += ["", f"{sizes['big']:,} no-op psets through pyjoule on the same cluster: "
              f"{_median(big, 'seconds'):.1f} s ({_median(big, 'client_cpu_s'):.1f} s "
              "of client CPU), client peak RSS growth "
              f"{growth:.0f} MiB (max {max(r['peak_rss_growth_mib'] for r in big):.0f}; "
              f"target < {BIG_RSS_TARGET_MIB}: "
              f"{'met' if growth < BIG_RSS_TARGET_MIB else 'MISSED'}), "
              f"{min(r['entries'] for r in big):,} entries in the cache.",
              "", f"burn iters {iters:,}; {repeats} repeats, medians (min–max); "
              "share of the machine's CPU busy during the runs (other helpers' load "
              "included): " + ", ".join(
                  f"{k} {_busy(results[k]):.0%}" for k in results)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=2, metavar=("WORKLOAD", "VARIANT"))
    ap.add_argument("--n", type=int)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--output", type=Path)
    a = ap.parse_args()
    if a.one:
        print(MARK + json.dumps(one(a.one[0], a.one[1], a.n, a.iters)), flush=True)
        return
    sizes = QUICK if a.quick else FULL
    repeats = a.repeats or (1 if a.quick else 3)
    iters = workloads.calibrate_burn(0.020)
    plan = [("w1", "client.map"), ("w1", "pyjoule"), ("w2", "client.map"),
            ("w2", "pyjoule"), ("w2", "2 tasks"), ("big", "pyjoule")]
    results: dict = {}
    for r in range(repeats):
        for workload, variant in plan:
            res = measure(workload, variant, sizes[workload], iters, 900)
            results.setdefault(workload, {}).setdefault(variant, []).append(res)
            print(f"[{r + 1}/{repeats}] {workload} {variant}: {res['seconds']:.3f} s "
                  f"{res.get('efficiency', '')} rss+{res['peak_rss_growth_mib']:.0f} MiB",
                  flush=True)
    text = report(results, sizes, iters, repeats)
    out = a.output or OUT / "executors.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (OUT / "executors.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
