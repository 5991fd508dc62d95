"""Cache entries as a ``pandas.DataFrame``: ``f.table()`` (one row per pset, failures
too) and ``run.failures`` (one row per failed pset)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _columns
from .._columns import MISSING
from .axes import first_seen


def build_table(ids: Sequence[str], columns: dict, func_id: str, failures=()):
    """One row per pset: parameters, results and the bookkeeping columns.

    Parameter columns hold the values as recorded (API §4): ints stay int64 (object
    when some rows lack the parameter: ``42, None, 43``, never ``42.0, nan, 43.0``),
    so that ``f.map(table[parameter_columns])`` finds every pset again.
    """
    import pandas as pd

    data: dict[str, Any] = {}
    for name in first_seen(columns, "p:") + first_seen(columns, "v:"):
        key = name[2:] if name[2:] not in data else name
        col = columns[name]
        data[key] = _parameter_column(col) if name[:2] == "p:" else _table_column(col)
    data["_key"] = list(ids)
    data["_func_id"] = func_id
    data["_status"] = "done"
    for name in ("runtime_s", "host", "started", "finished", "run_id"):
        col = columns.get("b:" + name)
        data["_" + name] = _table_column(col) if col is not None else [None] * len(ids)
    frame = pd.DataFrame(data)
    if failures:
        frame = pd.concat([frame, _failure_rows(failures, func_id)], ignore_index=True)
    for name in ("_started", "_finished"):
        frame[name] = pd.to_datetime(frame[name].astype(float), unit="s", utc=True)
    return frame


def _parameter_column(col: tuple):
    """A parameter column as exact values: ``None`` (object dtype) where missing."""
    kind, data, mask = col[:3]
    if kind == "num" and mask is None:
        return data
    column = np.empty(len(data), object)
    column[:] = [None if v is MISSING else v for v in _columns.to_objects(col)]
    return column


def _table_column(col: tuple):
    kind = col[0]
    if kind == "num":
        return _columns.to_array(col)
    values = _columns.to_objects(col)
    return [None if v is MISSING else v for v in values]


def _failure_rows(failures, func_id: str):
    import pandas as pd

    rows = []
    for rec in failures:
        row = dict(rec.get("kwargs", {}))
        row.update(_key=rec["pset_id"], _func_id=func_id, _status="failed",
                   _runtime_s=rec.get("runtime_s"), _host=rec.get("host"),
                   _started=rec.get("started"), _finished=rec.get("finished"),
                   _run_id=rec.get("run_id"))
        rows.append(row)
    return pd.DataFrame(rows)


def failures_frame(failures: Sequence[dict]):
    """``run.failures``: parameters + error_type, message, traceback, reason, log."""
    import pandas as pd

    rows = []
    for rec in failures:
        row = dict(rec.get("kwargs", {}))
        row.update(error_type=rec.get("error_type"), message=rec.get("message"),
                   traceback=rec.get("traceback"), reason=rec.get("reason"),
                   log=_log_text(rec), _key=rec["pset_id"])
        rows.append(row)
    cols = ["error_type", "message", "traceback", "reason", "log", "_key"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


def _log_text(rec: dict) -> str:
    parts = []
    if rec.get("stdout"):
        parts.append(rec["stdout"])
    if rec.get("stderr"):
        parts.append(rec["stderr"])
    if rec.get("log_path"):
        parts.append(f"(worker log: {rec['log_path']})")
    return "".join(parts)
