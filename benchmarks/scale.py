"""One million psets on one machine (issue #17): time per pset and driver memory of
``f.map`` at 10,000 / 100,000 / 1,000,000 no-op psets, first call and re-call.

```sh
uv run --group bench python benchmarks/scale.py                  # 10k, 100k, 1M; 3 repeats (1M: 1)
uv run --group bench python benchmarks/scale.py --sizes 10000,100000 --repeats 1
uv run --group bench python benchmarks/scale.py --plot docs/img/scale.png --doc docs/benchmarks.md
```

The space is ``pj.grid(i=range(n))`` over ``workloads.noop`` (W1/W3's task): one
dimension, so that the 10,000 case is W1/W3's call and the Dataset is dense at every
size; the cost measured is pyjoule's per pset (plan, claims, launch, the workers'
records, ingest, the Dataset), not the shape's.

Each (size, phase) runs in a fresh interpreter (``--child``): imports first, then a
warm-up ``f.map`` of 200 other psets (the first pool start, the store's creation, the
function's identity: one-time costs, excluded as the issue says), then the measured
call. ``first`` maps onto an empty cache (2 workers); ``recall`` is a new process
re-calling the same space from that cache. Memory is the driver's peak RSS
(``ru_maxrss``: this process only, the workers are not the driver) and its RSS after
the warm-up (psutil), in MiB, and the driver's CPU time (steadier than wall time on
a shared machine). The table goes to ``--markdown``, or with ``--doc`` into that page
as its section SECTION (``run.py`` keeps that section when it rewrites the page);
the figure to ``--plot``.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "SCALE-RESULT "
WARMUP = 200
#: the issue's targets: cost per pset at 1M within 1.2x that at 10k; driver < 1 GB
TARGET_RATIO = 1.2
TARGET_MIB = 1000
SECTION = "## One million psets"


def peak_mib() -> float:
    """This process's peak RSS (not its children's), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def child(n: int, phase: str, cache: str, workers: int) -> dict:
    """One measurement in this fresh interpreter (see the module docstring)."""
    import numpy as np
    import psutil
    import xarray  # noqa: F401  (pyjoule's result type: an import, not the call)

    import pyjoule as pj

    from workloads import noop

    out = {"n": n, "phase": phase, "import_s": time.perf_counter() - T0}
    f = pj.experiment(workers=workers, cache=cache, progress=False)(noop)
    f.map(pj.grid(i=range(-WARMUP, 0)))  # one-time costs, not measured
    out["rss_base_mib"] = psutil.Process().memory_info().rss / 2**20
    space = pj.grid(i=range(n))
    t0, c0 = time.perf_counter(), time.process_time()
    ds = f.map(space)
    out["seconds"] = time.perf_counter() - t0
    out["driver_cpu_s"] = time.process_time() - c0  # steadier than wall on a busy machine
    out["rss_peak_mib"] = peak_mib()
    i = ds["i"].values
    if not (np.array_equal(i, np.arange(n)) and np.array_equal(ds["y"].values, 2 * i)):
        raise AssertionError(f"wrong Dataset at n={n}")
    out["per_pset_us"] = out["seconds"] / n * 1e6
    return out


def run_child(n: int, phase: str, cache: str, workers: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    cmd = [sys.executable, __file__, "--child", phase, "--n", str(n), "--cache", cache,
           "--workers", str(workers)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"{phase} n={n} failed:\n{proc.stdout}\n{proc.stderr}")


def measure(sizes: list[int], repeats: int, workers: int,
            repeats_1m: int | None = None) -> list[dict]:
    """Every size, ``repeats`` times (1M: ``repeats_1m``, default a third), first call
    then re-call; interleaved (10k, 100k, 1M, 10k, ...) so that each 1M run has a 10k
    run measured just before it, under the same load (``rep`` pairs them)."""
    big = max(1, repeats // 3) if repeats_1m is None else repeats_1m
    rows = []
    for rep in range(max(repeats, big)):
        for n in sizes:
            if rep >= (repeats if n < 1_000_000 else big):
                continue
            cache = tempfile.mkdtemp(prefix="pj-scale-")
            try:
                for phase in ("first", "recall"):
                    r = run_child(n, phase, cache, workers)
                    r["rep"] = rep
                    print(f"{phase:6} n={n:>9,}: {r['seconds']:7.3f} s "
                          f"{r['per_pset_us']:6.2f} µs/pset  peak {r['rss_peak_mib']:6.0f} MiB "
                          f"(after warm-up {r['rss_base_mib']:.0f}), "
                          f"driver CPU {r['driver_cpu_s']:.3f} s",
                          flush=True)
                    rows.append(r)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    return rows


def paired_ratios(rows: list[dict], phase: str, small: int, big: int,
                  key: str = "seconds") -> list[float]:
    """Per pset at ``big`` against ``small`` of the same repeat (measured back to back)."""
    by = {(r["rep"], r["n"]): r for r in rows if r["phase"] == phase and "rep" in r}
    return [(by[(k, big)][key] / big) / (by[(k, small)][key] / small)
            for k, n in sorted(by) if n == big and (k, small) in by]


def summary(rows: list[dict]) -> dict:
    """(phase, n) -> median seconds, µs per pset, peak MiB."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["phase"], r["n"]), []).append(r)
    return {k: {"seconds": statistics.median(x["seconds"] for x in v),
                "per_pset_us": statistics.median(x["per_pset_us"] for x in v),
                "rss_peak_mib": max(x["rss_peak_mib"] for x in v),
                "runs": len(v)} for k, v in out.items()}


def markdown(summ: dict, sizes: list[int]) -> str:
    lines = ["| psets | first call | µs/pset | × 10k | peak MiB | re-call | µs/pset | × 10k "
             "| peak MiB |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = {p: summ.get((p, sizes[0]), {}).get("per_pset_us") for p in ("first", "recall")}
    for n in sizes:
        cells = [f"{n:,}"]
        for p in ("first", "recall"):
            s = summ.get((p, n))
            if s is None:
                cells += ["—"] * 4
                continue
            ratio = s["per_pset_us"] / base[p] if base[p] else float("nan")
            cells += [f"{s['seconds']:.3g} s", f"{s['per_pset_us']:.1f}", f"{ratio:.2f}",
                      f"{s['rss_peak_mib']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def replace_section(page: str, head: str, section: str | None) -> str:
    """``page`` with its section ``head`` (up to the next ``## ``) replaced by
    ``section``, or ``section`` inserted before ``## Machine`` (else at the end)."""
    start = page.find("\n" + head + "\n")
    if start >= 0:
        end = page.find("\n## ", start + 1)
        return page[:start + 1] + (section or "") + (page[end + 1:] if end >= 0 else "")
    if not section:
        return page
    at = page.find("\n## Machine\n")
    return page + "\n" + section if at < 0 else page[:at + 1] + section + page[at + 1:]


def section_of(page: str, head: str) -> str | None:
    """The section ``head`` of ``page`` (up to the next ``## ``), or None."""
    start = page.find("\n" + head + "\n")
    if start < 0:
        return None
    end = page.find("\n## ", start + 1)
    return page[start + 1:end + 1 if end >= 0 else len(page)]


def doc_section(summ: dict, sizes: list[int], rows: list[dict]) -> str:
    """The page's section: the table, the targets, how it was measured."""
    import platform

    def ratio(phase):
        small, big = summ.get((phase, sizes[0])), summ.get((phase, sizes[-1]))
        return big["per_pset_us"] / small["per_pset_us"] if small and big else float("nan")

    def cpu_us(phase, n):
        cpu = [r["driver_cpu_s"] for r in rows if r["n"] == n and r["phase"] == phase]
        return statistics.median(cpu) / n * 1e6 if cpu else None

    peak = max(s["rss_peak_mib"] for s in summ.values())
    repeats = ", ".join(f"{n:,}: {summ[('first', n)]['runs']}" for n in sizes
                        if ("first", n) in summ)
    ok = {True: "✅ met", False: "❌ not met"}
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join([
        SECTION, "",
        f"Generated by `benchmarks/scale.py` on {when}"
        f" (Python {platform.python_version()}, {os.cpu_count()} CPUs; load average at the end "
        f"{load[0]:.1f}). `f.map(pj.grid(i=range(n)))` of the no-op `workloads.noop` with 2 "
        "workers, each size and phase in a fresh process after a warm-up call (imports, the "
        "first pool start and the store's creation excluded); *first* = empty cache, *re-call*"
        " = a new process re-calling the same psets from the cache. Medians of the repeats "
        f"({repeats}); "
        "peak = the driver's `ru_maxrss` (the workers are not counted); × 10k = cost per "
        "pset against that at 10,000.", "",
        "![time per pset and driver peak memory against the number of psets, first call "
        "and re-call](img/scale.png)", "",
        markdown(summ, sizes),
        "| target (issue #17) | result |", "| --- | --- |",
        f"| first call: cost per pset at 1M ≤ {TARGET_RATIO} × at 10k | "
        f"{ok[ratio('first') <= TARGET_RATIO]} ({ratio('first'):.2f}×) |",
        f"| re-call: cost per pset at 1M ≤ {TARGET_RATIO} × at 10k | "
        f"{ok[ratio('recall') <= TARGET_RATIO]} ({ratio('recall'):.2f}×) |",
        f"| driver peak < 1 GB | {ok[peak < TARGET_MIB]} ({peak:.0f} MiB) |", "",
        "Driver CPU time per pset (µs), steadier than wall time on this shared machine: "
        + "; ".join(f"{p} {n:,}: {cpu_us(p, n):.1f}" for p in ("first", "recall")
                    for n in sizes if cpu_us(p, n) is not None) + "."
        + "".join(f" Driver CPU, {p}, {sizes[-1]:,} against {sizes[0]:,}: "
                  f"{cpu_us(p, sizes[-1]) / cpu_us(p, sizes[0]):.2f}×."
                  for p in ("first", "recall")
                  if cpu_us(p, sizes[0]) and cpu_us(p, sizes[-1]) is not None), "",
        paired_line(rows, sizes), "",
    ]) + "\n"


def paired_line(rows: list[dict], sizes: list[int]) -> str:
    """Each largest-size run against the smallest-size run of its repeat (measured
    back to back, under the same load)."""
    parts = []
    for phase in ("first", "recall"):
        wall = paired_ratios(rows, phase, sizes[0], sizes[-1])
        cpu = paired_ratios(rows, phase, sizes[0], sizes[-1], "driver_cpu_s")
        if wall:
            parts.append(f"{phase}: wall " + ", ".join(f"{x:.2f}×" for x in wall)
                         + "; driver CPU " + ", ".join(f"{x:.2f}×" for x in cpu))
    if not parts:
        return ""
    return (f"Back to back (each {sizes[-1]:,} run against the {sizes[0]:,} run just "
            "before it): " + "; ".join(parts) + ".")


def plot(summ: dict, sizes: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 3.6))
    for phase, label in (("first", "first call"), ("recall", "re-call from the cache")):
        ns = [n for n in sizes if (phase, n) in summ]
        ax_t.plot(ns, [summ[(phase, n)]["per_pset_us"] for n in ns], "o-", label=label)
        ax_m.plot(ns, [summ[(phase, n)]["rss_peak_mib"] for n in ns], "o-", label=label)
    ax_m.axhline(TARGET_MIB, color="grey", ls="--", lw=1, label="target (1 GB)")
    for ax, title in ((ax_t, "time per pset (µs)"), (ax_m, "driver peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("psets")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    top = max(s["rss_peak_mib"] for s in summ.values())
    ax_m.set_ylim(0, 1.15 * max(TARGET_MIB, top))
    ax_t.legend()
    ax_m.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", choices=("first", "recall"))
    p.add_argument("--n", type=int)
    p.add_argument("--cache")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--repeats", type=int, default=3, help="per size (1M: a third)")
    p.add_argument("--repeats-1m", type=int, help="of 1,000,000 (default: a third)")
    p.add_argument("--json", help="write the raw results here")
    p.add_argument("--from-json", help="measure nothing: render these raw results")
    p.add_argument("--markdown", help="write the table here")
    p.add_argument("--doc", help="write the section SECTION into this page (docs/benchmarks.md)")
    p.add_argument("--plot", help="write the figure here (PNG)")
    a = p.parse_args(argv)
    if a.child:
        print(MARK + json.dumps(child(a.n, a.child, a.cache, a.workers)), flush=True)
        return
    if a.from_json:
        with open(a.from_json) as fh:
            rows = json.load(fh)
        sizes = sorted({r["n"] for r in rows})
    else:
        sizes = [int(s) for s in a.sizes.split(",")]
        rows = measure(sizes, a.repeats, a.workers, a.repeats_1m)
    summ = summary(rows)
    table = markdown(summ, sizes)
    print(table)
    print(paired_line(rows, sizes))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as fh:
            fh.write(table)
    if a.plot:
        plot(summ, sizes, a.plot)
    if a.doc:
        with open(a.doc) as fh:
            page = fh.read()
        with open(a.doc, "w") as fh:
            fh.write(replace_section(page, SECTION, doc_section(summ, sizes, rows)))


if __name__ == "__main__":
    main()
