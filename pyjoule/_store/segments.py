"""Segment files: one per ingested batch of successful results, under
``data/<func_id>/``. A segment holds the batch twice, as columns (part A: all a
Dataset needs) and as the exact returned values with the pset ids (part B), each
part with its own checksum in the ``segments`` table; a segment whose file is
missing, truncated or fails its checksum is dropped with its entries (they are
recomputed), never returned. Written atomically before the index rows that point
at it are committed.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
import struct
import time
import uuid
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _private
from .._files import atomic_write_private as atomic_write
from .db import Database, _unlink

log = logging.getLogger("pyjoule")

#: a segment file: this header (magic, length of part A), part A, part B (the
#: checksums are in the index; ``_repair`` reads the format to rebuild it)
SEG_HEADER = struct.Struct("<4sQ")
SEG_MAGIC = b"PJS1"


BOOKKEEPING = ("runtime_s", "started", "finished", "host", "run_id")


def digest(data: bytes | memoryview) -> str:
    # CRC32 catches the damage a disk or a truncated copy does, 4x faster than a
    # cryptographic hash: segments are checked on every read.
    return f"{zlib.crc32(data):08x}"


class Segments(Database):
    """Writing, reading, checking and dropping segments."""

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

    def _write_segment(self, func_id: str, run_id: str, records: list[tuple],
                       params: list[dict]) -> tuple:
        from .. import _columns, _output

        columns = _columns_of(records, params, run_id, _columns)
        # Part A is all a Dataset needs; ids and exact values (part B) are read only
        # for tables and single calls.
        part_a = _dumps({"n": len(records), "columns": columns})
        part_b = _dumps(_output.values_part(records, run_id))  # + what they printed
        rel = f"data/{func_id}/{uuid.uuid4().hex}.seg"
        _private.private_dir(self.root / "data" / func_id)
        blob = SEG_HEADER.pack(SEG_MAGIC, len(part_a)) + part_a + part_b
        atomic_write(self.root / rel, blob)
        return (func_id, rel, len(records), len(blob), len(part_a), digest(part_a),
                digest(part_b), time.time())

    def read_columns(self, func_id: str, found: dict[str, int]) -> tuple[list[str], dict]:
        """Columns of the entries in ``found`` (``{pset_id: loc}``).

        Returns ``(pset_ids, columns)`` in an order of its own. Damaged segments are
        dropped from the cache and their rows left out (:meth:`read_columns_at`).
        """
        import numpy as np

        ids = list(found)
        rows, columns, _ = self.read_columns_at(
            func_id, np.fromiter(found.values(), np.int64, len(ids)))
        return [ids[i] for i in rows.tolist()], columns

    def read_columns_at(self, func_id: str, locs) -> tuple[Any, dict, int]:
        """Columns of the entries at ``locs`` (a numpy array, -1: none), read once
        each (the last of equal locs): returns ``(rows, columns, n)``, ``rows`` the
        positions in ``locs`` the columns' rows come from, ``n`` the entries asked
        for (more than rows: damaged segments were dropped). The rows are placed by
        sorting ``locs``: no pset id and no hash table."""
        import numpy as np

        from .. import _columns

        rows = np.flatnonzero(locs >= 0)
        order = np.argsort(locs[rows], kind="stable")
        rows, where = rows[order], locs[rows][order]
        if len(where) > 1:  # the same entry twice: its last position
            keep = np.append(where[1:] != where[:-1], True)
            rows, where = rows[keep], where[keep]
        n_wanted = len(rows)
        segs: list[tuple[dict, int]] = []
        bad, kept = [], []
        cuts = np.flatnonzero(np.diff(where >> 32)) + 1
        for part_rows, part in zip(np.split(rows, cuts), np.split(where, cuts)):
            if not len(part):
                continue
            seg_id = int(part[0] >> 32)
            seg = self._load_part(seg_id, "a")
            if seg is None:
                bad.append(seg_id)
                continue
            kept.append(part_rows)
            at = part & 0xFFFFFFFF
            if len(at) == seg["n"]:
                segs.append((seg["columns"], len(at)))
            else:
                segs.append(({n: _columns.take(c, at) for n, c in seg["columns"].items()},
                             len(at)))
        if bad:
            self._drop_segments(bad, "damaged (checksum mismatch)")
        got = np.concatenate(kept) if kept else np.empty(0, np.int64)
        return got, _concat_segments(segs, _columns), n_wanted

    def read_values(self, func_id: str, found: Mapping[str, int]) -> dict[str, Any]:
        """The exact returned values of the entries in ``found``."""
        out: dict[str, Any] = {}
        bad = []
        for seg_id, rows, pids in by_segment(found):
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
        head = SEG_HEADER.size
        view = memoryview(blob)
        data, expected = ((view[head:head + len_a], digest_a) if part == "a"
                          else (view[head + len_a:], digest_b))
        if digest(data) != expected:
            return None
        return pickle.loads(data)

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


def _concat_segments(segs: list[tuple[dict, int]], _columns) -> dict:
    """One column per name from several segments' columns (absent = missing)."""
    names = dict.fromkeys(n for cols, _ in segs for n in cols)
    return {name: _columns.concat([cols.get(name) or ("obj", [_columns.MISSING] * k, None, None)
                                   for cols, k in segs], exact=name.startswith("p:"))
            for name in names}


def by_segment(found: Mapping[str, int]):
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


def _dumps(obj: Any) -> bytes:
    """Pickle; cloudpickle for classes that exist only by value (defined in the user's
    ``__main__``, a notebook, or inside the function). Plain pickle reads both."""
    try:
        return pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=5)


# where the bookkeeping fields sit in a compact record (see _records.FIELDS)
_BOOK_INDEX = {"runtime_s": 3, "started": 4, "finished": 5, "host": 6}


def _columns_of(records: list[tuple], params: list[dict], run_id: str, _columns) -> dict:
    """Parameter (``p:``), result (``v:``) and bookkeeping (``b:``) columns."""
    cols = {}
    for name, values in _split_dicts(params, _columns.MISSING).items():
        cols["p:" + name] = _columns.build(values, exact=True)  # 1 stays 1, not 1.0
    results = [r[2] for r in records]
    named = False
    if all(type(v) is dict for v in results):
        split = _split_dicts(results, _columns.MISSING)
        if all(type(k) is str for k in split):
            for name, column in split.items():
                cols["v:" + name] = _columns.build(column)
            named = True
    if not named:  # not (all) dicts of named results: one "result" variable
        cols["v:result"] = _columns.build(results)
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
        (only,) = shapes
        return {k: [d[k] for d in dicts] for k in only}
    keys = dict.fromkeys(k for shape in shapes for k in shape)
    return {k: [d.get(k, missing) for d in dicts] for k in keys}
