"""Starting a planned run: its run directory written, its backend started, its
registry row moved from ``starting`` to ``running`` (:func:`launch`); a call
with nothing to run registered as done at once (:func:`record_cached`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import _bulk, _faults, _keying, _platform
from .._rundir import PAYLOAD, REQUEST, TASKS, RunDir
from .._store import Store
from .live import TASKS_HANDED, LiveRun
from .payload import _tasks_blob, _write, pickle_function, plain_values
from .plan import Plan, abandon

if TYPE_CHECKING:
    from .._options import LaunchOptions

log = logging.getLogger("pyjoule")


def launch(store: Store, *, func: Callable, func_id: str, name: str, plan_: Plan,
           backend, options: LaunchOptions, request: bool = True,
           by_value: Sequence[str] = ()) -> dict:
    """Write the run directory of the run ``plan_`` claimed, start the backend, and
    mark the run ``running``. On any failure the claim is released (nothing was
    started, nothing is left behind)."""
    run_id = plan_.run_id
    if run_id is None:  # plan() claims the psets; without a store it cannot
        raise ValueError("launch() needs a plan made with a store (it claims the psets)")
    run_dir = os.path.join(store.root, "runs", run_id)
    host = options.host
    rec = dict(run_id=run_id, func_id=func_id, name=name,
               host=getattr(host, "target", host) or "local",
               backend=backend.name, run_dir=run_dir, state="running",
               total=len(plan_.ids), cached=len(plan_.found), done=0, failed=0,
               workers=options.workers, submitted=time.time(), finished=None,
               job_ids=None, options={"retries": options.retries, "attempt": 0,
                                      "driver": _platform.me(), **backend.describe()})
    if plan_.ignored:  # recorded without them, by whichever process ingests the results
        rec["options"]["ignore"] = list(plan_.ignored)
    if plan_.by_value:  # a retry sends them as the first attempt did
        rec["options"]["by_value"] = True
    log.debug("run %s: %d psets to run, %d cached", run_id, len(plan_.to_run),
              len(plan_.found))
    started = registered = False
    fields = {k: v for k, v in rec.items() if k not in ("run_id", "func_id")}
    try:
        rd = RunDir(run_dir).make()
        payload = {"func": func, "threads": options.threads,
                   "timeout_s": options.timeout, "capture": options.capture,
                   "batch": options.batch}
        # the run's follower (LiveRun) takes its tasks from here, not from the file
        rec[TASKS_HANDED] = _write_run(rd, plan_, pickle_function(func, payload, by_value),
                                       by_value, request)
        if backend.name == "inprocess":
            # Runs to the end inside start(): running (alive while this process lives
            # and has not written ``exit``) before it starts.
            store.update_run(run_id, **fields)
            started = registered = True
            backend.start(run_dir, options.workers)
        else:
            # Marked running once started, so that whoever finds it running also
            # finds its pid file (else it would take the run for dead and finish it);
            # until then others see it ``starting``, alive while this process is.
            # Its backend is recorded first: should this process die while starting
            # it, whoever settles the run asks the backend's side whether a worker
            # started (then it is followed) or not (then none ever will), see
            # _dispatch.liveness.settle_start.
            store.update_run(run_id, **dict(fields, state="starting", options=dict(
                fields["options"], launching=True)))
            _faults.point("launch:before-start")
            backend.start(run_dir, options.workers)
            started = True
            _faults.point("launch:started")
            rec["job_ids"] = fields["job_ids"] = backend.job_ids()
            store.update_run(run_id, **fields)
            registered = True
    except BaseException as exc:
        if not started:  # nothing started: leave nothing behind either
            try:
                backend.tidy(keep_log=False)
            except Exception:  # noqa: BLE001 - the start's error is the one to see
                pass
            abandon(store, plan_)
        elif not registered:  # started (and computing on): others must see it running
            store.update_run(run_id, **fields)
        elif backend.name == "inprocess" and isinstance(exc, KeyboardInterrupt):
            # Ctrl-C in the function itself: cancelled, as a pool's map would be
            LiveRun(store, dict(rec, offsets={}), backend).cancel()
        raise
    rec["offsets"] = {}
    return rec


@_bulk.gc_paused
def _write_run(rd: RunDir, plan_: Plan, payload: bytes, by_value: Sequence[str],
               request: bool) -> dict[str, dict]:
    """Write the run's payload, tasks and request; return the tasks,
    ``{pset_id: kwargs}``."""
    calls = plan_.psets if plan_.calls is None else plan_.calls
    tasks = [(plan_.ids[i], calls[i]) for i in plan_.to_run]
    # ``psets`` are ``calls`` or parts of them: plain values in both, or not
    flat = not plan_.by_value and plain_values(calls)
    _write(rd, PAYLOAD, payload)
    _write(rd, TASKS, _tasks_blob(tasks, by_value) if plan_.by_value else tasks, flat)
    if request:
        _write(rd, REQUEST, _keying.request(plan_), flat)
    return dict(tasks)


def record_cached(store: Store, *, func_id: str, name: str, plan_: Plan) -> dict:
    """Register a submission that had nothing to run (everything cached): it still gets
    an id, for ``pj.attach`` and ``pj.runs()``, and is done at once. The id depends on
    the psets only, so re-running a notebook's cell gives the same run, not a new one."""
    import hashlib

    digest = hashlib.sha256("\0".join([func_id, *plan_.ids]).encode()).hexdigest()
    run_id = f"cached-{digest[:12]}"
    existing = store.get_run(run_id)
    if existing is not None:
        return existing
    run_dir = os.path.join(store.root, "runs", run_id)
    _write(RunDir(run_dir).make(results=False), REQUEST, _keying.request(plan_))
    now = time.time()
    rec = dict(run_id=run_id, func_id=func_id, name=name, host="local",
               backend="inprocess", run_dir=run_dir, state="done", total=len(plan_.ids),
               cached=len(plan_.found), done=0, failed=0, workers=0, submitted=now,
               finished=now, job_ids=None, options={"retries": 0, "attempt": 0})
    try:
        store.add_run(**rec)
    except sqlite3.IntegrityError:  # another process registered it just now
        return store.get_run(run_id) or rec
    rec["offsets"] = {}
    return rec
