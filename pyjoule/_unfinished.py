"""The psets a run ended without (cancelled, or lost with a dead driver): one row.

A cancelled 200,000-pset run used to store one pickled failure record per pset it
never ran (115 MB in the index, seconds to write). Now its failure table gets one
row, keyed ``*<reason>``, holding which of the run's tasks were left: their
positions in the run's task files (kept in the run directory for this), delta-
encoded and compressed, so a few KB. :meth:`Store.failures` expands the row into
one failure record per pset again, with reason ``cancelled`` (or ``lost``), so
``failures()``, ``Run.failures`` and the failures DataFrame list every such pset.
"""

from __future__ import annotations

import os
import pickle
import time
import zlib
from collections.abc import Iterable

from ._rundir import RunDir

#: how a failure row's ``pset_id`` marks a run's one row of unfinished psets
MARK = "*"
ERROR_TYPES = {"cancelled": "Cancelled", "lost": "WorkerLost"}


def task_files(run_dir: str) -> list[str]:
    """The run's task files, in the order their psets are read (:class:`RunDir`)."""
    return RunDir(run_dir).task_files()


def read_tasks(run_dir: str, names: list[str] | None = None) -> dict[str, dict]:
    """``{pset_id: kwargs}`` of the run's task files (missing files are skipped), read
    once the run directory is found to be the user's own (:class:`RunDir`)."""
    return RunDir(run_dir).read_tasks(names)


def encode(reason: str, message: str, order: list[str], unfinished: Iterable[str],
           files: list[str] | None, logs: dict[str, str] | None = None,
           ) -> tuple[str, dict]:
    """The failure row ``(pset_id key, record)`` for the psets ``unfinished`` of a
    run whose tasks, read from ``files``, are ``order``; with ``files=None`` (no task
    files) the ids themselves are kept. ``logs``: the log that had a pset, where the
    backend knows (a SLURM array task's), kept as an index into the distinct ones."""
    import numpy as np

    left = set(unfinished)
    record = {"reason": reason, "error_type": ERROR_TYPES.get(reason, "WorkerLost"),
              "message": message, "finished": time.time(), "n": len(left),
              "files": files, "host": os.uname().nodename, "pid": os.getpid()}
    chosen = [p for p in order if p in left]
    if files is None:
        record["ids"] = zlib.compress("\n".join(chosen).encode())
    else:
        index = np.fromiter((i for i, p in enumerate(order) if p in left), np.int64)
        deltas = np.diff(index, prepend=0).astype(np.uint32)
        record["index"] = zlib.compress(deltas.tobytes())
    if logs:
        paths = sorted(set(logs.values()))
        number = {path: i + 1 for i, path in enumerate(paths)}  # 0: none
        which = np.fromiter((number.get(logs.get(p), 0) for p in chosen), np.uint32)
        record["logs"], record["log_index"] = paths, zlib.compress(which.tobytes())
    return MARK + reason, record


def dumps(record: dict) -> bytes:
    return pickle.dumps(record, protocol=5)


def expand(record: dict, run_id: str, run_dir: str | None) -> list[dict]:
    """One failure record per pset the row stands for (parameters from the task files)."""
    import numpy as np

    if record.get("files") is None:
        text = zlib.decompress(record["ids"]).decode()
        ids = text.split("\n") if text else []
        tasks = read_tasks(run_dir) if run_dir else {}
    else:
        tasks = read_tasks(run_dir, record["files"]) if run_dir else {}
        order = list(tasks)
        deltas = np.frombuffer(zlib.decompress(record["index"]), np.uint32)
        ids = [order[i] for i in np.cumsum(deltas, dtype=np.int64).tolist() if i < len(order)]
    base = {"status": "failed", "value": None, "runtime_s": None, "started": None,
            "finished": record["finished"], "host": record.get("host"),
            "pid": record.get("pid"), "stdout": "", "stderr": "",
            "error_type": record["error_type"], "message": record["message"],
            "traceback": "", "reason": record["reason"], "run_id": run_id}
    out = [dict(base, pset_id=p, kwargs=tasks.get(p, {})) for p in ids]
    if record.get("logs"):
        paths = [None, *record["logs"]]
        which = np.frombuffer(zlib.decompress(record["log_index"]), np.uint32).tolist()
        for rec, i in zip(out, which):
            if i:
                rec["log_path"] = paths[i]
    return out
