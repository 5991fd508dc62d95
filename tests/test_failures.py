"""Failures, timeouts, lost workers, Ctrl-C, and bad input rejected before any work."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from helpers import start_script

import pyjoule as pj

from conftest import run_script


def flaky(x):
    if x % 3 == 0:
        raise ValueError(f"bad x={x}")
    print(f"computing {x}")
    return x * 10


def test_failures_are_data_and_raise_at_the_end(cache_dir):
    f = pj.experiment(workers=2)(flaky)
    with pytest.raises(pj.ExperimentError) as info:
        f.sweep(x=range(7))
    err = info.value
    assert "3 of 7 psets" in str(err) and "ValueError" in str(err)
    assert "bad x=" in str(err)  # the first traceback is in the message
    assert sorted(err.failures["x"].tolist()) == [0, 3, 6]
    assert set(err.failures["reason"]) == {"exception"}
    assert err.failures["traceback"].str.contains("raise ValueError").all()
    ds = err.dataset
    assert int(ds.result.notnull().sum()) == 4
    assert np.isnan(ds.result.sel(x=3))  # failed psets are absent
    # the successes are cached: the warn policy returns them without rerunning them
    g = pj.experiment(workers=2, errors="warn")(flaky)
    with pytest.warns(UserWarning, match="3 of 7"):
        ds2 = g.sweep(x=range(7))
    assert int(ds2.result.notnull().sum()) == 4
    h = pj.experiment(workers=2, errors="ignore")(flaky)
    assert int(h.sweep(x=range(7)).result.notnull().sum()) == 4


def test_captured_output_is_in_the_failure_log(cache_dir):
    def noisy(x):
        print("about to fail", x)
        raise RuntimeError("boom")

    f = pj.experiment(workers=1, errors="ignore")(noisy)
    run = f.submit([{"x": 1}])
    run.wait(60)
    assert "about to fail 1" in run.failures["log"].iloc[0]


def test_traceback_names_the_script_file_and_line(cache_dir, weird_tmp_path):
    # a script's functions are pickled by value: cloudpickle 3.1.3 renames their code
    # "<dynamic-code>"; the traceback must still name the file, the line and the source
    out = run_script(weird_tmp_path, """
        import cloudpickle
        import pyjoule as pj

        def helper(x):
            return 1 / x  # the failing line

        @pj.experiment(workers=1, errors="ignore")
        def divide(x):
            return helper(x)

        run = divide.submit([{"x": 0}])
        run.wait(60)
        print("CLOUDPICKLE", cloudpickle.__version__)
        print(run.failures["traceback"].iloc[0])
    """)
    script = str(weird_tmp_path / "script.py")
    assert "<dynamic-code>" not in out.stdout, out.stdout
    assert f'File "{script}", line 6, in helper' in out.stdout, out.stdout
    assert f'File "{script}", line 10, in divide' in out.stdout, out.stdout
    assert "return 1 / x  # the failing line" in out.stdout, out.stdout


def test_failed_psets_run_again_on_the_next_call(cache_dir, tmp_path):
    marker = tmp_path / "fixed"

    def sometimes(x):
        if x == 2 and not os.path.exists(str(marker)):
            raise RuntimeError("not yet")
        return x

    f = pj.experiment(workers=1, errors="ignore")(sometimes)
    assert int(f.sweep(x=[1, 2]).result.notnull().sum()) == 1
    marker.write_text("")
    assert int(f.sweep(x=[1, 2]).result.notnull().sum()) == 2


def sleepy(x):
    if x == 1:
        time.sleep(60)
    return x


@pytest.mark.slow
def test_timeout_fails_only_that_pset(cache_dir):
    f = pj.experiment(workers=2, timeout=1, errors="ignore")(sleepy)
    t0 = time.monotonic()
    run = f.submit([{"x": i} for i in range(5)])
    run.wait(50)
    assert time.monotonic() - t0 < 50
    failures = run.failures
    assert failures["x"].tolist() == [1]
    assert failures["reason"].tolist() == ["timeout"]
    assert failures["error_type"].tolist() == ["TimeoutError"]
    assert run.status()["done"] == 4


def dies(x):
    if x == 2:
        os._exit(3)
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def test_a_dying_worker_loses_only_its_pset(cache_dir):
    f = pj.experiment(workers=2, errors="ignore")(dies)
    ds = f.sweep(x=range(8))
    assert int(ds.result.notnull().sum()) == 6
    fails = pj.experiment(workers=2, errors="ignore")(dies).submit(
        [{"x": i} for i in range(8)])
    fails.wait(60)
    assert sorted(fails.failures["x"]) == [2, 3]
    assert set(fails.failures["reason"]) == {"lost"}


def test_retries_rerun_infrastructure_failures(cache_dir, tmp_path):
    marker = tmp_path / "died-once"

    def dies_once(x):
        if x == 1 and not os.path.exists(str(marker)):
            open(str(marker), "w").close()
            os._exit(1)
        return x

    f = pj.experiment(workers=1, retries=1)(dies_once)
    ds = f.sweep(x=[0, 1, 2])
    assert ds.result.values.tolist() == [0, 1, 2]


def test_unpicklable_return_fails_that_pset_only(cache_dir):
    def returns_lock(x):
        return threading.Lock() if x == 1 else x

    f = pj.experiment(workers=1, errors="ignore")(returns_lock)
    run = f.submit([{"x": 0}, {"x": 1}, {"x": 2}])
    run.wait(60)
    assert run.failures["x"].tolist() == [1]
    assert "could not be pickled" in run.failures["message"].iloc[0]
    assert run.status()["done"] == 2


# ----------------------------------------------------------------- bad input
def target(method, N, seed=0):
    return N


def test_unknown_option_says_did_you_mean():
    with pytest.raises(TypeError, match="Did you mean 'workers'"):
        pj.experiment(worker=2)
    with pytest.raises(pj.OptionError, match="Valid options"):
        pj.experiment(nonsense=1)(target)


def test_bad_option_value():
    with pytest.raises(TypeError, match="errors="):
        pj.experiment(errors="explode")


def test_unknown_pset_key_says_did_you_mean(cache_dir):
    f = pj.experiment(workers=0)(target)
    with pytest.raises(TypeError, match="did you mean 'seed'"):
        f.sweep(method="A", N=1, sed=[1, 2])


def test_missing_required_argument(cache_dir):
    f = pj.experiment(workers=0)(target)
    with pytest.raises(TypeError, match=r"lacks required argument\(s\) \['N'\]"):
        f.sweep(method=["A"])


def test_space_errors_before_work():
    with pytest.raises(ValueError, match="3"):
        pj.zip(a=[1, 2, 3], b=[1, 2])
    with pytest.raises(ValueError, match="'a'"):
        pj.product(pj.grid(a=[1]), pj.grid(a=[2]))


def test_unsupported_parameter_type_names_the_key(cache_dir):
    f = pj.experiment(workers=0)(target)
    with pytest.raises(TypeError, match="method"):
        f.map([{"method": object(), "N": 1}])


def test_unpicklable_function_names_the_global(cache_dir):
    global LOCK
    LOCK = threading.Lock()

    def uses_lock(x):
        with LOCK:
            return x

    f = pj.experiment(workers=1)(uses_lock)
    with pytest.raises(pj.SerializationError, match="'LOCK'"):
        f.sweep(x=[1, 2])


def test_unwritable_cache_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    f = pj.experiment(workers=0, cache=blocker / "cache")(target)
    with pytest.raises(pj.CacheError, match="PYJOULE_CACHE"):
        f.sweep(method="A", N=[1])


# ------------------------------------------------------------------- Ctrl-C
# 200 psets of 0.1 s on 2 workers: about 10 s, so that the signals the tests send 2-3 s
# after "ready" come mid-run (the killed driver's worker finishes the rest meanwhile)
SLOW_SCRIPT = """
    import os, sys, time, pyjoule as pj

    @pj.experiment(workers=2, progress=False)
    def slow(i):
        time.sleep(0.1)
        return i

    print("ready", flush=True)
    try:
        ds = slow.sweep(i=range(200))
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
"""


def _start(folder, source):
    return start_script(folder, source, name="slow.py")


def _count_cached(folder) -> int:
    out = run_script(folder, """
        import pyjoule as pj, time

        @pj.experiment(workers=2, progress=False)
        def slow(i):
            time.sleep(0.1)
            return i

        print(len(slow.table()))
    """)
    return int(out.stdout.strip())


@pytest.mark.slow
def test_ctrl_c_keeps_finished_results_and_leaves_no_process(cache_dir, weird_tmp_path):
    proc = _start(weird_tmp_path, SLOW_SCRIPT)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in out
    kept = _count_cached(weird_tmp_path)
    assert 0 < kept < 200
    # the next call continues where it stopped (the autouse fixture checks no worker
    # process outlived the interrupted driver)
    runs = run_script(weird_tmp_path, "import pyjoule as pj; print(pj.runs().state.tolist())")
    assert "cancelled" in runs.stdout


@pytest.mark.slow
def test_killing_the_driver_loses_nothing_that_finished(cache_dir, weird_tmp_path):
    proc = _start(weird_tmp_path, SLOW_SCRIPT)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(2)
    proc.kill()  # SIGKILL: no chance to clean up; the worker runs on in its own session
    proc.wait(10)
    # a fresh process finds the live run, attaches to it instead of running the psets
    # again, and ends with every result
    done = _start(weird_tmp_path, SLOW_SCRIPT)
    out, err = done.communicate(timeout=120)
    assert "finished" in out, err
    assert _count_cached(weird_tmp_path) == 200
    runs = run_script(weird_tmp_path, "import pyjoule as pj; print(len(pj.runs()))")
    assert runs.stdout.strip() == "1"  # nothing was submitted twice
