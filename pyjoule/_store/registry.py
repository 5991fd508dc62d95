"""The run registry: the ``runs`` table (one row per run: where, how, its state and
counts), adding, updating and listing runs, and the transitions several processes
may race for (which process finishes a run, which starts a retry).
"""

from __future__ import annotations

import json
from typing import Any

from .._platform import me, process_alive
from .db import Database


class Registry(Database):
    """The ``runs`` table."""

    # --------------------------------------------------------------------- runs
    def add_run(self, **fields: Any) -> None:
        fields.setdefault("offsets", "{}")
        for key in ("job_ids", "options"):
            fields[key] = json.dumps(fields.get(key))
        names = ",".join(fields)
        marks = ",".join("?" * len(fields))
        with self._tx() as db:
            db.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", list(fields.values()))

    def update_run(self, run_id: str, **fields: Any) -> None:
        for key in ("job_ids", "options", "offsets"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        sets = ",".join(f"{k}=?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE runs SET {sets} WHERE run_id=?", [*fields.values(), run_id])

    def claim_finish(self, run_id: str) -> str | None:
        """Mark the run ``finishing`` if it is still running (or cancelled but not
        finished, or left ``finishing`` by a process that died); return the state it
        is finished from, or None when another (live) process has it. The finisher
        is recorded, so that others can tell a dead one from a slow one."""
        with self._tx() as db:
            row = db.execute("SELECT state, finished, options FROM runs WHERE run_id=?",
                             (run_id,)).fetchone()
            if row is None or row[1] is not None:
                return None
            options = (json.loads(row[2]) if row[2] else None) or {}
            previous = row[0]
            if previous == "finishing" and not process_alive(options.get("finisher")):
                previous = options.get("finishing_from", "running")
            if previous not in ("running", "cancelled"):
                return None
            options.update(finisher=me(), finishing_from=previous)
            db.execute("UPDATE runs SET state='finishing', options=? WHERE run_id=?",
                       (json.dumps(options), run_id))
            return previous

    def unclaim_finish(self, run_id: str, previous: str) -> None:
        """Put a run back in the state it was finished from (the finish failed)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET state=? WHERE run_id=? AND state='finishing'",
                       (previous, run_id))

    def claim_attempt(self, run_id: str, attempt: int) -> bool:
        """Record that ``attempt`` of a running run starts, if no other process has
        started it (or a later one) already; True when this process may start it."""
        with self._tx() as db:
            row = db.execute("SELECT state, options FROM runs WHERE run_id=?",
                             (run_id,)).fetchone()
            if row is None or row[0] != "running":
                return False
            options = json.loads(row[1]) if row[1] else {}
            if options.get("attempt", 0) >= attempt:
                return False
            options["attempt"] = attempt
            db.execute("UPDATE runs SET options=? WHERE run_id=?",
                       (json.dumps(options), run_id))
            return True

    def get_run(self, run_id: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        row = cur.fetchone()
        return _run_row(cur, row) if row else None

    def list_runs(self, func_id: str | None = None, state: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM runs", []
        conds = []
        if func_id:
            conds.append("func_id=?")
            args.append(func_id)
        if state:
            conds.append("state=?")
            args.append(state)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        cur = self.db.execute(sql + " ORDER BY submitted", args)
        return [_run_row(cur, r) for r in cur.fetchall()]


def _run_row(cur, row) -> dict:
    out = dict(zip([d[0] for d in cur.description], row))
    for key in ("job_ids", "options", "offsets"):
        out[key] = json.loads(out[key]) if out.get(key) else None
    return out
