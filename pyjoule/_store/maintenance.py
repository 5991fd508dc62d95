"""Keeping a cache in shape: its size per function version (``info``,
``versions``), clearing a function's results, and ``gc`` (old and unused segments,
old runs, stray files).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence

from .db import _unlink
from .segments import Segments


class Maintenance(Segments):
    """``info``, ``versions``, ``clear`` and ``gc``."""

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
        ``dry_run``, would be) removed. Runs a crash left in flight are not settled
        here (that is the claims' business): ``_repair.gc`` settles them, then calls
        this, and fills in ``runs_settled``.

        Examples
        --------
        >>> import tempfile
        >>> from pyjoule._store import Store
        >>> Store(tempfile.mkdtemp()).gc(older_than_s=30 * 86400)["entries"]
        0
        """
        now = time.time() if now is None else now
        report = {"segments": 0, "entries": 0, "bytes": 0, "runs": 0, "files": 0,
                  "runs_settled": 0, "dry_run": dry_run}
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
