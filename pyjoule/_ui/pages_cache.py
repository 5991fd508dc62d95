"""``/cache``: size per function and version (``pyjoule cache info``), and the
``cache gc`` actions behind a confirmation.

An action is two POSTs, each with the CSRF value: the first removes nothing and shows
what would go (a dry run) with a Confirm button; the second (``confirm=1``) removes it
and redirects (303) to ``/cache`` with a one-line summary. The work is the CLI's,
from ``pyjoule._repair``: ``summary`` (``cache info``), ``to_clear`` (``cache clear
--old-versions``), ``gc`` (``cache gc``) and the limits' parsers.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .. import _caches
from .._display import human, when
from .._repair import parse_duration, parse_size, summary, to_clear
from . import data_results
from .render import check_csrf, render, store

# one-line summaries of what was just removed, shown once on /cache?done=<id>
_DONE: OrderedDict[str, str] = _caches.declare(__name__, "_DONE", OrderedDict())
_DONE_MAX = 32
_DONE_LOCK = threading.Lock()


def page(request: Request) -> Response:
    done = request.query_params.get("done")
    with _DONE_LOCK:
        message = _DONE.pop(done, None) if done else None
    return _page(request, message=message)


def _page(request: Request, status_code: int = 200, message: str | None = None,
          errors: list[str] | None = None, form: FormData | None = None) -> Response:
    st = store(request)
    funcs, total, index = summary(st)
    groups = data_results.versions(st)
    return render(request, "cache.html", status_code=status_code, root=str(st.root),
                  funcs=funcs, total=total, index=index, groups=groups,
                  any_old=any(len(g["versions"]) > 1 for g in groups), message=message,
                  errors=errors or [], form=form or {}, human=human, when=when)


async def gc(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form)
    try:
        older_than = _parse(parse_duration, form.get("older_than"))
        size = _parse(parse_size, form.get("max_size"))
        max_size = None if size is None else int(size)
    except ValueError as exc:
        return _page(request, 400, errors=[str(exc)], form=form)
    if older_than is None and max_size is None:
        what = "nothing but results no entry points at and stray files"
    else:
        what = " and ".join(p for p in (
            older_than is not None and f"results unused for {form.get('older_than')}",
            max_size is not None and f"the least recently used results beyond "
                                     f"{form.get('max_size')}") if p)
    from .._repair import gc as collect

    confirm = form.get("confirm") == "1"
    report = await run_in_threadpool(collect, store(request), older_than_s=older_than,
                                     max_bytes=max_size, dry_run=not confirm)
    if not confirm:
        return render(request, "cache_confirm.html", action="/cache/gc",
                      title="Collect the cache's garbage", what=what,
                      sentence=_gc_sentence(report, dry_run=True), versions=[],
                      fields={"older_than": form.get("older_than") or "",
                              "max_size": form.get("max_size") or ""},
                      nothing=not (report["entries"] or report["segments"] or
                                   report["runs"] or report["files"]))
    return _done(request, _gc_sentence(report, dry_run=False))


async def clear_old(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form)
    name = str(form.get("name") or "") or None
    doomed = await run_in_threadpool(to_clear, store(request), name, True)
    confirm = form.get("confirm") == "1"
    if not confirm:
        return render(request, "cache_confirm.html", action="/cache/clear-old",
                      title="Clear old versions", versions=doomed, human=human, when=when,
                      what=f"every version but the newest of {name or 'every function'}",
                      sentence=_clear_sentence(doomed, dry_run=True), nothing=not doomed,
                      fields={"name": name or ""}, func_ids=[v["func_id"] for v in doomed])
    # only what the dry run showed, and still old: a version may have become the newest
    shown = set(form.getlist("func_id"))
    doomed = [v for v in doomed if v["func_id"] in shown]
    if doomed:
        await run_in_threadpool(store(request).clear, [v["func_id"] for v in doomed])
    return _done(request, _clear_sentence(doomed, dry_run=False))


def _parse(parse: Callable[[str], float], raw: object) -> float | None:
    text = str(raw or "").strip()
    return None if not text else parse(text)


def _gc_sentence(report: dict, dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    line = (f"{verb} {report['entries']} results in {report['segments']} segment files "
            f"({human(report['bytes'])}), {report['runs']} finished runs, "
            f"{report['files']} stray files; results {'would ' if dry_run else ''}"
            f"take {human(report['bytes_left'])}")
    if report.get("runs_settled"):
        line += (f"; finished {report['runs_settled']} runs a crash had left starting, "
                 "running or finishing")
    return line


def _clear_sentence(doomed: list[dict], dry_run: bool) -> str:
    if not doomed:
        return "nothing to remove: no function has an old version"
    entries, size = sum(v["entries"] for v in doomed), sum(v["bytes"] for v in doomed)
    return (f"{'would remove' if dry_run else 'removed'} {entries} cached results "
            f"({human(size)}) of {len(doomed)} old function version(s)")


def _done(request: Request, message: str) -> Response:
    """303 to ``/cache``, which shows ``message`` once; with the token when the POST
    carried it in its URL (a page framed by another site gets no cookie)."""
    key = secrets.token_urlsafe(8)
    with _DONE_LOCK:
        _DONE[key] = message
        while len(_DONE) > _DONE_MAX:
            _DONE.popitem(last=False)
    query = {"done": key}
    token = getattr(request.state, "url_token", None)
    if token:
        query["token"] = token
    return RedirectResponse(f"/cache?{urlencode(query)}", status_code=303)


routes: list[BaseRoute] = [
    Route("/cache", page),
    Route("/cache/gc", gc, methods=["POST"]),
    Route("/cache/clear-old", clear_old, methods=["POST"]),
]
