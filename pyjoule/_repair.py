"""``pyjoule cache check``: verify a cache (its index and every segment's checksums) and,
with ``repair``, move damaged parts aside and rebuild what can be rebuilt. Also what
``cache info`` sums up, what ``cache clear`` and ``cache gc`` remove and how their
limits are written: the command and the browser view (``pyjoule._ui``) share these.

Damaged parts go to ``<cache>/damaged/<timestamp>/`` (0700), never deleted: the user
may want to look at them. An index that SQLite cannot read (or whose integrity check
fails) is moved there and a fresh one is built from the segment files, which carry
everything an entry needs (the function version is their folder's name, the pset
ids are in the file); a damaged segment's entries are dropped, so those psets are
recomputed when asked for again.
"""

from __future__ import annotations

import os
import pickle
import re
import sqlite3
import time
from pathlib import Path

from . import _private
from ._errors import CacheError
from ._store import SEG_HEADER, SEG_MAGIC, Store, digest


def index_problem(root: Path) -> str | None:
    """What is wrong with ``root``'s index (None: SQLite says it is sound)."""
    index = root / "index.sqlite"
    try:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if rows != ["ok"]:
            return "; ".join(rows[:5])
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='segments'").fetchone():
            return "it has no pyjoule tables"
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None


def segment_problem(path: Path, nbytes: int | None = None, len_a: int | None = None,
                    digests: tuple[str, str] | None = None) -> str | None:
    """What is wrong with the segment file at ``path`` (None: it is sound). Without
    the index's figures, only its own framing is checked."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if nbytes is not None and len(blob) != nbytes:
        return f"{len(blob)} bytes where the index says {nbytes}"
    head = SEG_HEADER.size
    if len(blob) < head:
        return "truncated"
    magic, found_len_a = SEG_HEADER.unpack_from(blob)
    if magic != SEG_MAGIC or head + found_len_a > len(blob):
        return "not a segment file"
    if len_a is not None and found_len_a != len_a:
        return "its parts have other sizes than the index says"
    if digests is not None:
        view = memoryview(blob)
        if (digest(view[head:head + found_len_a]), digest(view[head + found_len_a:])) \
                != tuple(digests):
            return "checksum mismatch"
    return None


def _aside(root: Path, stamp: str) -> Path:
    """The folder damaged parts of this check go to (created 0700 on first use)."""
    return _private.private_dir(_private.private_dir(root / "damaged") / stamp)


def _move(root: Path, path: Path, stamp: str) -> None:
    target = _aside(root, stamp) / path.relative_to(root).as_posix().replace("/", "__")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        pass


def check(root: str | os.PathLike, repair: bool = False) -> dict:
    """Verify the cache at ``root``; with ``repair``, fix what can be fixed.

    Returns ``{"cache", "index": {"ok", "problem", "rebuilt"}, "functions": [{"name",
    "func_id", "segments", "entries", "damaged_segments", "damaged_entries"}],
    "damaged": {"segments", "entries"}, "repaired", "moved_to"}``.
    """
    root = Path(root).expanduser().absolute()
    store = Store(root)
    store.check_trusted()
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    report = {"cache": str(root), "index": {"ok": True, "problem": None, "rebuilt": False},
              "functions": [], "damaged": {"segments": 0, "entries": 0},
              "repaired": repair, "moved_to": None}
    why = index_problem(root)
    if why is not None:
        report["index"].update(ok=False, problem=why)
        if not repair:
            return report
        for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
            _move(root, root / name, stamp)
        report["index"]["rebuilt"] = True
        _rebuild(store, root, stamp, report)
    else:
        _check_segments(store, root, stamp, repair, report)
    if (root / "damaged" / stamp).exists():
        report["moved_to"] = str(root / "damaged" / stamp)
    store.close()
    return report


def _check_segments(store: Store, root: Path, stamp: str, repair: bool, report: dict
                    ) -> None:
    """Verify every segment the index names; with ``repair`` drop the damaged ones."""
    db = store.db
    names = dict(db.execute("SELECT func_id, name FROM functions"))
    entries = dict(db.execute("SELECT loc >> 32, COUNT(*) FROM entries GROUP BY 1"))
    rows = db.execute("SELECT seg_id, func_id, path, nbytes, len_a, digest_a, digest_b "
                      "FROM segments ORDER BY func_id, seg_id").fetchall()
    funcs: dict[str, dict] = {}
    bad = []
    for seg_id, func_id, rel, nbytes, len_a, digest_a, digest_b in rows:
        f = funcs.setdefault(func_id, {
            "name": names.get(func_id, "(unknown)"), "func_id": func_id, "segments": 0,
            "entries": 0, "damaged_segments": 0, "damaged_entries": 0, "problems": []})
        f["segments"] += 1
        f["entries"] += entries.get(seg_id, 0)
        why = segment_problem(root / rel, nbytes, len_a, (digest_a, digest_b))
        if why is not None:
            f["damaged_segments"] += 1
            f["damaged_entries"] += entries.get(seg_id, 0)
            f["problems"].append(f"{rel}: {why}")
            bad.append((seg_id, func_id, rel))
    report["functions"] = sorted(funcs.values(), key=lambda f: (f["name"], f["func_id"]))
    report["damaged"] = {"segments": len(bad),
                         "entries": sum(entries.get(b[0], 0) for b in bad)}
    if repair and bad:
        with store._tx() as tx:
            store._delete_segments(tx, bad)
        for _, _, rel in bad:
            _move(root, root / rel, stamp)


def _rebuild(store: Store, root: Path, stamp: str, report: dict) -> None:
    """A fresh index from the segment files (oldest first, so a pset computed again
    later points at its newest result); unreadable segments are moved aside."""
    files = []
    data = root / "data"
    for folder in sorted(data.iterdir()) if data.is_dir() else ():
        _private.check_private(folder, "cache's data directory")
        for path in folder.glob("*.seg"):
            files.append((path.stat().st_mtime, folder.name, path))
    files.sort()
    funcs: dict[str, dict] = {}
    db = store.db  # creates the fresh index
    for _, func_id, path in files:
        f = funcs.setdefault(func_id, {
            "name": "(unknown)", "func_id": func_id, "segments": 0, "entries": 0,
            "damaged_segments": 0, "damaged_entries": 0, "problems": []})
        rel = path.relative_to(root).as_posix()
        why = segment_problem(path)
        ids = None
        if why is None:
            _private.check_private(path, "cache segment")
            blob = path.read_bytes()
            len_a = SEG_HEADER.unpack_from(blob)[1]
            head = SEG_HEADER.size
            try:
                ids = pickle.loads(blob[head + len_a:])["pset_ids"]
            except Exception as exc:  # noqa: BLE001 - a damaged file, whatever it says
                why = f"unreadable ({type(exc).__name__})"
        if why is not None:
            f["damaged_segments"] += 1
            f["problems"].append(f"{rel}: {why}")
            report["damaged"]["segments"] += 1
            _move(root, path, stamp)
            continue
        view = memoryview(blob)
        with store._tx() as tx:
            seg_id = tx.execute(
                "INSERT INTO segments (func_id, path, n, nbytes, len_a, digest_a, "
                "digest_b, created) VALUES (?,?,?,?,?,?,?,?)",
                (func_id, rel, len(ids), len(blob), len_a,
                 digest(view[head:head + len_a]), digest(view[head + len_a:]),
                 path.stat().st_mtime)).lastrowid
            tx.executemany("INSERT OR REPLACE INTO entries VALUES (?,?,?)",
                           ((func_id, pid, (seg_id << 32) | i) for i, pid in enumerate(ids)))
        f["segments"] += 1
    for func_id, f in funcs.items():
        f["entries"] = db.execute("SELECT COUNT(*) FROM entries WHERE func_id=?",
                                  (func_id,)).fetchone()[0]
    report["functions"] = sorted(funcs.values(), key=lambda f: f["func_id"])


def require_cache(root: str | os.PathLike) -> Path:
    """``root`` as a path, if it looks like a cache (a folder with an index file, sound
    or not); else ``CacheError``."""
    path = Path(root).expanduser().absolute()
    if not (path / "index.sqlite").is_file():
        raise CacheError(f"{path} is not a pyjoule cache (it has no index.sqlite); pass "
                         "--cache DIR or set PYJOULE_CACHE to the directory your "
                         "experiments cache in")
    return path


def gc(store: Store, older_than_s: float | None = None, max_bytes: int | None = None,
       dry_run: bool = False) -> dict:
    """``pyjoule cache gc``: finish the runs a crash left starting, running or
    finishing (their processes are gone: their psets are freed), then
    :meth:`Store.gc <pyjoule._store.Store.gc>`; its report, with ``runs_settled``."""
    from ._dispatch import settle_transient

    settled = 0 if dry_run else settle_transient(store)
    report = store.gc(older_than_s=older_than_s, max_bytes=max_bytes, dry_run=dry_run)
    report["runs_settled"] = settled
    return report


# ------------------------------------------------- cache info, clear and gc limits
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS_B = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def by_name(versions: list[dict]) -> dict[str, list[dict]]:
    """The rows of ``store.versions()`` that hold something, by function name."""
    out: dict[str, list[dict]] = {}
    for v in versions:
        if v["entries"] or v["segments"]:
            out.setdefault(v["name"], []).append(v)
    return out


def summary(store: Store) -> tuple[list[dict], dict, int]:
    """``(functions, total, index bytes)`` of ``cache info``: per function name its
    entries, bytes, number of versions, newest entry (a time) and func_ids; the totals."""
    funcs = []
    for name, vs in sorted(by_name(store.versions()).items()):
        newest = [v["newest"] for v in vs if v["newest"] is not None]
        funcs.append({"name": name, "entries": sum(v["entries"] for v in vs),
                      "bytes": sum(v["bytes"] for v in vs), "versions": len(vs),
                      "newest": max(newest) if newest else None,
                      "func_ids": [v["func_id"] for v in vs]})
    index = sum(p.stat().st_size for p in store.root.glob("index.sqlite*") if p.is_file())
    total = {k: sum(f[k] for f in funcs) for k in ("entries", "bytes", "versions")}
    return funcs, total, index


def to_clear(store: Store, name: str | None = None, old_versions: bool = False) -> list[dict]:
    """The versions ``cache clear [NAME] [--old-versions]`` deletes (rows of
    ``store.versions()``): all, or one function's (``name``, a full name); with
    ``old_versions``, all but each function's newest."""
    named = by_name(store.versions())
    if name is not None:
        named = {name: named.get(name, [])}
    doomed = []
    for vs in named.values():
        if old_versions:  # nothing here imports the code: newest entry = current
            vs = sorted(vs, key=lambda v: (v["newest"] or 0, v["last_used"] or 0))[:-1]
        doomed += vs
    return doomed


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> seconds; else ``ValueError``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text).lower())
    if not m:
        raise ValueError(f"{text!r} is not a duration: a number and a unit, one of "
                         "s, m, h, d, w (e.g. 30d, 12h)")
    return float(m.group(1)) * _UNITS_S[m.group(2)]


def parse_size(text: str) -> int:
    """``10G``, ``500M``, ``1.5T``, ``100K``, ``4096`` -> bytes (powers of 1024); else
    ``ValueError``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text).lower())
    if not m:
        raise ValueError(f"{text!r} is not a size: a number with K, M, G or T "
                         "(powers of 1024, e.g. 10G, 500M), or bytes")
    return int(float(m.group(1)) * _UNITS_B[m.group(2)])
