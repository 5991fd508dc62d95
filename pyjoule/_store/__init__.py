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

One module per concern, each adding its methods to :class:`Store`, lowest first:
``db`` (the index: schema, connection, transactions, trust), ``segments`` (the
segment files), ``entries`` (functions, entries, ingest, failures), ``maintenance``
(sizes, clear, gc) and ``registry`` (the runs table). Everything the rest of pyjoule
uses is imported from here.
"""

from __future__ import annotations

from .._private import DISK_FULL
from .db import _OPEN, SCHEMA_VERSION, forget_open, not_a_cache
from .entries import MAX_OUTPUT_BYTES, Entries, cap_output
from .maintenance import Maintenance
from .registry import Registry
from .segments import BOOKKEEPING, SEG_HEADER, SEG_MAGIC, atomic_write, by_segment, digest

#: what the rest of pyjoule (and its tests) import from ``pyjoule._store``
__all__ = ["BOOKKEEPING", "DISK_FULL", "MAX_OUTPUT_BYTES", "SCHEMA_VERSION", "SEG_HEADER",
           "SEG_MAGIC", "_OPEN", "Store", "atomic_write", "by_segment", "cap_output", "digest",
           "forget_open", "not_a_cache"]


class Store(Maintenance, Entries, Registry):
    """One cache directory. Cheap to create; connects on first use."""
