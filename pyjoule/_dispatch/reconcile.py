"""Judging runs in flight, the explicit step: :func:`reconcile` asks each run's
backend whether it still lives (over SSH a pull, on SLURM an ``squeue``) and
finishes the dead ones. Who calls it: :func:`.plan_run` (a call that computes),
nothing else; the wait loop judges the runs it follows itself.
"""

from __future__ import annotations

from .. import _claims
from .._store import Store


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
        if current is not None and _claims.is_live(store, current):
            live.append(current)
        else:
            _claims.settle(store, rec["run_id"], current)
            dead += 1
    return live, dead
