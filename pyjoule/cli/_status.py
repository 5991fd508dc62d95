"""What ``pyjoule status RUN`` reports: one set of counts, the failures, the logs.

A run in flight is read first (as ``pj.attach(RUN).status()`` does), so its counts
are current; a run that has ended is what the registry says it did, the numbers
``pyjoule runs`` lists too. Either way the top level of ``--json`` and its ``counts``
are the same numbers, and the exit code follows from them.
"""

from __future__ import annotations

import os
from collections import Counter

import click

#: states of a run whose processes may still be working on it
LIVE = ("starting", "running", "finishing")


def gather(store, rec: dict) -> tuple[dict, dict, list[dict]]:
    """``(rec, counts, failures)`` of the run ``rec``, read now. A live run is polled
    (which also finishes it if its processes are gone); its folder removed by hand
    leaves what the registry says."""
    from .._api import follow, recorded
    from .._rundir import RunDir

    if rec["state"] in LIVE and RunDir(rec["run_dir"]).has_request():
        run = follow(rec["run_id"], store.root)
        counts = run.status()
        rec = store.get_run(rec["run_id"]) or rec
        if rec["state"] in LIVE:
            return _with(rec, counts), counts, run.failure_records()
    counts, failures = recorded(store, rec)
    return rec, counts, failures


def _with(rec: dict, counts: dict) -> dict:
    """``rec`` with ``counts``' numbers: polled a moment apart, they could differ."""
    return {**rec, **{k: counts[k] for k in ("total", "cached", "done", "failed")}}


def exit_code(info: dict) -> int:
    """1 when the run has failed psets (a cancel's unfinished ones count) or was
    cancelled, else 0, also for a run in flight with no failure so far."""
    return 1 if info["counts"]["failed"] or info["state"] == "cancelled" else 0


def info(run_json: dict, counts: dict, failures: list[dict], run_dir: str) -> dict:
    """The ``--json`` document: the run as ``pyjoule runs`` shows it, its counts,
    a summary of its failures and where its logs are."""
    from .._rundir import RunDir

    failures = sorted(failures, key=lambda f: f.get("finished") or 0)
    first = failures[0] if failures else None
    worker_log = RunDir(run_dir).log
    logs = {"run_dir": run_dir,
            "worker_log": worker_log if os.path.exists(worker_log) else None,
            "failure_logs": sorted({f["log_path"] for f in failures
                                    if f.get("log_path") and f["log_path"] != worker_log})}
    summary = {"count": len(failures),
               "by_error_type": dict(Counter(f.get("error_type") or "?" for f in failures)
                                     .most_common()),
               "by_reason": dict(Counter(f.get("reason") or "?" for f in failures)
                                 .most_common()),
               "first": None if first is None else {
                   "pset": first.get("kwargs"), "error_type": first.get("error_type"),
                   "reason": first.get("reason"), "message": first.get("message"),
                   "log": first.get("log_path")}}
    return {**run_json, "counts": counts, "failures": summary, "logs": logs}


def show(info: dict) -> None:
    """The text of ``pyjoule status``."""
    c, f = info["counts"], info["failures"]
    lines = [
        f"run       {info['id']}",
        f"function  {info['function']} (version {info['func_id'][:12]})",
        f"where     {info['host']}, {info['backend']} backend"
        + (f", {info['workers']} worker{'s' if info['workers'] != 1 else ''}"
           if info["workers"] else "")
        + (f", jobs {' '.join(info['job_ids'])}" if info["job_ids"] else ""),
        f"state     {info['state']}, submitted {info['submitted']}"
        + (f", finished {info['finished']}" if info["finished"] else ""),
        f"psets     {c['total']} total: {c['cached']} cached, {c['pending']} pending, "
        f"{c['running']} running, {c['done']} done, {c['failed']} failed",
    ]
    if f["count"]:
        types = ", ".join(f"{n} x {t}" for t, n in f["by_error_type"].items())
        reasons = ", ".join(f"{r} {n}" for r, n in f["by_reason"].items())
        first = f["first"]
        message = (first["message"] or "").strip().splitlines() or [""]
        lines += [f"failures  {f['count']}: {types} (reasons: {reasons})",
                  f"          first: pset {first['pset']}: {first['error_type']}: "
                  f"{message[-1]}"]
    logs = info["logs"]
    lines.append(f"logs      run dir     {logs['run_dir']}")
    if logs["worker_log"]:
        lines.append(f"          worker log  {logs['worker_log']}")
    lines += [f"          task log    {p}" for p in logs["failure_logs"]]
    click.echo("\n".join(lines))
