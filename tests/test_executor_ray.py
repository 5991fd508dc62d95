"""``executor="ray"`` on a real Ray instance of this machine (``ray.init(num_cpus=2)``,
once for the module, shut down at its end): values, the cache, a failure alone, a
killed worker with ``retries=1``, cancel. Batches are Ray tasks that Ray does not re-run
itself (``max_retries=0``): a crashed worker is reported, as ``lost``."""

from __future__ import annotations

import os

import pytest
from engine_helpers import calls, cancel_once_running, dies_once, need, slow_logged

import pyjoule as pj

from conftest import run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_up():
    ray = need("ray")  # here, not at collection (every test process would import it)
    saved = os.environ.get("RAY_ENABLE_UV_RUN_RUNTIME_ENV")
    # under `uv run`, Ray would package the working directory for its workers and
    # have uv build an environment per worker: they run this interpreter as it is
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_ENABLE_UV_RUN_RUNTIME_ENV", None)
    else:
        os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = saved


def test_ray_must_be_initialised_first(cache_dir, tmp_path):
    proc = run_script(tmp_path, """
        import pyjoule as pj

        @pj.experiment(executor="ray")
        def double(x):
            return 2 * x

        try:
            double.sweep(x=[1])
        except pj.OptionError as exc:
            print("refused:", exc)
    """)  # a fresh interpreter: this one's Ray may be up, whatever order tests run in
    assert "refused:" in proc.stdout and "ray.init()" in proc.stdout


def test_values_then_everything_from_the_cache(ray_up, cache_dir, tmp_path):
    log = tmp_path / "calls"

    def square(x):
        with open(log, "a") as fh:
            fh.write(f"{x}\n")
        return x * x

    f = pj.experiment(executor="ray")(square)
    ds = f.sweep(x=range(20))
    assert ds.result.values.tolist() == [x * x for x in range(20)]
    assert f.sweep(x=range(20)).result.values.tolist() == ds.result.values.tolist()
    assert calls(log) == dict.fromkeys(range(20), 1)  # the second call ran nothing


def test_a_failing_pset_fails_alone(ray_up, cache_dir):
    def picky(x):
        if x == 3:
            raise ValueError("not 3")
        return x

    run = pj.experiment(executor="ray", errors="ignore", batch=4)(picky).submit(
        [{"x": x} for x in range(10)])
    run.wait(60)
    assert run.failures["x"].tolist() == [3]
    assert run.failures["reason"].tolist() == ["exception"]
    assert run.status()["done"] == 9


def test_a_killed_worker_is_lost_and_retried(ray_up, cache_dir, tmp_path):
    log, marker = tmp_path / "calls", tmp_path / "died"
    fn = dies_once(log, marker)
    f = pj.experiment(executor="ray", batch=3, errors="ignore")(fn)
    run = f.submit([{"x": x} for x in range(12)])
    run.wait(120)
    failures = run.failures
    assert sorted(failures["x"]) == [3, 4, 5]  # the batch of the worker that died
    assert set(failures["reason"]) == {"lost"}
    assert "WorkerCrashedError" in failures["message"].iloc[0]
    marker.unlink()  # the next call's first attempt dies at 4 again
    log.unlink()
    g = pj.experiment(executor="ray", batch=3, retries=1)(fn)
    assert g.sweep(x=range(12)).result.values.tolist() == list(range(12))
    # only the lost batch ran (the rest is cached): 3 and 4 (which died), then all three
    # again on the retry
    assert calls(log) == {3: 2, 4: 2, 5: 1}


def test_cancel_kills_the_running_batches(ray_up, cache_dir, tmp_path):
    log = tmp_path / "calls"
    f = pj.experiment(executor="ray", batch=10)(slow_logged(log))
    run = f.submit([{"x": x} for x in range(40)])
    cancel_once_running(run, log, 40)
