"""The cache: an SQLite index (WAL mode) plus columnar segment files, and the run
registry in the same database.

Layout of a cache directory (see ``docs/on-disk-layout.md``)::

    index.sqlite            entries, segments, functions, failures, runs
    data/<func_id>/<n>.seg  results, one segment per ingested batch of records
    runs/<run_id>/          a run's work directory (payload, tasks, result records)

A segment holds a batch of successful results twice: as columns (parameters,
results, bookkeeping) for fast assembly, and as the exact values the function
returned (for ``f(**kw)``). The two parts have their own checksums in the index, so
a damaged file is detected, its entries dropped (and so recomputed), never returned.

Segment files are written atomically (temporary name, then ``os.replace``) before the
index rows that point at them are committed, so a reader never sees an entry whose
data is not complete. Any number of processes may share one cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import sqlite3
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._errors import CacheError

log = logging.getLogger("pyjoule")

SCHEMA_VERSION = 1
_SEG_HEADER = struct.Struct("<4sQ")
_SEG_MAGIC = b"PJS1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS functions (
    func_id TEXT PRIMARY KEY, name TEXT, components TEXT, created REAL, last_used REAL);
CREATE INDEX IF NOT EXISTS functions_name ON functions(name);
CREATE TABLE IF NOT EXISTS segments (
    seg_id TEXT PRIMARY KEY, func_id TEXT, path TEXT, n INTEGER, nbytes INTEGER,
    len_a INTEGER, digest_a TEXT, digest_b TEXT, created REAL);
CREATE INDEX IF NOT EXISTS segments_func ON segments(func_id);
CREATE TABLE IF NOT EXISTS entries (
    func_id TEXT, pset_id TEXT, seg_id TEXT, row INTEGER,
    PRIMARY KEY (func_id, pset_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_seg ON entries(seg_id);
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT, pset_id TEXT, func_id TEXT, record BLOB, finished REAL,
    PRIMARY KEY (run_id, pset_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, func_id TEXT, name TEXT, host TEXT, backend TEXT,
    run_dir TEXT, state TEXT, total INTEGER, cached INTEGER, done INTEGER,
    failed INTEGER, workers INTEGER, submitted REAL, finished REAL, job_ids TEXT,
    offsets TEXT, options TEXT);
"""

BOOKKEEPING = ("runtime_s", "started", "finished", "host", "run_id")


def _digest(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class Store:
    """One cache directory. Cheap to create; connects on first use."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self._local = threading.local()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ plumbing
    def check_writable(self) -> None:
        """Create the directory and fail clearly when it cannot be written."""
        try:
            (self.root / "data").mkdir(parents=True, exist_ok=True)
            (self.root / "runs").mkdir(exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise CacheError(
                f"cannot write to the cache directory {self.root} ({exc.strerror or exc}); "
                "pass cache='/a/writable/dir' to @pj.experiment or set PYJOULE_CACHE"
            ) from None

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never reuse across fork
            self.check_writable()
            conn = sqlite3.connect(self.root / "index.sqlite", timeout=60,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                         (str(SCHEMA_VERSION),))
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _tx(self):
        return _Transaction(self.db, self._lock)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ----------------------------------------------------------------- functions
    def register_function(self, func_id: str, name: str, components: dict) -> list[dict]:
        """Record ``func_id``; return the other versions of ``name`` that have entries."""
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO functions VALUES (?,?,?,?,?)",
                       (func_id, name, json.dumps(components), now, now))
            db.execute("UPDATE functions SET last_used=? WHERE func_id=?", (now, func_id))
            rows = db.execute(
                "SELECT f.func_id, f.components, f.last_used FROM functions f "
                "WHERE f.name=? AND f.func_id!=? AND EXISTS "
                "(SELECT 1 FROM entries e WHERE e.func_id=f.func_id) "
                "ORDER BY f.last_used DESC", (name, func_id)).fetchall()
        return [{"func_id": r[0], "components": json.loads(r[1]), "last_used": r[2]}
                for r in rows]

    def function_ids(self, name: str) -> list[str]:
        rows = self.db.execute("SELECT func_id FROM functions WHERE name=?", (name,))
        return [r[0] for r in rows]

    # ------------------------------------------------------------------- entries
    def lookup(self, func_id: str, pset_ids: Sequence[str] | None = None) -> dict[str, tuple]:
        """``{pset_id: (seg_id, row)}`` for the cached ones among ``pset_ids`` (or all)."""
        db = self.db
        if pset_ids is not None and len(pset_ids) < 500:
            out = {}
            for i in range(0, len(pset_ids), 400):
                chunk = list(pset_ids[i:i + 400])
                marks = ",".join("?" * len(chunk))
                out.update((r[0], (r[1], r[2])) for r in db.execute(
                    f"SELECT pset_id, seg_id, row FROM entries WHERE func_id=? "
                    f"AND pset_id IN ({marks})", [func_id, *chunk]))
            return out
        rows = db.execute("SELECT pset_id, seg_id, row FROM entries WHERE func_id=?",
                          (func_id,))
        found = {r[0]: (r[1], r[2]) for r in rows}
        if pset_ids is None:
            return found
        return {p: found[p] for p in pset_ids if p in found}

    def verify_present(self, found: dict[str, tuple]) -> dict[str, tuple]:
        """Drop entries whose segment file is missing or has the wrong size."""
        seg_ids = {v[0] for v in found.values()}
        bad = [s for s in seg_ids if not self._segment_ok(s)]
        if not bad:
            return found
        self._drop_segments(bad, "missing or truncated")
        bad_set = set(bad)
        return {p: v for p, v in found.items() if v[0] not in bad_set}

    def _segment_ok(self, seg_id: str) -> bool:
        row = self.db.execute("SELECT path, nbytes FROM segments WHERE seg_id=?",
                              (seg_id,)).fetchone()
        if row is None:
            return False
        try:
            return os.path.getsize(self.root / row[0]) == row[1]
        except OSError:
            return False

    def _drop_segments(self, seg_ids: Iterable[str], why: str) -> None:
        seg_ids = list(seg_ids)
        with self._tx() as db:
            for seg_id in seg_ids:
                n = db.execute("DELETE FROM entries WHERE seg_id=?", (seg_id,)).rowcount
                row = db.execute("SELECT path FROM segments WHERE seg_id=?",
                                 (seg_id,)).fetchone()
                db.execute("DELETE FROM segments WHERE seg_id=?", (seg_id,))
                log.warning("cache segment %s is %s: its %d entries will be recomputed",
                            row[0] if row else seg_id, why, n)
                if row:
                    _unlink(self.root / row[0])

    # ------------------------------------------------------------------- writing
    def ingest(self, func_id: str, run_id: str, records: list[dict],
               offsets: dict[str, int] | None = None) -> tuple[int, int]:
        """Store a batch of worker records; return (done, failed) counts.

        Successes become one segment; failures go to the failure table. The run's
        file offsets are committed in the same transaction as the entries.
        """
        done = {}
        failed = {}
        for rec in records:  # "done" wins over a "lost" record of the same pset
            if rec["status"] == "done":
                done[rec["pset_id"]] = rec
                failed.pop(rec["pset_id"], None)
            elif rec["pset_id"] not in done:
                failed[rec["pset_id"]] = rec
        seg = self._write_segment(func_id, run_id, list(done.values())) if done else None
        if failed:  # a pset already cached (e.g. by an earlier batch) has not failed
            cached = self.lookup(func_id, list(failed))
            failed = {p: r for p, r in failed.items() if p not in cached}
        with self._tx() as db:
            if seg is not None:
                db.execute("INSERT INTO segments VALUES (?,?,?,?,?,?,?,?,?)", seg["row"])
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?,?)",
                               ((func_id, pid, seg["seg_id"], i)
                                for i, pid in enumerate(done)))
            if failed:
                db.executemany("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)",
                               ((run_id, pid, func_id, pickle.dumps(rec, protocol=5),
                                 rec.get("finished")) for pid, rec in failed.items()))
            if done:
                db.executemany("DELETE FROM failures WHERE run_id=? AND pset_id=?",
                               ((run_id, pid) for pid in done))
            if offsets is not None:
                db.execute("UPDATE runs SET offsets=? WHERE run_id=?",
                           (json.dumps(offsets), run_id))
        return len(done), len(failed)

    def _write_segment(self, func_id: str, run_id: str, records: list[dict]) -> dict:
        from . import _columns

        columns = _columns_of(records, run_id, _columns)
        part_a = pickle.dumps({"n": len(records), "pset_ids": [r["pset_id"] for r in records],
                               "columns": columns}, protocol=5)
        part_b = pickle.dumps([r["value"] for r in records], protocol=5)
        seg_id = uuid.uuid4().hex
        rel = f"data/{func_id}/{seg_id}.seg"
        (self.root / "data" / func_id).mkdir(parents=True, exist_ok=True)
        blob = _SEG_HEADER.pack(_SEG_MAGIC, len(part_a)) + part_a + part_b
        atomic_write(self.root / rel, blob)
        row = (seg_id, func_id, rel, len(records), len(blob), len(part_a),
               _digest(part_a), _digest(part_b), time.time())
        return {"seg_id": seg_id, "row": row}

    # ------------------------------------------------------------------- reading
    def read_columns(self, func_id: str, found: dict[str, tuple]) -> tuple[list[str], dict]:
        """Columns of the entries in ``found`` (``{pset_id: (seg_id, row)}``).

        Returns ``(pset_ids, columns)`` in an order of its own. Damaged segments are
        dropped from the cache and their rows left out.
        """
        import numpy as np

        from . import _columns

        by_seg: dict[str, list[tuple[int, str]]] = {}
        for pid, (seg_id, row) in found.items():
            by_seg.setdefault(seg_id, []).append((row, pid))
        ids: list[str] = []
        segs: list[tuple[dict, int]] = []
        bad = []
        for seg_id, rows in by_seg.items():
            seg = self._load_part(seg_id, "a")
            if seg is None:
                bad.append(seg_id)
                continue
            rows.sort()
            ids.extend(pid for _, pid in rows)
            if len(rows) == seg["n"]:
                segs.append((seg["columns"], len(rows)))
            else:
                index = np.fromiter((r for r, _ in rows), np.int64, len(rows))
                segs.append(({n: _columns.take(c, index) for n, c in seg["columns"].items()},
                             len(rows)))
        if bad:
            self._drop_segments(bad, "damaged (checksum mismatch)")
        names = dict.fromkeys(n for cols, _ in segs for n in cols)
        columns = {
            name: _columns.concat([cols.get(name) or ("obj", [_columns.MISSING] * k, None, None)
                                   for cols, k in segs])
            for name in names}
        return ids, columns

    def read_values(self, func_id: str, found: dict[str, tuple]) -> dict[str, Any]:
        """The exact returned values of the entries in ``found``."""
        out: dict[str, Any] = {}
        by_seg: dict[str, list[tuple[int, str]]] = {}
        for pid, (seg_id, row) in found.items():
            by_seg.setdefault(seg_id, []).append((row, pid))
        bad = []
        for seg_id, rows in by_seg.items():
            values = self._load_part(seg_id, "b")
            if values is None:
                bad.append(seg_id)
                continue
            out.update((pid, values[row]) for row, pid in rows)
        if bad:
            self._drop_segments(bad, "damaged (checksum mismatch)")
        return out

    def _load_part(self, seg_id: str, part: str) -> Any:
        row = self.db.execute(
            "SELECT path, nbytes, len_a, digest_a, digest_b FROM segments WHERE seg_id=?",
            (seg_id,)).fetchone()
        if row is None:
            return None
        path, nbytes, len_a, digest_a, digest_b = row
        try:
            with open(self.root / path, "rb") as fh:
                blob = fh.read()
        except OSError:
            return None
        if len(blob) != nbytes:
            return None
        head = _SEG_HEADER.size
        view = memoryview(blob)
        data, digest = ((view[head:head + len_a], digest_a) if part == "a"
                        else (view[head + len_a:], digest_b))
        if _digest(data) != digest:
            return None
        return pickle.loads(data)

    # ------------------------------------------------------------------ failures
    def failures(self, run_id: str | None = None, func_id: str | None = None) -> list[dict]:
        if run_id is not None:
            rows = self.db.execute("SELECT record FROM failures WHERE run_id=?", (run_id,))
        else:
            rows = self.db.execute(
                "SELECT record FROM failures WHERE func_id=? AND pset_id NOT IN "
                "(SELECT pset_id FROM entries WHERE func_id=?)", (func_id, func_id))
        return [pickle.loads(r[0]) for r in rows]

    # -------------------------------------------------------------- maintenance
    def info(self, func_ids: Sequence[str]) -> dict:
        db = self.db
        out = {"entries": 0, "bytes": 0, "segments": 0}
        for fid in func_ids:
            out["entries"] += db.execute("SELECT COUNT(*) FROM entries WHERE func_id=?",
                                         (fid,)).fetchone()[0]
            n, size = db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes),0) FROM segments "
                                 "WHERE func_id=?", (fid,)).fetchone()
            out["segments"] += n
            out["bytes"] += size
        return out

    def clear(self, func_ids: Sequence[str]) -> int:
        """Delete every entry, segment and failure of ``func_ids``; return entries removed."""
        removed = 0
        paths = []
        with self._tx() as db:
            for fid in func_ids:
                removed += db.execute("DELETE FROM entries WHERE func_id=?", (fid,)).rowcount
                paths += [r[0] for r in db.execute(
                    "SELECT path FROM segments WHERE func_id=?", (fid,))]
                db.execute("DELETE FROM segments WHERE func_id=?", (fid,))
                db.execute("DELETE FROM failures WHERE func_id=?", (fid,))
        for p in paths:
            _unlink(self.root / p)
        return removed

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


def _columns_of(records: list[dict], run_id: str, _columns) -> dict:
    """Parameter (``p:``), result (``v:``) and bookkeeping (``b:``) columns."""
    missing = _columns.MISSING
    params: dict[str, None] = {}
    results: dict[str, None] = {}
    for rec in records:
        params.update(dict.fromkeys(rec["kwargs"]))
        v = rec["value"]
        results.update(dict.fromkeys(v) if _is_record_dict(v) else {"result": None})
    cols = {}
    for name in params:
        cols["p:" + name] = _columns.build([r["kwargs"].get(name, missing) for r in records])
    for name in results:
        vals = [(r["value"].get(name, missing) if _is_record_dict(r["value"])
                 else (r["value"] if name == "result" else missing)) for r in records]
        cols["v:" + name] = _columns.build(vals)
    for name in BOOKKEEPING[:-1]:
        cols["b:" + name] = _columns.build([r.get(name, missing) if r.get(name) is not None
                                            else missing for r in records])
    cols["b:run_id"] = _columns.build([run_id] * len(records))
    return cols


def _is_record_dict(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str for k in value)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time, others wait (timeout 60 s)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, *_):
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
