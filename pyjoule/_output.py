"""What successful psets printed (``capture=True``), kept with their results.

A failure's output is in its failure record. A success's goes into part B of its
segment (the exact values, read only for single calls and tables) as ``output``:
``{row: (stdout, stderr)}`` for the rows that printed anything, each stream cut to
its last ``MAX_OUTPUT_BYTES`` as a failure's is, and the segment's ``run_id``. Kept
there, it is private (0600) like the results, under the same checksum, and goes
when its result goes (``gc``, ``clear``, a recomputation); a function that prints
nothing costs nothing.

``f.table(output=True)`` reads it (:func:`with_columns`); ``pyjoule logs RUN [PSET]``
lists what the psets of a run printed (:func:`run_logs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ._store import Store

#: a pset's ``(stdout, stderr)``
Printed = tuple[str, str]


# ------------------------------------------------------------------- writing
def values_part(records: Sequence[tuple[Any, ...]], run_id: str) -> dict[str, Any]:
    """Part B of a segment of the compact records ``records`` (see ``_records``)."""
    part: dict[str, Any] = {"pset_ids": [r[0] for r in records],
                            "values": [r[2] for r in records]}
    printed = {i: (r[8] or "", r[9] or "") for i, r in enumerate(records) if r[8] or r[9]}
    if printed:
        from ._store import cap_output

        for i, (out, err) in printed.items():
            capped = cap_output({"stdout": out, "stderr": err})
            printed[i] = (capped["stdout"], capped["stderr"])
        part["output"], part["run_id"] = printed, run_id
    return part


# ------------------------------------------------------------------- reading
def read(store: Store, found: dict[str, int],
         run_id: str | None = None) -> dict[str, Printed]:
    """``{pset_id: (stdout, stderr)}`` of the entries in ``found`` that printed
    anything (only those computed by ``run_id``, if given). A damaged segment is
    left out (reading its values drops it)."""
    from ._store import by_segment

    out: dict[str, Printed] = {}
    for seg_id, rows, pids in by_segment(found):
        part = store._load_part(seg_id, "b")
        printed = part.get("output") if part else None
        if not printed or (run_id is not None and part.get("run_id") != run_id):
            continue
        for row, pid in zip(rows.tolist(), pids):
            if row in printed:
                out[pid] = printed[row]
    return out


def with_columns(table: pd.DataFrame, store: Store, found: dict[str, int],
                 failures: Iterable[dict[str, Any]] = ()) -> pd.DataFrame:
    """``table`` (``f.table()``) with the columns ``_stdout`` and ``_stderr``: "" for
    a pset that printed nothing, or whose output was not captured."""
    printed = read(store, found)
    for rec in failures:
        printed[rec["pset_id"]] = (rec.get("stdout") or "", rec.get("stderr") or "")
    keys = table["_key"].tolist()
    table["_stdout"] = [printed.get(k, ("", ""))[0] for k in keys]
    table["_stderr"] = [printed.get(k, ("", ""))[1] for k in keys]
    return table


def run_logs(store: Store, rec: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """What the psets of the run ``rec`` (a registry record) printed, and how they
    failed: ``{"psets": [...], "quiet": n, "run_dir": ...}``, one dict per pset that
    printed or failed, in the run's order (``key``, ``pset``, ``status``, ``stdout``,
    ``stderr``, and for a failure ``error_type``, ``reason``, ``message``,
    ``traceback``, ``log``); ``quiet`` counts the run's other finished psets,
    ``cancelled`` those that never started; ``worker_log``: the run's log (what C code
    and the workers printed), if not empty.
    ``key``: only the pset whose key is (or starts with) ``key``."""
    from ._rundir import RunDir

    rd = RunDir(rec["run_dir"])
    ids, psets = rd.read_request() if rd.has_request() else ([], [])
    kwargs = dict(zip(ids, psets))
    failures = {f["pset_id"]: f for f in store.failures(run_id=rec["run_id"])}
    found = store.lookup(rec["func_id"], ids) if ids else {}
    failures = {p: f for p, f in failures.items() if p not in found}
    cancelled = [p for p, f in failures.items() if f.get("reason") == "cancelled"
                 and not f.get("stdout") and not f.get("stderr")]
    for p in cancelled:  # never started: nothing to show but their number
        del failures[p]
    printed = read(store, found, run_id=rec["run_id"])
    entries = [_success(p, kwargs.get(p), out) for p, out in printed.items()]
    entries += [_failure(p, f) for p, f in failures.items()]
    order = {p: i for i, p in enumerate(ids)}
    entries.sort(key=lambda e: order.get(e["key"], len(order)))
    quiet = max(0, (rec.get("done") or 0) - len(printed))
    if key is not None:
        entries = [e for e in entries if e["key"].startswith(key)]
        if not entries:  # it printed nothing, or is not the run's
            matches = [p for p in found if p.startswith(key)]
            entries = [_success(p, kwargs.get(p), ("", "")) for p in matches]
        quiet, cancelled = 0, []
    worker_log = rd.log if os.path.isfile(rd.log) and os.path.getsize(rd.log) else None
    return {"run": rec["run_id"], "psets": entries, "quiet": quiet,
            "cancelled": len(cancelled), "run_dir": rec["run_dir"],
            "worker_log": worker_log, "has_request": bool(ids)}


def logs_text(info: dict[str, Any]) -> str:
    """:func:`run_logs` as ``pyjoule logs`` prints it."""
    lines = []
    for e in info["psets"]:
        head = f"=== pset {e['key']} {e['pset'] if e['pset'] is not None else ''}: "
        if e["status"] == "failed":
            head += f"failed ({e['error_type']}, reason {e['reason']})"
        else:
            head += "done" + ("" if e["stdout"] or e["stderr"] else ", printed nothing")
        lines.append(head)
        for name in ("stdout", "stderr", "traceback"):
            if e.get(name):
                lines += [f"--- {name}", e[name].rstrip("\n")]
        if e.get("log"):
            lines.append(f"--- worker log {e['log']}")
    if info["quiet"] or info["cancelled"] or not info["psets"]:
        lines.append(f"run {info['run']}: {info['quiet']} other finished psets printed "
                     f"nothing, {info['cancelled']} were cancelled before they ran")
    if info["worker_log"]:
        lines.append(f"(the workers' own log, with what C code printed: "
                     f"{info['worker_log']})")
    if not info["has_request"]:
        lines.append(f"(the run's folder {info['run_dir']} is gone: only failures are "
                     "listed)")
    return "\n".join(lines)


def _success(key: str, pset: dict[str, Any] | None, out: Printed) -> dict[str, Any]:
    return {"key": key, "pset": pset, "status": "done", "stdout": out[0],
            "stderr": out[1]}


def _failure(key: str, rec: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "pset": rec.get("kwargs"), "status": "failed",
            "stdout": rec.get("stdout") or "", "stderr": rec.get("stderr") or "",
            "error_type": rec.get("error_type"),
            "reason": rec.get("reason"), "message": rec.get("message"),
            "traceback": rec.get("traceback") or "", "log": rec.get("log_path")}
