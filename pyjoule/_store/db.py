"""The cache's index: one SQLite database in WAL mode (``index.sqlite``), its schema
and layout version, the connection (one per thread, never reused across a fork),
``BEGIN IMMEDIATE`` transactions, and the checks that the cache directory is the
user's own and writable. The rest of the store goes through :attr:`Database.db`
and :meth:`Database._tx`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from .. import _caches, _private
from .._errors import CacheError
from .._private import disk_full as _full

SCHEMA_VERSION = 4

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


#: the stores open in this process, by root (a cache: see :func:`forget_open`)
_OPEN: dict[Path, Any] = {}
_D = TypeVar("_D", bound="Database")

def forget_open() -> None:
    """Forget the stores opened in this process, closing this thread's connections:
    the next ``Store.open`` of a root checks it and creates what is missing again,
    with a new connection. For tests (``_caches.reset_all`` calls it), and for a
    process that keeps running while caches are removed or replaced."""
    for store in list(_OPEN.values()):
        store.close()
    _OPEN.clear()


_caches.declare(__name__, "_OPEN", _OPEN, reset=forget_open)


class Database:
    """One cache directory's index. Cheap to create; connects on first use."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self._local = threading.local()
        self._lock = threading.RLock()
        self._inode: int | None = None

    @classmethod
    def open(cls: type[_D], root: str | os.PathLike) -> _D:
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
        # 2 MiB (the default) holds 2 % of the index of 1,000,000 entries: a lookup or
        # an ingest at that scale would read most pages from disk again and again. A
        # ceiling, not an allocation: a small cache uses what it has.
        conn.execute("PRAGMA cache_size=-65536")
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
