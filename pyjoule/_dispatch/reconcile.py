"""Judging runs in flight, the explicit step: :func:`reconcile` asks each run's
backend whether it still lives (over SSH a pull, on SLURM an ``squeue``) and
finishes the dead ones. Who calls it: :func:`.plan_run` (a call that computes),
nothing else; the wait loop judges the runs it follows itself
(``LiveRun.poll_until_finished``, from ``Run.wait``/``done``), and ``status()``,
reprs and listings only look (``LiveRun.refresh``). :func:`settle_transient` is
``pyjoule cache gc``'s: local evidence only, no connection opened.
"""

from __future__ import annotations

from .. import _claims
from .._store import Store
from .live import settle
from .liveness import is_live


def reconcile(store: Store, recs: list[dict]) -> tuple[list[dict], int]:
    """Judge the runs ``recs`` (registry records): ``(the live ones, as they stand
    now; how many were dead)``. A dead run is finished here (what it computed is
    ingested, the rest recorded as lost) and its claims released. The one place a
    run in flight is judged: it may ask a host or the scheduler (``alive()``).
    Called by :func:`plan_run`; the wait loop judges the runs it follows itself
    (:meth:`LiveRun.poll_until_finished`)."""
    live, dead = [], 0
    for rec in recs:
        current = store.get_run(rec["run_id"])
        if current is not None and is_live(store, current):
            live.append(current)
        else:
            settle(store, rec["run_id"], current)
            dead += 1
    return live, dead


def settle_transient(store) -> int:
    """For ``cache gc``: finish every run left ``starting``/``running``/``finishing``
    whose processes are gone, and drop stale claims; return how many runs. Runs on
    a host or under SLURM are judged only from local evidence (a dead driver or
    finisher): gc opens no connections."""
    settled = 0
    for rec in store.list_runs():
        state = rec["state"]
        if state not in _claims.ACTIVE or rec.get("finished") is not None:
            continue
        remote = rec["backend"] in ("ssh", "slurm") and (
            state in ("running", "cancelled")
            or (rec.get("options") or {}).get("launching"))  # its fate is on the host
        if remote or is_live(store, rec):
            continue
        settle(store, rec["run_id"], rec)
        settled += 1
    with store._tx() as db:  # claims of runs that ended or vanished
        db.execute("DELETE FROM claims WHERE run_id NOT IN (SELECT run_id FROM runs WHERE "
                   "finished IS NULL AND state IN (?,?,?,?))", _claims.ACTIVE)
    return settled
