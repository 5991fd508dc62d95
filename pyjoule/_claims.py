"""Claims: which run computes which pset, so that nothing is run twice.

Planning and registering a run is one step. Inside one ``BEGIN IMMEDIATE``
transaction the psets still missing are checked against the cache and against the
``claims`` table (``(func_id, pset_id) -> run_id``); those no run has are claimed for
a new run, registered in state ``starting`` with its driver's host, pid and process
start time. A process that plans the same psets a moment later finds them claimed
and attaches to the owning run instead of running them again.

A claim is released when its run ends (in the transaction that marks it ended). A
claim of a run that is dead (driver and pool killed, lost host worker, cancelled
SLURM job, a ``starting`` run whose driver died, a ``finishing`` one whose finisher
died) is not waited on: the run is finished first (what it computed is ingested,
the rest recorded as lost), then its psets are free to claim. A run is judged dead
only from evidence (its processes are gone, the scheduler says it ended), never
from silence: a live run is never taken over. Judging and finishing runs is
dispatch's (``_dispatch.reconcile``, ``.liveness``, ``.live.settle``): this module
only reads and writes the registry, and imports nothing above it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from . import _caches
from ._platform import me

log = logging.getLogger("pyjoule")

#: states of a run that may still hold claims
ACTIVE = ("starting", "running", "finishing", "cancelled")


# -------------------------------------------------------------------- claims
def new_run_id() -> str:
    """A run's id: when it was registered, readable, and unique."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def claimed(db, func_id: str, pset_ids: Sequence[str]) -> dict[str, str]:
    """``{pset_id: run_id}`` for the claimed ones among ``pset_ids``."""
    rows = db.execute("SELECT rowid, run_id FROM claims WHERE func_id=?",
                      (func_id,)).fetchall()
    if not rows:
        return {}
    owner: dict[str, str] = {}
    for rowid, run_id in rows:
        ids = _decoded.get((run_id, rowid))
        if ids is None:  # rows never change (only come and go): decode each once
            blob = db.execute("SELECT ids FROM claims WHERE rowid=?", (rowid,)).fetchone()[0]
            text = blob.hex()
            ids = frozenset(text[i:i + _ID_HEX] for i in range(0, len(text), _ID_HEX))
            if len(_decoded) > 64:
                _decoded.clear()
            _decoded[run_id, rowid] = ids
        owner.update(dict.fromkeys(ids & set(pset_ids), run_id) if len(pset_ids) < len(ids)
                     else ((p, run_id) for p in pset_ids if p in ids))
    return owner


#: claims rows' ids, decoded, by (run_id, rowid): a run's rows never change. A cache
#: for this process's life (at most 65 rows), emptied by ``_caches.reset_all()``
_decoded: dict[tuple[str, int], frozenset] = _caches.declare(__name__, "_decoded", {})
_ID_HEX = 32  # pset ids are 16-byte BLAKE2b digests in hex
_CHUNK = 1 << 20  # ids per claims row


def claim(store, func_id: str, ids: list[str], missing: list[int], run: dict | None,
          limit: int | None = None, registered: dict | None = None,
          ) -> tuple[str | None, list[str], list[int], dict]:
    """Claim the psets ``missing`` (indices into ``ids``) that nobody has, for a new
    run registered ``starting`` (``run``: its registry fields; None: claim nothing).

    Returns ``(run_id, ids of the runs owning the others, indices claimed, newly
    cached)``; the run id also goes into ``registered`` as soon as it is written (for
    the caller to abandon it should an exception cut this short after the commit).
    One transaction, no judging: whether the owners still live is the caller's
    explicit step (``_dispatch.reconcile``), which may ask a host or the scheduler.
    """
    with store._tx() as db:
        newly = store.lookup(func_id, [ids[i] for i in missing])  # finished meanwhile
        if newly:
            missing = [i for i in missing if ids[i] not in newly]
        owners = claimed(db, func_id, [ids[i] for i in missing]) if missing else {}
        mine = [i for i in missing if ids[i] not in owners]
        if limit is not None and len(mine) > limit:
            # a warning: a limit left set would otherwise quietly leave holes
            log.warning("limit=%d (PYJOULE_LIMIT or pj.config): running only %d of %d "
                        "missing psets; the others stay missing from the results",
                        limit, limit, len(mine))
            mine = mine[:limit]
        run_id = None
        if mine and run is not None:
            run_id = _register(db, store, func_id, [ids[i] for i in mine], run)
            if registered is not None:  # for the caller, should this be cut short
                registered["run_id"] = run_id
    return run_id, list(dict.fromkeys(owners.values())), mine, newly


def _register(db, store, func_id: str, pset_ids: list[str], run: dict) -> str:
    """Insert the run (``starting``) and its claims; inside the caller's transaction."""
    run_id = new_run_id()
    options = dict(run.get("options") or {}, driver=me())
    fields = dict(run, run_id=run_id, func_id=func_id, state="starting",
                  run_dir=str(store.root / "runs" / run_id), done=0, failed=0,
                  submitted=time.time(), finished=None, offsets="{}",
                  job_ids=json.dumps(None), options=json.dumps(options))
    names = ",".join(fields)
    db.execute(f"INSERT INTO runs ({names}) VALUES ({','.join('?' * len(fields))})",
               list(fields.values()))
    # One row per million psets, their ids packed: a million single rows would
    # cost seconds and 100 MB of index (measured), this a few ms and 16 MB.
    for i in range(0, len(pset_ids), _CHUNK):
        db.execute("INSERT INTO claims VALUES (?,?,?)",
                   (func_id, run_id, bytes.fromhex("".join(pset_ids[i:i + _CHUNK]))))
    return run_id


def release(store, run_id: str, **fields: Any) -> None:
    """Update the run's registry row (``fields``) and drop its claims, atomically."""
    for key in ("job_ids", "options", "offsets"):
        if key in fields and not isinstance(fields[key], str):
            fields[key] = json.dumps(fields[key])
    with store._tx() as db:
        if fields:
            sets = ",".join(f"{k}=?" for k in fields)
            db.execute(f"UPDATE runs SET {sets} WHERE run_id=?", [*fields.values(), run_id])
        db.execute("DELETE FROM claims WHERE run_id=?", (run_id,))


def mark_cancelled(store, run_id: str) -> None:
    """Mark a running run cancelled (its follower is stopping it)."""
    with store._tx() as db:
        db.execute("UPDATE runs SET state='cancelled' WHERE run_id=? AND state='running'",
                   (run_id,))


def abandon(store, run_id: str) -> None:
    """Forget a run that never started (its start failed): row, claims and folder."""
    import shutil

    with store._tx() as db:
        if db.execute("DELETE FROM runs WHERE run_id=? AND state='starting'",
                      (run_id,)).rowcount == 0:
            return  # it started after all (or was settled): its claims are its own
        db.execute("DELETE FROM claims WHERE run_id=?", (run_id,))
    shutil.rmtree(store.root / "runs" / run_id, ignore_errors=True)


# ------------------------------------------------------------------ starting
def _settle_starting(store, rec: dict) -> None:
    """A run whose driver died before starting it: nothing ran; its psets are lost."""
    from . import _unfinished

    with store._tx() as db:
        row = db.execute("SELECT state FROM runs WHERE run_id=?", (rec["run_id"],)).fetchone()
        if row is None or row[0] != "starting":
            return
        ids = [blob.hex()[i:i + _ID_HEX]
               for (blob,) in db.execute("SELECT ids FROM claims WHERE run_id=?",
                                         (rec["run_id"],))
               for i in range(0, 2 * len(blob), _ID_HEX)]
        driver = (rec.get("options") or {}).get("driver") or {}
        key, record = _unfinished.encode(
            "lost", f"the process that started this run (pid {driver.get('pid')}) ended "
            "before it started it", ids, ids, None)
        db.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)",
                   (rec["run_id"], key, rec["func_id"], _unfinished.dumps(record),
                    record["finished"]))
        db.execute("UPDATE runs SET state='done', finished=?, failed=? WHERE run_id=?",
                   (time.time(), len(ids), rec["run_id"]))
        db.execute("DELETE FROM claims WHERE run_id=?", (rec["run_id"],))


class StartingBackend:
    """The backend of a run another process is still starting (see LiveRun)."""

    name = "starting"
    ended = False
    queries = None

    def alive(self) -> bool:
        return not self.ended

    def wait(self, timeout_s: float) -> bool:
        return self.ended

    def cancel(self) -> None:
        pass

    def settle(self) -> None:
        pass

    def tidy(self, keep_log: bool) -> None:
        pass

    def job_ids(self) -> list[str] | None:  # as Backend's: none known yet
        return None

    def running_slots(self) -> int:
        return 0

    def worker_log(self, run_dir: str) -> str | None:
        return None

    def orphan_reasons(self, pset_ids: list[str]) -> dict:
        return {}
