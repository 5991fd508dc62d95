"""Entries: which psets of which function version are cached and where (the
``entries`` table, ``{pset_id: loc}``), the ``functions`` table of versions seen,
ingesting a batch of worker records (one segment, its entries, the failures and the
run's offsets in one transaction), reading everything cached for a function, and
the ``failures`` table (failure records, a run's one row of unfinished psets).
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Collection, Sequence

import numpy as np

from . import locate as _locate
from .db import _unlink
from .segments import Segments, _concat_segments, _dumps

#: Output kept per stream (stdout, stderr) of a failed pset: its last 1 MiB (of
#: UTF-8 text). A pset that prints without bound must not grow the index so.
MAX_OUTPUT_BYTES = 1 << 20


class Entries(Segments):
    """Function versions, entries, ingest, reading a whole function, failures."""

    # ----------------------------------------------------------------- functions
    def register_function(self, func_id: str, name: str,
                          components: dict) -> tuple[list[dict], float | None]:
        """Record ``func_id``; return the other versions of ``name`` that have entries
        (most recently used first) and when ``func_id`` was used before (None: never)."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT last_used FROM functions WHERE func_id=?",
                             (func_id,)).fetchone()
            db.execute("INSERT OR IGNORE INTO functions VALUES (?,?,?,?,?)",
                       (func_id, name, json.dumps(components), now, now))
            db.execute("UPDATE functions SET last_used=? WHERE func_id=?", (now, func_id))
            rows = db.execute(
                "SELECT f.func_id, f.components, f.last_used FROM functions f "
                "WHERE f.name=? AND f.func_id!=? AND EXISTS "
                "(SELECT 1 FROM entries e WHERE e.func_id=f.func_id) "
                "ORDER BY f.last_used DESC", (name, func_id)).fetchall()
        older = [{"func_id": r[0], "components": json.loads(r[1]), "last_used": r[2]}
                 for r in rows]
        return older, (row[0] if row else None)

    def has_entries(self, func_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM entries WHERE func_id=? LIMIT 1",
                               (func_id,)).fetchone() is not None

    def function_ids(self, name: str) -> list[str]:
        rows = self.db.execute("SELECT func_id FROM functions WHERE name=?", (name,))
        return [r[0] for r in rows]

    # ------------------------------------------------------------------- entries
    def lookup(self, func_id: str,
               pset_ids: Sequence[str] | Collection[str] | None = None) -> dict[str, int]:
        """``{pset_id: loc}`` for the cached ones among ``pset_ids`` (or all): a list,
        or a set or dict of them (then used as it is, not copied into a set).

        ``loc`` packs the segment id and the row in it (``seg_id << 32 | row``), so
        that SQLite hands back plain pairs and the dict is built in C.
        """
        db = self.db
        if pset_ids is not None and not self._scan_pays(func_id, len(pset_ids)):
            return self._lookup_each(func_id, pset_ids)
        if pset_ids is not None:
            ids = pset_ids if isinstance(pset_ids, Sequence) else list(pset_ids)
            locs = _locate.locate(db, func_id, ids)
            if locs is not None:
                return _locate.found_dict(ids, locs)
        rows = db.execute("SELECT pset_id, loc FROM entries WHERE func_id=?", (func_id,))
        if pset_ids is None:
            return dict(rows)
        # one pass over the function's entries, keeping the wanted ones: at 1M, half
        # the time of a dict of all of them filtered by the ids (in the index's order)
        wanted = pset_ids if isinstance(pset_ids, (set, frozenset, dict)) else set(pset_ids)
        return {p: loc for p, loc in rows if p in wanted}

    def _scan_pays(self, func_id: str, n_ids: int) -> bool:
        """Whether reading all of the function's entries beats looking ``n_ids`` up
        one by one in the index: ~0.3 µs an entry against ~1.5 µs an id. The entries
        are counted from the segments' sizes (a few rows; counting the index itself
        takes 80 ms at 1,000,000). A re-call of 1,000 psets of a function with
        1,000,000 cached took 0.34 s by the scan, 2 ms by the index."""
        if n_ids < _locate.MANY:
            return False
        (total,) = self.db.execute("SELECT COALESCE(SUM(n), 0) FROM segments "
                                   "WHERE func_id=?", (func_id,)).fetchone()
        return n_ids * 5 >= total

    def _lookup_each(self, func_id: str,
                     pset_ids: Sequence[str] | Collection[str]) -> dict[str, int]:
        """:meth:`lookup` through the index, 400 ids a query."""
        out: dict[str, int] = {}
        some = pset_ids if isinstance(pset_ids, Sequence) else list(pset_ids)
        for i in range(0, len(some), 400):
            chunk = list(some[i:i + 400])
            marks = ",".join("?" * len(chunk))
            out.update(self.db.execute(
                f"SELECT pset_id, loc FROM entries WHERE func_id=? "
                f"AND pset_id IN ({marks})", [func_id, *chunk]))
        return out

    def locate(self, func_id: str, ids: Sequence[str],
               prepared: _locate.Ids | None = None) -> np.ndarray:
        """The ``loc`` of each of ``ids`` (see :meth:`lookup`), -1 where it is not
        cached: a numpy array in the order of ``ids``, vectorised when many
        (``prepared``: ``ids`` as arrays already, ``locate.Ids``)."""
        locs = _locate.locate(self.db, func_id, prepared or ids) \
            if self._scan_pays(func_id, len(ids)) else None
        if locs is None:
            found = self.lookup(func_id, ids)
            locs = np.fromiter((found.get(p, -1) for p in ids), np.int64, len(ids))
        return locs

    def locate_present(self, func_id: str, ids: Sequence[str],
                       prepared: _locate.Ids | None = None) -> np.ndarray:
        """:meth:`locate`, -1 also where the segment file is missing or truncated (as
        :meth:`lookup_present`)."""
        locs = self.locate(func_id, ids, prepared)
        seg_ids = np.unique(locs[locs >= 0] >> 32).tolist()
        bad = [s for s in seg_ids if not self._segment_ok(s)]
        if bad:
            self._drop_segments(bad, "missing or truncated")
            locs = np.where(np.isin(locs >> 32, bad) & (locs >= 0), -1, locs)
        return locs

    def lookup_present(self, func_id: str,
                       pset_ids: Sequence[str] | Collection[str]) -> dict[str, int]:
        """``{pset_id: loc}`` of the cached ones among ``pset_ids`` whose segment file
        is there with its size: all a plan needs from the cache, in one call (a
        missing or truncated segment is dropped, so its psets are recomputed)."""
        return self.verify_present(self.lookup(func_id, pset_ids))

    def verify_present(self, found: dict[str, int]) -> dict[str, int]:
        """Drop entries whose segment file is missing or has the wrong size."""
        seg_ids = np.unique(np.fromiter(found.values(), np.int64, len(found)) >> 32).tolist()
        bad = [s for s in seg_ids if not self._segment_ok(s)]
        if not bad:
            return found
        self._drop_segments(bad, "missing or truncated")
        bad_set = set(bad)
        return {p: v for p, v in found.items() if v >> 32 not in bad_set}

    # ------------------------------------------------------------------- writing
    def ingest(self, func_id: str, run_id: str, records: list,
               offsets: dict[str, int] | None = None,
               kwargs: dict[str, dict] | None = None) -> tuple[int, int]:
        """Store a batch of worker records; return (done, failed) counts.

        ``records`` are result records as dicts (with their ``kwargs``) or in the
        compact tuple form of :mod:`._records` (then ``kwargs`` maps pset ids to
        parameters). Successes become one segment; failures go to the failure table.
        The run's file offsets are committed in the same transaction as the entries.
        """
        from .. import _records

        kwargs = dict(kwargs or {})
        if any(type(r) is dict for r in records):  # e.g. the supervisor's own records
            kwargs.update((r["pset_id"], r["kwargs"]) for r in records
                          if type(r) is dict and "kwargs" in r)
            records = [_records.pack(r) if type(r) is dict else r for r in records]
        done: dict[str, tuple] = {}
        failed: dict[str, dict] = {}
        for rec in records:  # "done" wins over a "lost" record of the same pset
            if rec[1] == "done":
                done[rec[0]] = rec
                failed.pop(rec[0], None)
            elif rec[0] not in done:
                failed[rec[0]] = rec
        failed = {p: cap_output(dict(_records.as_dict(r), kwargs=kwargs.get(p, {}),
                                      run_id=run_id))
                  for p, r in failed.items()}
        rows = list(done.values())
        params = [kwargs.get(p, {}) for p in done]
        seg = self._write_segment(func_id, run_id, rows, params) if done else None
        if failed:  # a pset already cached (e.g. by an earlier batch) has not failed
            cached = self.lookup(func_id, list(failed))
            failed = {p: r for p, r in failed.items() if p not in cached}
        pids = list(done)
        # in key order: the index's B-tree is then written page after page, not at
        # random places (5x faster at 1,000,000 entries); sorted before the lock
        order = _locate.id_order(pids) if seg is not None else []
        try:
            with self._tx() as db:
                if seg is not None:
                    seg_id = db.execute(
                        "INSERT INTO segments (func_id, path, n, nbytes, len_a, digest_a, "
                        "digest_b, created) VALUES (?,?,?,?,?,?,?,?)", seg).lastrowid
                    base = seg_id << 32
                    db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?)",
                                   ((func_id, pids[i], base | i) for i in order))
                if failed:
                    db.executemany("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)",
                                   ((run_id, pid, func_id, _dumps(rec),
                                     rec.get("finished")) for pid, rec in failed.items()))
                if done and db.execute(  # only if the run has failures (or retried)
                        "SELECT 1 FROM failures WHERE run_id=? LIMIT 1", (run_id,)
                        ).fetchone() is not None:
                    db.executemany("DELETE FROM failures WHERE run_id=? AND pset_id=?",
                                   ((run_id, pid) for pid in done))
                if offsets is not None:
                    db.execute("UPDATE runs SET offsets=? WHERE run_id=?",
                               (json.dumps(offsets), run_id))
        except Exception:  # e.g. the index's disk is full: leave no orphan segment
            if seg is not None:
                _unlink(self.root / seg[1])
            raise
        return len(done), len(failed)

    def read_all_columns(self, func_id: str, with_ids: bool = True) -> tuple[list[str], dict]:
        """Columns of everything cached for ``func_id`` (and their pset ids).

        When every row of every segment is live (the usual case: nothing was
        recomputed or dropped) whole segments are read without looking up each pset.
        """
        from .. import _columns

        db = self.db
        n_entries = db.execute("SELECT COUNT(*) FROM entries WHERE func_id=?",
                               (func_id,)).fetchone()[0]
        segs = db.execute("SELECT seg_id, n FROM segments WHERE func_id=? ORDER BY seg_id",
                          (func_id,)).fetchall()
        if sum(n for _, n in segs) != n_entries:
            return self.read_columns(func_id, self.lookup(func_id))
        ids: list[str] = []
        parts = []
        for seg_id, _ in segs:
            seg = self._load_part(seg_id, "a")
            if seg is None:  # damaged: drop it, then take the careful path
                self._drop_segments([seg_id], "damaged (checksum mismatch)")
                return self.read_columns(func_id, self.lookup(func_id))
            if with_ids:
                values = self._load_part(seg_id, "b")
                if values is None:
                    self._drop_segments([seg_id], "damaged (checksum mismatch)")
                    return self.read_columns(func_id, self.lookup(func_id))
                ids.extend(values["pset_ids"])
            parts.append((seg["columns"], seg["n"]))
        return ids, _concat_segments(parts, _columns)

    # ------------------------------------------------------------------ failures
    def count_failures(self, run_id: str) -> int:
        """Failed psets of the run (a cancelled run's one row counts for each pset)."""
        from .. import _unfinished

        n = self.db.execute("SELECT COUNT(*) FROM failures WHERE run_id=? AND "
                            "substr(pset_id, 1, 1) != ?", (run_id, _unfinished.MARK)
                            ).fetchone()[0]
        for (blob,) in self.db.execute("SELECT record FROM failures WHERE run_id=? AND "
                                       "substr(pset_id, 1, 1) = ?",
                                       (run_id, _unfinished.MARK)):
            n += pickle.loads(blob)["n"]
        return n

    def failures(self, run_id: str | None = None, func_id: str | None = None) -> list[dict]:
        """Failure records of a run (or of a function's psets not cached), a run's
        row of unfinished psets expanded to one record each (see ``_unfinished``)."""
        from .. import _unfinished

        if run_id is not None:
            rows = self.db.execute("SELECT run_id, pset_id, record FROM failures "
                                   "WHERE run_id=?", (run_id,)).fetchall()
        else:
            rows = self.db.execute(
                "SELECT run_id, pset_id, record FROM failures WHERE func_id=? AND pset_id "
                "NOT IN (SELECT pset_id FROM entries WHERE func_id=?)",
                (func_id, func_id)).fetchall()
        out, marked = [], []
        for rid, pid, blob in rows:
            if pid.startswith(_unfinished.MARK):
                marked.append((rid, pickle.loads(blob)))
            else:
                out.append(pickle.loads(blob))
        for rid, record in marked:
            row = self.db.execute("SELECT run_dir FROM runs WHERE run_id=?",
                                  (rid,)).fetchone()
            more = _unfinished.expand(record, rid, row[0] if row else None)
            if run_id is None and more:  # those computed since are no failures
                assert func_id is not None  # (no run_id: a func_id, see above)
                cached = self.lookup(func_id, [r["pset_id"] for r in more])
                more = [r for r in more if r["pset_id"] not in cached]
            out.extend(more)
        return out

    def add_unfinished(self, run_id: str, func_id: str, key: str, record: dict) -> None:
        """Store a run's one row of unfinished psets (``_unfinished.encode``)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)",
                       (run_id, key, func_id, pickle.dumps(record, protocol=5),
                        record["finished"]))


def cap_output(rec: dict, limit: int | None = None) -> dict:
    """``rec`` with each captured stream cut to its last ``limit`` bytes
    (``MAX_OUTPUT_BYTES``), after a line saying how much was cut."""
    limit = MAX_OUTPUT_BYTES if limit is None else limit
    for key in ("stdout", "stderr"):
        text = rec.get(key)
        if not isinstance(text, str) or len(text) <= limit // 4:  # <= limit bytes surely
            continue
        data = text.encode("utf-8", "replace")
        if len(data) <= limit:
            continue
        tail = data[-limit:].decode("utf-8", "ignore")
        rec[key] = (f"[pyjoule: the first {len(data) - limit} bytes of this {key} were "
                    f"cut; the last {limit} bytes are kept]\n" + tail)
    return rec
