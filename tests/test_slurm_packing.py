"""SLURM without a scheduler: packing psets into batches and arrays, and the worker's
batch queue (claimed by concurrent array tasks)."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slurm_helpers import batch_sizes, facts, spec_indices, write_tasks

import pyjoule as pj
from pyjoule import _slurm, _slurm_task


# ================================================================= 5. packing
def test_pack_with_a_batch():
    p = _slurm.pack(1000, workers=4, batch=7, facts=facts())
    assert (p.batch, p.n_batches, p.n_tasks) == (7, 143, 143)
    assert p.arrays == [(0, 143)] and p.array_spec(143, None) == "0-142"
    assert batch_sizes(p) == [7] * 142 + [6]


def test_pack_splits_into_arrays_of_at_most_max_array_size():
    p = _slurm.pack(45, workers=1, batch=1, facts=facts(max_array_size=20))
    assert p.n_tasks == 45
    assert p.arrays == [(0, 20), (20, 20), (40, 5)]
    specs = [p.array_spec(count, None) for _, count in p.arrays]
    assert specs == ["0-19", "0-19", "0-4"]  # never an index above MaxArraySize - 1


def test_pack_a_batch_that_needs_more_jobs_than_the_cluster_keeps():
    f = facts(max_job_count=100)
    with pytest.raises(pj.OptionError) as err:
        _slurm.pack(1000, workers=1, batch=1, facts=f)
    message = str(err.value)
    assert "MaxJobCount=100" in message and "1000 array tasks" in message
    suggested = int(re.search(r"use a batch of at least (\d+)", message)[1])
    p = _slurm.pack(1000, workers=1, batch=suggested, facts=f)  # the suggestion works
    assert p.n_tasks <= 50
    with pytest.raises(pj.OptionError):
        _slurm.pack(1000, workers=1, batch=suggested - 1, facts=f)  # and is the least


def test_pack_automatic_fills_the_partition():
    # 8 CPUs, 2 workers per task: 4 tasks, each taking about four batches
    p = _slurm.pack(1000, workers=2, batch=None, facts=facts(cpus=8))
    assert p.n_tasks == 4 and p.batch == 63 and p.n_batches == 16
    # the partition asked for counts, not the default one
    p = _slurm.pack(10_000, workers=4, batch=None, facts=facts(cpus=8, big=400),
                    partition="big")
    assert p.n_tasks == 100 and p.n_batches == 400
    # never more tasks than one array allows
    p = _slurm.pack(100_000, workers=1, batch=None, facts=facts(cpus=5000, max_array_size=20))
    assert p.n_tasks == 20 and p.arrays == [(0, 20)]


def test_pack_automatic_small_studies():
    p = _slurm.pack(3, workers=16, batch=None, facts=facts(cpus=64))
    assert (p.n_tasks, p.batch, p.n_batches) == (1, 16, 1)  # batch >= workers
    p = _slurm.pack(10, workers=1, batch=None, facts=facts(cpus=8))
    assert p.n_tasks == 8 and p.batch == 1 and p.n_batches == 10
    p = _slurm.pack(1, workers=32, batch=None, facts=facts(cpus=8))  # more workers than CPUs
    assert (p.n_tasks, p.n_batches) == (1, 1)
    with pytest.raises(ValueError):
        _slurm.pack(0, workers=1, batch=None, facts=facts())


def test_pack_automatic_respects_the_throttle():
    p = _slurm.pack(1000, workers=1, batch=None, facts=facts(cpus=64), parallelism=5)
    assert p.n_tasks == 5 and p.array_spec(5, 5) == "0-4%5"


def test_pack_automatic_stays_within_max_job_count():
    # A big partition and a small MaxJobCount: automatic packing must not make an array
    # the cluster refuses; with batch= the same limit gives an OptionError (BUG: the
    # automatic branch ignores MaxJobCount and makes 1001 tasks).
    f = facts(cpus=100_000, max_array_size=1001, max_job_count=100)
    p = _slurm.pack(100_000, workers=1, batch=None, facts=f)
    assert p.n_tasks <= f.max_job_count // 2


def test_throttle_is_shared_among_arrays():
    p = _slurm.pack(100, workers=1, batch=1, facts=facts(max_array_size=30))
    assert len(p.arrays) == 4
    throttles = [spec_indices(p.array_spec(c, 10))[2] for _, c in p.arrays]
    assert throttles == [2, 2, 2, 2] and sum(throttles) <= 10
    assert [spec_indices(p.array_spec(c, 3))[2] for _, c in p.arrays] == [1, 1, 1, 1]
    assert p.array_spec(30, None) == "0-29"


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300_000), workers=st.integers(1, 64),
       batch=st.one_of(st.none(), st.integers(1, 5000)),
       max_array_size=st.integers(1, 2000), max_job_count=st.integers(2, 100_000),
       cpus=st.integers(1, 20_000), parallelism=st.one_of(st.none(), st.integers(1, 500)))
def test_pack_covers_every_pset_exactly_once(n, workers, batch, max_array_size,
                                             max_job_count, cpus, parallelism):
    f = facts(max_array_size=max_array_size, max_job_count=max_job_count, cpus=cpus)
    try:
        p = _slurm.pack(n, workers=workers, batch=batch, facts=f, parallelism=parallelism)
    except pj.OptionError:
        assert batch is not None and math.ceil(n / batch) > max(1, max_job_count // 2)
        return
    assert p.n_psets == n
    assert p.n_batches * p.batch >= n > (p.n_batches - 1) * p.batch
    sizes = batch_sizes(p)
    assert sum(sizes) == n and all(s > 0 for s in sizes)
    # arrays: contiguous offsets, each within MaxArraySize, together n_tasks
    assert sum(c for _, c in p.arrays) == p.n_tasks
    assert [o for o, _ in p.arrays] == [sum(c for _, c in p.arrays[:i])
                                        for i in range(len(p.arrays))]
    assert 1 <= p.n_tasks <= p.n_batches  # no task is started without a batch for it
    for _, count in p.arrays:
        assert 1 <= count <= max_array_size
        first, last, throttle = spec_indices(p.array_spec(count, parallelism))
        assert first == 0 and last == count - 1 <= max_array_size - 1
        if parallelism:
            assert 1 <= throttle <= parallelism
            assert throttle * len(p.arrays) <= max(parallelism, len(p.arrays))
    if batch is not None:
        assert p.batch == batch and p.n_tasks == p.n_batches
    else:
        assert p.batch >= workers
        assert p.n_tasks <= max(1, cpus // workers) and p.n_tasks <= max_array_size
        assert len(p.arrays) == 1
        if parallelism:
            assert p.n_tasks <= parallelism
        if p.batch > workers:  # sized to give each task about four batches
            assert p.n_batches <= 4 * p.n_tasks


def test_packing_100_000_psets_is_fast():
    t0 = time.perf_counter()
    packings = [_slurm.pack(100_000, workers=16, batch=batch, facts=facts(cpus=512))
                for batch in (None, 20, 100)]
    assert time.perf_counter() - t0 < 0.5
    assert [p.n_tasks for p in packings] == [32, 5000, 1000]
    assert [len(p.arrays) for p in packings] == [1, 5, 1]


# ===================================================== 6. the worker's batch queue
def test_make_queue(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    write_tasks(run_dir, 7)
    write_tasks(run_dir, 4, "retry.pkl", "r")
    assert _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl", "retry.pkl"], 3) == 4
    queue = run_dir / "queue" / "w0"
    assert sorted(os.listdir(queue / "pending")) == ["000000", "000001", "000002", "000003"]
    assert os.listdir(queue / "claimed") == []
    assert json.loads((queue / "meta.json").read_text()) == \
        {"tasks": ["tasks.pkl", "retry.pkl"], "batch": 3, "n": 11}
    assert all((run_dir / sub).is_dir() for sub in ("ends", "logs", "results"))


def test_claim_takes_batches_in_order_then_none(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    write_tasks(run_dir, 5)
    _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 2)
    folder = str(run_dir / "queue" / "w0")
    assert [_slurm_task.claim(folder, "9_0"), _slurm_task.claim(folder, "9_1"),
            _slurm_task.claim(folder, "9_0")] == [0, 1, 2]
    assert _slurm_task.claim(folder, "9_0") is None
    assert sorted(os.listdir(os.path.join(folder, "claimed"))) == \
        ["000000.9_0", "000001.9_1", "000002.9_0"]
    assert _slurm_task.claim(str(run_dir / "queue" / "w9"), "9_0") is None  # no such wave


def _claim_all(folder: str, me: str, start, out) -> None:
    start.wait()
    got = []
    while (b := _slurm_task.claim(folder, me)) is not None:
        got.append(b)
    out.put((me, got))


def test_concurrent_claimers_take_each_batch_exactly_once(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    write_tasks(run_dir, 500)
    assert _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 1) == 500
    folder = str(run_dir / "queue" / "w0")
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(folder, f"7_{i}", start, out))
             for i in range(4)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    claimed = [b for got in results.values() for b in got]
    assert len(claimed) == 500 and set(claimed) == set(range(500))  # each exactly once
    names = sorted(os.listdir(os.path.join(folder, "claimed")))
    assert names == sorted(f"{b:06d}.{me}" for me, got in results.items() for b in got)
    assert os.listdir(os.path.join(folder, "pending")) == []
