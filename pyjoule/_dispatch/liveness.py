"""Whether a registered run may still compute or finish its psets (:func:`is_live`):
from its processes (driver, finisher) on this machine, else by asking its backend
(a pid here, a pull over SSH, an ``squeue``). Only on evidence is a run dead.
"""

from __future__ import annotations

import logging

from .. import _platform
from .backends import make_backend

log = logging.getLogger("pyjoule")


def is_live(store, rec: dict) -> bool:
    """Whether a run may still compute or finish its psets (see the module doc)."""
    state, options = rec.get("state"), rec.get("options") or {}
    if state == "starting":
        if _platform.process_alive(options.get("driver")):
            return True
        try:
            rec = settle_start(store, rec)
        except Exception as exc:  # noqa: BLE001 - e.g. a host unreachable: not evidence
            log.info("run %s: its driver died while starting it, and whether its "
                     "workers started cannot be told now (%s); waiting for it",
                     rec["run_id"], exc)
            return True
        if rec is None or rec.get("state") == "starting":
            return False
        return is_live(store, rec)
    if state == "finishing":
        return _platform.process_alive(options.get("finisher"))
    if state in ("running", "cancelled") and rec.get("finished") is None:
        try:
            return make_backend(rec["backend"], rec["run_dir"],
                                rec.get("options")).alive()
        except Exception as exc:  # noqa: BLE001 - e.g. a host unreachable: not evidence
            log.info("run %s: cannot tell whether it still runs (%s); waiting for it",
                     rec["run_id"], exc)
            return True
    return False  # ended: its claims are stale


def settle_start(store, rec: dict) -> dict | None:
    """A ``starting`` run whose driver died: running, if the driver got as far as
    starting its backend and a worker started (its run directory's fate says so: the
    worker writes ``started`` before it computes); else still ``starting``, and
    ``abandoned`` is its fate now, so no worker of it will ever compute: it is to be
    settled as never started. Returns the run's record anew (None: it is gone).

    May ask a host or the scheduler; raises when they cannot be asked (then nobody
    can tell, and the run must be waited for, not settled)."""
    from .._rundir import STARTED

    options = rec.get("options") or {}
    if not options.get("launching"):  # the driver died before it started anything
        return rec

    fate = make_backend(rec["backend"], rec["run_dir"], options).settle_start()
    if fate != STARTED:
        return rec
    with store._tx() as db:
        db.execute("UPDATE runs SET state='running' WHERE run_id=? AND state='starting'",
                   (rec["run_id"],))
    return store.get_run(rec["run_id"])
