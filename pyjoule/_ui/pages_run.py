"""The run page ``/runs/{run_id}``: the run's progress, its failures grouped by error
type and reason, the table of its psets (paged, sorted and filtered by facets on the
server: :mod:`.data_psets`), and a button that cancels it.

The page's parts are fragments ``static/run.js`` fetches: ``/summary`` every second
while the run is in flight (it polls the run, as ``pyjoule status`` does, so its
counts are the command's), and ``/failures`` and ``/psets`` again when the counts
move. ``POST /runs/{run_id}/cancel`` does what ``pyjoule cancel`` does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .._display import duration, stamp
from . import data_psets
from .render import check_csrf, render, store

log = logging.getLogger("pyjoule")

#: states of a run whose processes may still be working on it (as ``pyjoule status``)
LIVE = ("starting", "running", "finishing")
#: failures listed per group (the rest are counted)
PER_GROUP = 20
#: bytes of a log shown (its end)
LOG_TAIL = 32_768
#: a run on a remote host or SLURM is read at most this often (each read is an SSH
#: round trip or a scheduler query); one on this machine's pool at every request
REMOTE_POLL_S = 30.0


# ------------------------------------------------------------------ reading
def _record(request: Request) -> dict[str, Any] | None:
    return store(request).get_run(request.path_params["run_id"])


def _polled(request: Request, rec: dict[str, Any]) -> tuple[dict, dict, list[dict]]:
    """``(rec, counts, failures)`` read now, as ``pyjoule status RUN`` reads them
    (``cli/_status.gather``), so the counts are the command's: a run in flight is
    polled (its results ingested, and finished if its processes are gone)."""
    from .._api import follow
    from .._rundir import RunDir

    st = store(request)
    if rec["state"] in LIVE and _due(request, rec) and RunDir(rec["run_dir"]).has_request():
        try:
            with _poll_lock(request, rec["run_id"]):  # two tabs: one poll at a time
                run = follow(rec["run_id"], st.root)
                counts = run.status()
        except Exception as exc:  # noqa: BLE001 - a host unreachable just now: the page
            log.warning("could not read run %s: %s", rec["run_id"], exc)  # shows the rest
            counts, failures = _registered(request, rec)
            return {**rec, "unread": f"{type(exc).__name__}: {exc}"}, counts, failures
        rec = st.get_run(rec["run_id"]) or rec
        if rec["state"] in LIVE:
            rec = {**rec, **{k: counts[k] for k in ("total", "cached", "done", "failed")}}
            return rec, counts, run.failure_records()
    counts, failures = _registered(request, rec)
    return rec, counts, failures


def _poll_lock(request: Request, run_id: str) -> threading.Lock:
    locks = getattr(request.app.state, "run_poll_locks", None)
    if locks is None:
        locks = request.app.state.run_poll_locks = {}
    return locks.setdefault(run_id, threading.Lock())


def _due(request: Request, rec: dict[str, Any]) -> bool:
    """Whether to read the run in flight ``rec`` now (see ``REMOTE_POLL_S``)."""
    if rec["backend"] == "pool":
        return True
    polls = getattr(request.app.state, "run_polls", None)
    if polls is None:
        polls = request.app.state.run_polls = {}
    now = time.monotonic()
    if now - polls.get(rec["run_id"], -REMOTE_POLL_S) < REMOTE_POLL_S:
        return False
    polls[rec["run_id"]] = now
    return True


def _registered(request: Request, rec: dict[str, Any]) -> tuple[dict, list[dict]]:
    """``(counts, failures)`` as the registry has them, polling nothing (the
    fragments the page fetches after a poll)."""
    from .._api import recorded

    return recorded(store(request), rec)


def _version(rec: dict[str, Any], counts: dict[str, Any]) -> str:
    """What changes when the page's failures and psets may have changed."""
    return "{}:{}:{}:{}:{}".format(rec["state"], counts["total"], counts["cached"],
                                   counts["done"], counts["failed"])


# ------------------------------------------------------------------ shaping
def _summary(rec: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    total = counts["total"] or 0
    not_yet = max(0, total - counts["done"] - counts["failed"] - counts["cached"])
    parts = [("done", counts["done"]), ("failed", counts["failed"]),
             ("cached", counts["cached"]), ("pending", not_yet)]
    return {"id": rec["run_id"], "function": rec["name"] or "?",
            "func_id": (rec["func_id"] or "")[:12], "host": rec["host"],
            "backend": rec["backend"], "workers": rec.get("workers"),
            "state": rec["state"], "live": rec["state"] in LIVE,
            "running": counts.get("running", 0), "total": total,
            "bar": [(name, n, 100.0 * n / total if total else 0.0) for name, n in parts],
            "submitted": stamp(rec["submitted"]), "finished": stamp(rec["finished"]),
            "duration": duration(rec["submitted"], rec["finished"]),
            "job_ids": [str(j) for j in rec["job_ids"] or []],
            "run_dir": rec["run_dir"], "version": _version(rec, counts),
            "unread": rec.get("unread")}


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _tail(path: str, cache: dict[str, str]) -> str:
    """The end of the log at ``path`` (read once per request)."""
    if path not in cache:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - LOG_TAIL))
                cache[path] = f.read().decode("utf-8", "replace")
        except OSError as exc:
            cache[path] = f"(cannot read it: {exc.strerror or exc})"
    return cache[path]


def _groups(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failures by (error type, reason), the largest group first: its count, the
    first line of its first message, its first failures in full and its logs."""
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for f in sorted(failures, key=lambda f: f.get("finished") or 0):
        by[(f.get("error_type") or "?", f.get("reason") or "?")].append(f)
    logs: dict[str, str] = {}
    groups = []
    for (error_type, reason), members in sorted(by.items(), key=lambda kv: -len(kv[1])):
        shown = [{"key": f["pset_id"],
                  "pset": ", ".join(f"{k}={data_psets.label(v)}"
                                    for k, v in (f.get("kwargs") or {}).items()),
                  "message": f.get("message") or "", "traceback": f.get("traceback") or "",
                  "stdout": f.get("stdout") or "", "stderr": f.get("stderr") or "",
                  "log": f.get("log_path")} for f in members[:PER_GROUP]]
        paths = list(dict.fromkeys(f["log_path"] for f in members if f.get("log_path")))
        groups.append({"error_type": error_type, "reason": reason, "count": len(members),
                       "first_line": _first_line(members[0].get("message")),
                       "failures": shown, "more": len(members) - len(shown),
                       "logs": [(p, _tail(p, logs)) for p in paths[:PER_GROUP]]})
    return groups


def _psets(request: Request, rec: dict[str, Any], counts: dict[str, Any],
           failures: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``run_psets.html`` shows for the query of ``request``."""
    cache = data_psets.cache_of(request.app.state)
    psets = cache.get(store(request), rec, failures, _version(rec, counts))
    if psets is None:
        return {"gone": True, "run_dir": rec["run_dir"]}
    query = data_psets.Query.parse(request.query_params)
    pg = data_psets.page(psets, query)
    base = f"/runs/{rec['run_id']}"

    def link(**change: Any) -> str:
        params = query.to_params(**change)
        return base + ("?" + urlencode(params) if params else "")

    def toggle(name: str, value: str) -> str:
        filters = dict(query.filters)
        if filters.get(name) == value:
            del filters[name]
        else:
            filters[name] = value
        return link(filters=filters, page=1)

    headers = [("key", "key")] + [(f"p:{p}", p) for p in psets.params] \
        + [("status", "status")] + [(f"r:{r}", r) for r in psets.results] \
        + [("runtime", "runtime (s)")]
    sorts = [{"id": col, "title": title,
              "href": link(sort=col, desc=query.sort == col and not query.desc, page=1),
              "arrow": ("▼" if query.desc else "▲") if query.sort == col else ""}
             for col, title in headers]
    return {"gone": False, "page": pg, "query": query, "sorts": sorts,
            "params": list(psets.params), "results": list(psets.results),
            "numeric": {r for r, v in psets.results.items() if v.dtype.kind == "f"},
            "toggle": toggle, "status_link": lambda s: link(
                status=None if query.status == s else s, page=1),
            "prev": link(page=pg.page - 1) if pg.page > 1 else None,
            "next": link(page=pg.page + 1) if pg.page < pg.pages else None,
            "clear": link(filters={}, status=None, page=1)
            if query.filters or query.status else None,
            "n": psets.n, "base": base}


# ------------------------------------------------------------------ routes
def _missing(request: Request) -> Response:
    return render(request, "run_missing.html", status_code=404,
                  run_id=request.path_params["run_id"])


def run_page(request: Request) -> Response:
    rec = _record(request)
    if rec is None:
        return _missing(request)
    rec, counts, failures = _polled(request, rec)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
    src = f"/runs/{rec['run_id']}/psets" + (f"?{query}" if query else "")
    # its table is built when the page asks for it; built in a background task after
    # the page was sent, first paint of a run of 100,000 psets took 0.8-1.0 s against
    # 0.4 s (the GIL held while the page's CSS was served; on a busier machine, though)
    return render(request, "run.html", run=_summary(rec, counts), groups=_groups(failures),
                  run_id=rec["run_id"], psets_src=src)


def run_summary(request: Request) -> Response:
    rec = _record(request)
    if rec is None:
        return _missing(request)
    rec, counts, _failures = _polled(request, rec)
    return render(request, "run_summary.html", run=_summary(rec, counts))


def run_failures(request: Request) -> Response:
    rec = _record(request)
    if rec is None:
        return _missing(request)
    _counts, failures = _registered(request, rec)
    return render(request, "run_failures.html", groups=_groups(failures),
                  run_id=rec["run_id"])


def run_psets(request: Request) -> Response:
    rec = _record(request)
    if rec is None:
        return _missing(request)
    counts, failures = _registered(request, rec)
    return render(request, "run_psets.html", **_psets(request, rec, counts, failures))


async def run_cancel(request: Request) -> Response:
    """``pyjoule cancel RUN``: stops the run's work everywhere, then back to its page."""
    from starlette.concurrency import run_in_threadpool

    check_csrf(request, await request.form())
    rec = await run_in_threadpool(_record, request)
    if rec is None:
        return _missing(request)
    if rec["state"] == "running":
        await run_in_threadpool(_cancel, request, rec["run_id"])
    return RedirectResponse(f"/runs/{rec['run_id']}", status_code=303)


def _cancel(request: Request, run_id: str) -> None:
    from .._api.registry import follow

    follow(run_id, store(request).root).cancel()


routes: list[BaseRoute] = [
    Route("/runs/{run_id}", run_page, name="run"),
    Route("/runs/{run_id}/summary", run_summary, name="run_summary"),
    Route("/runs/{run_id}/failures", run_failures, name="run_failures"),
    Route("/runs/{run_id}/psets", run_psets, name="run_psets"),
    Route("/runs/{run_id}/cancel", run_cancel, methods=["POST"], name="run_cancel"),
]
