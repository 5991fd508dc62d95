"""SLURM without a scheduler: the backend's state logic, fed with what ``squeue``,
``sacct`` and the task logs say."""

from __future__ import annotations

import logging
import os
import pickle
import time
from pathlib import Path

import pytest
from slurm_helpers import backend, wave, write_exe, write_tasks

from pyjoule import _slurm, _slurm_task
from pyjoule._backends import _slurm_probe
from pyjoule._backends.slurm import BACKOFF, FIRST_INTERVAL_S, MAX_INTERVAL_S


# ================================================== 7. the backend's state logic
def answer(squeue: dict | None = None, *, claimed=None, pending=None, ends=None,
           logs=None, sacct=None, files=(), error="") -> dict:
    """A probe answer (see _slurm_probe.probe); squeue=None is 'the controller is down'."""
    a = {"squeue": squeue, "error": error, "claimed": claimed or {},
         "pending": pending or {}, "ends": ends or {}, "logs": logs or {},
         "files": [list(f) for f in files]}
    if sacct is not None:
        a["sacct"] = sacct
    return a


@pytest.fixture
def run_dir(weird_tmp_path) -> Path:
    """A run directory with tasks.pkl of p0..p5 (batches of 2: [p0 p1] [p2 p3] [p4 p5])."""
    path = weird_tmp_path / "run"
    write_tasks(path, 6)
    return path


@pytest.fixture(autouse=True)
def default_polls(monkeypatch):
    monkeypatch.delenv("PYJOULE_POLL_INTERVAL", raising=False)


TIME_LIMIT_LOG = ("p4 started\nslurmstepd-localhost: error: *** JOB 101 ON localhost "
                  "CANCELLED AT 2026-12-02T20:40:12 DUE TO TIME LIMIT ***\n")


def test_a_task_timed_out_in_squeue(run_dir):
    b = backend(run_dir, wave())
    b._update(answer({"100_0": ["TIMEOUT", "TimeLimit"], "100_1": ["COMPLETED", "None"]},
                     claimed={"w0": ["000000.100_0", "000001.100_1", "000002.100_1"]},
                     pending={"w0": 0}), ["100_0", "100_1"])
    assert b.states == {"100_0": "TIMEOUT", "100_1": "COMPLETED"}
    assert b.claims == {"w0": {0: "100_0", 1: "100_1", 2: "100_1"}}
    assert not b.alive()
    out = b.orphan_reasons(["p0", "p1", "p3"])
    assert {p: o["reason"] for p, o in out.items()} == \
        {"p0": "timeout", "p1": "timeout", "p3": "lost"}
    assert "100_0 ended TIMEOUT" in out["p0"]["message"]
    assert out["p0"]["log_path"] == os.path.join(str(run_dir), "logs", "100_0.out")
    assert "worker died" in out["p3"]["message"]  # COMPLETED, yet p3 has no record


@pytest.mark.parametrize("state, reason", [
    ("TIMEOUT", "timeout"), ("DEADLINE", "timeout"), ("CANCELLED", "cancelled"),
    ("CANCELLED by 0", "cancelled"), ("PREEMPTED", "preempted"),
    ("NODE_FAIL", "node_failure"), ("BOOT_FAIL", "node_failure"),
    ("OUT_OF_MEMORY", "out_of_memory"), ("FAILED", "lost"), ("COMPLETED", "lost"),
    ("LOST", "lost"), (None, "lost"), ("", "lost")])
def test_reason_for(state, reason):
    assert _slurm.reason_for(state) == reason


def test_a_task_squeue_forgot_whose_log_says_time_limit(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({}, claimed={"w0": ["000000.100_0", "000001.100_1"]},
                     ends={"100_1": "0 done 3"}, logs={"100_0": TIME_LIMIT_LOG}),
              ["100_0", "100_1"])
    assert b.states == {"100_0": "TIMEOUT", "100_1": "COMPLETED"}
    assert not b.alive()
    assert b.orphan_reasons(["p0"])["p0"]["reason"] == "timeout"


@pytest.mark.parametrize("line, state, reason", [
    ("*** JOB 100 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO PREEMPTION ***",
     "PREEMPTED", "preempted"),
    ("*** JOB 100 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO NODE FAILURE ***",
     "NODE_FAIL", "node_failure"),
    ("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=100.batch", "OUT_OF_MEMORY",
     "out_of_memory"),
    ("*** JOB 100 ON n1 CANCELLED AT 2026-01-01T00:00:00 ***", "CANCELLED", "cancelled")])
def test_log_markers(run_dir, line, state, reason):
    b = backend(run_dir, wave(count=1))
    b._update(answer({}, claimed={"w0": ["000000.100_0"]},
                     logs={"100_0": f"some output\n{line}\n"}), ["100_0"])
    assert b.states["100_0"] == state
    assert b.orphan_reasons(["p1"])["p1"]["reason"] == reason


def test_a_task_squeue_forgot_with_an_exit_file(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({}, claimed={"w0": ["000000.100_0", "000001.100_1"]},
                     ends={"100_0": "0 done 3", "100_1": "1 error 0"}), ["100_0", "100_1"])
    assert b.states == {"100_0": "COMPLETED", "100_1": "FAILED"}
    assert not b.alive()


def test_a_task_squeue_forgot_without_any_trace_is_lost(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer({}, claimed={"w0": ["000000.100_0"]}, logs={"100_0": None}), ["100_0"])
    assert b.states == {"100_0": "LOST"}
    assert not b.alive()
    out = b.orphan_reasons(["p0"])["p0"]
    assert out["reason"] == "lost" and "100_0 ended LOST" in out["message"]


def test_sacct_speaks_for_tasks_squeue_forgot(run_dir):
    b = backend(run_dir, wave(count=3))
    b._update(answer({"100_2": ["RUNNING", "None"]},
                     claimed={"w0": ["000000.100_0", "000001.100_1", "000002.100_2"]},
                     sacct={"100_0": ["OUT_OF_MEMORY", "sacct"],
                            "100_1": ["CANCELLED", "sacct"],
                            "100_2": ["PENDING", "sacct"]}),  # stale: squeue knows better
              ["100_0", "100_1", "100_2"])
    assert b.states == {"100_0": "OUT_OF_MEMORY", "100_1": "CANCELLED", "100_2": "RUNNING"}
    assert b.alive()
    assert {p: o["reason"] for p, o in b.orphan_reasons(["p0", "p2"]).items()} == \
        {"p0": "out_of_memory", "p2": "cancelled"}


def test_a_time_limit_killed_task_after_squeue_forgot_it(run_dir, monkeypatch):
    # The worker traps SIGTERM (sent at the time limit) and writes "143 terminated N";
    # SLURM then appends the time-limit line to the log. When squeue has purged the task
    # (MinJobAge, e.g. a client that re-attaches later) its reason must still be
    # 'timeout', from the log (or sacct), not 'lost' from the non-zero exit file.
    b = backend(run_dir, wave(count=1, batch=6, n_batches=1))
    for sub in ("ends", "logs"):
        (run_dir / sub).mkdir()
    (run_dir / "ends" / "100_0").write_text("143 terminated 0\n")
    (run_dir / "logs" / "100_0.out").write_text(TIME_LIMIT_LOG)
    queue = run_dir / "queue" / "w0"
    (queue / "pending").mkdir(parents=True)
    (queue / "claimed").mkdir()
    (queue / "claimed" / "000000.100_0").write_text("")
    got, _ = _slurm_probe.probe(str(run_dir), [], None, False, ["100_0"])
    b._update(got, ["100_0"])
    assert not b.alive()
    assert b.orphan_reasons(["p3"])["p3"]["reason"] == "timeout"


def test_unclaimed_batches_after_a_timed_out_wave(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer({"100_0": ["TIMEOUT", "TimeLimit"]}, claimed={"w0": ["000000.100_0"]},
                     pending={"w0": 2}), ["100_0"])
    assert b.pending_batches == {"w0": 2}
    out = b.orphan_reasons(["p1", "p2", "p5"])
    assert {p: o["reason"] for p, o in out.items()} == \
        {"p1": "timeout", "p2": "timeout", "p5": "timeout"}
    assert "no array task started" in out["p5"]["message"] and out["p5"]["log_path"] is None


def test_unclaimed_batches_when_tasks_stopped_claiming_for_lack_of_time(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer({"100_0": ["COMPLETED", "None"]}, claimed={"w0": ["000000.100_0"]},
                     ends={"100_0": "0 time 1"}, pending={"w0": 2}), ["100_0"])
    assert b.orphan_reasons(["p4"])["p4"]["reason"] == "timeout"


def test_unclaimed_batches_of_a_cancelled_wave(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({"100_0": ["CANCELLED", "None"], "100_1": ["TIMEOUT", "TimeLimit"]},
                     claimed={"w0": ["000000.100_0"]}), ["100_0", "100_1"])
    assert b.orphan_reasons(["p4"])["p4"]["reason"] == "cancelled"


def test_a_wave_no_task_claimed_from_says_where_to_look(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({"100_0": ["FAILED", "NonZeroExitCode"],
                      "100_1": ["FAILED", "NonZeroExitCode"]}), ["100_0", "100_1"])
    out = b.orphan_reasons(["p0"])["p0"]
    assert out["reason"] == "lost"
    assert f"{run_dir}/logs" in out["message"] and "docs/slurm.md" in out["message"]
    # SQLite's WAL does not work across hosts: never tell users to share the cache
    assert "PYJOULE_CACHE" not in out["message"]
    assert "visible to the compute nodes" in out["message"]
    assert "FAILED" in out["message"]


def test_orphan_reasons_find_the_batch_across_task_files_and_waves(run_dir):
    # wave w0 ran tasks.pkl; the retry wave w1 ran p4, p5 and two new psets, in batches
    # of 3 over two files: [p4 p5 q0] [q1]
    (run_dir / "retry.pkl").write_bytes(pickle.dumps([("p4", {}), ("p5", {})]))
    (run_dir / "more.pkl").write_bytes(pickle.dumps([("q0", {}), ("q1", {})]))
    w0 = wave(count=2)
    w1 = wave("w1", job="200", count=2, batch=3, n_batches=2, tasks=("retry.pkl", "more.pkl"))
    b = backend(run_dir, w0, w1)
    b._update(answer({"100_0": ["TIMEOUT", "TimeLimit"], "100_1": ["TIMEOUT", "TimeLimit"],
                      "200_0": ["OUT_OF_MEMORY", "OutOfMemory"],
                      "200_1": ["PREEMPTED", "None"]},
                     claimed={"w0": ["000000.100_0", "000001.100_1", "000002.100_0"],
                              "w1": ["000000.200_1", "000001.200_0"]}),
              ["100_0", "100_1", "200_0", "200_1"])
    out = b.orphan_reasons(["p1", "p4", "p5", "q0", "q1"])
    assert {p: o["reason"] for p, o in out.items()} == {
        "p1": "timeout", "p4": "preempted", "p5": "preempted", "q0": "preempted",
        "q1": "out_of_memory"}
    assert not b.alive()


def test_controller_down_keeps_the_run_going(run_dir, caplog):
    b = backend(run_dir, wave(count=2))
    b._update(answer({"100_0": ["RUNNING", "None"], "100_1": ["RUNNING", "None"]}),
              ["100_0", "100_1"])
    with caplog.at_level(logging.INFO, logger="pyjoule"):
        for _ in range(3):
            b._update(answer(None, error="slurm_load_jobs error: Unable to contact slurm "
                                         "controller (connect failure)"), ["100_0", "100_1"])
            assert b.alive()
        b._update(answer({"100_0": ["COMPLETED", "None"], "100_1": ["RUNNING", "None"]}),
                  ["100_0", "100_1"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "does not answer" in warnings[0].getMessage()
    assert "connect failure" in warnings[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert b.states == {"100_0": "COMPLETED", "100_1": "RUNNING"} and b.alive()


def test_controller_down_at_the_first_look(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer(None, error="boom"), ["100_0"])  # must not raise
    assert b.alive() and b.states == {}


def test_a_hopeless_pending_reason_warns_once_per_job(run_dir, caplog):
    b = backend(run_dir, wave(count=2), wave("w1", job="200", count=1))
    hopeless = {"100_0": ["PENDING", "PartitionConfig"], "100_1": ["PENDING",
                                                                  "PartitionConfig"]}
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        for _ in range(3):
            b._update(answer({**hopeless, "200_0": ["PENDING", "Resources"]}),
                      ["100_0", "100_1", "200_0"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "job 100" in warnings[0] and "PartitionConfig" in warnings[0]
    assert b.alive()  # pending is not an end: the user decides to cancel
    assert b.reasons["100_0"] == "PartitionConfig"


@pytest.mark.parametrize("reason, warns", [
    ("PartitionConfig", True), ("BadConstraints", True), ("DependencyNeverSatisfied", True),
    ("PartitionTimeLimit", True), ("Resources", False), ("Priority", False),
    ("JobArrayTaskLimit", False), ("BeginTime", False),
    ("ReqNodeNotAvail, UnavailableNodes:localhost", False)])  # a node down: it may return
def test_which_pending_reasons_warn(run_dir, caplog, reason, warns):
    b = backend(run_dir, wave(count=1))
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        b._update(answer({"100_0": ["PENDING", reason]}), ["100_0"])
    assert any(r.levelno == logging.WARNING for r in caplog.records) == warns


def test_running_slots_count_workers_of_running_tasks(run_dir):
    b = backend(run_dir, wave(count=3, workers=4), wave("w1", job="200", count=1, workers=2))
    b._update(answer({"100_0": ["RUNNING", "None"], "100_1": ["RUNNING", "None"],
                      "100_2": ["PENDING", "Resources"], "200_0": ["RUNNING", "None"]}),
              ["100_0", "100_1", "100_2", "200_0"])
    assert b.running_slots() == 4 + 4 + 2


def test_polls_back_off_while_nothing_happens(run_dir, monkeypatch):
    b = backend(run_dir, wave(count=1))
    running = answer({"100_0": ["RUNNING", "None"]})
    b._update(running, ["100_0"])  # a change (no state known before): no back-off
    assert b._interval == FIRST_INTERVAL_S
    b._update(running, ["100_0"])
    assert b._interval == FIRST_INTERVAL_S * BACKOFF
    for _ in range(30):
        b._update(running, ["100_0"])
    assert b._interval == MAX_INTERVAL_S  # backed off, up to the cap
    assert time.monotonic() + MAX_INTERVAL_S - 1 < b._next_look
    # results grew: work is moving, so it looks more often again, down to the first
    b._update(answer({"100_0": ["RUNNING", "None"]}, files=[("a.rec", 120)]), ["100_0"])
    assert FIRST_INTERVAL_S <= b._interval < MAX_INTERVAL_S
    for _ in range(10):
        b._update(answer({"100_0": ["RUNNING", "None"]}, files=[("a.rec", 1)]), ["100_0"])
    assert b._interval == FIRST_INTERVAL_S
    # a state change counts as activity too
    for _ in range(5):
        b._update(running, ["100_0"])
    before = b._interval
    b._update(answer({"100_0": ["COMPLETED", "None"]}), ["100_0"])
    assert FIRST_INTERVAL_S <= b._interval < before
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.25")  # a fixed interval wins
    b._update(running, ["100_0"])
    assert b._interval == 0.25


def test_a_local_look_is_one_squeue_for_all_jobs(run_dir, tmp_path, monkeypatch):
    # a fake squeue at the command boundary; the backend runs the probe in-process
    calls = tmp_path / "calls"
    write_exe(tmp_path / "bin" / "squeue", f"""#!/bin/sh
printf '%s\\n' "$*" >> '{calls}'
echo '100_0|RUNNING|None'
echo '100_1|PENDING|Resources'
echo '200_0|COMPLETED|None'
""")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    b = backend(run_dir, wave(count=2), wave("w1", job="200", count=1))
    _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 2)
    assert b.alive()
    assert calls.read_text().splitlines() == ["-h -r -t all -j 100,200 -o %i|%T|%r"]
    assert b.states == {"100_0": "RUNNING", "100_1": "PENDING", "200_0": "COMPLETED"}
    assert b.pending_batches == {"w0": 3} and b.queries == 1
