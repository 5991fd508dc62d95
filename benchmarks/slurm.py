"""SLURM array benchmark (issue #4): pyjoule against submitit on the test cluster.

    uv run --group bench python benchmarks/slurm.py                  # full run
    uv run --group bench python benchmarks/slurm.py --quick          # smoke test, small sizes
    uv run --group bench python benchmarks/slurm.py --only submitit  # one side only

Needs the single-node test cluster (``python3 tests/slurm_cluster.py start``). The
workload is issue #4's: psets of ~10 ms of pure-Python CPU each (``workloads.burn``,
calibrated here), end to end through the scheduler. Measured:

- pyjoule: ``pj.experiment(slurm={"cpus_per_task": 2}, cache=DIR, progress=False)``,
  ``f.map(space)`` of 2,000 psets; and ``f.submit`` of 100,000 psets (packing and
  submission, until it returns), then ``run.cancel()``;
- submitit: ``AutoExecutor(cluster="slurm")`` with ``map_array``, one array task per pset
  (its normal model). At ~0.2 s per pset (8 at a time) it runs 100 psets; the
  2,000-pset figure is extrapolated linearly.

Scheduler queries are the sbatch/squeue/sacct/scancel/scontrol/sinfo commands started by
this process during the timed region, counted by wrapping ``subprocess.Popen`` here only.
Writes the markdown to ``docs/benchmarks-slurm.md`` (``--quick``: ``benchmarks/_out/slurm.md``;
``--output`` for elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "_out"
DOCS_PAGE = HERE.parent / "docs" / "benchmarks-slurm.md"
WORK = OUT / "slurm"

# The jobs unpickle ``workloads.burn`` by reference: they must find ``workloads`` too.
# sbatch exports the submitting environment, so PYTHONPATH reaches the node's Python.
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import workloads  # noqa: E402 - found through the sys.path entry above

FULL = {"pyjoule": 2_000, "submitit": 100, "submit": 100_000}
QUICK = {"pyjoule": 200, "submitit": 16, "submit": 10_000}
TASK_S = 0.010  # issue #4: ~10 ms of CPU per pset
TARGET_FACTOR, TARGET_OVERHEAD_S = 3.0, 5.0  # within 3x of (CPU work / CPUs + 5 s)
SUBMIT_TARGET_S = 10.0  # issue #4: packing and submitting 100,000 psets
SCHEDULER_COMMANDS = {"sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo"}
SUBMITIT_JOB_NAME = "bench-submitit"


@dataclass
class Row:
    variant: str
    psets: int
    wall_s: float | None = None
    queries: str = "not counted"
    target_s: float | None = None  # None: information only, no target
    extrapolated: bool = False
    note: str = ""  # replaces the figures when the variant did not run
    details: list = field(default_factory=list)  # lines for the notes under the table


# --- scheduler command counting ------------------------------------------------------------


@contextlib.contextmanager
def count_scheduler_commands():
    """Count the scheduler commands this process starts (by program name) while inside.

    ``subprocess.run``/``check_output``/``call`` all construct ``subprocess.Popen``, looked
    up in the module at call time, so replacing that one name catches submitit's and
    pyjoule's commands alike. Commands run by the jobs on the node are not seen.
    """
    counts = Counter()
    original = subprocess.Popen

    class CountingPopen(original):
        def __init__(self, args, *rest, **kwargs):
            counts.update(scheduler_programs(args, kwargs.get("shell", False)))
            super().__init__(args, *rest, **kwargs)

    subprocess.Popen = CountingPopen
    try:
        yield counts
    finally:
        subprocess.Popen = original


def scheduler_programs(args, shell: bool) -> list[str]:
    """The scheduler programs a command runs: itself, or those a shell script names."""
    if isinstance(args, (str, bytes)):
        args = ["sh", "-c", os.fsdecode(args)] if shell else shlex.split(os.fsdecode(args))
    argv = [os.fsdecode(a) for a in args]
    name = os.path.basename(argv[0])
    if name in ("sh", "bash") and "-c" in argv[1:-1]:  # e.g. pyjoule's one-shot facts script
        script = argv[argv.index("-c", 1) + 1]
        return [w for w in re.findall(r"[\w-]+", script) if w in SCHEDULER_COMMANDS]
    return [name] if name in SCHEDULER_COMMANDS else []


def fmt_counts(counts: Counter) -> str:
    if not counts:
        return "0"
    parts = ", ".join(f"{n} {name}" for name, n in counts.most_common())
    return f"{sum(counts.values())} ({parts})"


# --- the cluster -----------------------------------------------------------------------------


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def cluster_facts() -> dict:
    """What the test cluster offers; exits with a hint when it is not running."""
    try:
        nodes = sh("sinfo", "-h", "-N", "-o", "%N %c %T")
    except FileNotFoundError:
        nodes = None
    if nodes is None or nodes.returncode != 0 or not nodes.stdout.strip():
        sys.exit("sinfo failed: start the test cluster with `python3 tests/slurm_cluster.py start`")
    advertised = sum(int(line.split()[1]) for line in nodes.stdout.splitlines())
    config = dict(line.split(" = ", 1) for line in sh("scontrol", "show", "config").stdout
                  .splitlines() if " = " in line)
    return {
        "version": sh("sinfo", "--version").stdout.strip(),
        "advertised_cpus": advertised,
        "real_cpus": len(os.sched_getaffinity(0)),
        "max_array_size": int(config.get("MaxArraySize", "1001").strip()),
        "jobs_queued": len(sh("squeue", "-h", "-o", "%i").stdout.split()),
        "load": os.getloadavg()[0],
        # without slurmdbd, sacct exits 1 ("Slurm accounting storage is disabled")
        "sacct_works": sh("sacct", "-n", "-X", "-j", "1").returncode == 0,
    }


def wait_until_gone(job_ids: list[str], timeout_s: float = 120.0) -> float:
    """Seconds until none of ``job_ids`` (array ids or tasks) is in squeue any more."""
    t0 = time.perf_counter()
    while job_ids:
        listed = sh("squeue", "-h", "-o", "%i", "-j", ",".join(job_ids))
        # an id the controller has already purged is an error, not an empty list
        if not listed.stdout.strip() and (listed.returncode == 0
                                          or "Invalid job id" in listed.stderr):
            break
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError(f"jobs {job_ids} still in squeue after {timeout_s:.0f} s")
        time.sleep(0.5)
    return time.perf_counter() - t0


def target_s(psets: int, task_s: float, cpus: int) -> float:
    """Issue #4's target: 3 x (total CPU work / available CPUs + 5 s)."""
    return TARGET_FACTOR * (psets * task_s / cpus + TARGET_OVERHEAD_S)


# --- submitit --------------------------------------------------------------------------------


def bench_submitit(n: int, iters: int, parallelism: int, timeout_s: float) -> Row:
    """``map_array`` of ``n`` psets, one array task each, until every result is back."""
    import submitit
    from submitit.slurm.slurm import SlurmJob

    # submitit logs to stdout and stderr: keep its warnings (the failing sacct calls of a
    # cluster without slurmdbd) on stderr only, so that stdout is the markdown alone
    log = logging.getLogger("submitit")
    for handler in list(log.handlers):
        if getattr(handler, "stream", None) is sys.stdout:
            log.removeHandler(handler)

    folder = WORK / "submitit"
    shutil.rmtree(folder, ignore_errors=True)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    executor.update_parameters(name=SUBMITIT_JOB_NAME, slurm_partition="debug",
                               slurm_array_parallelism=parallelism, cpus_per_task=1,
                               timeout_min=30)
    row = Row(f"submitit `map_array` (1 CPU per task, `slurm_array_parallelism={parallelism}`)", n)
    jobs = []
    sacct_calls_before = SlurmJob.watcher.num_calls
    try:
        with count_scheduler_commands() as counts:
            t0 = time.perf_counter()
            jobs = executor.map_array(workloads.burn, range(n), [iters] * n)
            submitted_s = time.perf_counter() - t0
            for job in jobs:  # what Job.wait() does (done() once a second), with a deadline
                while not job.done():
                    if time.perf_counter() - t0 > timeout_s:
                        raise TimeoutError(f"submitit: not done after {timeout_s:.0f} s")
                    time.sleep(1)
            results = [job.result() for job in jobs]
            row.wall_s = time.perf_counter() - t0
    finally:  # leave nothing queued, also after a timeout or an error
        if jobs:
            array_id = jobs[0].job_id.split("_")[0]
            sh("scancel", array_id)
            wait_until_gone([array_id])
    assert [r["y"] for r in results] == [2 * i for i in range(n)], "wrong submitit results"
    row.queries = fmt_counts(counts)
    task_ms = 1000 * sum(r["t"] for r in results) / n
    row.details.append(
        f"submitit: array job {array_id}, {n} tasks, submitted in {fmt_s(submitted_s)}; "
        f"the task itself took {task_ms:.1f} ms "
        f"on average inside the jobs; its status watcher made "
        f"{SlurmJob.watcher.num_calls - sacct_calls_before} sacct calls.")
    return row


# --- pyjoule ---------------------------------------------------------------------------------


class NotAvailable(Exception):
    """This pyjoule has no ``slurm=`` yet."""


def pyjoule_experiment(cache: Path):
    """The experiment under test, on a fresh cache; NotAvailable if ``slurm=`` is missing."""
    import pyjoule as pj

    shutil.rmtree(cache, ignore_errors=True)
    try:
        return pj.experiment(slurm={"cpus_per_task": 2}, cache=str(cache),
                             progress=False)(workloads.burn)
    except pj.PyjouleError as exc:
        if "not available" in str(exc):
            raise NotAvailable(str(exc)) from exc
        raise


def run_queries(run) -> str | None:
    # HOOK: the SLURM backend exposes the scheduler commands a Run sent as
    # ``Run.scheduler_queries``; report it next to our own count when it is there.
    count = getattr(run, "scheduler_queries", None)
    return None if count is None else str(count)


def bench_pyjoule_map(n: int, iters: int) -> Row:
    """``f.map`` of ``n`` new psets, end to end (submission, jobs, results, Dataset)."""
    f = pyjoule_experiment(WORK / "pyjoule-map")
    space = [{"i": i, "iters": iters} for i in range(n)]
    with count_scheduler_commands() as counts:
        t0 = time.perf_counter()
        ds = f.map(space)
        wall = time.perf_counter() - t0
    y = ds["y"].values.ravel()
    assert sorted(y.tolist()) == [2 * i for i in range(n)], "wrong pyjoule results"
    row = Row('**pyjoule** `f.map(space)`, `slurm={"cpus_per_task": 2}`', n, wall,
              fmt_counts(counts))
    row.details.append(f"pyjoule `f.map`: the task itself took "
                       f"{1000 * float(ds['t'].mean()):.1f} ms on average inside the jobs.")
    return row


def bench_pyjoule_submit(n: int, iters: int) -> Row:
    """``f.submit`` of ``n`` psets until it returns (packing + sbatch), then cancel."""
    f = pyjoule_experiment(WORK / "pyjoule-submit")
    space = [{"i": i, "iters": iters} for i in range(n)]
    with count_scheduler_commands() as counts:
        t0 = time.perf_counter()
        run = f.submit(space)
        wall = time.perf_counter() - t0
    queries = fmt_counts(counts)
    if (own := run_queries(run)) is not None:
        queries += f"; `run.scheduler_queries` = {own}"
    job_ids = list(getattr(run, "job_ids", []))
    run.cancel()
    gone_s = wait_until_gone(job_ids)
    row = Row(f"**pyjoule** `f.submit` of {n:,} psets: packing and submit time", n, wall, queries)
    row.details.append(f"pyjoule `f.submit`: jobs {', '.join(job_ids) or '(none listed)'}; "
                       f"after `run.cancel()` they left squeue in {gone_s:.1f} s.")
    return row


def attempt(label: str, bench, n: int, *args) -> Row:
    """Run one measurement of ``n`` psets; a failure becomes a row (traceback on stderr)."""
    print(f"-- {label} ...", file=sys.stderr, flush=True)
    try:
        return bench(n, *args)
    except NotAvailable as exc:
        print(f"pyjoule: not available ({exc})", file=sys.stderr)
        return Row(label, n, note="pyjoule: not available")
    except Exception as exc:  # noqa: BLE001 - reported, and the other variants still run
        traceback.print_exc()
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return Row(label, n, note=f"error: {type(exc).__name__}: {first_line}"
                   .replace("|", "\\|"))


def extrapolate_submitit(row: Row, big: int, task_s: float, facts: dict,
                         parallelism: int) -> Row:
    """The full-size submitit figure, scaled linearly from the measured ``row``."""
    n = row.psets
    row.details.append(
        f"submitit runs one array task per pset, {parallelism} at a time "
        f"(`slurm_array_parallelism={parallelism}`; the node advertises "
        f"{facts['advertised_cpus']} CPUs). {n:,} psets were measured; the "
        f"{big:,}-pset row is that time × {big / n:g}, not a measurement.")
    if big > facts["max_array_size"]:
        row.details.append(
            f"The cluster's `MaxArraySize={facts['max_array_size']}` would make submitit's "
            f"single array of {big:,} tasks fail at submission: the extrapolated row assumes "
            "the work were split into several arrays.")
    if not facts["sacct_works"]:
        row.details.append(
            "This cluster has no slurmdbd, so `sacct` exits 1: submitit's status calls fail "
            "(it logs a warning and goes on) and it learns that a task finished only from "
            "its result file.")
    return Row(f"submitit, {n} psets' time × {big / n:g}", big, row.wall_s * big / n, "—",
               target_s(big, task_s, facts["real_cpus"]), extrapolated=True)


# --- markdown --------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def table_row(row: Row) -> str:
    if row.note:
        cells = [row.variant, f"{row.psets:,}", row.note, "", "", "", ""]
    else:
        mark = (lambda s: f"*{s} (extrapolated)*") if row.extrapolated else (lambda s: s)
        per = row.wall_s / row.psets
        per_text = f"{per * 1e6:.0f} µs" if per < 1e-3 else fmt_s(per)
        if row.target_s is None:
            target, verdict = "— (information)", "—"
        else:
            ok = row.wall_s <= row.target_s
            target = f"≤ {fmt_s(row.target_s)}"
            verdict = mark("**pass**" if ok else "**fail**")
        cells = [row.variant, f"{row.psets:,}", mark(fmt_s(row.wall_s)), per_text,
                 row.queries, target, verdict]
    return "| " + " | ".join(cells) + " |"


def document(rows: list[Row], facts: dict, task_s: float, iters: int, n: int,
             command: str) -> str:
    real, adv = facts["real_cpus"], facts["advertised_cpus"]
    lines = [
        f"## SLURM arrays (issue #4) — {n:,} psets × ~{TASK_S * 1000:.0f} ms of pure-Python CPU",
        "",
        f"*{dt.datetime.now():%Y-%m-%d %H:%M}, `{command}`. Test cluster: {facts['version']}, "
        f"one node with {adv} advertised CPUs on {real} real cores. Task: `workloads.burn` "
        f"calibrated to {task_s * 1000:.1f} ms here ({iters:,} iterations). "
        f"Load average before the runs: {facts['load']:.2f}.*",
        "",
        f"Target (issue #4): wall ≤ {TARGET_FACTOR:g} × (total CPU work / available CPUs + "
        f"{TARGET_OVERHEAD_S:g} s), available CPUs = the {real} real cores: for {n:,} psets "
        f"{TARGET_FACTOR:g} × ({n:,} × {task_s * 1000:.1f} ms / {real} + {TARGET_OVERHEAD_S:g} s)"
        f" = **{fmt_s(target_s(n, task_s, real))}** (with the {adv} advertised CPUs it would be "
        f"{fmt_s(target_s(n, task_s, adv))}). Rows with fewer psets use the same formula for "
        "their own count.",
        "",
        "| variant | psets | wall time | time/pset | scheduler queries | target | pass/fail |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[table_row(r) for r in rows],
        "",
        "- Wall time is end to end: from the submitting call until every result is back in "
        "the driver (the `f.submit` row: until `f.submit` returns).",
        "- Scheduler queries: runs of sbatch/squeue/sacct/scancel/scontrol/sinfo started by "
        "the benchmark process in the timed region (counted by wrapping `subprocess.Popen`; "
        "a `sh -c` script counts each of these programs it names); commands the jobs run "
        "on the node are not included. pyjoule's own `run.scheduler_queries` counts the "
        "commands it sends, a `sh -c` script as one.",
    ]
    if facts["jobs_queued"]:
        lines.append(f"- {facts['jobs_queued']} other jobs were in squeue when the benchmark "
                     "started: they share the node's CPUs with the ones measured here.")
    lines += [f"- {d}" for r in rows for d in r.details]
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"small sizes {QUICK} instead of {FULL}")
    p.add_argument("--only", choices=["pyjoule", "submitit"], help="run one side only")
    p.add_argument("--array-parallelism", type=int,
                   help="submitit's slurm_array_parallelism (default: the node's CPUs)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="give up on submitit after this many seconds (default: 1800)")
    p.add_argument("--output", help="markdown file to write (default: "
                   "docs/benchmarks-slurm.md; with --quick, benchmarks/_out/slurm.md)")
    a = p.parse_args(argv)

    sizes = QUICK if a.quick else FULL
    facts = cluster_facts()
    parallelism = a.array_parallelism or facts["advertised_cpus"]
    WORK.mkdir(parents=True, exist_ok=True)
    # this VM's speed drifts: refine the calibration once on a 7-sample median, and
    # state the task time measured last (the targets use it)
    iters = workloads.calibrate_burn(TASK_S)
    iters = int(iters * TASK_S / workloads.time_burn(iters))
    task_s = workloads.time_burn(iters)
    real = facts["real_cpus"]

    rows: list[Row] = []
    if a.only in (None, "pyjoule"):
        row = attempt("pyjoule f.map", bench_pyjoule_map, sizes["pyjoule"], iters)
        row.target_s = target_s(row.psets, task_s, real)
        submit = attempt(f"pyjoule f.submit of {sizes['submit']:,} psets",
                         bench_pyjoule_submit, sizes["submit"], iters)
        submit.target_s = SUBMIT_TARGET_S
        rows += [row, submit]
    if a.only in (None, "submitit"):
        row = attempt("submitit map_array", bench_submitit, sizes["submitit"], iters,
                      parallelism, a.timeout)
        row.target_s = target_s(row.psets, task_s, real)
        rows.append(row)
        if not row.note:
            rows.append(extrapolate_submitit(row, sizes["pyjoule"], task_s, facts, parallelism))

    command = "python benchmarks/slurm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = document(rows, facts, task_s, iters, sizes["pyjoule"], command.strip())
    out = Path(a.output or (OUT / "slurm.md" if a.quick else DOCS_PAGE))
    if out.resolve() == DOCS_PAGE.resolve():
        commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "pyjoule"],
                               capture_output=True, text=True).stdout.strip()
        text = ("# SLURM benchmarks\n\nGenerated by `benchmarks/slurm.py` against the test "
                "cluster (`tests/slurm_cluster.py`), pyjoule commit "
                f"{commit}{' (with uncommitted changes)' if dirty else ''}. The local "
                "benchmarks are in [benchmarks.md](benchmarks.md).\n\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 1 if any(r.note.startswith("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
