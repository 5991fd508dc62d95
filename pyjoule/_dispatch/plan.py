"""Planning a call: normalise, hash and de-duplicate the psets, look them up in the
cache, and claim the missing ones for a new run (:func:`plan`); :func:`plan_run`
adds the explicit judging of the runs found in flight (:func:`.reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _bulk, _caches, _callables, _claims, _hashing, _keying, _space
from .._store import Store
from .._store.locate import Found, Ids, has_duplicates
from .reconcile import reconcile
from .signature import Signature

log = logging.getLogger("pyjoule")


#: (older func_id, newer) pairs :func:`report_identity_change` has told about: once
#: per process (``_caches.reset_all()`` lets it tell them again)
_logged_changes: set[tuple[str, str]] = _caches.declare(__name__, "_logged_changes", set())


@dataclass
class Plan:
    func_id: str
    psets: list[dict]  # unique, normalised, in first-seen order
    ids: list[str]
    found: MutableMapping[str, int]  # cached: pset_id -> loc (see Store.lookup)
    in_flight: list[dict] = field(default_factory=list)  # run records to attach to
    to_run: list[int] = field(default_factory=list)  # indices into psets
    run_id: str | None = None  # the run registered (``starting``) for ``to_run``
    #: the keyword arguments passed, when they differ from ``psets`` (``ignore=``)
    calls: list[dict] | None = None
    ignored: tuple[str, ...] = ()  # the names ``psets`` leaves out of ``calls``
    #: values that plain pickle cannot send (functions, ignored objects): cloudpickle
    by_value: bool = False
    #: ``found`` as an array in the order of ``ids`` (-1: not cached), while the two
    #: agree (None once ``found`` changed): what the Dataset is placed by
    locs: Any = None


def plan(store: Store | None, func_id: str, signature: Signature, space: Any,
         limit: int | None = None, run: dict | None = None, warn: bool = True) -> Plan:
    """Normalise, hash and split ``space`` (fast: 1,000,000 psets in seconds).

    With a store, the psets to run are claimed, in the same transaction, for a new
    run registered ``starting`` (``Plan.run_id``; ``run``: its registry fields), and
    psets other runs have claimed are left to them (``in_flight``): follow the plan
    with :func:`launch`, or :func:`abandon` it. A plan that finds everything cached
    writes nothing. Duplicates run once; ``warn``: say so (``UserWarning``).

    A plan judges no run: it asks no backend whether the runs in flight still live
    and finishes none (:func:`plan_run` adds that step, :func:`reconcile`).
    """
    result = _hashed(store, func_id, signature, space, warn)
    _claim(store, result, limit, run)
    result.in_flight = [r for r in result.in_flight if r["state"] is not None]  # vanished
    return result


def plan_run(store: Store, func_id: str, signature: Signature, space: Any,
             limit: int | None = None, run: dict | None = None) -> Plan:
    """:func:`plan`, then :func:`reconcile` the runs it found in flight: psets of a
    dead run are claimed for this one (after that run is finished), a live run's
    are left to it. What a call that computes (``map``, ``submit``) plans with."""
    result = _hashed(store, func_id, signature, space, True)
    try:
        for _ in range(20):
            _claim(store, result, limit, run)
            if not result.in_flight:
                return result
            live, settled = reconcile(store, result.in_flight)
            if not settled:
                result.in_flight = live
                return result
            abandon(store, result)  # nothing started: claim again, their psets free
    except BaseException:  # e.g. a Ctrl-C after a claim was committed
        abandon(store, result)
        raise
    raise RuntimeError(f"could not claim psets of {func_id}: runs kept dying")


@_bulk.gc_paused
def _hashed(store: Store | None, func_id: str, signature: Signature, space: Any,
            warn: bool) -> Plan:
    """The psets normalised, keyed, hashed, de-duplicated and looked up in the cache
    (the plan's one full ``Store.lookup``); nothing claimed yet (:func:`_claim`)."""
    calls = signature.normalise(_space.as_psets(space))
    psets = signature.keyed(calls)  # ``calls`` itself unless arguments are ignored
    n_callables = _callables.seen
    ids = _hashing.pset_ids(psets)
    by_value = bool(signature.ignore) or _callables.seen != n_callables
    prepared = Ids.of(ids)  # for the duplicates and the lookup both
    first: dict[str, int] = {}
    if has_duplicates(prepared or ids) is not False:  # keep the first of each
        for i, pid in enumerate(ids):
            first.setdefault(pid, i)
    if len(first) not in (0, len(ids)):
        if warn:
            _keying.warn_duplicates(len(ids), len(first), calls, signature)
        psets = [psets[i] for i in first.values()]
        calls = [calls[i] for i in first.values()]
        ids = list(first)
        prepared = None
    del first
    locs = None if store is None else store.locate_present(func_id, ids, prepared)
    found: MutableMapping[str, int] = {} if locs is None else Found(ids, locs)
    result = Plan(func_id, psets, ids, found, by_value=by_value, locs=locs)
    if signature.ignore:
        result.calls, result.ignored = calls, tuple(sorted(signature.ignore))
    return result


def _claim(store: Store | None, result: Plan, limit: int | None, run: dict | None) -> None:
    """Split ``result.to_run`` into the psets claimed for a new run and those other
    runs have claimed (``in_flight``: their registry records, as they stand)."""
    found = result.found  # among ``ids`` (unique): all of them, or look for the others
    if len(found) == len(result.ids):
        missing = []
    elif result.locs is not None:  # ``found`` as it was looked up: no key asked for
        missing = np.flatnonzero(result.locs < 0).tolist()
    else:
        missing = [i for i, pid in enumerate(result.ids) if pid not in found]
    if store is None or not missing:
        if limit is not None and len(missing) > limit:
            log.warning("limit=%d (PYJOULE_LIMIT or pj.config): running only %d of %d "
                        "missing psets; the others stay missing from the results",
                        limit, limit, len(missing))
            missing = missing[:limit]
        result.to_run = missing
        return
    registered: dict = {}
    try:
        result.run_id, owners, missing, newly = _claims.claim(
            store, result.func_id, result.ids, missing,
            run or {"name": "", "backend": "pool", "host": "local"}, limit, registered)
    except BaseException:  # e.g. a Ctrl-C just after the claim was committed
        if registered:
            _claims.abandon(store, registered["run_id"])
        raise
    if newly:
        result.found.update(newly)
        result.locs = None
    result.in_flight = [store.get_run(r) or {"run_id": r, "state": None} for r in owners]
    result.to_run = missing
    if owners:
        log.info("attaching to %d run(s) already computing some of these psets",
                 len(owners))


def abandon(store: Store, plan_: Plan) -> None:
    """Release what ``plan_`` claimed, when its run will not be started after all."""
    if plan_.run_id is not None:
        _claims.abandon(store, plan_.run_id)
        plan_.run_id = None


def report_identity_change(store: Store, name: str, identity) -> None:
    """One INFO line when older versions of this function have cached results."""
    from .._identity import describe_change

    older, used_before = store.register_function(identity.func_id, name, identity.components)
    if used_before is not None and older and used_before >= older[0]["last_used"]:
        return  # the version used last time too: nothing changed since
    if older and (older[0]["func_id"], identity.func_id) not in _logged_changes:
        _logged_changes.add((older[0]["func_id"], identity.func_id))
        what = describe_change(older[0]["components"], identity.components)
        if store.has_entries(identity.func_id):  # back to a version cached before
            log.info("%s: %s since the version used last; this version's cached results "
                     "are used", name, what)
        else:
            log.info("%s: %s since results were last cached; recomputing (older results "
                     "kept, clear them with .clear_cache())", name, what)
