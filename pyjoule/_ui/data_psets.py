"""The psets of one run as the run page shows them: one row per pset (its parameters,
its status, its scalar results), paged, sorted and filtered by facets server-side.

The frame is built once per run and state (:class:`PsetsCache`, kept on the app's
``state``): from the run's request (every pset it was asked for, in its order), the
``f.table()`` of those psets (``_results.table_for``: results and who computed them)
and the run's failure records. Paging, sorting and filtering then only index numpy
arrays: a page of a run of 100,000 psets is a few milliseconds.

Every parameter value has a *label*, the text shown (``str(value)``; ``None`` for a
pset without the parameter, as ``f.table()`` has it). A facet counts the labels of
one parameter among the psets that pass the filters on the *other* parameters (so a
filtered parameter still offers its other values); filters combine with AND.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .._store import Store

#: a pset's status on the run page
STATUSES = ("done", "failed", "cached", "not yet")
PAGE_SIZE = 100
#: values listed per facet (the first in value order; the rest are counted)
FACET_VALUES = 30
#: longest label shown for a value (an array's text, say)
LABEL_CHARS = 80


def label(value: Any) -> str:
    """The text a parameter value is shown and filtered by."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


@dataclass
class Column:
    """One parameter's values as codes into ``labels`` (value order: numbers
    ascending, other values first seen), and how it sorts."""

    name: str
    codes: np.ndarray          # int32, one per pset
    labels: list[str]          # the categories, in value order
    sort_key: np.ndarray       # per pset: sorts as the values do (rank of the label)

    def code_of(self, text: str) -> int:
        try:
            return self.labels.index(text)
        except ValueError:
            return -1


@dataclass
class RunPsets:
    """The psets of one run as of one state of it (``version``)."""

    version: str
    keys: list[str]                       # pset ids, in the run's order
    params: dict[str, Column]
    status: np.ndarray                    # int8 index into STATUSES
    reason: np.ndarray                    # object: a failure's reason, else None
    results: dict[str, np.ndarray]        # scalar results (NaN/None: none)
    runtime_s: np.ndarray                 # float, NaN where not computed
    _orders: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.keys)

    def columns(self) -> list[str]:
        """The sortable columns' ids, in the table's order."""
        return (["key"] + [f"p:{p}" for p in self.params] + ["status"]
                + [f"r:{r}" for r in self.results] + ["runtime"])

    def order(self, column: str, desc: bool = False) -> np.ndarray:
        """The psets' positions sorted by ``column``, ascending or descending; stable
        (equal values keep the run's order), missing values (NaN) last either way."""
        name = ("-" if desc else "+") + column
        if name not in self._orders:
            key = self._sort_key(column)
            if desc:
                key = -key.astype(np.float64 if key.dtype.kind == "f" else np.int64)
            self._orders[name] = np.argsort(key, kind="stable")
        return self._orders[name]

    def _sort_key(self, column: str) -> np.ndarray:
        if column.startswith("p:"):
            return self.params[column[2:]].sort_key
        if column == "status":
            return self.status
        if column == "runtime":
            return self.runtime_s
        if column.startswith("r:"):
            values = self.results[column[2:]]
            if values.dtype.kind in "biuf":
                return values
            return _ranks([("" if v is None else str(v)) for v in values.tolist()])
        return _ranks(self.keys)


def _ranks(texts: list[str]) -> np.ndarray:
    """Per text, its rank in lexicographic order."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(texts, dtype=object))
    rank = np.empty(len(uniques), np.int64)
    rank[np.argsort(np.asarray(uniques, dtype=str), kind="stable")] = np.arange(len(uniques))
    return rank[codes]


# ------------------------------------------------------------------ building
def build(store: Store, rec: dict[str, Any], failures: list[dict[str, Any]],
          version: str) -> RunPsets | None:
    """The psets of the run ``rec`` (a registry record) with the run's failure
    records ``failures``; ``None`` when its request is gone (its folder removed).

    What ``f.table()`` reads (``Store.lookup``, ``Store.read_columns``), without
    building its DataFrame: the columns are laid over the run's psets directly."""
    from .. import _columns
    from .._rundir import RunDir

    rd = RunDir(rec["run_dir"])
    if not rd.has_request():
        return None
    ids, psets = rd.read_request()
    n = len(ids)
    index = dict(zip(ids, range(n)))
    got_ids, columns = store.read_columns(rec["func_id"], store.lookup(rec["func_id"], ids))
    pos = np.fromiter((index[p] for p in got_ids), np.int64, len(got_ids))
    names = list(dict.fromkeys(k for ps in psets for k in ps))
    params = {p: _column(p, [ps.get(p) for ps in psets]) for p in names}

    runtime = np.full(n, np.nan)
    status = np.full(n, STATUSES.index("not yet"), np.int8)
    reason = np.full(n, None, object)
    for f in failures:
        i = index.get(f["pset_id"])
        if i is not None:
            status[i], reason[i] = STATUSES.index("failed"), f.get("reason")
            runtime[i] = f.get("runtime_s") or np.nan
    if len(got_ids):
        run_ids = columns.get("b:run_id")
        mine = (np.asarray(_columns.to_array(run_ids, None), object) == rec["run_id"]
                if run_ids is not None else np.zeros(len(got_ids), bool))
        status[pos] = np.where(mine, STATUSES.index("done"), STATUSES.index("cached"))
        reason[pos] = None
        if "b:runtime_s" in columns:
            runtime[pos] = np.asarray(_columns.to_array(columns["b:runtime_s"]), float)
    results = {}
    for name, col in columns.items():
        if name.startswith("v:") and len(got_ids):
            laid = _scatter(col, pos, n)
            if laid is not None:
                results[name[2:]] = laid
    return RunPsets(version, list(ids), params, status, reason, results, runtime)


_NUMBERS = (int, float, np.integer, np.floating)
_BOOLS = (bool, np.bool_)


def _column(name: str, values: list[Any]) -> Column:
    """The parameter ``name``'s column of ``values`` (``None``: the pset lacks it)."""
    import pandas as pd

    types = set(map(type, values))
    numeric = all(issubclass(t, _NUMBERS) and not issubclass(t, _BOOLS) for t in types)
    # one Python type (or only floats/ints): equal values have one label, and hashing
    # in C (factorize) keeps them apart; else 1, 1.0 and True must stay three labels
    plain = len(types) == 1 or (numeric and not any(issubclass(t, float) for t in types))
    try:
        if not plain:
            raise TypeError
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=False,
                                       use_na_sentinel=False)
        texts = [label(v) for v in uniques]
        firsts = list(uniques)
    except TypeError:  # unhashable (a list, an array), or types that compare equal
        codes, texts, firsts = _by_label(values)
    if numeric and texts:
        order = np.argsort(np.array([float(v) for v in firsts]), kind="stable")
    else:
        order = np.arange(len(texts))  # first seen
    remap = np.empty(len(texts), np.int32)
    remap[order] = np.arange(len(texts), dtype=np.int32)
    codes = remap[np.asarray(codes)]
    labels = [texts[i] for i in order.tolist()]
    if numeric:
        return Column(name, codes, labels, codes)
    rank = np.empty(len(labels), np.int64)
    rank[np.argsort(np.asarray(labels, dtype=str), kind="stable")] = np.arange(len(labels))
    return Column(name, codes, labels, rank[codes])


def _by_label(values: list[Any]) -> tuple[np.ndarray, list[str], list[Any]]:
    """Codes by label (a Python loop: for the columns factorize cannot take)."""
    seen: dict[str, int] = {}
    firsts: list[Any] = []
    codes = np.empty(len(values), np.int32)
    for i, v in enumerate(values):
        text = label(v)
        code = seen.get(text)
        if code is None:
            code = seen[text] = len(firsts)
            firsts.append(v)
        codes[i] = code
    return codes, list(seen), firsts


def _scatter(col: tuple, pos: np.ndarray, n: int) -> np.ndarray | None:
    """A result column laid over every pset of the run (missing: NaN or None), or
    ``None`` when it is not a column of scalars (arrays, dicts: not shown)."""
    from .. import _columns

    kind = col[0]
    if kind == "num" and col[1].dtype.kind != "b":
        out = np.full(n, np.nan)
        out[pos] = _columns.to_array(col).astype(float)
        return out
    if kind == "num":  # bools: True/False, not 1.0/0.0
        pass
    elif kind != "cat" or not all(isinstance(c, (str, *_NUMBERS)) for c in col[3]):
        return None
    obj = np.full(n, None, object)
    obj[pos] = _columns.to_array(col, None)
    return obj


# ------------------------------------------------------------------ querying
@dataclass
class Query:
    """What the page asks: filters (parameter -> label; ``status``), sort, page."""

    filters: dict[str, str]
    status: str | None = None
    sort: str | None = None
    desc: bool = False
    page: int = 1

    @classmethod
    def parse(cls, params: Any) -> Query:
        """From the query string: ``f.<param>=<label>``, ``status=``, ``sort=``,
        ``desc=1``, ``page=``."""
        filters = {k[2:]: v for k, v in params.items() if k.startswith("f.")}
        try:
            page = max(1, int(params.get("page", 1)))
        except ValueError:
            page = 1
        status = params.get("status") or None
        return cls(filters, status if status in STATUSES else None,
                   params.get("sort") or None, params.get("desc") == "1", page)

    def to_params(self, **change: Any) -> dict[str, str]:
        """The query string's fields, with ``change`` applied (``filters``,
        ``status``, ``sort``, ``desc``, ``page``); defaults left out."""
        q = {"filters": self.filters, "status": self.status, "sort": self.sort,
             "desc": self.desc, "page": self.page, **change}
        out = {f"f.{k}": v for k, v in q["filters"].items()}
        if q["status"]:
            out["status"] = q["status"]
        if q["sort"]:
            out["sort"] = q["sort"]
            if q["desc"]:
                out["desc"] = "1"
        if q["page"] != 1:
            out["page"] = str(q["page"])
        return out


@dataclass
class Facet:
    name: str
    values: list[tuple[str, int]]  # (label, count) in value order: count > 0, or chosen
    active: str | None
    more: int                      # values with a count left out of ``values``


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int                     # psets passing the filters
    page: int
    pages: int
    facets: list[Facet]
    status_counts: list[tuple[str, int]]


def _mask(psets: RunPsets, query: Query, leave_out: str | None = None) -> np.ndarray:
    mask = np.ones(psets.n, bool)
    for name, text in query.filters.items():
        if name == leave_out:
            continue
        col = psets.params.get(name)
        if col is None:
            mask[:] = False
        else:
            mask &= col.codes == col.code_of(text)
    if query.status and leave_out != "status":
        mask &= psets.status == STATUSES.index(query.status)
    return mask


def page(psets: RunPsets, query: Query, size: int = PAGE_SIZE) -> Page:
    """The rows of the page ``query`` asks for, the facets and the status counts."""
    mask = _mask(psets, query)
    if query.sort in psets.columns():
        order = psets.order(query.sort, query.desc)
        picked = order[mask[order]]
    else:
        picked = np.flatnonzero(mask)
    total = len(picked)
    pages = max(1, -(-total // size))
    number = min(query.page, pages)
    rows = [_row(psets, i) for i in picked[(number - 1) * size:number * size].tolist()]
    facets = []
    for name, col in psets.params.items():
        counts = np.bincount(col.codes[_mask(psets, query, leave_out=name)],
                             minlength=len(col.labels))
        present = np.flatnonzero(counts)
        shown = present[:FACET_VALUES].tolist()
        active = col.code_of(query.filters.get(name, ""))
        if active >= 0 and active not in shown:  # chosen: shown, to be let go
            shown.append(active)
        facets.append(Facet(name, [(col.labels[i], int(counts[i])) for i in shown],
                            query.filters.get(name),
                            len(present) - int((counts[shown] > 0).sum())))
    by_status = np.bincount(psets.status[_mask(psets, query, leave_out="status")],
                            minlength=len(STATUSES))
    return Page(rows, total, number, pages, facets,
                [(s, int(c)) for s, c in zip(STATUSES, by_status.tolist())])


def _row(psets: RunPsets, i: int) -> dict[str, Any]:
    results = {}
    for name, values in psets.results.items():
        v = values[i]
        results[name] = "" if v is None or (isinstance(v, float) and np.isnan(v)) \
            else f"{v:.6g}" if isinstance(v, float) else label(v)
    runtime = psets.runtime_s[i]
    return {"key": psets.keys[i],
            "params": {p: c.labels[c.codes[i]] for p, c in psets.params.items()},
            "status": STATUSES[psets.status[i]], "reason": psets.reason[i],
            "results": results,
            "runtime": "" if np.isnan(runtime) else f"{runtime:.3g}"}


# ------------------------------------------------------------------ keeping
class PsetsCache:
    """The frames of the last few runs looked at, by run id, each rebuilt when its
    run's state (counts) changed. Kept on the app's ``state``: one per server. A run's
    frame is built by one thread at a time: the others wait for it (two tabs, or the
    page's background task and its table's request)."""

    KEEP = 4

    def __init__(self) -> None:
        self._frames: OrderedDict[str, RunPsets | None] = OrderedDict()
        self._versions: dict[str, str] = {}
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _kept(self, run_id: str, version: str) -> tuple[bool, RunPsets | None]:
        with self._lock:
            if self._versions.get(run_id) != version:
                return False, None
            self._frames.move_to_end(run_id)
            return True, self._frames[run_id]

    def get(self, store: Store, rec: dict[str, Any], failures: list[dict[str, Any]],
            version: str) -> RunPsets | None:
        run_id = rec["run_id"]
        found, frame = self._kept(run_id, version)
        if found:
            return frame
        with self._lock:
            building = self._building.setdefault(run_id, threading.Lock())
        with building:
            found, frame = self._kept(run_id, version)  # built while this one waited
            if found:
                return frame
            built = build(store, rec, failures, version)
            with self._lock:
                self._frames[run_id], self._versions[run_id] = built, version
                self._frames.move_to_end(run_id)
                while len(self._frames) > self.KEEP:
                    gone, _ = self._frames.popitem(last=False)
                    self._versions.pop(gone, None)
                    self._building.pop(gone, None)
        return built


def cache_of(state: Any) -> PsetsCache:
    """The app's :class:`PsetsCache` (``request.app.state``), made on first use."""
    cache = getattr(state, "run_psets", None)
    if cache is None:
        cache = state.run_psets = PsetsCache()
    return cache
