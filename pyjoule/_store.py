"""The cache: an SQLite index (WAL mode) plus columnar segment files, and the run
registry in the same database.

Layout of a cache directory (see ``docs/layout.md``)::

    index.sqlite            entries, segments, functions, failures, runs, claims
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

import errno
import json
import logging
import os
import pickle
import shutil
import sqlite3
import struct
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import _private, _rundir
from ._errors import CacheError

log = logging.getLogger("pyjoule")

SCHEMA_VERSION = 4
_SEG_HEADER = struct.Struct("<4sQ")
_SEG_MAGIC = b"PJS1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS functions (
    func_id TEXT PRIMARY KEY, name TEXT, components TEXT, created REAL, last_used REAL);
CREATE INDEX IF NOT EXISTS functions_name ON functions(name);
CREATE TABLE IF NOT EXISTS segments (
    seg_id INTEGER PRIMARY KEY AUTOINCREMENT, func_id TEXT, path TEXT, n INTEGER,
    nbytes INTEGER,
    len_a INTEGER, digest_a TEXT, digest_b TEXT, created REAL);
CREATE INDEX IF NOT EXISTS segments_func ON segments(func_id);
CREATE TABLE IF NOT EXISTS entries (
    func_id TEXT, pset_id TEXT, loc INTEGER,
    PRIMARY KEY (func_id, pset_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    run_id TEXT, pset_id TEXT, func_id TEXT, record BLOB, finished REAL,
    PRIMARY KEY (run_id, pset_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, func_id TEXT, name TEXT, host TEXT, backend TEXT,
    run_dir TEXT, state TEXT, total INTEGER, cached INTEGER, done INTEGER,
    failed INTEGER, workers INTEGER, submitted REAL, finished REAL, job_ids TEXT,
    offsets TEXT, options TEXT);
CREATE TABLE IF NOT EXISTS claims (func_id TEXT, run_id TEXT, ids BLOB);
CREATE INDEX IF NOT EXISTS claims_func ON claims(func_id);
"""

BOOKKEEPING = ("runtime_s", "started", "finished", "host", "run_id")

#: Output kept per stream (stdout, stderr) of a failed pset: its last 1 MiB (of
#: UTF-8 text). A pset that prints without bound must not grow the index so.
MAX_OUTPUT_BYTES = 1 << 20


def _digest(data: bytes | memoryview) -> str:
    # CRC32 catches the damage a disk or a truncated copy does, 4x faster than a
    # cryptographic hash: segments are checked on every read.
    return f"{zlib.crc32(data):08x}"


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing
    (:func:`._rundir.atomic_write`: the one copy, private, its temporary file removed
    on any failure); a full disk raises ``CacheError`` naming it."""
    try:
        _rundir.atomic_write(path, data, _private.modes()[1])
    except OSError as exc:
        raise _full(exc, os.fspath(path)) from exc


DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _full(exc: OSError, path: str | os.PathLike) -> OSError:
    """``CacheError`` naming the full file system for ENOSPC/EDQUOT, else ``exc``."""
    if exc.errno not in DISK_FULL or isinstance(exc, CacheError):
        return exc
    what = "is full" if exc.errno == errno.ENOSPC else "is over your disk quota"
    err = CacheError(f"the file system holding {path} {what} "
                      f"({os.strerror(exc.errno)}): free some space (e.g. `pyjoule cache "
                      "gc --max-size 10G`) or use a cache elsewhere (cache= or "
                      "PYJOULE_CACHE), then run again: finished results kept in the "
                      "run directories are stored then, nothing else is recomputed")
    err.errno = exc.errno  # (no filename: it would replace the message in str())
    return err


def not_a_cache(root: str | os.PathLike) -> str | None:
    """Why ``root`` is not a pyjoule cache, or None when it is one. Only reads: unlike
    ``Store.open``, it creates nothing where there is no cache.

    Examples
    --------
    >>> import tempfile
    >>> not_a_cache(tempfile.mkdtemp())
    'it has no index.sqlite'
    """
    path = Path(root).expanduser().absolute()
    if not path.exists():
        return "it does not exist"
    if not path.is_dir():
        return "it is not a directory"
    index = path / "index.sqlite"
    if not index.is_file():
        return "it has no index.sqlite"
    try:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return (f"its index.sqlite is damaged or not pyjoule's: {exc}; "
                f"`pyjoule cache check --repair --cache {path}` moves it aside and "
                "rebuilds it")
    return None if row else "its index.sqlite has no pyjoule layout version"


_OPEN: dict[Path, "Store"] = {}


class Store:
    """One cache directory. Cheap to create; connects on first use."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self._local = threading.local()
        self._lock = threading.RLock()
        self._inode: int | None = None

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Store":
        """The store of ``root``, checked to be the user's own and writable, shared by
        every call in this process (one connection, not one per call) until its
        index is deleted or replaced."""
        path = Path(root).expanduser().absolute()
        store = _OPEN.get(path)
        if store is None or not store._still_there():
            store = cls(path)
            store.check_writable()
            _private.warn_if_network(path)
            _OPEN[path] = store
        return store

    def _still_there(self) -> bool:
        try:
            inode = os.stat(self.root / "index.sqlite").st_ino
        except OSError:
            return False
        return self._inode is None or inode == self._inode

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ plumbing
    def check_trusted(self) -> None:
        """Raise ``CacheError`` unless the cache's directories and index are the
        user's own and nobody else can write them (pyjoule unpickles what is there).
        A few ``stat`` calls; see ``_private``."""
        root = self.root
        for path, what in ((root, "cache directory"), (root / "index.sqlite", "cache index"),
                           (root / "index.sqlite-wal", "cache index's log"),
                           (root / "index.sqlite-shm", "cache index's shared memory"),
                           (root / "data", "cache's data directory"),
                           (root / "runs", "cache's run directory")):
            _private.check_private(path, what)

    def check_writable(self) -> None:
        """Check the cache is the user's own, create what is missing (private: 0700
        directories, a 0600 index), and fail clearly when it cannot be written."""
        self.check_trusted()
        try:
            for folder in (self.root, self.root / "data", self.root / "runs"):
                _private.private_dir(folder)
            _private.write_ignore_file(self.root)  # git add . leaves the cache out
            # SQLite gives the index's -wal and -shm files the index's own mode
            _private.create_private_file(self.root / "index.sqlite")
            probe = self.root / f".probe-{os.getpid()}"
            _private.create_private_file(probe)
            probe.unlink()
        except OSError as exc:
            full = _full(exc, self.root)
            if full is not exc:
                raise full from None
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
            try:
                found = self._prepare(conn)
            except sqlite3.DatabaseError as exc:
                conn.close()
                if isinstance(exc, sqlite3.OperationalError) and "full" not in str(exc):
                    raise  # locked, an I/O error: not damage
                raise self._damaged(exc) from None
            if found != str(SCHEMA_VERSION):
                conn.close()
                raise CacheError(
                    f"the cache at {self.root} has layout version {found}, this pyjoule "
                    f"uses {SCHEMA_VERSION}: use another cache directory (cache= or "
                    "PYJOULE_CACHE), or delete this one to start afresh")
            self._local.conn, self._local.pid = conn, os.getpid()
            self._inode = os.stat(self.root / "index.sqlite").st_ino
        return conn

    @staticmethod
    def _prepare(conn: sqlite3.Connection) -> str:
        """WAL, the schema; return the layout version the index records."""
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                     (str(SCHEMA_VERSION),))
        return conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]

    def _damaged(self, exc: sqlite3.DatabaseError) -> OSError:
        """The error for an index SQLite cannot use: full disk, or damage (then the
        fix is ``pyjoule cache check --repair``)."""
        index = self.root / "index.sqlite"
        if "full" in str(exc).lower():
            return _full(OSError(errno.ENOSPC, str(exc)), index)
        return CacheError(
            f"the cache index {index} is damaged or not an SQLite database ({exc}); "
            f"run `pyjoule cache check --repair --cache {self.root}` to move it aside "
            "and rebuild the index (cached results are then recomputed when asked for), "
            "or use another cache (cache= or PYJOULE_CACHE)")

    def _tx(self):
        return _Transaction(self.db, self._lock, self.root / "index.sqlite")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

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
    def lookup(self, func_id: str, pset_ids: Sequence[str] | None = None) -> dict[str, int]:
        """``{pset_id: loc}`` for the cached ones among ``pset_ids`` (or all).

        ``loc`` packs the segment id and the row in it (``seg_id << 32 | row``), so
        that SQLite hands back plain pairs and the dict is built in C.
        """
        db = self.db
        if pset_ids is not None and len(pset_ids) < 500:
            out: dict[str, int] = {}
            for i in range(0, len(pset_ids), 400):
                chunk = list(pset_ids[i:i + 400])
                marks = ",".join("?" * len(chunk))
                out.update(db.execute(
                    f"SELECT pset_id, loc FROM entries WHERE func_id=? "
                    f"AND pset_id IN ({marks})", [func_id, *chunk]))
            return out
        found = dict(db.execute("SELECT pset_id, loc FROM entries WHERE func_id=?",
                                (func_id,)))
        if pset_ids is None or len(found) == 0:
            return found
        if len(found) <= len(pset_ids) and found.keys() <= set(pset_ids):
            return found
        return {p: found[p] for p in pset_ids if p in found}

    def verify_present(self, found: dict[str, int]) -> dict[str, int]:
        """Drop entries whose segment file is missing or has the wrong size."""
        seg_ids = {loc >> 32 for loc in set(found.values())} if found else set()
        bad = [s for s in seg_ids if not self._segment_ok(s)]
        if not bad:
            return found
        self._drop_segments(bad, "missing or truncated")
        bad_set = set(bad)
        return {p: v for p, v in found.items() if v >> 32 not in bad_set}

    def _segment_ok(self, seg_id: int) -> bool:
        row = self.db.execute("SELECT path, nbytes FROM segments WHERE seg_id=?",
                              (seg_id,)).fetchone()
        if row is None:
            return False
        try:
            return os.path.getsize(self.root / row[0]) == row[1]
        except OSError:
            return False

    def _drop_segments(self, seg_ids: Iterable[int], why: str) -> None:
        """Forget damaged segments (and their entries), saying so: they are recomputed."""
        with self._tx() as db:
            rows = [row for seg_id in seg_ids for row in db.execute(
                "SELECT seg_id, func_id, path FROM segments WHERE seg_id=?", (seg_id,))]
            for seg_id, func_id, path in rows:
                n = db.execute("SELECT COUNT(*) FROM entries WHERE func_id=? AND loc "
                               "BETWEEN ? AND ?", (func_id, seg_id << 32,
                                                   (seg_id << 32) | 0xFFFFFFFF)).fetchone()[0]
                log.warning("cache segment %s is %s: its %d entries will be recomputed",
                            path, why, n)
            self._delete_segments(db, rows)
        for row in rows:
            _unlink(self.root / row[2])

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
        from . import _records

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
        failed = {p: _cap_output(dict(_records.as_dict(r), kwargs=kwargs.get(p, {}),
                                      run_id=run_id))
                  for p, r in failed.items()}
        rows = list(done.values())
        params = [kwargs.get(p, {}) for p in done]
        seg = self._write_segment(func_id, run_id, rows, params) if done else None
        if failed:  # a pset already cached (e.g. by an earlier batch) has not failed
            cached = self.lookup(func_id, list(failed))
            failed = {p: r for p, r in failed.items() if p not in cached}
        try:
            with self._tx() as db:
                if seg is not None:
                    seg_id = db.execute(
                        "INSERT INTO segments (func_id, path, n, nbytes, len_a, digest_a, "
                        "digest_b, created) VALUES (?,?,?,?,?,?,?,?)", seg).lastrowid
                    base = seg_id << 32
                    db.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?)",
                                   ((func_id, pid, base | i) for i, pid in enumerate(done)))
                if failed:
                    db.executemany("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?)",
                                   ((run_id, pid, func_id, _dumps(rec),
                                     rec.get("finished")) for pid, rec in failed.items()))
                if done:
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

    def _write_segment(self, func_id: str, run_id: str, records: list[tuple],
                       params: list[dict]) -> tuple:
        from . import _columns, _output

        columns = _columns_of(records, params, run_id, _columns)
        # Part A is all a Dataset needs; ids and exact values (part B) are read only
        # for tables and single calls.
        part_a = _dumps({"n": len(records), "columns": columns})
        part_b = _dumps(_output.values_part(records, run_id))  # + what they printed
        rel = f"data/{func_id}/{uuid.uuid4().hex}.seg"
        _private.private_dir(self.root / "data" / func_id)
        blob = _SEG_HEADER.pack(_SEG_MAGIC, len(part_a)) + part_a + part_b
        atomic_write(self.root / rel, blob)
        return (func_id, rel, len(records), len(blob), len(part_a), _digest(part_a),
                _digest(part_b), time.time())

    # ------------------------------------------------------------------- reading
    def read_columns(self, func_id: str, found: dict[str, int]) -> tuple[list[str], dict]:
        """Columns of the entries in ``found`` (``{pset_id: loc}``).

        Returns ``(pset_ids, columns)`` in an order of its own. Damaged segments are
        dropped from the cache and their rows left out.
        """
        from . import _columns

        ids: list[str] = []
        segs: list[tuple[dict, int]] = []
        bad = []
        for seg_id, rows, pids in _by_segment(found):
            seg = self._load_part(seg_id, "a")
            if seg is None:
                bad.append(seg_id)
                continue
            ids.extend(pids)
            if len(rows) == seg["n"]:
                segs.append((seg["columns"], len(rows)))
            else:
                segs.append(({n: _columns.take(c, rows) for n, c in seg["columns"].items()},
                             len(rows)))
        if bad:
            self._drop_segments(bad, "damaged (checksum mismatch)")
        columns = _concat_segments(segs, _columns)
        return ids, columns

    def read_all_columns(self, func_id: str, with_ids: bool = True) -> tuple[list[str], dict]:
        """Columns of everything cached for ``func_id`` (and their pset ids).

        When every row of every segment is live (the usual case: nothing was
        recomputed or dropped) whole segments are read without looking up each pset.
        """
        from . import _columns

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

    def read_values(self, func_id: str, found: dict[str, int]) -> dict[str, Any]:
        """The exact returned values of the entries in ``found``."""
        out: dict[str, Any] = {}
        bad = []
        for seg_id, rows, pids in _by_segment(found):
            values = self._load_part(seg_id, "b")
            if values is None:
                bad.append(seg_id)
                continue
            values = values["values"]
            out.update((pid, values[row]) for row, pid in zip(rows.tolist(), pids))
        if bad:
            self._drop_segments(bad, "damaged (checksum mismatch)")
        return out

    def _load_part(self, seg_id: int, part: str) -> Any:
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
    def count_failures(self, run_id: str) -> int:
        """Failed psets of the run (a cancelled run's one row counts for each pset)."""
        from . import _unfinished

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
        from . import _unfinished

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

    def versions(self) -> list[dict]:
        """One row per function version in the cache: ``name``, ``func_id``, ``entries``,
        ``segments``, ``bytes`` (segment files), ``newest`` (creation time of its newest
        segment, or None), ``last_used`` (last time a process used this version)."""
        db = self.db
        entries = dict(db.execute("SELECT func_id, COUNT(*) FROM entries GROUP BY func_id"))
        segs = {r[0]: r[1:] for r in db.execute(
            "SELECT func_id, COUNT(*), SUM(nbytes), MAX(created) FROM segments "
            "GROUP BY func_id")}
        known = db.execute("SELECT func_id, name, last_used FROM functions").fetchall()
        names = {r[0]: (r[1], r[2]) for r in known}
        out = []
        for fid in sorted(set(names) | set(entries) | set(segs),
                          key=lambda f: (names.get(f, ("", 0))[0] or "", f)):
            name, last_used = names.get(fid, ("(unknown)", None))
            n_segs, size, newest = segs.get(fid, (0, 0, None))
            out.append({"name": name, "func_id": fid, "entries": entries.get(fid, 0),
                        "segments": n_segs, "bytes": size or 0, "newest": newest,
                        "last_used": last_used})
        return out

    def gc(self, older_than_s: float | None = None, max_bytes: int | None = None,
           dry_run: bool = False, now: float | None = None) -> dict:
        """Remove old results, then the least recently used ones down to ``max_bytes``.

        A segment's last use is the later of its creation and the last use of its
        function version (the store keeps no time per read). Segments no entry points
        at any more (their psets were recomputed) always go; with ``older_than_s``, so
        do finished runs' records and folders that old. Removed results are simply
        recomputed when asked for again. Returns counts of what was (or, with
        ``dry_run``, would be) removed.

        Examples
        --------
        >>> import tempfile
        >>> Store(tempfile.mkdtemp()).gc(older_than_s=30 * 86400)["entries"]
        0
        """
        now = time.time() if now is None else now
        report = {"segments": 0, "entries": 0, "bytes": 0, "runs": 0, "files": 0,
                  "dry_run": dry_run}
        with self._tx() as db:
            live = dict(db.execute("SELECT loc >> 32, COUNT(*) FROM entries GROUP BY 1"))
            rows = db.execute(
                "SELECT s.seg_id, s.func_id, s.path, s.nbytes, "
                "MAX(s.created, COALESCE(f.last_used, 0)) AS used FROM segments s "
                "LEFT JOIN functions f ON f.func_id = s.func_id ORDER BY used, s.seg_id"
            ).fetchall()
            cutoff = None if older_than_s is None else now - older_than_s
            doomed = [r for r in rows if not live.get(r[0])
                      or (cutoff is not None and r[4] < cutoff)]
            gone = {r[0] for r in doomed}
            kept = [r for r in rows if r[0] not in gone]
            if max_bytes is not None:
                size = sum(r[3] for r in kept)
                for r in kept:  # oldest first
                    if size <= max_bytes:
                        break
                    doomed.append(r)
                    size -= r[3]
            report["segments"] = len(doomed)
            report["entries"] = sum(live.get(r[0], 0) for r in doomed)
            report["bytes"] = sum(r[3] for r in doomed)
            old_runs = [] if cutoff is None else [r[0] for r in db.execute(
                "SELECT run_id FROM runs WHERE state NOT IN ('starting', 'running', "
                "'finishing') "
                "AND COALESCE(finished, submitted) < ?", (cutoff,))]
            report["runs"] = len(old_runs)
            if not dry_run:
                self._delete_segments(db, doomed)
                for run_id in old_runs:
                    db.execute("DELETE FROM runs WHERE run_id=?", (run_id,))
                    db.execute("DELETE FROM failures WHERE run_id=?", (run_id,))
                    db.execute("DELETE FROM claims WHERE run_id=?", (run_id,))
        if not dry_run:
            for r in doomed:
                _unlink(self.root / r[2])
            for run_id in old_runs:
                shutil.rmtree(self.root / "runs" / run_id, ignore_errors=True)
        report["files"] = self._stray_files(now, dry_run)
        report["bytes_left"] = self.db.execute(
            "SELECT COALESCE(SUM(nbytes), 0) FROM segments").fetchone()[0]
        if dry_run:  # nothing went: what would be left
            report["bytes_left"] -= report["bytes"]
        return report

    @staticmethod
    def _delete_segments(db: sqlite3.Connection, rows: list[tuple]) -> None:
        """Delete the index rows of segments ``(seg_id, func_id, ...)`` and their entries
        (one scan of each function's entries, not one per segment)."""
        by_func: dict[str, list[int]] = {}
        for r in rows:
            by_func.setdefault(r[1], []).append(r[0])
        for fid, seg_ids in by_func.items():
            for i in range(0, len(seg_ids), 400):
                chunk = seg_ids[i:i + 400]
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM entries WHERE func_id=? AND (loc >> 32) IN ({marks})",
                           [fid, *chunk])
                db.execute(f"DELETE FROM segments WHERE seg_id IN ({marks})", chunk)

    def _stray_files(self, now: float, dry_run: bool, grace_s: float = 3600) -> int:
        """Remove segment and temporary files no index row points at. Only those older
        than ``grace_s``: an ingest writes its file before it commits the row."""
        data = self.root / "data"
        known = {r[0] for r in self.db.execute("SELECT path FROM segments")}
        removed = 0
        for path in data.glob("*/*") if data.is_dir() else ():
            rel = path.relative_to(self.root).as_posix()
            try:
                old = now - path.stat().st_mtime > grace_s
            except OSError:
                continue
            if rel not in known and old and path.is_file():
                removed += 1
                if not dry_run:
                    _unlink(path)
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

    def claim_finish(self, run_id: str) -> str | None:
        """Mark the run ``finishing`` if it is still running (or cancelled but not
        finished, or left ``finishing`` by a process that died); return the state it
        is finished from, or None when another (live) process has it. The finisher
        is recorded, so that others can tell a dead one from a slow one."""
        from . import _claims

        with self._tx() as db:
            row = db.execute("SELECT state, finished, options FROM runs WHERE run_id=?",
                             (run_id,)).fetchone()
            if row is None or row[1] is not None:
                return None
            options = (json.loads(row[2]) if row[2] else None) or {}
            previous = row[0]
            if previous == "finishing" and not _claims.process_alive(options.get("finisher")):
                previous = options.get("finishing_from", "running")
            if previous not in ("running", "cancelled"):
                return None
            options.update(finisher=_claims.me(), finishing_from=previous)
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


def _concat_segments(segs: list[tuple[dict, int]], _columns) -> dict:
    """One column per name from several segments' columns (absent = missing)."""
    names = dict.fromkeys(n for cols, _ in segs for n in cols)
    return {name: _columns.concat([cols.get(name) or ("obj", [_columns.MISSING] * k, None, None)
                                   for cols, k in segs], exact=name.startswith("p:"))
            for name in names}


def _by_segment(found: dict[str, int]):
    """``(seg_id, rows, pset_ids)`` per segment, rows ascending (numpy, no sort per row)."""
    import numpy as np

    if not found:
        return
    pids = np.array(list(found), dtype=object)
    locs = np.fromiter(found.values(), np.int64, len(found))
    order = np.argsort(locs, kind="stable")
    locs, pids = locs[order], pids[order]
    segs = locs >> 32
    cuts = np.flatnonzero(np.diff(segs)) + 1
    for part_locs, part_pids in zip(np.split(locs, cuts), np.split(pids, cuts)):
        yield int(part_locs[0] >> 32), part_locs & 0xFFFFFFFF, part_pids.tolist()


def _enable_wal(conn: sqlite3.Connection, timeout_s: float = 60) -> None:
    """Switch to WAL once. Changing the journal mode does not wait for other writers
    (SQLite answers "locked" at once), so retry; a cache already in WAL needs nothing."""
    deadline = time.monotonic() + timeout_s
    while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _dumps(obj: Any) -> bytes:
    """Pickle; cloudpickle for classes that exist only by value (defined in the user's
    ``__main__``, a notebook, or inside the function). Plain pickle reads both."""
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=5)


def _run_row(cur, row) -> dict:
    out = dict(zip([d[0] for d in cur.description], row))
    for key in ("job_ids", "options", "offsets"):
        out[key] = json.loads(out[key]) if out.get(key) else None
    return out


# where the bookkeeping fields sit in a compact record (see _records.FIELDS)
_BOOK_INDEX = {"runtime_s": 3, "started": 4, "finished": 5, "host": 6}


def _columns_of(records: list[tuple], params: list[dict], run_id: str, _columns) -> dict:
    """Parameter (``p:``), result (``v:``) and bookkeeping (``b:``) columns."""
    cols = {}
    for name, values in _split_dicts(params, _columns.MISSING).items():
        cols["p:" + name] = _columns.build(values, exact=True)  # 1 stays 1, not 1.0
    values = [r[2] for r in records]
    if all(type(v) is dict for v in values):
        split = _split_dicts(values, _columns.MISSING)
        if all(type(k) is str for k in split):
            for name, column in split.items():
                cols["v:" + name] = _columns.build(column)
            values = None
    if values is not None:  # not (all) dicts of named results: one "result" variable
        cols["v:result"] = _columns.build(values)
    for name in BOOKKEEPING[:-1]:
        index = _BOOK_INDEX[name]
        column = [r[index] for r in records]
        cols["b:" + name] = _columns.build(
            [_columns.MISSING if v is None else v for v in column]
            if None in column else column)
    cols["b:run_id"] = _columns.build([run_id] * len(records))
    return cols


def _split_dicts(dicts: list[dict], missing) -> dict[Any, list]:
    """Columns of a list of dicts: one list per key, ``missing`` where a dict lacks it."""
    shapes = dict.fromkeys(map(tuple, dicts))  # first-seen order, whatever the hash seed
    if len(shapes) == 1:  # the usual case: every dict has the same keys
        (keys,) = shapes
        return {k: [d[k] for d in dicts] for k in keys}
    keys = dict.fromkeys(k for shape in shapes for k in shape)
    return {k: [d.get(k, missing) for d in dicts] for k in keys}


def _cap_output(rec: dict, limit: int | None = None) -> dict:
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


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: one writer at a time, others wait (timeout 60 s).
    A full disk becomes ``CacheError`` naming the index."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, index: Path):
        self.db, self.lock, self.index = db, lock, index

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self.lock.release()
            self._raise_if_full(exc)
            raise
        return self.db

    def __exit__(self, exc_type, exc, _tb):
        try:
            if exc_type is not None:
                if self.db.in_transaction:  # SQLite may have rolled back already
                    self.db.execute("ROLLBACK")
            else:
                try:
                    self.db.execute("COMMIT")
                except sqlite3.OperationalError as failed:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    self._raise_if_full(failed)
                    raise
        finally:
            self.lock.release()
        if exc is not None:
            self._raise_if_full(exc)

    def _raise_if_full(self, exc: BaseException) -> None:
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
            raise _full(OSError(errno.ENOSPC, str(exc)), self.index) from exc
