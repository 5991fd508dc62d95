"""executor=: psets handed in batches to a concurrent.futures executor (a stdlib
ProcessPoolExecutor, loky's reusable one), with every promise a backend keeps."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import need

import pyjoule as pj

from conftest import calls, log_call


@pytest.fixture(scope="module")
def pool():
    with cf.ProcessPoolExecutor(2) as ex:
        yield ex


@pytest.fixture(scope="module")
def loky_pool():
    loky = need("loky")  # in CI, a missing loky fails
    ex = loky.get_reusable_executor(max_workers=2)
    yield ex
    # the one in use now (a worker's death made it anew), without making another: its
    # threads would outlive the module, and pyjoule forks a pool only where none run
    for executor in {ex, getattr(loky.reusable_executor, "_executor", None)} - {None}:
        executor.shutdown(wait=True, kill_workers=True)


def square(x, fail=False):
    log_call(str(x))
    if fail and x == 3:
        raise ValueError("three")
    return {"y": x * x}


def test_values_and_cached_psets_never_submitted(cache_dir, call_log, pool):
    f = pj.experiment(square, executor=pool)
    ds = f.sweep(x=range(20))
    assert ds.y.values.tolist() == [x * x for x in range(20)]
    assert sorted(map(int, calls(call_log))) == list(range(20))
    ds = f.sweep(x=range(30))  # only the new ten reach the executor
    assert ds.y.values.tolist() == [x * x for x in range(30)]
    assert sorted(map(int, calls(call_log))) == [*range(20), *range(20, 30)]
    assert pj.runs().iloc[-1]["backend"] == "executor"


def test_a_failing_pset_fails_alone(cache_dir, pool):
    f = pj.experiment(square, executor=pool, errors="ignore")
    run = f.submit(pj.grid(x=range(6), fail=[True])).wait(60)
    ds = run.dataset()
    assert [v == v for v in ds.y.values.ravel()] == [True, True, True, False, True, True]
    failures = run.failures
    assert failures["error_type"].tolist() == ["ValueError"]
    assert failures["reason"].tolist() == ["exception"]


def sleepy(x):
    if x == 1:
        time.sleep(60)
    return x


def test_timeout_kills_the_pset_alone(cache_dir, pool):
    f = pj.experiment(sleepy, executor=pool, timeout=1, errors="ignore", batch=3)
    run = f.submit(pj.grid(x=range(6))).wait(60)
    ds = run.dataset()
    assert [int(v) if v == v else None for v in ds.result.values] == [0, None, 2, 3, 4, 5]
    failures = run.failures
    assert failures["reason"].tolist() == ["timeout"]
    assert failures["error_type"].tolist() == ["TimeoutError"]


def omp(x):
    return int(os.environ["OMP_NUM_THREADS"])


def test_threads_limit_the_workers(cache_dir, pool):
    ds = pj.experiment(omp, executor=pool, threads=3).sweep(x=range(4))
    assert ds.result.values.tolist() == [3, 3, 3, 3]


def killer(x, marker):
    """x == 2 kills its worker process once (the marker says it did), after every
    other pset of the sweep is logged: none is in flight then, so none runs twice."""
    if x == 2 and not os.path.exists(marker):
        deadline = time.monotonic() + 20
        while len(calls(Path(os.environ["PJ_TEST_CALLS"]))) < 5 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        open(marker, "w").close()
        os._exit(1)
    log_call(str(x))
    return x


def test_killed_worker_is_lost_then_retried_alone(cache_dir, call_log, loky_pool,
                                                  tmp_path):
    marker = str(tmp_path / "killed")
    f = pj.experiment(killer, executor=loky_pool, retries=1, batch=1)
    ds = f.sweep(x=range(6), marker=[marker])
    assert ds.result.values.ravel().tolist() == list(range(6))
    assert sorted(map(int, calls(call_log))) == list(range(6))  # each computed once
    assert os.path.exists(marker)


def dies(x):
    if x == 0:
        os._exit(1)
    time.sleep(0.2)
    return x


def test_broken_stdlib_pool_ends_the_run_with_the_rest_lost(cache_dir):
    """A stdlib pool is broken for good by a worker's death: the batches in flight
    and those it refuses (the retry's too) are recorded lost; nothing hangs."""
    with cf.ProcessPoolExecutor(2) as ex:
        f = pj.experiment(dies, executor=ex, retries=1, batch=1, errors="ignore")
        run = f.submit(pj.grid(x=range(8))).wait(60)
        ds = run.dataset()
    failures = run.failures
    assert 0 in failures["x"].tolist()
    assert set(failures["reason"]) == {"lost"}, failures.to_dict("records")
    assert failures["message"].str.contains("executor").all()
    ok = int(ds.result.notnull().sum()) if "result" in ds else 0
    assert ok + len(failures) == 8


def slow(x):
    time.sleep(0.15)
    return x


def test_submit_returns_at_once_and_cancel_stops_the_rest(cache_dir, pool):
    f = pj.experiment(slow, executor=pool, batch=1)
    t0 = time.monotonic()
    run = f.submit(pj.grid(x=range(20)))
    assert time.monotonic() - t0 < 2  # not the 3 s the psets take
    while run.status()["done"] < 2:
        time.sleep(0.05)
    partial = run.dataset()
    assert 2 <= int(partial.result.notnull().sum()) < 20
    run.cancel()
    assert run.done()
    done = int(run.dataset().result.notnull().sum())
    assert done < 20
    ds = f.sweep(x=range(20))  # the rest run now, the finished ones are cached
    assert ds.result.values.tolist() == list(range(20))


def test_attach_from_another_process_is_a_clear_error(cache_dir, pool):
    f = pj.experiment(slow, executor=pool, batch=1)
    run = f.submit(pj.grid(x=range(20)))
    try:
        code = ("import pyjoule as pj, sys\n"
                "try:\n    pj.attach(sys.argv[1])\n"
                "except pj.PyjouleError as e:\n    print(e)\n")
        out = subprocess.run([sys.executable, "-c", code, run.id], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert "lives only in the Python process that owns the executor" in out
        assert "in the cache" in out
        assert pj.attach(run.id).id == run.id  # in this process, it is attached
    finally:
        run.cancel()


def test_option_errors(cache_dir, pool):
    with pytest.raises(pj.OptionError, match="executor=.*not valid.*concurrent.futures"):
        pj.experiment(square, executor=object())
    with pytest.raises(pj.OptionError, match="pick one"):
        pj.experiment(square, executor=pool, host="somewhere").sweep(x=[1])
    with pytest.raises(pj.OptionError, match="the engine's workers decide"):
        pj.experiment(square, executor=pool, workers=4).sweep(x=[1])
    f = pj.experiment(square, executor=pool)
    with pytest.raises(pj.OptionError, match="pick one"):
        f.options(slurm={"time": "1:00"}).sweep(x=[1])
    assert f.options(executor=None, workers=1).sweep(x=[2]).y.item() == 4
    with pj.config(executor=pool):
        assert pj.config.get("executor") is pool
        assert pj.experiment(square).sweep(x=[3]).y.item() == 9
    assert pj.config.get("executor") is None
    assert pj.experiment(square).options(executor=pool).sweep(x=[5]).y.item() == 25
    assert pj.runs()["backend"].tolist()[-3:] == ["pool", "executor", "executor"]


def test_building_a_dataset_imports_no_dask_or_ray(cache_dir):
    code = ("import sys, concurrent.futures as cf, pyjoule as pj\n"
            "def f(x):\n    return x\n"
            "if __name__ == '__main__':\n"
            "    with cf.ProcessPoolExecutor(1) as ex:\n"
            "        pj.experiment(f, executor=ex).sweep(x=[1, 2])\n"
            "    print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'dask', 'distributed', 'ray'}))\n")
    script = cache_dir.parent / "script.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


SCRIPT = '''
import concurrent.futures as cf, os, sys, time
import pyjoule as pj

def slow(x):
    with open(os.environ["PJ_TEST_CALLS"], "a") as fh:
        fh.write(f"{x}\\n")
    time.sleep(0.2)
    return x

if __name__ == "__main__":
    with cf.ProcessPoolExecutor(2) as ex:
        f = pj.experiment(slow, executor=ex, batch=1)
        if sys.argv[1] == "submit":
            run = f.submit(pj.grid(x=range(30)))
            while run.status()["done"] < 4:
                time.sleep(0.05)
            sys.exit(0)  # the run is in flight: cancelled at exit, settled next time
        print(f.sweep(x=range(30)).result.values.tolist())
'''


def test_a_run_in_flight_at_exit_is_settled_by_the_next_call(cache_dir, call_log):
    script = cache_dir.parent / "exits.py"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, str(script), "submit"], timeout=60, check=True)
    first = set(calls(call_log))
    assert 4 <= len(first) < 30
    out = subprocess.run([sys.executable, str(script), "sweep"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == str(list(range(30)))
    everything = calls(call_log)
    assert set(map(int, everything)) == set(range(30))
    assert len(everything) - 30 <= 4  # again at most the batches in flight at exit


def test_another_process_follows_the_run_and_can_cancel_it(cache_dir, pool):
    f = pj.experiment(slow, executor=pool, batch=1)
    run = f.submit(pj.grid(x=range(12)))
    tests = str(Path(__file__).parent)
    code = (f"import sys; sys.path.insert(0, {tests!r}); import pyjoule as pj\n"
            "from test_executor import slow\n"
            "print(pj.experiment(slow).sweep(x=range(12)).result.values.tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == str(list(range(12)))  # waited for this run's psets
    assert run.wait(30).status()["done"] == 12

    run = f.submit(pj.grid(x=range(100, 140)))
    status = subprocess.run([sys.executable, "-m", "pyjoule", "status", run.id],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    cancel = subprocess.run([sys.executable, "-m", "pyjoule", "cancel", run.id],
                            capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    assert run.wait(30).status()["done"] < 40
    assert pj.runs().set_index("id").loc[run.id, "state"] == "cancelled"


CTRL_C = '''
import concurrent.futures as cf, sys, time
import pyjoule as pj

def slow(x):
    time.sleep(0.2)
    return x

if __name__ == "__main__":
    with cf.ProcessPoolExecutor(2) as ex:
        f = pj.experiment(slow, executor=ex, batch=1)
        print("ready", flush=True)
        try:
            f.sweep(x=range(200))
        except KeyboardInterrupt:
            print(pj.runs().iloc[-1]["state"], len(f.table()), flush=True)
'''


def test_ctrl_c_cancels_the_run(cache_dir, weird_tmp_path):
    from helpers import start_script

    proc = start_script(weird_tmp_path, CTRL_C, name="ctrl_c.py")
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    state, cached = out.split()
    assert state == "cancelled", err
    assert 0 < int(cached) < 200


def test_a_function_a_worker_cannot_load_fails_each_pset_saying_so():
    """run_batch on a worker whose environment lacks a module the payload needs."""
    import pickle
    import types

    from pyjoule import _batch, _records

    module = types.ModuleType("pj_missing_on_workers")
    exec("class Thing:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        blob = pickle.dumps({"func": module.Thing(), "threads": 1, "capture": True,
                             "timeout_s": None})
    finally:
        del sys.modules[module.__name__]
    data = _batch.run_batch(blob, pickle.dumps([("p1", {}), ("p2", {"x": 1})]))
    records, _ = _records.parse(data)
    assert [r["pset_id"] for r in records] == ["p1", "p2"]
    assert {r["status"] for r in records} == {"failed"}
    assert all("could not be loaded on the engine's worker" in r["message"]
               and "pj_missing_on_workers" in r["message"] for r in records)


def test_a_thread_pool_runs_them_and_leaves_the_callers_thread_settings(cache_dir):
    before = os.environ.get("OMP_NUM_THREADS")
    with cf.ThreadPoolExecutor(2) as ex:
        f = pj.experiment(omp, executor=ex, threads=2, capture=False)
        assert f.sweep(x=range(40)).result.values.tolist() == [2] * 40
    assert os.environ.get("OMP_NUM_THREADS") == before
