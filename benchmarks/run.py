"""Run every benchmark side by side and write the tables to ``docs/benchmarks.md``.

    uv run --group bench python benchmarks/run.py            # full run, ~5-10 min
    uv run --group bench python benchmarks/run.py --quick    # smoke test, small sizes

Every (workload, variant, repeat) runs ``bench.py`` in a fresh interpreter. Repeats are
interleaved round-robin in a shuffled order, so that a noisy minute hits every peer.
Untimed steps first: W2's calibration, the cache populates of W3/W4/scale, and one
warm-up pass (writes bytecode caches, warms the OS page cache). See README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scale import SECTION, replace_section, section_of

import envs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "_out"
BENCH = HERE / "bench.py"
MARK = "BENCH-RESULT "
GB = 1e9
W2_REPEATS = 9  # see repeats_of()

FULL = {"w1": 10_000, "w2": 200, "w3": 10_000, "w4": "10x100x100", "scale": 1_000_000,
        "scale_cached": 10_000}
QUICK = {"w1": 1_000, "w2": 40, "w3": 1_000, "w4": "10x10x100", "scale": 100_000,
         "scale_cached": 1_000}

PEERS = {
    "w1": ["floor", "pool", "joblib", "psweep", "pyjoule"],
    "w2": ["probe", "serial", "pool", "joblib", "psweep", "pyjoule"],
    "w3": ["floor", "joblib", "psweep", "pyjoule"],
    "w4": ["numpy", "pyjoule-load", "pyjoule-load-sparse", "pyjoule-map",
           "pyjoule-map-sparse"],
    "scale": ["pyjoule"],
    "w5": ["floor", "pool", "joblib", "psweep", "pyjoule"],
}
LABELS = {
    "floor": "floor", "pool": "`multiprocessing.Pool`", "joblib": "joblib", "psweep": "psweep",
    "pyjoule": "**pyjoule**", "serial": "serial list comprehension",
    "numpy": "numpy scatter (reference)", "pyjoule-load": "**pyjoule** `pj.load(f)` (auto: dense)",
    "pyjoule-load-sparse": "**pyjoule** `pj.load(f, sparse=True)`",
    "pyjoule-map": "**pyjoule** `f.map(space)` (auto: dense)",
    "pyjoule-map-sparse": "**pyjoule** `f.map(space, sparse=True)`",
}
ENV_PEERS = ("joblib", "pyjoule")  # run in every environment of envs.py
PYTHONS: dict = {}  # environment name -> its interpreter, set by main()
W1_LABELS = {"floor": "list comprehension (floor)", "pool": "`multiprocessing.Pool(2).map`",
             "joblib": "`joblib.Parallel(n_jobs=2)`", "psweep": "psweep (`poolsize=2`)"}
W3_LABELS = {"floor": "sha256(JSON) + dict, 1 pickle (floor)",
             "joblib": "`joblib.Memory` re-call", "psweep": "psweep `skip_dups=True` re-run",
             "pyjoule": "**pyjoule** `f.map(space)` (all cached)"}


def jkey(workload, variant, env="bare"):
    """A job's key: (workload, variant), plus the environment where it is not the bare one."""
    return (workload, variant) + ((env,) if env != "bare" else ())


@dataclass
class Job:
    workload: str
    variant: str
    args: list
    cache: str | None = None  # None, "fresh", "copy:<master>" or "share:<master>"
    sample_tree: bool = False
    env: str = "bare"  # the environment of envs.py it runs in
    results: list = field(default_factory=list)

    @property
    def key(self):
        return jkey(self.workload, self.variant, self.env)

    @property
    def is_pyjoule(self):
        return self.variant.startswith("pyjoule")


# --- child processes ------------------------------------------------------------------


def child_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOULE_")}
    # Users' installs have bytecode caches; this sandbox sets PYTHONDONTWRITEBYTECODE and
    # uv does not compile on install, which made every fresh import recompile pandas.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env


def tree_pss_mib(pid):
    """PSS of ``pid`` and all its descendants, from /proc/<pid>/smaps_rollup."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total / 1024


def cpu_busy_s():
    """CPU seconds the whole machine spent busy (all CPUs, steal included), /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return (sum(f[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s():
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def foreign_load(busy0, own0, wall):
    """Fraction of the machine's CPUs used by processes other than ours over ``wall`` s."""
    ncpu = os.cpu_count() or 1
    return max(0.0, (cpu_busy_s() - busy0) - (own_cpu_s() - own0)) / (wall * ncpu)


def wait_idle(max_wait_s, threshold=0.10, sample_s=0.3):
    """Wait (up to ``max_wait_s``) until other processes use < ``threshold`` of the CPUs."""
    t0 = time.perf_counter()
    while True:
        busy0, own0 = cpu_busy_s(), own_cpu_s()
        time.sleep(sample_s)
        load = foreign_load(busy0, own0, sample_s)
        if load < threshold or time.perf_counter() - t0 > max_wait_s:
            return load


def run_child(argv, timeout_s, sample_tree=False, python=None):
    """Run ``bench.py argv`` in a fresh interpreter (``python``, default: the bare
    environment's); return its result dict."""
    cmd = [str(python or PYTHONS.get("bare", sys.executable)), str(BENCH), *map(str, argv)]
    busy0, own0 = cpu_busy_s(), own_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    peak_pss = 0.0
    try:
        if sample_tree:
            while proc.poll() is None:
                peak_pss = max(peak_pss, tree_pss_mib(proc.pid))
                if time.perf_counter() - t0 > timeout_s:
                    raise subprocess.TimeoutExpired(cmd, timeout_s)
                time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=max(1, timeout_s - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: it and its workers
        proc.communicate()
        return {"ok": False, "error": f"timeout after {timeout_s:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARK)]
    if not lines:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        return {"ok": False, "error": f"exit {proc.returncode}, no result; stderr: {tail}"}
    res = json.loads(lines[-1][len(MARK):])
    res["process_wall_s"] = wall
    res["foreign_load"] = foreign_load(busy0, own0, wall)
    if sample_tree:
        res["tree_pss_mib"] = peak_pss
    leftover = leftover_children(proc.pid)
    if leftover:
        res["note"] = (res.get("note", "") + f" left {leftover} process(es) behind").strip()
    return res


def leftover_children(sid, grace_s=3.0):
    """Count, then kill, processes still in the child's session after a grace period."""
    import psutil

    def members():
        found = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == sid:
                    found.append(p)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass
        return found

    left = members()
    if left:
        _, left = psutil.wait_procs(left, timeout=grace_s)  # e.g. loky workers winding down
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(left)


# --- plan -----------------------------------------------------------------------------


def make_jobs(sizes, workers, selected, variant_filter, other_envs=()):
    jobs = []
    w = ["--workers", workers]
    for v in PEERS["w1"]:
        jobs.append(Job("w1", v, ["--n", sizes["w1"], *w], cache="fresh"))
        jobs.append(Job("w5", v, ["--n", sizes["w1"], *w], cache="fresh", sample_tree=True))
    for env in other_envs:  # W1 and W3 again, where e.g. dask is installed (issue #15)
        for v in ENV_PEERS:
            jobs.append(Job("w1", v, ["--n", sizes["w1"], *w], cache="fresh", env=env))
            mode = "share" if v == "joblib" else "copy"
            jobs.append(Job("w3", v, ["--n", sizes["w3"], *w], cache=f"{mode}:w3-{v}", env=env))
    for v in PEERS["w2"]:
        jobs.append(Job("w2", v, ["--n", sizes["w2"], *w], cache="fresh"))
    for v in PEERS["w3"]:
        # joblib.Memory and the floor only read on a hit: share one populated cache
        mode = "share" if v in ("joblib", "floor") else "copy"
        jobs.append(Job("w3", v, ["--n", sizes["w3"], *w], cache=f"{mode}:w3-{v}"))
    for v in PEERS["w4"]:
        cache = "copy:w4-pyjoule" if v != "numpy" else None
        jobs.append(Job("w4", v, ["--shape", sizes["w4"], *w], cache=cache))
    jobs.append(Job("scale", "pyjoule", ["--n", sizes["scale"], *w], cache="copy:scale-pyjoule"))
    for env in other_envs:  # every other pyjoule workload there too (issue #17)
        jobs += [dataclasses.replace(j, env=env, results=[]) for j in list(jobs)
                 if j.env == "bare" and j.is_pyjoule and j.workload not in ("w1", "w3")]
    jobs = [j for j in jobs if j.workload in selected]
    if variant_filter:
        jobs = [j for j in jobs if j.variant in variant_filter or j.variant == "probe" or
                (j.is_pyjoule and "pyjoule" in variant_filter)]
    return jobs


SETUP_ARGS = {  # master cache name -> (workload, setup variant, argv builder)
    "w3-floor": ("w3", "floor", lambda s, w: ["--n", s["w3"]]),
    "w3-joblib": ("w3", "joblib", lambda s, w: ["--n", s["w3"]]),
    "w3-psweep": ("w3", "psweep", lambda s, w: ["--n", s["w3"], "--workers", w]),
    "w3-pyjoule": ("w3", "pyjoule", lambda s, w: ["--n", s["w3"], "--workers", w]),
    "w4-pyjoule": ("w4", "pyjoule", lambda s, w: ["--shape", s["w4"], "--workers", w]),
    "scale-pyjoule": ("scale", "pyjoule", lambda s, w: ["--n", s["scale"], "--cached",
                                                        s["scale_cached"], "--workers", w]),
}


def prepare_cache(job, tmp, masters):
    """The ``--cache`` directory for one run of ``job`` (untimed)."""
    if job.cache is None:
        return None
    d = Path(tmp) / f"{job.workload}-{job.variant}-{time.monotonic_ns()}"
    if job.cache == "fresh":
        d.mkdir(parents=True)
        return d
    mode, name = job.cache.split(":")
    if mode == "share":
        return masters[name]
    shutil.copytree(masters[name], d, symlinks=True)
    return d


# --- stats and tables -----------------------------------------------------------------


def stat(job, metric):
    vals = [r[metric] for r in job.results if r.get("ok") and r.get(metric) is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt_t(x):
    if x is None:
        return "–"
    if x < 0.01:
        return f"{x * 1e3:.2f} ms"
    if x < 1:
        return f"{x * 1e3:.0f} ms" if x >= 0.1 else f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def fmt_stat(s, fmt=fmt_t):
    if s is None:
        return "–"
    med, lo, hi = s
    if len({fmt(med), fmt(lo), fmt(hi)}) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(lo)}–{fmt(hi)})"


def fmt_mib(x):
    return "–" if x is None else f"{x:.0f} MiB"


def fmt_ratio(x):
    if x is None:
        return "–"
    return f"{x:.2f}×" if x < 10 else f"{x:.0f}×"


def status(job):
    """None if the job has numbers; otherwise why not."""
    if job is None:
        return "not run"
    if any(r.get("ok") for r in job.results):
        return None
    if not job.results:
        return "not run"
    r = job.results[-1]
    if "unavailable" in r:
        return "not available yet"
    return "error: " + str(r.get("error", "?")).splitlines()[0][:160]


def verdict(ok, ratio_text):
    return f"{'✅ pass' if ok else '❌ fail'} ({ratio_text})"


def med(job, metric):
    s = stat(job, metric) if job else None
    return s[0] if s else None


def row(*cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def failures_of(job):
    """'' if every run succeeded, else 'k/N runs ok (first error)'."""
    bad = [r for r in job.results if not r.get("ok")]
    if not bad:
        return ""
    first = str(bad[0].get("error") or bad[0].get("unavailable") or "?").splitlines()[0][:160]
    ok = len(job.results) - len(bad)
    return f"**only {ok}/{len(job.results)} runs ok** (first error: {first})"


def notes_of(job):
    notes = sorted({r["note"] for r in job.results if r.get("note")})
    return "; ".join(filter(None, [failures_of(job), *notes]))


def load_line(jobs, workload):
    """How busy the rest of the machine was during this workload's runs."""
    loads = [r["foreign_load"] for j in jobs if j.workload == workload
             for r in j.results if r.get("foreign_load") is not None]
    if not loads:
        return ""
    warn = " **Noisy: compare ratios only.**" if statistics.median(loads) > 0.10 else ""
    return (f"CPU used by other processes during these runs: median "
            f"{statistics.median(loads):.0%}, max {max(loads):.0%} of the machine.{warn}\n")


def env_sentence(others):
    if not others:
        return ""
    return (" " + ", ".join(f"*{envs.LABELS[e]}*" for e in others) + ": the same runs in "
            "an environment that also has " + ", ".join(e for e in others) + " installed "
            "(not imported by the workload; see *Method*), for the peers that differ there.")


def env_heads(what, others):
    return [f"{what} {envs.LABELS[e]}" for e in others]


def env_cells(J, workload, variant, others):
    cells = []
    for env in others:
        j = J.get(jkey(workload, variant, env))
        why = status(j) if j is not None else None
        cells.append("–" if j is None else why or fmt_stat(stat(j, "seconds")))
    return cells


def env_suffix(env, others):
    return f" ({envs.LABELS[env]})" if others else ""


def tables(jobs, ctx):
    J = {j.key: j for j in jobs}
    others = ctx.get("other_envs", [])
    out = []
    targets = []

    def add(text):
        out.append(text)
        if text.startswith("## "):  # right under each heading
            wl = {"W1": "w1", "W2": "w2", "W3": "w3", "W4": "w4", "Sc": "scale", "W5": "w5"}
            line = load_line(jobs, wl.get(text[3:5], ""))
            if line:
                out.append(line)

    def pj_target(name, job, check):
        why = status(job)
        partial = failures_of(job)
        targets.append(row(name, why if why else check() + (f" — {partial}" if partial else "")))

    # W1
    if any(j.workload == "w1" for j in jobs):
        n = ctx["sizes"]["w1"]
        floor = med(J.get(("w1", "floor")), "seconds")
        add(f"## W1 — {n:,} no-op psets, {ctx['workers']} workers, cold, end to end\n")
        add("End to end = pool start + map + shutdown (pyjoule: decorate + `f.map` with an "
            "empty cache, everything persisted, Dataset returned). *warm* = a second map "
            "in the same process with other psets." + env_sentence(others) + "\n")
        add(row("variant", "e2e", *env_heads("e2e", others), "× floor", "warm", "imports",
                "driver peak RSS", "notes"))
        add(row(*["---"] * (7 + len(others))))
        for v in PEERS["w1"]:
            j = J.get(("w1", v))
            if j is None:
                continue
            label = W1_LABELS.get(v, LABELS[v])
            cells = env_cells(J, "w1", v, others)
            why = status(j)
            if why:
                add(row(label, why, *cells, "", "", "", "", ""))
                continue
            m = med(j, "seconds")
            add(row(label, fmt_stat(stat(j, "seconds")), *cells,
                    fmt_ratio(m / floor) if floor else "–",
                    fmt_stat(stat(j, "warm_s")), fmt_t(med(j, "import_s")),
                    fmt_mib(med(j, "rss_peak_mib")), notes_of(j)))
        add("")
        for env in ["bare", *others]:
            j = J.get(jkey("w1", "pyjoule", env))
            jl = med(J.get(jkey("w1", "joblib", env)), "seconds")
            if j is None:
                continue

            def c1(j=j, jl=jl):
                m = med(j, "seconds")
                if jl is None:
                    return "no joblib number"
                return verdict(m <= jl, f"{fmt_t(m)} vs joblib {fmt_t(jl)}: {m / jl:.2f}×")
            pj_target("W1: e2e ≤ `joblib.Parallel(n_jobs=2)`" + env_suffix(env, others), j, c1)

    # W2
    if any(j.workload == "w2" for j in jobs):
        n, w = ctx["sizes"]["w2"], ctx["workers"]
        task = ctx.get("task_s")
        ideal = n * task / w if task else None
        add(f"## W2 — {n} psets × ~20 ms of pure-Python CPU (calibrated), {w} workers\n")
        probe = stat(J.get(("w2", "probe")), "seconds") if J.get(("w2", "probe")) else None
        add(f"`burn(i, iters)` with `iters={ctx.get('iters')}`, calibrated in the driver. Task "
            f"time = median of the driver's timing before ({fmt_t(ctx.get('task_before_s'))}) "
            f"and after the run ({fmt_t(ctx.get('task_after_s'))}) and of one probe per repeat "
            f"in a fresh process between the other runs ({fmt_stat(probe)}). Ideal = {n} × "
            f"task / {w} = {fmt_t(ideal)}. *Calibrated efficiency* = ideal / wall "
            "(BASELINE.md's method).\n")
        add("This VM's speed is not steady (the same `burn` call has been seen to take ~11 "
            "or ~19 ms, switching every 0.5–2 s), so an ideal taken from timings outside the "
            "runs can be off by ±30 % for a given run (efficiencies above 1.00 show it). Each task "
            "therefore times itself, and the **target is checked on the in-run efficiency "
            "(CPU)** = sum of the CPU time each task's thread got / (workers × wall). It "
            "needs no calibration, and it counts as overhead everything that is not the "
            "task running: start-up, shutdown, idle workers, IPC, and CPU taken from the "
            "workers by the framework's other processes. *In-run (wall)* uses the tasks' "
            "wall times instead, so CPU taken from a worker mid-task is not counted against "
            "it. *Task CPU* = CPU time per task, to show whether a framework makes the task "
            "itself slower.\n")
        add(row("variant", "wall", "calibrated efficiency", "in-run efficiency (CPU)",
                "in-run (wall)", "task CPU", "notes"))
        add(row(*["---"] * 7))
        add(row("ideal", fmt_t(ideal), "1.00", "1.00", "1.00", "", ""))

        def per_run(j, key, div):
            xs = [r[key] / div(r) for r in j.results if r.get("ok") and r.get(key)]
            return (statistics.median(xs), min(xs), max(xs)) if xs else None

        def two(x):
            return f"{x:.2f}"

        for v in PEERS["w2"]:
            j = J.get(("w2", v))
            if j is None or v == "probe":
                continue
            why = status(j)
            if why:
                add(row(LABELS[v], why, "", "", "", "", ""))
                continue
            s = stat(j, "seconds")
            cpu = per_run(j, "task_cpu_s", lambda r: w * r["seconds"])
            wall = per_run(j, "task_sum_s", lambda r: w * r["seconds"])
            task_cpu = per_run(j, "task_cpu_s", lambda r: n)
            task_s = fmt_stat(task_cpu) if task_cpu else "–"
            if v == "serial":
                eff = f"{s[0] / n * 1e3:.1f} ms per task (cross-check)"
                cpu_s = f"({cpu[0] * w:.2f} with 1 worker)" if cpu else "–"
                wall_s = f"({wall[0] * w:.2f})" if wall else "–"
            else:
                eff = fmt_stat((ideal / s[0], ideal / s[2], ideal / s[1]), two) \
                    if ideal else "–"
                cpu_s = f"**{fmt_stat(cpu, two)}**" if cpu else "–"
                wall_s = fmt_stat(wall, two) if wall else "–"
            add(row(LABELS[v], fmt_stat(s), eff, cpu_s, wall_s, task_s, notes_of(j)))
        add("")
        j = J.get(("w2", "pyjoule"))
        if j is not None:
            def c2():
                cpu = per_run(j, "task_cpu_s", lambda r: w * r["seconds"])
                if cpu is None:
                    return "no task CPU times"
                pool_j = J.get(("w2", "pool"))
                pool = per_run(pool_j, "task_cpu_s", lambda r: w * r["seconds"]) \
                    if pool_j is not None else None
                extra = f"; Pool {pool[0]:.2f}" if pool else ""
                if ideal:
                    extra += f"; calibrated {ideal / med(j, 'seconds'):.2f}"
                return verdict(cpu[0] >= 0.95, f"in-run efficiency (CPU) {cpu[0]:.2f}{extra}")
            pj_target("W2: parallel efficiency ≥ 0.95", j, c2)

    # W3
    if any(j.workload == "w3" for j in jobs):
        n = ctx["sizes"]["w3"]
        floor = med(J.get(("w3", "floor")), "seconds")
        jl = med(J.get(("w3", "joblib")), "seconds")
        add(f"## W3 — re-call {n:,} cached psets\n")
        add("The cache is populated in a separate, untimed process; the re-call is timed in a "
            "fresh process (first call, the headline) and again in the same process (*warm*). "
            "pyjoule: decorate + `f.map(space)` until the Dataset is returned."
            + env_sentence(others) + "\n")
        add(row("variant", "re-call (fresh process)", *env_heads("re-call", others), "× floor",
                "× joblib.Memory", "warm", "imports", "driver peak RSS", "notes"))
        add(row(*["---"] * (8 + len(others))))
        for v in PEERS["w3"]:
            j = J.get(("w3", v))
            if j is None:
                continue
            cells = env_cells(J, "w3", v, others)
            why = status(j)
            if why:
                add(row(W3_LABELS[v], why, *cells, *[""] * 6))
                continue
            m = med(j, "seconds")
            add(row(W3_LABELS[v], fmt_stat(stat(j, "seconds")), *cells,
                    fmt_ratio(m / floor) if floor else "–", f"{m / jl:.2f}×" if jl else "–",
                    fmt_stat(stat(j, "warm_s")), fmt_t(med(j, "import_s")),
                    fmt_mib(med(j, "rss_peak_mib")), notes_of(j)))
        add("")
        for env in ["bare", *others]:
            j = J.get(jkey("w3", "pyjoule", env))
            jm = med(J.get(jkey("w3", "joblib", env)), "seconds")
            if j is None:
                continue

            def c3(j=j, jm=jm):
                m = med(j, "seconds")
                if jm is None:
                    return "no joblib.Memory number"
                return verdict(m <= 0.15 * jm, f"{fmt_t(m)} = {m / jm:.3f}× joblib.Memory "
                               f"{fmt_t(jm)}; limit {fmt_t(0.15 * jm)}")
            pj_target("W3: re-call ≤ 0.15 × `joblib.Memory`" + env_suffix(env, others), j, c3)

    # W4
    if any(j.workload == "w4" for j in jobs):
        ref = med(J.get(("w4", "numpy")), "seconds")
        npts = med(J.get(("w4", "numpy")), "n") or med(J.get(("w4", "pyjoule-map")), "n")
        shape = ctx["sizes"]["w4"].replace("x", "×")
        add(f"## W4 — {int(npts or 0):,} results on a {shape} grid (20 % missing) → arrays\n")
        add("Headline = *warm* (the second assembly in the process, as in BASELINE.md). "
            "*first call* = the first one in a fresh process (lazy imports, numba JIT). "
            "*first use* = the first `ds.y.sel(a=3).mean()` on the result, in the same "
            "fresh process. pyjoule reads from a cache populated in an untimed process; the "
            "reference is given the result dicts in memory and the grid coordinates.\n")
        add(row("variant", "warm", "× numpy scatter", "first call", "first use (`.sel`+`.mean`)",
                "backing", "driver peak RSS", "notes"))
        add(row(*["---"] * 8))
        for v in PEERS["w4"]:
            j = J.get(("w4", v))
            if j is None:
                continue
            why = status(j)
            if why:
                add(row(LABELS[v], why, *[""] * 6))
                continue
            m = med(j, "seconds")
            backing = {r.get("backing") for r in j.results if r.get("ok")} - {None}
            add(row(LABELS[v], fmt_stat(stat(j, "seconds")), fmt_ratio(m / ref) if ref else "–",
                    fmt_stat(stat(j, "first_s")), fmt_stat(stat(j, "first_use_s")),
                    ", ".join(sorted(backing)) or "numpy", fmt_mib(med(j, "rss_peak_mib")),
                    notes_of(j)))
        add("")
        add("The targets apply to reading the cache and assembling (`pj.load`). A re-call "
            "`f.map(space)` also normalises and hashes the 80,000 psets and looks each up "
            "(≈ 3 µs per pset); it is shown for information.\n")
        for v in ("pyjoule-load", "pyjoule-load-sparse"):
            j = J.get(("w4", v))
            if j is None:
                continue

            def c4(j=j):
                m = med(j, "seconds")
                if ref is None:
                    return "no reference number"
                s = verdict(m <= 1.5 * ref, f"{fmt_t(m)} = {m / ref:.2f}× numpy {fmt_t(ref)}")
                if j.variant.endswith("sparse"):
                    s += f"; first use {fmt_t(med(j, 'first_use_s'))} (reported, no target)"
                return s
            pj_target(f"W4: {LABELS[j.variant]} warm ≤ 1.5 × numpy scatter", j, c4)

    # Scale
    j = J.get(("scale", "pyjoule"))
    if j is not None:
        n = ctx["sizes"]["scale"]
        add(f"## Scale — planning {n:,} psets\n")
        add(f"`pyjoule_plan(f, space)` in `benchmarks/bench.py` (normalise with the default "
            f"filled in, hash, cache lookup; nothing runs) on {n:,} psets "
            f"`{{a: int, b: float, c: str}}` of `scale_func(a, b, c, d=\"x\")`, with "
            f"{ctx['sizes']['scale_cached']:,} of them cached by an untimed process. "
            "Driver peak RSS counts the space itself (*space built*).\n")
        add(row("variant", "plan", "driver peak RSS", "RSS with space built", "notes"))
        add(row(*["---"] * 5))
        why = status(j)
        if why:
            add(row(LABELS["pyjoule"], why, "", "", ""))
        else:
            add(row(LABELS["pyjoule"], fmt_stat(stat(j, "seconds")),
                    fmt_mib(med(j, "rss_peak_mib")), fmt_mib(med(j, "rss_space_mib")), notes_of(j)))
        add("")

        def c5():
            t, rss = med(j, "seconds"), med(j, "rss_peak_mib")
            ok = t < 10 and rss * 2**20 < 1.5 * GB
            return verdict(ok, f"{fmt_t(t)}, peak {rss * 2**20 / GB:.2f} GB")
        pj_target(f"Scale: plan {n:,} psets < 10 s, driver < 1.5 GB", j, c5)

    # W5
    if any(j.workload == "w5" for j in jobs):
        add("## W5 — memory during W1\n")
        add("W1 again, in separate runs: driver peak = `ru_maxrss` of the process calling the "
            "peer's API, read right after the e2e map; growth = that minus the peak after "
            "imports; tree = driver plus descendants, PSS summed from `/proc/<pid>/smaps_rollup` "
            "every 50 ms by run.py.\n")
        add(row("variant", "driver peak RSS", "growth during W1", "tree peak PSS", "e2e (this run)",
                "notes"))
        add(row(*["---"] * 6))
        for v in PEERS["w5"]:
            j = J.get(("w5", v))
            if j is None:
                continue
            label = W1_LABELS.get(v, LABELS[v])
            why = status(j)
            if why:
                add(row(label, why, "", "", "", ""))
                continue
            growth = [r["rss_peak_mib"] - r["rss_after_import_mib"]
                      for r in j.results if r.get("ok")]
            add(row(label, fmt_stat(stat(j, "rss_peak_mib"), fmt_mib),
                    fmt_mib(statistics.median(growth)), fmt_stat(stat(j, "tree_pss_mib"), fmt_mib),
                    fmt_t(med(j, "seconds")), notes_of(j)))
        add("")
        j = J.get(("w5", "pyjoule"))
        if j is not None:
            def c6():
                m, ps = med(j, "rss_peak_mib"), med(J.get(("w5", "psweep")), "rss_peak_mib")
                if ps is None:
                    return "no psweep number"
                return verdict(m <= ps, f"{m:.0f} MiB vs psweep {ps:.0f} MiB")
            pj_target("W5: driver peak RSS during W1 ≤ psweep's", j, c6)

    # every other pyjoule workload in the other environments (issue #17)
    pairs = [(j, J.get(jkey(j.workload, j.variant))) for j in jobs
             if j.env != "bare" and j.workload not in ("w1", "w3")]
    pairs = [(j, b) for j, b in pairs if b is not None]
    if pairs:
        add("## pyjoule in every environment\n")
        add("W2, W4, W5 and the scale plan of pyjoule, run again in each other environment "
            "(" + ", ".join(f"*{envs.LABELS[e]}*" for e in others) + "; W1 and W3 have their "
            "own columns above). Nothing in the workloads imports dask or ray: the rows show "
            "what having them installed costs pyjoule.\n")
        add(row("workload", "variant", "measure", "bare environment", "other environment",
                "other / bare"))
        add(row(*["---"] * 6))
        for j, b in pairs:
            metric, fmt = ("rss_peak_mib", fmt_mib) if j.workload == "w5" \
                else ("seconds", fmt_t)
            why = status(j) or status(b)
            if why:
                add(row(j.workload.upper(), LABELS.get(j.variant, j.variant), metric, why, "", ""))
                continue
            mb, mo = med(b, metric), med(j, metric)
            add(row(j.workload.upper(), LABELS.get(j.variant, j.variant),
                    "driver peak RSS" if metric == "rss_peak_mib" else "wall",
                    fmt_stat(stat(b, metric), fmt), fmt_stat(stat(j, metric), fmt)
                    + f" ({envs.LABELS[j.env]})", f"{mo / mb:.2f}×" if mb else "–"))
        add("")

    head = [row("target (issue #2)", "result (medians of this run)"), row("---", "---"), *targets]
    return head, out


# --- machine and document ---------------------------------------------------------------


def sh(*cmd):
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh
                        if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
            mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    names = ["pyjoule", "numpy", "pandas", "xarray", "sparse", "numba", "joblib", "psweep"]
    found = envs.versions(PYTHONS.get("bare", sys.executable), names)
    vers = [f"{d} {found[d]}" for d in names if d in found]
    for env, python in PYTHONS.items():
        extra = envs.versions(python, ["dask"])
        if env != "bare" and python != PYTHONS.get("bare") and extra:
            vers.append(f"dask {extra['dask']} ({envs.LABELS[env]})")
    commit = sh("git", "rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if sh("git", "status", "--porcelain") else ""
    return {
        "nproc": f"{len(os.sched_getaffinity(0))} usable ({os.cpu_count()} in the machine)",
        "cpu": cpu, "memory": mem, "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "packages": ", ".join(vers),
        "commit": commit + dirty, "fs": sh("stat", "-f", "-c", "%T", str(OUT)),
    }


def env_method(ctx):
    """The Method bullet on the environments (none for a run without them)."""
    others = ctx.get("other_envs")
    if not others:
        return []
    return ["- Environments (`benchmarks/envs.py`): every child runs in a uv environment "
            "synced from `uv.lock` under `benchmarks/_out/`: *bare* = the project and the "
            "`bench` group, for every workload; " + "; ".join(
                f"*{envs.LABELS[e]}* = the same plus pyjoule's `dask` and `ray` extras and "
                f"the `{e}` group, for every pyjoule workload and for joblib in W1 and W3"
                for e in others) + ". Nothing in the workloads imports dask or ray: what "
            "they cost there is what a library pays for finding them installed (issues #15, "
            "#17). The caches are populated once, in the bare environment."]


def document(head, body, ctx, mach, cmd):
    load = ctx["load"]
    fmed, fmax = ctx.get("foreign", (0.0, 0.0))
    busy = fmed > 0.05
    w2_more = f", W2 {ctx['w2_repeats']}" if ctx.get("w2_repeats", ctx["repeats"]) \
        != ctx["repeats"] else ""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `benchmarks/run.py` on {ctx['date']} "
        f"({'**quick smoke test, not representative**, ' if ctx['quick'] else ''}"
        f"{ctx['repeats']} repeat{'s' if ctx['repeats'] != 1 else ''}"
        f"{w2_more}, {ctx['elapsed']:.0f} s). "
        f"Reproduce with:",
        "",
        "```sh",
        cmd,
        "```",
        "",
        "Figures are medians over the repeats, with min–max in parentheses. Sub-second medians "
        "move by up to ±25 % between runs on shared machines: compare numbers of the same run, "
        "as ratios (this page). Peers and workloads are those of `BASELINE.md` "
        "(see *Method*).",
        "",
    ]
    if busy:
        lines += [f"> **Note:** the machine was not idle: other processes used a median "
                  f"{fmed:.0%} (max {fmax:.0%}) of its CPUs during the measured runs (1-min load "
                  f"average {load['start'][0]:.2f} at the start, {load['end'][0]:.2f} at the end). "
                  "Absolute figures are inflated; see each section's line.", ""]
    lines += ["## pyjoule against its targets", "", *head, "", *body]
    lines += [
        "## Method",
        "",
        "- Every (variant, workload, repeat) runs `benchmarks/bench.py` in a **fresh "
        "interpreter**; the repeats are interleaved round-robin in a shuffled order. W2 gets "
        f"at least {W2_REPEATS} repeats: its verdict is within this VM's noise. Per-run "
        f"timeout {ctx['timeout']:.0f} s.",
        "- Each script does its imports first (the *imports* column: from the first line of "
        "`bench.py` "
        "to the end of the imports). For pyjoule that is `import pyjoule, xarray`: xarray is "
        "counted as one of pyjoule's imports because the Dataset is its result type. Then only "
        "the measured region is timed with `perf_counter`, and every result is checked "
        "outside it (`y == 2*i` for every pset; W4: every grid cell, holes included).",
        "- Untimed preparation, before the repeats: W2's calibration (after 1 s of spinning: "
        "an idle CPU here runs its first ~0.2 s of work up to 1.7× slower); populating the caches "
        "of W3 (joblib.Memory, psweep, the floor's pickle, pyjoule), W4 and *Scale*, each in "
        "its own process; and one warm-up pass of every variant (writes the bytecode caches "
        "a normal install has, warms the OS page cache). Per run, pyjoule and psweep get a "
        "copy of the populated cache (or an empty directory for W1/W2), so no run sees "
        "another's writes; joblib.Memory and the floor only read on a hit and share theirs.",
        "- pyjoule is configured `@pj.experiment(workers=2, cache=<that directory>, "
        "progress=False)` and used through its public API only (`f.map`, `pj.load`). Caches "
        f"live under `benchmarks/_out/` on the project's file system ({mach['fs']}), not in "
        "a tmpfs. `PYJOULE_*` environment variables are removed for the children.",
        *env_method(ctx),
        "- W1/W2 *e2e* = pool start + map + shutdown. `multiprocessing.Pool` uses its default "
        "(fork) context and chunking; joblib its default loky backend; psweep "
        "`ps.run(func, params, poolsize=2)` with result key `y_` (psweep's convention, without "
        "which `skip_dups` silently re-runs everything).",
        "- W4: grid `a` = 0..9 (int) × `b` = 0.0, 0.1, …, 9.9 (float) × `c` = 0..99 (int), "
        "exactly 20 % of the points missing at random (fixed seed), results "
        "`{\"y\": float}` in shuffled order. The numpy reference gets the 80,000 result dicts "
        "`{a, b, c, y}` in memory and the known coordinates and scatters `y` into a "
        "NaN-filled array (`np.searchsorted` per dimension).",
        "- *CPU used by other processes* = the machine's busy CPU time from `/proc/stat` "
        "(steal included) minus the CPU time of run.py and its children, over each run's wall "
        "time; above ~10 % the absolute figures are inflated. `--wait-idle S` makes run.py "
        "wait (up to S s per run) for a quiet machine first."
        + (f" This run used `--wait-idle {ctx['wait_idle']:g}`." if ctx.get("wait_idle") else ""),
        "- Raw results of this run: " + f"`{ctx['raw']}` (not committed).",
        "",
        "## Machine",
        "",
        f"- CPUs: {mach['nproc']}, {mach['cpu']}; memory {mach['memory']}; {mach['os']}",
        f"- Python {mach['python']}; {mach['packages']}",
        f"- pyjoule commit {mach['commit']}",
        f"- load average (1, 5, 15 min): start {', '.join(f'{x:.2f}' for x in load['start'])}; "
        f"end {', '.join(f'{x:.2f}' for x in load['end'])}",
        "",
        "## Other benchmark pages",
        "",
        "- Remote hosts over SSH (issue #3): [benchmarks-remote.md](benchmarks-remote.md), "
        "from `benchmarks/remote.py`.",
        "- SLURM arrays against submitit (issue #4): [benchmarks-slurm.md]"
        "(benchmarks-slurm.md), from `benchmarks/slurm.py`.",
        "",
    ]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------


def populate(name, sizes, workers, tmp, timeout_s):
    workload, variant, argv = SETUP_ARGS[name]
    d = Path(tmp) / f"master-{name}"
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    res = run_child(["--workload", workload, "--variant", variant, "--setup", "--cache", d,
                     *argv(sizes, workers)], timeout_s)
    outcome = "ok" if res.get("ok") else res.get("unavailable") or res.get("error")
    log(f"  populate {name}: {outcome} ({time.perf_counter() - t0:.1f} s)")
    return d, res


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pyjoule_available():
    code = "import pyjoule; print(hasattr(pyjoule, 'experiment'))"
    out = subprocess.run([str(PYTHONS.get("bare", sys.executable)), "-c", code], check=False,
                         capture_output=True, text=True, env=child_env(), cwd=ROOT)
    return out.stdout.strip() == "True"


def repeats_of(job, a):
    """W2's figures sit within this VM's noise (the same task has taken ~11 or ~19 ms
    from one second to the next), so W2 gets at least ``W2_REPEATS`` repeats."""
    if job.workload == "w2" and not a.quick:
        return max(a.repeats, W2_REPEATS)
    return a.repeats


def warmup_args(job, sizes):
    """A small version of ``job`` for the warm-up pass."""
    args = list(job.args)
    if job.workload in ("w1", "w5", "w2"):
        args[args.index("--n") + 1] = 4 if job.workload == "w2" else 200
    if job.workload == "scale":
        args[args.index("--n") + 1] = 10_000
    return args


def _heads(page):
    return [line for line in page.splitlines() if line.startswith("## ")]


def keep_sections(new, old):
    """``new`` with every section of ``old`` that run.py does not write itself: those of
    scale.py (*One million psets*), executors.py and multihost.py (issue #17), each
    kept as its script wrote it, by the first word of its heading."""
    ours = {h.split(" — ")[0] for h in _heads(new)}
    for head in _heads(old):
        if head.split(" — ")[0] not in ours and head != SECTION:
            new = replace_section(new, head, section_of(old, head))
    return replace_section(new, SECTION, section_of(old, SECTION))


def write_markdown(jobs, ctx, output):
    head, body = tables(jobs, ctx)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = document(head, body, ctx, ctx["machine"], ctx["cmd"])
    if output.exists():  # the other scripts' sections stay as they wrote them
        text = keep_sections(text, output.read_text())
    output.write_text(text)
    return head


def render(raw, output):
    """Re-write the markdown from a ``results-*.json`` of an earlier run."""
    data = json.loads(Path(raw).read_text())
    jobs = []
    for spec in data["jobs"]:
        job = Job(spec["workload"], spec["variant"], spec["args"],
                  env=spec.get("env", "bare"))
        job.results = spec["results"]
        jobs.append(job)
    return write_markdown(jobs, data["ctx"], output)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1 repeat, small sizes (smoke test)")
    p.add_argument("--only", default=",".join(PEERS), help="workloads, comma-separated")
    p.add_argument("--variants", default="", help="only these variants, comma-separated "
                   "('pyjoule' selects every pyjoule variant)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=180, help="seconds per run")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed")
    p.add_argument("--output", default=None, help="markdown file (default docs/benchmarks.md; "
                   "with --quick, benchmarks/_out/benchmarks-quick.md)")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each run, wait up to S seconds for other processes to use "
                   "< 10%% of the CPUs (for shared machines)")
    p.add_argument("--envs", default=",".join(envs.ENVS), help="environments of envs.py, "
                   "comma-separated: the first runs everything, the others every pyjoule "
                   f"workload and W1/W3 for {' and '.join(ENV_PEERS)} (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the caches under benchmarks/_out/")
    p.add_argument("--render", metavar="RESULTS_JSON", help="only re-write the markdown from "
                   "the raw results of an earlier run (benchmarks/_out/results-*.json)")
    a = p.parse_args(argv)
    if a.quick and "--repeats" not in (argv or sys.argv):
        a.repeats = 1
    sizes = QUICK if a.quick else FULL
    selected = set(a.only.split(","))
    variant_filter = set(filter(None, a.variants.split(",")))
    output = Path(a.output) if a.output else (
        OUT / "benchmarks-quick.md" if a.quick else ROOT / "docs" / "benchmarks.md")
    if a.render:
        print("\n".join(render(a.render, output)))
        return

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tmp = OUT / f"run-{stamp}"
    tmp.mkdir(parents=True)
    t_start = time.perf_counter()
    ctx = {"sizes": sizes, "workers": a.workers, "quick": a.quick, "repeats": a.repeats,
           "timeout": a.timeout, "load": {"start": os.getloadavg()}, "wait_idle": a.wait_idle,
           "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    env_names = [e for e in a.envs.split(",") if e]
    log("environments (uv sync --frozen)")
    for name in env_names:
        PYTHONS[name] = envs.sync(name, log)
    PYTHONS["bare"] = PYTHONS[env_names[0]]
    ctx["other_envs"] = env_names[1:]
    for name in env_names:  # the comparison means nothing if the environments are alike
        if name in envs.ENVS and envs.has_module(PYTHONS[name], "dask") != (name == "dask"):
            sys.exit(f"the {name!r} environment {'lacks' if name == 'dask' else 'has'} dask")
    jobs = make_jobs(sizes, a.workers, selected, variant_filter, env_names[1:])

    have_pj = pyjoule_available()
    if not have_pj:
        log("pyjoule.experiment not available yet: pyjoule rows are skipped")
        for j in jobs:
            if j.is_pyjoule:
                j.results.append({"ok": False, "unavailable": "pyjoule.experiment not available"})
    runnable = [j for j in jobs if not (j.is_pyjoule and not have_pj)]

    # untimed preparation
    sys.path.insert(0, str(HERE))
    if any(j.workload == "w2" for j in runnable):
        import workloads

        ctx["iters"] = workloads.calibrate_burn()
        ctx["task_before_s"] = workloads.time_burn(ctx["iters"], samples=11)
        log(f"W2: iters={ctx['iters']}, task {ctx['task_before_s'] * 1e3:.1f} ms")
        for j in runnable:
            if j.workload == "w2":
                j.args += ["--iters", ctx["iters"]]
    masters, broken = {}, {}
    for name in sorted({j.cache.split(":")[1] for j in runnable if j.cache and ":" in j.cache}):
        masters[name], res = populate(name, sizes, a.workers, tmp, a.timeout * 3)
        if not res.get("ok"):
            broken[name] = res
    for j in runnable:
        if j.cache and ":" in j.cache and j.cache.split(":")[1] in broken:
            res = broken[j.cache.split(":")[1]]
            j.results.append({"ok": False, **{k: v for k, v in res.items() if k != "ok"},
                              "error": "cache populate failed: " + str(res.get("error"))}
                             if "unavailable" not in res else res)
    runnable = [j for j in runnable if not (j.cache and ":" in j.cache
                                            and j.cache.split(":")[1] in broken)]

    def one(job, args, sample):
        d = prepare_cache(job, tmp, masters)
        argv_ = ["--workload", job.workload, "--variant", job.variant, *args]
        if d is not None:
            argv_ += ["--cache", d]
        res = run_child(argv_, a.timeout, sample, PYTHONS.get(job.env))
        if d is not None and not job.cache.startswith("share"):
            shutil.rmtree(d, ignore_errors=True)
        return res

    if not a.no_warmup:
        log(f"warm-up pass ({len(runnable)} runs)")
        for j in runnable:
            if j.workload == "w5":  # the same as w1
                continue
            res = one(j, warmup_args(j, sizes), False)
            if not res.get("ok"):
                log(f"  warm-up {j.workload}/{j.variant}: "
                    f"{res.get('unavailable') or res.get('error')}")

    rng = random.Random(a.seed)
    rounds = max([a.repeats, *(repeats_of(j, a) for j in runnable)])
    ctx["w2_repeats"] = max([repeats_of(j, a) for j in runnable if j.workload == "w2"],
                            default=a.repeats)
    for rep in range(rounds):
        order = [j for j in runnable if rep < repeats_of(j, a)]
        rng.shuffle(order)
        so_far = time.perf_counter() - t_start
        log(f"repeat {rep + 1}/{rounds} ({len(order)} runs, {so_far:.0f} s so far)")
        for j in order:
            if a.wait_idle:
                wait_idle(a.wait_idle)
            res = one(j, j.args, j.sample_tree)
            j.results.append(res)
            shown = res.get("seconds")
            log(f"  {j.workload:5} {j.variant:20} {j.env:5} "
                + (f"{shown:.4f} s" if res.get("ok") and shown is not None
                   else str(res.get("unavailable") or res.get("error"))[:120]))
    if "iters" in ctx:
        ctx["task_after_s"] = workloads.time_burn(ctx["iters"], samples=11)
        probes = [r["seconds"] for j in jobs if j.key == ("w2", "probe")
                  for r in j.results if r.get("ok")]
        ctx["task_s"] = statistics.median([ctx["task_before_s"], ctx["task_after_s"], *probes])
    ctx["load"]["end"] = os.getloadavg()
    foreign = [r["foreign_load"] for j in jobs for r in j.results if "foreign_load" in r]
    ctx["foreign"] = (statistics.median(foreign), max(foreign)) if foreign else (0.0, 0.0)
    ctx["elapsed"] = time.perf_counter() - t_start

    ctx["machine"] = machine()
    ctx["cmd"] = "uv run --group bench python benchmarks/run.py" + (" --quick" if a.quick else "")
    if not a.quick and a.repeats != 5:
        ctx["cmd"] += f" --repeats {a.repeats}"
    if a.wait_idle:
        ctx["cmd"] += f" --wait-idle {a.wait_idle:g}"
    raw = OUT / f"results-{stamp}.json"
    ctx["raw"] = str(raw.relative_to(ROOT))
    raw.write_text(json.dumps({"ctx": ctx, "jobs": [
        {"workload": j.workload, "variant": j.variant, "env": j.env,
         "args": [str(x) for x in j.args], "results": j.results} for j in jobs]},
        indent=1, default=str))
    head = write_markdown(jobs, ctx, output)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {output} and {raw} in {ctx['elapsed']:.0f} s")
    print("\n".join(head))


if __name__ == "__main__":
    main()
