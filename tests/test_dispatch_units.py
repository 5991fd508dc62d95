"""Dispatch without a pool: planning (cached / in flight / to run), reconciling runs
in flight, retry selection, and which calls ask a backend anything. A real Store in
tmp_path; runs are registered by hand and their backends are counting fakes."""

from __future__ import annotations

import logging
import pickle

import pytest

from pyjoule import _dispatch
from pyjoule._api import Run
from pyjoule._backends.base import Backend
from pyjoule._backends.pool import PoolBackend
from pyjoule._execute import failure_record
from pyjoule._rundir import TASKS, RunDir
from pyjoule._store import Store

FUNC = "f" * 32


def sq(i, scale=1):
    return i * i * scale


SIG = _dispatch.Signature(sq)


def grid(*values):
    return [{"i": i} for i in values]


def ids_of(*values):
    return _dispatch.plan(None, FUNC, SIG, grid(*values)).ids


def done_record(pset_id, i, run_id):
    return {"pset_id": pset_id, "status": "done", "value": i * i, "kwargs": {"i": i},
            "runtime_s": 0.0, "started": 1.0, "finished": 1.0, "run_id": run_id}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache")
    yield s
    s.close()


def cache(store, *values):
    """Cache the psets ``values`` (as a finished run ``r0`` would have)."""
    if store.get_run("r0") is None:
        store.add_run(run_id="r0", func_id=FUNC, state="done", submitted=0.0, finished=0.0)
    ids = ids_of(*values)
    store.ingest(FUNC, "r0", [done_record(p, i, "r0") for p, i in zip(ids, values)])


def started(store, plan_, backend="pool", **options):
    """Mark the run ``plan_`` claimed as started by a backend (no worker runs)."""
    rec = store.get_run(plan_.run_id)
    store.update_run(plan_.run_id, state="running", backend=backend,
                     options=dict(rec["options"], **options))
    return store.get_run(plan_.run_id)


class Counting(Backend):
    """A backend that ran and ended; counts what it is asked."""

    name = "pool"

    def __init__(self, ended=True):
        self.ended, self.calls = ended, []

    def start(self, run_dir, workers, task_files=None):
        self.calls.append(("start", task_files))
        self.ended = False

    def alive(self):
        self.calls.append(("alive",))
        return not self.ended

    def wait(self, timeout_s):
        self.calls.append(("wait",))
        return self.ended

    def cancel(self):
        self.calls.append(("cancel",))


@pytest.fixture
def alive_calls(monkeypatch):
    """Every ``PoolBackend.alive()`` call, answered ``answer[0]``."""
    seen: list[str] = []
    answer = [True]

    def alive(self):
        seen.append(self.run_dir)
        return answer[0]

    monkeypatch.setattr(PoolBackend, "alive", alive)
    return seen, answer


# ---------------------------------------------------------------------- plan
def test_plan_splits_cached_in_flight_and_to_run(store):
    cache(store, 0, 1, 2)
    first = _dispatch.plan(store, FUNC, SIG, grid(3, 4, 5))
    assert first.to_run == [0, 1, 2] and first.in_flight == [] and first.run_id
    plan = _dispatch.plan(store, FUNC, SIG, grid(*range(10)))
    assert set(plan.found) == set(ids_of(0, 1, 2))
    assert [r["run_id"] for r in plan.in_flight] == [first.run_id]
    assert plan.to_run == [6, 7, 8, 9] and plan.run_id not in (None, first.run_id)
    assert store.get_run(plan.run_id)["state"] == "starting"


def test_a_plan_that_finds_everything_cached_writes_nothing(store):
    cache(store, 0, 1)
    plan = _dispatch.plan(store, FUNC, SIG, grid(0, 1))
    assert plan.to_run == [] and plan.run_id is None and len(plan.found) == 2
    assert [r["run_id"] for r in store.list_runs()] == ["r0"]


def test_duplicates_run_once_and_are_named(store):
    with pytest.warns(UserWarning, match="2 of the 5 psets repeat"):
        plan = _dispatch.plan(store, FUNC, SIG, grid(1, 2, 1, 3, 2))
    assert [p["i"] for p in plan.psets] == [1, 2, 3] and plan.to_run == [0, 1, 2]
    assert plan.ids == ids_of(1, 2, 3)


def test_defaults_are_filled_in_and_keyed(store):
    assert _dispatch.plan(None, FUNC, SIG, grid(1)).psets == [{"i": 1, "scale": 1}]
    assert ids_of(1) == _dispatch.plan(None, FUNC, SIG, [{"i": 1, "scale": 1}]).ids


def test_limit_claims_only_that_many_and_says_so(store, caplog):
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        plan = _dispatch.plan(store, FUNC, SIG, grid(*range(10)), limit=3)
    assert plan.to_run == [0, 1, 2] and "running only 3 of 10" in caplog.text
    later = _dispatch.plan(store, FUNC, SIG, grid(*range(10)))
    assert later.to_run == list(range(3, 10))  # the limited ones were never claimed


def test_the_in_flight_split_across_two_processes_stores(store, tmp_path):
    other = Store(tmp_path / "cache")  # a second connection, as another process has
    try:
        a = _dispatch.plan(store, FUNC, SIG, grid(*range(5)))
        b = _dispatch.plan(other, FUNC, SIG, grid(*range(3, 8)))
        c = _dispatch.plan(store, FUNC, SIG, grid(*range(10)))
    finally:
        other.close()
    assert a.to_run == [0, 1, 2, 3, 4] and b.to_run == [2, 3, 4]  # 5, 6, 7
    assert [r["run_id"] for r in b.in_flight] == [a.run_id]
    assert {r["run_id"] for r in c.in_flight} == {a.run_id, b.run_id}
    assert c.to_run == [8, 9]


def test_abandon_releases_the_claim(store):
    plan = _dispatch.plan(store, FUNC, SIG, grid(1, 2))
    _dispatch.abandon(store, plan)
    assert plan.run_id is None and store.list_runs() == []
    assert _dispatch.plan(store, FUNC, SIG, grid(1, 2)).to_run == [0, 1]


# ------------------------------------------------------- judging runs in flight
def test_plan_asks_no_backend_whether_a_run_in_flight_lives(store, alive_calls):
    seen, answer = alive_calls
    started(store, _dispatch.plan(store, FUNC, SIG, grid(1, 2)))
    answer[0] = False  # it is dead: still, plan() neither asks nor finishes it
    plan = _dispatch.plan(store, FUNC, SIG, grid(1, 2, 3))
    assert seen == [] and plan.to_run == [2] and len(plan.in_flight) == 1
    assert plan.in_flight[0]["state"] == "running"


def test_plan_run_leaves_a_live_runs_psets_to_it(store, alive_calls):
    seen, _ = alive_calls
    first = started(store, _dispatch.plan(store, FUNC, SIG, grid(1, 2)))
    plan = _dispatch.plan_run(store, FUNC, SIG, grid(1, 2, 3))
    assert len(seen) == 1  # asked once, by reconcile
    assert [r["run_id"] for r in plan.in_flight] == [first["run_id"]]
    assert plan.to_run == [2]


def test_plan_run_finishes_a_dead_run_and_claims_its_psets(store, alive_calls):
    seen, answer = alive_calls
    answer[0] = False
    first = started(store, _dispatch.plan(store, FUNC, SIG, grid(1, 2)))
    plan = _dispatch.plan_run(store, FUNC, SIG, grid(1, 2, 3))
    assert seen and plan.in_flight == [] and plan.to_run == [0, 1, 2]
    assert store.get_run(first["run_id"])["state"] == "done"


def test_reconcile_returns_the_live_runs_and_counts_the_dead(store, alive_calls):
    _, answer = alive_calls
    live = started(store, _dispatch.plan(store, FUNC, SIG, grid(1)))
    assert _dispatch.reconcile(store, [live]) == ([store.get_run(live["run_id"])], 0)
    answer[0] = False
    assert _dispatch.reconcile(store, [live]) == ([], 1)
    assert _dispatch.reconcile(store, [{"run_id": "gone", "state": None}]) == ([], 1)


# --------------------------------------------------------------------- retry
def _ended_run(store, retries=1):
    """A run of psets 0..3 whose worker ended: 0 done, 1 raised, 2 timed out, 3 lost."""
    plan = _dispatch.plan(store, FUNC, SIG, grid(0, 1, 2, 3))
    rec = started(store, plan, retries=retries, attempt=0)
    rd = RunDir(rec["run_dir"]).make()
    rd.write(TASKS, pickle.dumps(list(zip(plan.ids, plan.psets))))
    ids = plan.ids
    raised = dict(failure_record(ids[1], "ValueError", "boom", "exception"), kwargs={"i": 1})
    late = dict(failure_record(ids[2], "TimeoutError", "late", "timeout"), kwargs={"i": 2})
    store.ingest(FUNC, rec["run_id"], [done_record(ids[0], 0, rec["run_id"]), raised, late])
    return plan, rec


def test_a_retry_runs_again_only_what_failed_for_infrastructure_reasons(store):
    plan, rec = _ended_run(store)
    backend = Counting()
    run = _dispatch.LiveRun(store, rec, backend)
    assert run._maybe_retry()
    (start,) = [c for c in backend.calls if c[0] == "start"]
    assert start == ("start", ["retry-1.pkl"])
    retried = RunDir(rec["run_dir"]).task_list(["retry-1.pkl"])
    assert sorted(p for p, _ in retried) == sorted([plan.ids[2], plan.ids[3]])
    assert store.get_run(rec["run_id"])["options"]["attempt"] == 1


def test_no_retry_is_left_after_the_last_attempt(store):
    _, rec = _ended_run(store, retries=0)
    backend = Counting()
    assert not _dispatch.LiveRun(store, rec, backend)._maybe_retry()
    assert backend.calls == []


# ------------------------------------------------- observing starts no work
def test_status_and_repr_start_no_work_and_done_retries(store):
    plan, rec = _ended_run(store)
    backend = Counting()
    run = Run(store, plan, _dispatch.LiveRun(store, rec, backend), [])
    status = run.status()
    text = repr(run)
    assert not any(c[0] == "start" for c in backend.calls)
    assert status["done"] == 1 and status["failed"] == 2 and "running" in text
    assert store.get_run(rec["run_id"])["state"] == "running"  # a retry is due
    assert not run.done()  # the wait loop's one step: it starts the retry
    assert [c for c in backend.calls if c[0] == "start"] == [("start", ["retry-1.pkl"])]


def test_status_finishes_an_ended_run_without_retries_left(store):
    plan, rec = _ended_run(store, retries=0)
    backend = Counting()
    run = Run(store, plan, _dispatch.LiveRun(store, rec, backend), [])
    status = run.status()
    assert status == {"total": 4, "cached": 0, "pending": 0, "running": 0, "done": 1,
                      "failed": 3}
    assert store.get_run(rec["run_id"])["state"] == "done"
    assert not any(c[0] == "start" for c in backend.calls)


def test_status_finishes_an_ended_run_that_has_nothing_to_retry(store):
    plan, rec = _ended_run(store, retries=2)
    ids = plan.ids
    store.ingest(FUNC, rec["run_id"], [done_record(p, i, rec["run_id"])
                                       for p, i in zip(ids[1:], (1, 2, 3))])
    backend = Counting()
    run = Run(store, plan, _dispatch.LiveRun(store, rec, backend), [])
    assert run.status()["done"] == 4
    assert store.get_run(rec["run_id"])["state"] == "done"
    assert not any(c[0] == "start" for c in backend.calls)


def test_a_follower_whose_copy_is_stale_starts_no_attempt_another_started(store):
    _plan, rec = _ended_run(store, retries=1)
    assert store.claim_attempt(rec["run_id"], 1)  # another follower retried already
    backend = Counting()
    assert not _dispatch.LiveRun(store, rec, backend)._maybe_retry()
    assert backend.calls == []
