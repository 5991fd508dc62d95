"""Locating many psets in the cache by sorted arrays (pyjoule._store.locate): the same
answers as the exact, per-id path, whatever the ids share."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

import pyjoule as pj
from pyjoule._store import Store
from pyjoule._store import locate as L

FUNC = "f" * 32


def _ids(n: int) -> list[str]:
    return [secrets.token_hex(16) for _ in range(n)]


def _ingest(store: Store, ids: list[str], run_id: str = "run-1") -> None:
    records = [{"pset_id": p, "status": "done", "value": k, "kwargs": {"k": k},
                "runtime_s": 0.0, "started": 0.0, "finished": 0.0, "host": "h"}
               for k, p in enumerate(ids)]
    store.ingest(FUNC, run_id, records)


def _exact(store: Store, ids: list[str]) -> dict[str, int]:
    """The per-id answer: a few hundred ids at a time, through SQLite's IN."""
    out: dict[str, int] = {}
    for i in range(0, len(ids), 400):
        out.update(store.lookup(FUNC, ids[i:i + 400]))
    return out


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "cache")


def test_locate_finds_what_the_exact_lookup_finds_prefix_ties_included(store):
    cached = _ids(3000)
    # ids sharing their first 8 (and 12) characters with a cached one: the search
    # by 8-byte prefix must look past the first entry of a prefix
    tied = [cached[0][:8] + secrets.token_hex(12) for _ in range(4)]
    tied += [cached[1][:12] + secrets.token_hex(10) for _ in range(3)]
    _ingest(store, cached + tied[::2], "run-1")
    wanted = cached[::3] + tied + _ids(800)  # cached, tied (some cached), unknown
    np.random.default_rng(1).shuffle(wanted)
    exact = _exact(store, wanted)
    assert len(exact) == len(cached[::3]) + len(tied[::2])

    locs = store.locate(FUNC, wanted)
    assert locs.tolist() == [exact.get(p, -1) for p in wanted]
    assert store.lookup(FUNC, wanted) == exact  # the many-ids path of lookup
    assert list(store.lookup(FUNC, wanted)) == [p for p in wanted if p in exact]  # ids' order
    assert store.lookup(FUNC, set(wanted)) == exact


def test_locate_of_a_function_with_nothing_cached(store):
    _ingest(store, _ids(10))
    assert (store.locate("e" * 32, _ids(600)) == -1).all()


def test_ids_that_are_not_pset_ids_take_the_exact_path(store):
    odd = [f"pset-{i}" for i in range(700)]
    _ingest(store, odd[:300])
    assert L.locate(store.db, FUNC, odd) is None  # not 32 characters
    locs = store.locate(FUNC, odd)
    assert (locs[:300] >= 0).all() and (locs[300:] == -1).all()
    assert len(store.lookup(FUNC, odd)) == 300


def test_has_duplicates_and_id_order():
    ids = _ids(5000)
    assert L.has_duplicates(ids) is False
    assert L.has_duplicates(ids + [ids[17]]) is True
    tied = [ids[0][:8] + secrets.token_hex(12) for _ in range(3)]
    assert L.has_duplicates(ids + tied) is False
    assert L.has_duplicates(ids + tied + [tied[2]]) is True
    assert L.has_duplicates(["short"]) is None
    order = L.id_order(ids)
    assert [ids[i][:8] for i in order] == sorted(p[:8] for p in ids)
    assert L.id_order(["b", "a", "c"]) == [1, 0, 2]


def test_found_is_a_mapping_built_only_when_a_key_is_asked_for():
    ids = _ids(5)
    locs = np.array([7, -1, 9, -1, 3])
    found = L.Found(ids, locs)
    assert len(found) == 3 and found._dict is None and repr(found) == "Found(3 cached)"
    assert dict(found) == {ids[0]: 7, ids[2]: 9, ids[4]: 3}
    assert ids[1] not in found and found[ids[2]] == 9
    found.update({ids[1]: 11})
    assert len(found) == 4 and list(found.values()) == [7, 9, 3, 11]


def test_a_recall_of_many_psets_returns_the_cached_dataset(tmp_path):
    log = tmp_path / "calls.txt"

    def g(i, j=0):
        with open(log, "a") as fh:
            fh.write(f"{i}\n")
        return {"y": 2 * i + j}

    f = pj.experiment(workers=0, cache=tmp_path / "c", progress=False)(g)
    space = pj.grid(i=range(300), j=[0, 1])
    first = f.map(space)
    assert len(log.read_text().split()) == 600
    again = f.map(space)  # 600 psets: located by arrays, placed by sorting locs
    assert len(log.read_text().split()) == 600  # nothing computed again
    assert again.equals(first)
    assert again["y"].sel(i=299, j=1).item() == 599


@pytest.mark.parametrize("n_wanted", [499, 500, 1200, 2500])
def test_a_small_call_on_a_large_cache_gets_the_same_answers(store, n_wanted):
    """Few ids against many entries are looked up through the index, many through the
    arrays (whichever costs less): the answers are the same either way."""
    cached = _ids(6000)
    _ingest(store, cached)
    wanted = cached[:n_wanted // 2] + _ids(n_wanted - n_wanted // 2)
    exact = _exact(store, wanted)
    assert len(exact) == n_wanted // 2
    assert store.lookup(FUNC, wanted) == exact
    assert store.locate(FUNC, wanted).tolist() == [exact.get(p, -1) for p in wanted]
    assert store.locate_present(FUNC, wanted).tolist() == [exact.get(p, -1) for p in wanted]
