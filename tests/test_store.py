"""The cache (pyjoule._store.Store): entries, segments, damage, failures, runs, sharing."""

from __future__ import annotations

import logging
import math
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import pyjoule as pj
from pyjoule import _columns
from pyjoule._store import Store

REPO = Path(__file__).resolve().parent.parent
FUNC = "f" * 32
OTHER = "e" * 32


def rec(pset_id, value, status="done", run_id="run-1", **extra):
    out = {"pset_id": pset_id, "status": status, "value": value,
           "kwargs": {"i": int(pset_id.rsplit("-", 1)[-1]) if pset_id[-1].isdigit() else 0,
                      "name": pset_id},
           "runtime_s": 0.25, "started": 1000.0, "finished": 1000.25, "host": "node-1",
           "run_id": run_id}
    if status != "done":
        out.update(error_type="ValueError", message="boom", traceback="Traceback...",
                   reason="exception", value=None)
    out.update(extra)
    return out


def same(a, b) -> bool:
    """Exact equality: same types, numpy arrays by dtype, shape and content, NaN == NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
            a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


VALUES = {
    "p-0": 1.5,
    "p-1": np.arange(12, dtype=np.float32).reshape(3, 4),
    "p-2": {"loss": 0.25, "trace": np.linspace(0, 1, 5), "label": "ok"},
    "p-3": float("nan"),
    "p-4": None,
    "p-5": [1, "two", (3.0,)],
    "p-6": np.int64(7),
    "p-7": 2**80,
}


@pytest.fixture
def store(weird_tmp_path):
    s = Store(weird_tmp_path / "cache")
    yield s
    s.close()


def segment_files(store: Store) -> list[Path]:
    return sorted((store.root / "data").rglob("*.seg"))


# --------------------------------------------------------------------- round trip
def test_ingest_lookup_and_read_values_round_trip_exactly(store):
    records = [rec(pid, v) for pid, v in VALUES.items()]
    assert store.ingest(FUNC, "run-1", records) == (len(VALUES), 0)

    found = store.lookup(FUNC)
    assert set(found) == set(VALUES)
    assert store.lookup(FUNC, ["p-1", "p-3", "nope"]).keys() == {"p-1", "p-3"}
    assert store.lookup(OTHER) == {}
    assert store.verify_present(found) == found

    values = store.read_values(FUNC, found)
    assert values.keys() == VALUES.keys()
    for pid, want in VALUES.items():
        assert same(values[pid], want), (pid, values[pid], want)


def test_lookup_of_many_ids(store):
    records = [rec(f"p-{i}", i) for i in range(1200)]
    store.ingest(FUNC, "run-1", records)
    wanted = [f"p-{i}" for i in range(0, 2400, 2)]  # half of them exist
    found = store.lookup(FUNC, wanted)
    assert set(found) == {f"p-{i}" for i in range(0, 1200, 2)}
    assert set(store.lookup(FUNC, wanted[:300])) == {f"p-{i}" for i in range(0, 600, 2)}
    # a dict or a set of ids (the plan's) is used as it is: the same answer
    for ids in (wanted, wanted[:300]):
        assert store.lookup(FUNC, dict.fromkeys(ids)) == store.lookup(FUNC, ids)
        assert store.lookup(FUNC, set(ids)) == store.lookup(FUNC, ids)


def test_ingest_in_key_order_keeps_every_entry_where_its_row_is(store):
    """Entries are inserted sorted by pset id, not in the records' order: each still
    points at its own row (values read back per pset); a pset that failed in an
    earlier batch and is done in a later one is no failure any more, the others stay."""
    ids = [f"p-{(i * 7919) % 1000:03d}" for i in range(1000)]  # not in key order
    store.ingest(FUNC, "run-1", [rec(p, int(p[2:])) for p in ids[:500]] +
                 [rec("lost-1", None, status="failed"), rec(ids[600], None, status="failed")])
    store.ingest(FUNC, "run-1", [rec(p, int(p[2:])) for p in ids[500:]])
    values = store.read_values(FUNC, store.lookup(FUNC, ids))
    assert values == {p: int(p[2:]) for p in ids}
    assert [f["pset_id"] for f in store.failures(run_id="run-1")] == ["lost-1"]


def test_read_columns_round_trip(store):
    records = [rec(f"p-{i}", {"a": i * 1.5, "v": np.full(3, i), "tag": f"t{i % 2}"},
                   runtime_s=0.1 * i, host=f"h{i}") for i in range(6)]
    store.ingest(FUNC, "run-9", records)
    ids, cols = store.read_columns(FUNC, store.lookup(FUNC))
    assert sorted(ids) == [f"p-{i}" for i in range(6)]
    got = {name: dict(zip(ids, _columns.to_objects(col))) for name, col in cols.items()}
    for i in range(6):
        pid = f"p-{i}"
        assert got["p:i"][pid] == i
        assert got["p:name"][pid] == pid
        assert got["v:a"][pid] == i * 1.5
        assert same(np.asarray(got["v:v"][pid]), np.full(3, i))
        assert got["v:tag"][pid] == f"t{i % 2}"
        assert got["b:runtime_s"][pid] == pytest.approx(0.1 * i)
        assert got["b:host"][pid] == f"h{i}"
        assert got["b:run_id"][pid] == "run-9"
        assert got["b:started"][pid] == 1000.0 and got["b:finished"][pid] == 1000.25


def test_read_columns_of_a_subset_across_segments(store):
    """Rows picked from two segments whose result columns differ."""
    store.ingest(FUNC, "run-1", [rec(f"p-{i}", {"a": i}) for i in range(5)])
    store.ingest(FUNC, "run-2", [rec(f"p-{i}", {"b": f"s{i}"}, run_id="run-2")
                                 for i in range(5, 10)], )
    wanted = ["p-1", "p-3", "p-6", "p-9"]
    ids, cols = store.read_columns(FUNC, store.lookup(FUNC, wanted))
    assert sorted(ids) == sorted(wanted)
    got = {name: dict(zip(ids, _columns.to_objects(col))) for name, col in cols.items()}
    assert {got["v:a"][p] for p in ("p-1", "p-3")} == {1, 3}
    assert got["v:a"]["p-6"] is _columns.MISSING and got["v:a"]["p-9"] is _columns.MISSING
    assert got["v:b"]["p-6"] == "s6" and got["v:b"]["p-9"] == "s9"
    assert got["v:b"]["p-1"] is _columns.MISSING
    assert got["p:i"] == {"p-1": 1, "p-3": 3, "p-6": 6, "p-9": 9}
    assert got["b:run_id"] == {"p-1": "run-1", "p-3": "run-1", "p-6": "run-2",
                               "p-9": "run-2"}


def test_reingest_replaces_the_value(store):
    store.ingest(FUNC, "run-1", [rec("p-0", 1)])
    store.ingest(FUNC, "run-2", [rec("p-0", 2)])
    assert store.read_values(FUNC, store.lookup(FUNC)) == {"p-0": 2}


def test_functions_are_separate(store):
    store.ingest(FUNC, "run-1", [rec("p-0", "mine")])
    store.ingest(OTHER, "run-2", [rec("p-0", "theirs")])
    assert store.read_values(FUNC, store.lookup(FUNC)) == {"p-0": "mine"}
    assert store.read_values(OTHER, store.lookup(OTHER)) == {"p-0": "theirs"}


# -------------------------------------------------------------- done vs failures
@pytest.mark.parametrize("order", ["failure_first", "done_first"])
def test_done_wins_over_failure_in_one_batch(store, order):
    batch = [rec("p-0", None, status="failed", reason="lost"), rec("p-0", 42),
             rec("p-1", None, status="failed")]
    if order == "done_first":
        batch = [batch[1], batch[0], batch[2]]
    assert store.ingest(FUNC, "run-1", batch) == (1, 1)
    assert store.read_values(FUNC, store.lookup(FUNC)) == {"p-0": 42}
    assert [f["pset_id"] for f in store.failures(run_id="run-1")] == ["p-1"]
    assert [f["pset_id"] for f in store.failures(func_id=FUNC)] == ["p-1"]


def test_a_later_success_clears_the_failure_of_the_run(store):
    store.ingest(FUNC, "run-1", [rec("p-0", None, status="failed")])
    assert [f["pset_id"] for f in store.failures(run_id="run-1")] == ["p-0"]
    store.ingest(FUNC, "run-1", [rec("p-0", 5)])
    assert store.failures(run_id="run-1") == []
    assert store.failures(func_id=FUNC) == []


def test_done_wins_over_failure_in_a_later_batch(store):
    # The worker may report a finished pset as lost too (killed between writing its
    # record and moving on); the two records live in different files and can be read
    # in different polls.
    store.ingest(FUNC, "run-1", [rec("p-0", 42)])
    store.ingest(FUNC, "run-1", [rec("p-0", None, status="failed", reason="lost")])
    assert store.read_values(FUNC, store.lookup(FUNC)) == {"p-0": 42}
    assert store.failures(run_id="run-1") == []


def test_failures_are_listed_by_run_with_their_record(store):
    store.ingest(FUNC, "run-1", [rec("p-0", None, status="failed", message="one"),
                                 rec("p-1", 1)])
    store.ingest(FUNC, "run-2", [rec("p-2", None, status="failed", reason="timeout",
                                     error_type="TimeoutError", run_id="run-2")])
    f1 = store.failures(run_id="run-1")
    assert len(f1) == 1
    assert f1[0]["pset_id"] == "p-0" and f1[0]["message"] == "one"
    assert f1[0]["error_type"] == "ValueError" and f1[0]["reason"] == "exception"
    assert f1[0]["kwargs"] == {"i": 0, "name": "p-0"}
    f2 = store.failures(run_id="run-2")
    assert [(f["pset_id"], f["reason"], f["error_type"]) for f in f2] == [
        ("p-2", "timeout", "TimeoutError")]
    assert {f["pset_id"] for f in store.failures(func_id=FUNC)} == {"p-0", "p-2"}
    assert store.failures(run_id="run-3") == []
    assert "p-0" not in store.lookup(FUNC)  # failures are not cached


def _local_class_instance(v):
    class Local:  # plain pickle cannot name it; the worker sends it with cloudpickle
        def __init__(self, v):
            self.v = v

    return Local(v)


def test_ingest_of_a_value_only_cloudpickle_can_store_keeps_the_batch(store):
    batch = [rec("p-0", _local_class_instance(3)), rec("p-1", 1), rec("p-2", 2)]
    store.ingest(FUNC, "run-1", batch)  # must not raise
    assert {"p-1", "p-2"} <= set(store.lookup(FUNC))


def test_value_of_a_class_sent_by_value_round_trips(store):
    store.ingest(FUNC, "run-1", [rec("p-0", _local_class_instance(3)), rec("p-1", 1)])
    values = store.read_values(FUNC, store.lookup(FUNC))
    assert values["p-1"] == 1
    assert type(values["p-0"]).__name__ == "Local" and values["p-0"].v == 3


# ------------------------------------------------------------------------ damage
def _flip(path: Path, where: str, len_a: int) -> None:
    data = bytearray(path.read_bytes())
    head = 12
    pos = head + len_a // 2 if where == "columns" else head + len_a + (len(data) - head
                                                                       - len_a) // 2
    data[pos] ^= 0xFF
    data[pos + 1] ^= 0x55
    path.write_bytes(bytes(data))


def _len_a(store: Store, path: Path) -> int:
    rel = path.relative_to(store.root).as_posix()
    return store.db.execute("SELECT len_a FROM segments WHERE path=?", (rel,)).fetchone()[0]


@pytest.mark.parametrize("where, reader", [("columns", "read_columns"),
                                           ("values", "read_values")])
def test_flipped_bytes_are_detected_logged_and_recomputed(store, caplog, where, reader):
    store.ingest(FUNC, "run-1", [rec(f"p-{i}", np.full(4, float(i))) for i in range(4)])
    store.ingest(FUNC, "run-1", [rec(f"p-{i}", np.full(4, float(i))) for i in range(4, 6)])
    damaged, intact = sorted(segment_files(store), key=lambda p: p.stat().st_size,
                             reverse=True)
    size = damaged.stat().st_size
    _flip(damaged, where, _len_a(store, damaged))
    assert damaged.stat().st_size == size  # same size: only a checksum can tell

    found = store.lookup(FUNC)
    assert store.verify_present(found) == found  # a size check cannot see it
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        if reader == "read_values":
            got = store.read_values(FUNC, found)
            assert got.keys() == {"p-4", "p-5"}
            assert all(same(got[p], np.full(4, float(p[-1]))) for p in got)
        else:
            ids, cols = store.read_columns(FUNC, found)
            assert sorted(ids) == ["p-4", "p-5"]
            assert all(len(_columns.to_objects(c)) == 2 for c in cols.values())
            assert dict(zip(ids, _columns.to_objects(cols["p:i"]))) == {"p-4": 4, "p-5": 5}
    warnings = [r for r in caplog.records
                if r.name == "pyjoule" and r.levelno == logging.WARNING]
    assert warnings and "recomputed" in warnings[0].getMessage()
    assert set(store.lookup(FUNC)) == {"p-4", "p-5"}  # the damaged ones will be re-run
    assert intact.exists()
    # a second read returns the same intact data and nothing damaged
    assert set(store.read_values(FUNC, store.lookup(FUNC))) == {"p-4", "p-5"}


def test_truncated_segment_is_caught_by_verify_present(store, caplog):
    store.ingest(FUNC, "run-1", [rec(f"p-{i}", i) for i in range(3)])
    store.ingest(FUNC, "run-1", [rec("p-3", 3)])
    big = max(segment_files(store), key=lambda p: p.stat().st_size)
    with open(big, "r+b") as fh:
        fh.truncate(big.stat().st_size - 5)
    found = store.lookup(FUNC)
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        ok = store.verify_present(found)
    assert set(ok) == {"p-3"}
    assert any(r.name == "pyjoule" and r.levelno == logging.WARNING for r in caplog.records)
    assert set(store.lookup(FUNC)) == {"p-3"}
    assert store.read_values(FUNC, found) == {"p-3": 3}  # stale handles give nothing bad


def test_missing_segment_is_caught_by_verify_present(store):
    store.ingest(FUNC, "run-1", [rec("p-0", 0)])
    (seg,) = segment_files(store)
    seg.unlink()
    assert store.verify_present(store.lookup(FUNC)) == {}
    assert store.lookup(FUNC) == {}


def test_lookup_present_finds_the_cached_psets_whose_segment_is_there(store):
    store.ingest(FUNC, "run-1", [rec("p-0", 0), rec("p-1", 1)])
    store.ingest(FUNC, "run-1", [rec("p-2", 2)])
    wanted = ["p-0", "p-2", "nope"]
    assert store.lookup_present(FUNC, wanted) == store.lookup(FUNC, wanted)
    assert set(store.lookup_present(FUNC, wanted)) == {"p-0", "p-2"}
    seg_id = store.lookup(FUNC, ["p-2"])["p-2"] >> 32
    (path,) = store.db.execute("SELECT path FROM segments WHERE seg_id=?", (seg_id,)).fetchone()
    (store.root / path).unlink()
    assert set(store.lookup_present(FUNC, wanted)) == {"p-0"}  # p-2 is to recompute
    assert set(store.lookup(FUNC)) == {"p-0", "p-1"}  # its entry is dropped


# ------------------------------------------------------------------- maintenance
def test_info_and_clear(store):
    store.ingest(FUNC, "run-1", [rec(f"p-{i}", np.zeros(100)) for i in range(3)])
    store.ingest(FUNC, "run-1", [rec("p-3", 1), rec("p-4", None, status="failed")])
    store.ingest(OTHER, "run-2", [rec("p-0", 1)])
    info = store.info([FUNC])
    assert info["entries"] == 4 and info["segments"] == 2
    files = [p for p in segment_files(store) if FUNC in str(p)]
    assert info["bytes"] == sum(p.stat().st_size for p in files) > 3 * 800
    both = store.info([FUNC, OTHER])
    assert both["entries"] == 5 and both["segments"] == 3

    assert store.clear([FUNC]) == 4
    assert store.lookup(FUNC) == {}
    assert store.info([FUNC]) == {"entries": 0, "bytes": 0, "segments": 0}
    assert store.failures(func_id=FUNC) == []
    assert not any(p.exists() for p in files)
    assert store.read_values(OTHER, store.lookup(OTHER)) == {"p-0": 1}  # untouched
    assert store.clear([FUNC]) == 0


def test_data_survives_a_new_store_object(weird_tmp_path):
    s1 = Store(weird_tmp_path / "cache")
    s1.ingest(FUNC, "run-1", [rec(pid, v) for pid, v in VALUES.items()])
    s1.close()
    s2 = Store(weird_tmp_path / "cache")
    got = s2.read_values(FUNC, s2.lookup(FUNC))
    assert all(same(got[p], v) for p, v in VALUES.items())
    s2.close()


def test_store_open_shares_one_store_until_forget_open(weird_tmp_path):
    from pyjoule._store import forget_open

    first = Store.open(weird_tmp_path / "cache")
    assert Store.open(weird_tmp_path / "cache") is first  # one connection per process
    forget_open()
    again = Store.open(weird_tmp_path / "cache")
    assert again is not first
    assert Store.open(weird_tmp_path / "cache") is again
    forget_open()


# ------------------------------------------------------------------ run registry
def test_run_registry_add_update_get_list(store):
    assert store.get_run("nope") is None
    store.add_run(run_id="r1", func_id=FUNC, name="simulate", host="localhost",
                  backend="pool", run_dir="/x/r1", state="running", total=10, cached=2,
                  done=0, failed=0, workers=2, submitted=100.0, job_ids=["123", "124"],
                  options={"retries": 1, "timeout": None})
    store.add_run(run_id="r0", func_id=OTHER, name="other", state="done", submitted=50.0)
    store.add_run(run_id="r2", func_id=FUNC, name="simulate", state="done", submitted=200.0)

    r1 = store.get_run("r1")
    assert r1["func_id"] == FUNC and r1["name"] == "simulate" and r1["host"] == "localhost"
    assert r1["backend"] == "pool" and r1["run_dir"] == "/x/r1"
    assert (r1["state"], r1["total"], r1["cached"], r1["workers"]) == ("running", 10, 2, 2)
    assert r1["job_ids"] == ["123", "124"]
    assert r1["options"] == {"retries": 1, "timeout": None}
    assert r1["offsets"] == {}

    store.update_run("r1", state="done", done=7, failed=1, finished=150.0,
                     job_ids=["123"], offsets={"w1.rec": 99}, options={"attempt": 1})
    r1 = store.get_run("r1")
    assert (r1["state"], r1["done"], r1["failed"], r1["finished"]) == ("done", 7, 1, 150.0)
    assert r1["job_ids"] == ["123"] and r1["offsets"] == {"w1.rec": 99}
    assert r1["options"] == {"attempt": 1}

    assert [r["run_id"] for r in store.list_runs()] == ["r0", "r1", "r2"]  # by submitted
    assert [r["run_id"] for r in store.list_runs(func_id=FUNC)] == ["r1", "r2"]
    assert [r["run_id"] for r in store.list_runs(state="done")] == ["r0", "r1", "r2"]
    assert [r["run_id"] for r in store.list_runs(func_id=OTHER, state="running")] == []


def test_only_one_process_claims_finishing_a_run(store):
    store.add_run(run_id="r1", func_id=FUNC, state="running", submitted=1.0)
    store.add_run(run_id="r2", func_id=FUNC, state="cancelled", submitted=2.0)
    store.add_run(run_id="r3", func_id=FUNC, state="done", submitted=3.0, finished=4.0)
    other = Store(store.root)  # a second connection, as another process has
    assert store.claim_finish("r1") == "running"
    assert other.claim_finish("r1") is None  # already being finished
    assert store.get_run("r1")["state"] == "finishing"
    assert other.claim_finish("r2") == "cancelled"
    assert store.claim_finish("r3") is None and store.claim_finish("nope") is None
    other.close()


def test_ingest_commits_offsets_with_the_entries(store):
    store.add_run(run_id="r1", func_id=FUNC, state="running", submitted=1.0)
    store.ingest(FUNC, "r1", [rec("p-0", 0)], offsets={"w-1.rec": 120, "sup.rec": 0})
    assert store.get_run("r1")["offsets"] == {"w-1.rec": 120, "sup.rec": 0}


# ---------------------------------------------------------------- many processes
_INGESTER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from pyjoule._store import Store

    root, me, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = Store(root)
    store.add_run(run_id=f"run-{me}", func_id="F" * 32, state="running",
                  submitted=float(me))
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    for batch in range(10):
        recs = []
        for j in range(20):
            i = batch * 20 + j
            pid = f"proc{me}-{i:03d}"
            value = (np.arange(i % 7 + 1, dtype=np.float64) + me) if i % 2 else {
                "me": me, "i": i, "arr": np.full(2, i, dtype=np.int32)}
            recs.append({"pset_id": pid, "status": "done", "value": value,
                         "kwargs": {"me": me, "i": i}, "runtime_s": 0.01,
                         "started": 1.0, "finished": 2.0, "host": "h",
                         "run_id": f"run-{me}"})
        store.ingest("F" * 32, f"run-{me}", recs, offsets={"w.rec": batch})
    store.update_run(f"run-{me}", state="done")
    print("ok")
""")


def _expected(me: int, i: int):
    if i % 2:
        return np.arange(i % 7 + 1, dtype=np.float64) + me
    return {"me": me, "i": i, "arr": np.full(2, i, dtype=np.int32)}


@pytest.mark.slow
def test_concurrent_ingest_from_several_processes(weird_tmp_path):
    root = weird_tmp_path / "cache"
    first = Store(root)
    first.lookup("F" * 32)  # creates the index (a fresh one racing is the xfail below)
    first.close()
    script = weird_tmp_path / "ingest.py"
    script.write_text(_INGESTER)
    go = weird_tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(me), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for me in range(4)]
    try:
        deadline = time.monotonic() + 30
        while not all(_has_run(root, me) for me in range(4)):  # all started, then go
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        go.write_text("")
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err

    store = Store(root)
    fid = "F" * 32
    found = store.lookup(fid)
    want = {f"proc{me}-{i:03d}" for me in range(4) for i in range(200)}
    assert set(found) == want
    assert store.verify_present(found) == found
    values = store.read_values(fid, found)
    assert set(values) == want
    for me in range(4):
        for i in range(200):
            assert same(values[f"proc{me}-{i:03d}"], _expected(me, i))
    ids, cols = store.read_columns(fid, found)
    assert sorted(ids) == sorted(want)
    kw = dict(zip(ids, zip(_columns.to_objects(cols["p:me"]),
                           _columns.to_objects(cols["p:i"]))))
    assert all(kw[f"proc{me}-{i:03d}"] == (me, i) for me in range(4) for i in range(200))
    assert store.info([fid])["entries"] == 800
    runs = store.list_runs(func_id=fid)
    assert [(r["run_id"], r["state"], r["offsets"]) for r in runs] == [
        (f"run-{me}", "done", {"w.rec": 9}) for me in range(4)]
    store.close()


def test_first_use_waits_for_another_writer_of_a_fresh_index(weird_tmp_path):
    """Seen as a race when several processes open a new cache at once: one of them
    gets sqlite3.OperationalError instead of waiting its turn."""
    import sqlite3
    import threading

    store = Store(weird_tmp_path / "cache")
    store.check_writable()
    other = sqlite3.connect(store.root / "index.sqlite", isolation_level=None,
                            check_same_thread=False)
    other.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
    other.execute("BEGIN IMMEDIATE")  # another process mid-write
    other.execute("INSERT INTO scratch VALUES (1)")
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store.ingest(FUNC, "run-1", [rec("p-0", 1)])
        assert store.read_values(FUNC, store.lookup(FUNC)) == {"p-0": 1}
    finally:
        release.join()
        other.close()
        store.close()


def _has_run(root: Path, me: int) -> bool:
    if not (root / "index.sqlite").exists():
        return False
    s = Store(root)
    try:
        return s.get_run(f"run-{me}") is not None
    finally:
        s.close()


# ------------------------------------------------------------------ writability
def test_check_writable_on_an_unwritable_place_raises_cache_error(tmp_path):
    if os.geteuid() == 0:
        # root writes through chmod: use a path that cannot be created at all
        (tmp_path / "file").write_text("a regular file")
        root = tmp_path / "file" / "cache"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)  # 0o500
        root = ro / "cache"
    try:
        store = Store(root)
        with pytest.raises(pj.CacheError) as info:
            store.check_writable()
        assert "PYJOULE_CACHE" in str(info.value)
        assert str(root) in str(info.value)
        assert isinstance(info.value, pj.PyjouleError)
        with pytest.raises(pj.CacheError):  # first use of the database says the same
            store.lookup(FUNC)
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o700)


def test_check_writable_creates_the_directory(weird_tmp_path):
    root = weird_tmp_path / "deep" / "er" / "cache"
    Store(root).check_writable()
    assert root.is_dir()
    assert not [p for p in root.iterdir() if p.name.startswith(".probe")]
