"""The runs page ``/``: every run of the cache, newest first, with its counts as a bar;
filters by function and state (GET parameters). ``/runs/rows`` is the table's body
alone, which ``static/ui.js`` fetches every second while the page is open, so counts
move while runs are in flight."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .._display import duration, stamp
from .render import render, store

#: the states a run can be in, as the registry records them
STATES = ("starting", "running", "finishing", "done", "failed", "cancelled")
#: the newest runs shown unless ``?limit=`` asks for more (0: all): the table is
#: rendered again every second while the page is open
LIMIT = 200


def _bar(rec: dict) -> list[tuple[str, int, float]]:
    """(part, count, percent of the total) for done, failed, cached and not yet."""
    total = rec["total"] or 0
    done, failed, cached = rec["done"] or 0, rec["failed"] or 0, rec["cached"] or 0
    parts = [("done", done), ("failed", failed), ("cached", cached),
             ("pending", max(0, total - done - failed - cached))]
    return [(name, n, 100.0 * n / total if total else 0.0) for name, n in parts]


def _row(rec: dict) -> dict:
    return {"id": rec["run_id"], "function": rec["name"] or "?",
            "where": f"{rec['backend']} on {rec['host']}", "state": rec["state"],
            "total": rec["total"] or 0, "bar": _bar(rec), "submitted": stamp(rec["submitted"]),
            "duration": duration(rec["submitted"], rec["finished"]),
            "job_ids": ", ".join(str(j) for j in rec["job_ids"] or [])}


def _limit(request: Request) -> int:
    try:
        return max(0, int(request.query_params.get("limit", LIMIT)))
    except ValueError:
        return LIMIT


def _runs(request: Request) -> tuple[list[dict], dict]:
    """The rows the filters of ``request`` select, newest first, and the filters."""
    from .._api import refresh_local_runs

    st = store(request)
    with request.app.state.refresh_lock:  # several tabs poll: one at a time
        refresh_local_runs(st)  # as pj.runs(): this machine's pool runs, read now
    recs = st.list_runs()
    functions = sorted({r["name"] or "?" for r in recs})
    function = request.query_params.get("function", "")
    state = request.query_params.get("state", "")
    limit = _limit(request)
    chosen = [r for r in reversed(recs)
              if (not function or (r["name"] or "?") == function)
              and (not state or r["state"] == state)]
    params = {k: v for k, v in (("function", function), ("state", state)) if v}
    if limit != LIMIT:
        params["limit"] = str(limit)
    filters = {"function": function, "state": state, "functions": functions,
               "states": STATES, "query": urlencode(params), "matched": len(chosen),
               "limit": limit, "default_limit": LIMIT,
               "all_query": urlencode({**params, "limit": "0"})}
    return [_row(r) for r in (chosen[:limit] if limit else chosen)], filters


def runs_page(request: Request) -> Response:
    rows, filters = _runs(request)
    return render(request, "runs.html", rows=rows, **filters)


def runs_rows(request: Request) -> Response:
    rows, filters = _runs(request)
    return render(request, "runs_rows.html", rows=rows, **filters)


routes: list[BaseRoute] = [Route("/", runs_page, name="runs"),
                           Route("/runs/rows", runs_rows, name="runs_rows")]
