"""End-to-end behaviour of the decorator on this machine: what a user does and sees."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import pyjoule as pj

from conftest import calls, processes, run_script
from conftest import log_call as _log_call


def simulate(method, N, seed=0):
    _log_call(f"{method}-{N}-{seed}")
    return {"rmse": N * 0.1 + seed + (0.5 if method == "PF" else 0.0), "n": N}


def test_sweep_returns_dataset_with_dims_and_caches(cache_dir, call_log):
    f = pj.experiment(workers=2)(simulate)
    ds = f.sweep(method=["EnKF", "PF"], N=[20, 10, 40], seed=range(3))
    assert isinstance(ds, xr.Dataset)
    assert list(ds.rmse.dims) == ["method", "N", "seed"]
    assert list(ds.method.values) == ["EnKF", "PF"]  # first-seen order
    assert list(ds.N.values) == [10, 20, 40]  # numbers sorted
    assert float(ds.rmse.sel({"method": "PF", "N": 40, "seed": 2})) == pytest.approx(6.5)
    assert ds.n.dtype.kind == "i"
    assert len(calls(call_log)) == 18
    assert ds.attrs["func_id"] and "simulate" in ds.attrs["function"]

    again = f.sweep(method=["EnKF", "PF"], N=[20, 10, 40], seed=range(3))
    assert len(calls(call_log)) == 18  # nothing ran
    xr.testing.assert_identical(ds, again)


def test_adding_seeds_runs_only_the_new_ones(cache_dir, call_log):
    f = pj.experiment(workers=2)(simulate)
    f.sweep(method="EnKF", N=[10, 20], seed=range(2))
    ds = f.sweep(method="EnKF", N=[10, 20], seed=range(4))
    assert sorted(calls(call_log)) == sorted(
        [f"EnKF-{n}-{s}" for n in (10, 20) for s in range(2)]
        + [f"EnKF-{n}-{s}" for n in (10, 20) for s in (2, 3)])
    assert ds.sizes == {"N": 2, "seed": 4}
    assert "method" in ds.coords and ds.method.item() == "EnKF"  # scalar coordinate


def test_defaults_are_filled_before_hashing(cache_dir, call_log):
    f = pj.experiment(workers=0)(simulate)
    a = f(method="KF", N=5)
    b = f(method="KF", N=5, seed=0)
    assert a == b == {"rmse": 0.5, "n": 5}
    assert calls(call_log) == ["KF-5-0"]


def test_call_returns_exactly_what_the_function_returned(cache_dir):
    @pj.experiment(workers=1)
    def arrays(n):
        return {"x": np.arange(n), "label": f"n={n}", "nested": {"a": [1, 2]}}

    first = arrays(n=3)
    second = arrays(n=3)
    for value in (first, second):
        np.testing.assert_array_equal(value["x"], np.arange(3))
        assert value["label"] == "n=3" and value["nested"] == {"a": [1, 2]}
    assert arrays.func(n=2)["label"] == "n=2"
    assert arrays.__name__ == "arrays"


def test_in_process_backend_runs_in_this_process(cache_dir):
    @pj.experiment(workers=0)
    def whose(i):
        return os.getpid()

    ds = whose.sweep(i=[1, 2])
    assert set(ds.result.values.tolist()) == {os.getpid()}


@pytest.mark.slow
def test_new_process_takes_results_from_the_cache(cache_dir, weird_tmp_path, call_log):
    script = """
        import os, pyjoule as pj

        @pj.experiment(workers=2)
        def g(a, b=1):
            with open(os.environ["PJ_TEST_CALLS"], "a") as fh:
                fh.write(f"{a}\\n")
            return a * b

        ds = g.sweep(a=[1, 2, 3], b=[1, 10])
        print(float(ds.result.sum()))
    """
    out1 = run_script(weird_tmp_path, script).stdout.strip()
    out2 = run_script(weird_tmp_path, script).stdout.strip()
    assert out1 == out2 == str(float(66))
    assert len(calls(call_log)) == 6  # the second process computed nothing


@pytest.mark.slow
def test_workers_run_the_helper_code_this_process_loaded(cache_dir, weird_tmp_path):
    """A helper module edited on disk but not reloaded (a notebook without a kernel
    restart): workers must run the loaded code the identity describes, or new results
    would be cached under the old identity; after a reload, the new code counts."""
    (weird_tmp_path / "helpers.py").write_text("def g(x):\n    return x + 1\n")
    script = """
        import importlib, pathlib, threading, pyjoule as pj
        import helpers

        # another thread, as in a Jupyter kernel: workers start afresh, not forked
        threading.Thread(target=threading.Event().wait, daemon=True).start()

        @pj.experiment(workers=2)
        def f(x):
            return helpers.g(x)

        print(f.sweep(x=[1, 2]).result.values.tolist())
        pathlib.Path(helpers.__file__).write_text("def g(x):\\n    return x + 100\\n")
        print(f.sweep(x=[1, 2, 3]).result.values.tolist())
        importlib.reload(helpers)
        print(f.sweep(x=[1, 2, 3]).result.values.tolist())
    """
    lines = run_script(weird_tmp_path, script).stdout.split("\n")
    assert lines[:3] == ["[2, 3]", "[2, 3, 4]", "[101, 102, 103]"]


@pytest.mark.slow
def test_editing_the_function_recomputes_but_a_comment_does_not(cache_dir, weird_tmp_path,
                                                                 call_log):
    body = """
        import os, pyjoule as pj

        @pj.experiment(workers=1)
        def g(a):
            {comment}
            with open(os.environ["PJ_TEST_CALLS"], "a") as fh:
                fh.write(f"{{a}}\\n")
            return a * {factor}

        print(int(g.sweep(a=[1, 2]).result.sum()))
    """
    assert run_script(weird_tmp_path, body.format(comment="", factor=2)).stdout.strip() == "6"
    assert run_script(weird_tmp_path, body.format(comment="# tuned", factor=2)).stdout.strip() \
        == "6"
    assert len(calls(call_log)) == 2
    proc = run_script(weird_tmp_path, body.format(comment="", factor=3),
                      env={"PYJOULE_LOG_LEVEL": "INFO"})
    assert proc.stdout.strip() == "9"
    assert len(calls(call_log)) == 4
    assert "`g` changed" in proc.stderr  # one log line says what changed


def test_union_of_spaces_is_ragged_and_sparse_when_large(cache_dir):
    @pj.experiment(workers=2)
    def h(method, **tuning):
        return sum(tuning.values())

    space = (pj.grid(method="A", alpha=[1, 2, 3])
             + pj.grid(method="B", beta=list(range(10)), gamma=list(range(10))))
    ds = h.map(space)
    assert set(ds.result.dims) == {"method", "alpha", "beta", "gamma"}
    # missing parameters are labelled None
    assert None in ds.alpha.values.tolist() and None in ds.beta.values.tolist()
    # 2 * 4 * 11 * 11 = 968 cells for 103 psets: more than 8x -> sparse
    import sparse

    assert isinstance(ds.result.data, sparse.COO)
    dense = h.map(space, sparse=False)
    assert isinstance(dense.result.data, np.ndarray)
    assert float(dense.result.sel({"method": "A", "alpha": 3, "beta": None, "gamma": None})) == 3
    assert int(dense.result.notnull().sum()) == 103
    forced = h.map(pj.grid(method="A", alpha=[1, 2]), sparse=True)
    assert isinstance(forced.result.data, sparse.COO)


@pytest.mark.parametrize("labels, kinds", [
    (["A", 3], ["str", "int"]),         # a union of spaces mixing strings and numbers
    ([True, 2], ["bool", "int"]),       # True is not 1 (the hash keeps them apart too)
    ([1, 2], ["int64", "int64"]),
    ([0.5, 2], ["float64", "float64"]),
])
def test_coordinate_labels_keep_their_types(cache_dir, labels, kinds):
    f = pj.experiment(workers=0)(lambda option: 1.0)
    ds = f.map(pj.grid(option=labels[:1]) + pj.grid(option=labels[1:]))
    assert [type(v).__name__ for v in ds.option.values] == kinds
    assert float(ds.result.sel({"option": labels[1]})) == 1.0


def test_duplicates_run_once(cache_dir, call_log):
    f = pj.experiment(workers=2)(simulate)
    space = [dict(method="KF", N=1), dict(method="KF", N=1, seed=0), dict(N=1, method="KF")]
    with pytest.warns(UserWarning, match="2 of the 3 psets .* seed=range") as caught:
        ds = f.map(space)
    assert len(caught) == 1 and caught[0].filename == __file__  # at the user's line
    assert calls(call_log) == ["KF-1-0"]
    assert float(ds.rmse) == pytest.approx(0.1)


def test_array_returns_add_dimensions(cache_dir):
    @pj.experiment(workers=0, dims={"trace": ("t",)})
    def traj(k):
        return {"trace": np.arange(4) * k, "other": np.ones((2, 3)) * k}

    ds = traj.sweep(k=[1, 2])
    assert ds.trace.dims == ("k", "t")
    assert ds.other.dims == ("k", "other_dim_0", "other_dim_1")
    np.testing.assert_array_equal(ds.trace.sel(k=2).values, [0, 2, 4, 6])


def test_nan_returned_stays_a_value_and_scalar_returns_use_result(cache_dir):
    @pj.experiment(workers=0)
    def maybe(x):
        return float("nan") if x == 2 else x

    ds = maybe.sweep(x=[1, 2, 3])
    assert list(ds.data_vars) == ["result"]
    assert np.isnan(ds.result.sel(x=2))
    table = maybe.table()
    assert len(table) == 3  # the NaN is a cached result, not a failure


def test_table_has_bookkeeping_columns(cache_dir):
    f = pj.experiment(workers=2)(simulate)
    f.sweep(method=["A", "B"], N=[1, 2])
    table = f.table()
    assert len(table) == 4
    for col in ("method", "N", "seed", "rmse", "n", "_key", "_func_id", "_status",
                "_runtime_s", "_host", "_started", "_finished", "_run_id"):
        assert col in table.columns, col
    assert (table["_status"] == "done").all()
    assert str(table["_finished"].dt.tz) == "UTC"
    assert len(f.table(pj.grid(method="A", N=[1, 2]))) == 2


def test_load_returns_everything_cached_without_running(cache_dir, call_log):
    f = pj.experiment(workers=2)(simulate)
    f.sweep(method=["A"], N=[1, 2], seed=[0, 1])
    f.sweep(method=["B"], N=[3], seed=[0])
    before = len(calls(call_log))
    ds = pj.load(f)
    assert len(calls(call_log)) == before
    assert set(ds.method.values.tolist()) == {"A", "B"}
    assert int(ds.rmse.notnull().sum()) == 5
    assert list(ds.N.values) == [1, 2, 3]


def test_cache_info_and_clear_cache(cache_dir):
    f = pj.experiment(workers=0)(simulate)
    f.sweep(method="A", N=[1, 2, 3])
    info = f.cache_info()
    assert info["entries"] == 3 and info["bytes"] > 0
    assert f.clear_cache() == 3
    assert f.cache_info()["entries"] == 0


def test_cache_false_never_stores(tmp_path, monkeypatch, call_log):
    monkeypatch.setenv("PYJOULE_CACHE", str(tmp_path / "should-not-exist"))
    f = pj.experiment(workers=0, cache=False, progress=False)(simulate)
    f.sweep(method="A", N=[1, 2])
    f.sweep(method="A", N=[1, 2])
    assert len(calls(call_log)) == 4
    assert not (tmp_path / "should-not-exist").exists()


def test_explicit_cache_directory_and_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("PYJOULE_CACHE", str(tmp_path / "from-env"))
    f = pj.experiment(workers=0, progress=False)(simulate)
    f(method="A", N=1)
    assert (tmp_path / "from-env" / "index.sqlite").exists()
    g = pj.experiment(workers=0, progress=False, cache=tmp_path / "explicit")(simulate)
    g(method="A", N=1)
    assert (tmp_path / "explicit" / "index.sqlite").exists()


def test_default_cache_is_in_the_project_root_of_the_functions_file(tmp_path, monkeypatch):
    """The cache goes to the project of the file that defines the function, whatever
    the working directory (which here is another folder altogether)."""
    import importlib
    import sys

    monkeypatch.delenv("PYJOULE_CACHE", raising=False)
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "sub" / "pj_cache_root_study.py").write_text(
        "def twice(x):\n    return 2 * x\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.syspath_prepend(str(project / "sub"))
    module = importlib.import_module("pj_cache_root_study")
    try:
        f = pj.experiment(workers=0, progress=False)(module.twice)
        assert f(x=2) == 4
    finally:
        sys.modules.pop("pj_cache_root_study", None)
    assert (project / ".pyjoule" / "index.sqlite").exists()
    assert not (elsewhere / ".pyjoule").exists()


@pytest.mark.slow
def test_submit_returns_a_run_that_survives_the_process(cache_dir, weird_tmp_path):
    f = pj.experiment(workers=2)(simulate)
    run = f.submit(pj.grid(method=["A", "B"], N=[1, 2, 3]))
    assert run.id
    run.wait(timeout=60)
    assert run.done()
    status = run.status()
    assert status["total"] == 6 and status["done"] == 6 and status["pending"] == 0
    assert run.dataset().rmse.shape == (2, 3)
    assert len(run.table()) == 6
    assert run.failures.empty
    runs = pj.runs()
    assert run.id in runs["id"].tolist()

    out = run_script(weird_tmp_path, f"""
        import pyjoule as pj
        run = pj.attach({run.id!r})
        print(run.status()["done"], float(run.dataset().rmse.sum()))
    """).stdout.split()
    assert out[0] == "6"
    assert float(out[1]) == pytest.approx(float(run.dataset().rmse.sum()))


def test_attach_unknown_run_is_a_clear_error(cache_dir):
    with pytest.raises(pj.RunNotFoundError, match="no run 'nope'"):
        pj.attach("nope")


@pytest.mark.slow
def test_concurrent_processes_share_a_cache(cache_dir, weird_tmp_path):
    import subprocess
    import sys
    import textwrap

    script = weird_tmp_path / "share.py"
    script.write_text(textwrap.dedent("""
        import sys, pyjoule as pj

        @pj.experiment(workers=1, progress=False)
        def k(i, who=0):
            return i * 2

        start = int(sys.argv[1])
        ds = k.sweep(i=range(start, start + 60))
        assert int(ds.result.sum()) == sum(2 * i for i in range(start, start + 60))
    """))
    from conftest import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, str(script), str(s)], env=env)
             for s in (0, 30, 60, 90)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    check = run_script(weird_tmp_path, """
        import pyjoule as pj

        @pj.experiment(workers=1, progress=False)
        def k(i, who=0):
            return i * 2

        print(len(k.table()))
    """)
    assert check.stdout.strip() == "150"


def test_limit_runs_only_the_first_missing_psets(cache_dir, call_log, monkeypatch, caplog):
    f = pj.experiment(workers=0)(simulate)
    monkeypatch.setenv("PYJOULE_LIMIT", "2")
    with caplog.at_level("WARNING", logger="pyjoule"):
        ds = f.sweep(method="A", N=[1, 2, 3, 4])
    assert "running only 2 of 4 missing psets" in caplog.text  # holes are not silent
    assert len(calls(call_log)) == 2
    assert int(ds.rmse.notnull().sum()) == 2
    monkeypatch.delenv("PYJOULE_LIMIT")
    f.sweep(method="A", N=[1, 2, 3, 4])
    assert len(calls(call_log)) == 4


def test_config_context_overrides_the_environment(cache_dir, tmp_path, monkeypatch):
    f = pj.experiment(workers=0)(simulate)
    with pj.config(cache=str(tmp_path / "ctx")):
        f(method="A", N=1)
    assert (tmp_path / "ctx" / "index.sqlite").exists()
    assert pj.config.get("cache") == str(cache_dir)  # restored: the env var again
    with pytest.raises(TypeError, match="unknown option"):
        pj.config(cahce="x")


def test_a_damaged_cache_entry_is_recomputed_never_returned(cache_dir, call_log, caplog):
    f = pj.experiment(workers=1)(simulate)
    good = f.sweep(method="A", N=[1, 2, 3])
    segments = list((cache_dir / "data").rglob("*.seg"))
    assert len(segments) >= 1
    for seg in segments:  # flip bytes in place: same size, wrong checksum
        data = bytearray(seg.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 8):
            data[i] ^= 0xFF
        seg.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="pyjoule"):
        again = f.sweep(method="A", N=[1, 2, 3])
    assert "recomputed" in caplog.text
    xr.testing.assert_identical(good, again)
    assert len(calls(call_log)) == 6  # every damaged entry ran again


@pytest.mark.slow
def test_cancel_stops_the_work_and_keeps_what_finished(cache_dir):
    @pj.experiment(workers=2)
    def slow(i):  # 100 psets: 2.5 s of work, cancelled once two have finished
        import time

        time.sleep(0.05)
        return i

    run = slow.submit(pj.grid(i=range(100)))
    import time

    deadline = time.monotonic() + 30
    while run.status()["done"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    run.cancel()
    status = run.status()
    assert run.done()
    assert 2 <= status["done"] < 100
    assert status["failed"] == 100 - status["done"]
    assert set(run.failures["reason"]) == {"cancelled"}
    assert pj.runs().set_index("id").loc[run.id, "state"] == "cancelled"
    # the next call runs only what is missing
    ds = slow.map(pj.grid(i=range(100)))
    assert int(ds.result.notnull().sum()) == 100


def test_result_applies_the_errors_policy(cache_dir):
    def half(x):
        if x % 2:
            raise ValueError("odd")
        return x

    run = pj.experiment(workers=1)(half).submit(pj.grid(x=range(4)))
    with pytest.raises(pj.ExperimentError) as info:
        run.result()
    assert len(info.value.failures) == 2
    assert int(info.value.dataset.result.notnull().sum()) == 2
    with pytest.raises(pj.ExperimentError, match="2 of 4 psets of half failed"):
        pj.attach(run.id).result()  # another process's view names the function too


def test_progress_without_a_terminal_writes_lines(capsys):
    from pyjoule._progress import Progress

    bar = Progress(10, cached=2, enabled=True, label="demo", log_every_s=0)
    bar.update(done=3, failed=1)
    bar.close()
    assert "demo: 6/10 psets (done 3, failed 1, cached 2)" in capsys.readouterr().err
    quiet = Progress(10, enabled=False, log_every_s=0)
    quiet.update(done=5)
    quiet.close()
    assert capsys.readouterr().err == ""


def _supervisor_cmdline(i):
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
        return fh.read().decode(errors="replace")


def test_worker_is_forked_from_a_script_and_started_afresh_beside_threads(cache_dir):
    """A single-threaded caller forks the worker; with other threads alive (a Jupyter
    kernel has several) forking is unsafe, so ``python -m pyjoule.worker`` starts."""
    import threading

    f = pj.experiment(workers=1)(_supervisor_cmdline)
    assert "pyjoule.worker" not in f(i=1)

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert "-m\x00pyjoule.worker" in f(i=2)
    finally:
        stop.set()
        thread.join()


def _my_children() -> list[tuple[int, bytes]]:
    """(pid, state) of this process's children, zombies included."""
    return sorted((pid, state) for pid, ppid, _, state, _ in processes()
                  if ppid == os.getpid())


@pytest.mark.parametrize("start", ["forked", "started afresh"])
def test_map_wait_and_result_leave_no_process_not_even_a_zombie(cache_dir, start):
    """The pool's supervisor exits after it said it is done (its exit overlaps with
    building the Dataset); by the time map, wait or result returns it is reaped."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)  # forking is unsafe beside a thread
    if start == "started afresh":
        thread.start()
    try:
        f = pj.experiment(workers=2, progress=False)(simulate)
        before = _my_children()
        ds = f.sweep(method=["EnKF"], N=[1, 2, 3], seed=range(4))
        assert int(ds.rmse.count()) == 12
        assert _my_children() == before
        run = f.submit(pj.grid(method=["PF"], N=[1, 2], seed=range(3)))
        run.wait()
        assert _my_children() == before
        run = f.submit(pj.grid(method=["PF"], N=[5], seed=range(3)))
        assert int(run.result().rmse.count()) == 3
        assert _my_children() == before
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


def test_deleting_the_cache_between_calls_starts_afresh(cache_dir, call_log):
    import shutil

    f = pj.experiment(workers=1)(simulate)
    f.sweep(method="A", N=[1, 2])
    shutil.rmtree(cache_dir)
    ds = f.sweep(method="A", N=[1, 2])
    assert len(calls(call_log)) == 4  # recomputed, into a new cache
    assert (cache_dir / "index.sqlite").exists()
    assert f.cache_info()["entries"] == 2
    assert int(ds.rmse.notnull().sum()) == 2


def test_a_result_key_that_is_also_a_parameter_gets_its_own_name(cache_dir, caplog):
    @pj.experiment(workers=0, progress=False)
    def echo(i, j=0):
        return {"i": i * 10, "other": j}

    with caplog.at_level("WARNING", logger="pyjoule"):
        ds = echo.sweep(i=[1, 2])
    assert ds.i.values.tolist() == [1, 2]  # the coordinate
    assert ds.i_result.values.tolist() == [10, 20]
    assert any("i_result" in r.getMessage() for r in caplog.records)


def _script(folder, name: str, source: str, env: dict | None = None) -> str:
    """Run ``folder/name`` as a script (its own ``__main__``); return its stdout."""
    import subprocess
    import sys
    import textwrap

    (folder / name).write_text(textwrap.dedent(source))
    full_env = {**os.environ, "PYTHONPATH": str(Path(pj.__file__).parents[1]), **(env or {})}
    proc = subprocess.run([sys.executable, name], cwd=folder, env=full_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip() + proc.stderr


@pytest.mark.slow
def test_two_scripts_with_one_function_name_keep_their_own_results(cache_dir, weird_tmp_path):
    (weird_tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    body = """
        import pyjoule as pj

        @pj.experiment(version="v1", workers=0)
        def simulate(x):
            return x {op}

        print(simulate.sweep(x=[1, 2, 3]).result.values.tolist())
        print(simulate.cache_info()["entries"])
    """
    assert _script(weird_tmp_path, "a.py", body.format(op="* 2")).startswith("[2, 4, 6]")
    assert _script(weird_tmp_path, "b.py", body.format(op="+ 100")).startswith("[101, 102, 103]")
    # another script's f.clear_cache() leaves both alone
    out = _script(weird_tmp_path, "c.py", """
        import pyjoule as pj

        @pj.experiment(version="v1", workers=0)
        def simulate(x):
            return -x

        print(simulate.clear_cache(), simulate.name)
    """)
    assert out.startswith("0 c.simulate")
    assert _script(weird_tmp_path, "a.py", body.format(op="* 2")).splitlines()[:2] == \
        ["[2, 4, 6]", "3"]


@pytest.mark.slow
def test_going_back_to_a_cached_version_says_so_and_recomputes_nothing(cache_dir,
                                                                      weird_tmp_path, call_log):
    body = """
        import os, pyjoule as pj

        @pj.experiment(workers=0)
        def g(a):
            with open(os.environ["PJ_TEST_CALLS"], "a") as fh:
                fh.write(f"{{a}}\\n")
            return a * {factor}

        print(int(g.sweep(a=[1, 2]).result.sum()))
    """
    env = {"PYJOULE_LOG_LEVEL": "INFO"}
    _script(weird_tmp_path, "s.py", body.format(factor=2), env)
    edited = _script(weird_tmp_path, "s.py", body.format(factor=3), env)
    assert "recomputing" in edited and len(calls(call_log)) == 4
    back = _script(weird_tmp_path, "s.py", body.format(factor=2), env)
    assert back.startswith("6") and len(calls(call_log)) == 4
    assert "recomputing" not in back and "cached results are used" in back
    same = _script(weird_tmp_path, "s.py", body.format(factor=2), env)
    assert same.startswith("6") and "since" not in same  # nothing changed since last time


@pytest.mark.parametrize("bad", ["no", "dense", "false", 0, None])
def test_sparse_must_be_true_false_or_auto(cache_dir, call_log, bad):
    f = pj.experiment(workers=0)(simulate)
    with pytest.raises(pj.OptionError, match="sparse=.* is not valid: use True"):
        f.sweep(method="A", N=[1, 2], sparse=bad)
    assert calls(call_log) == []  # before anything ran
    f.sweep(method="A", N=[1, 2])
    with pytest.raises(pj.OptionError, match="is not valid"):
        pj.load(f, sparse=bad)


def test_errors_warn_points_at_the_users_line(cache_dir):
    def half(x):
        if x % 2:
            raise ValueError("odd")
        return x

    f = pj.experiment(workers=0, errors="warn")(half)
    for call in (lambda: f.sweep(x=range(4)), lambda: f.map(pj.grid(x=range(4)))):
        with pytest.warns(UserWarning, match="2 of 4 psets") as record:
            call()
        assert record[0].filename == __file__


def test_submit_of_cached_psets_still_gives_a_run_id(cache_dir, call_log):
    f = pj.experiment(workers=0)(simulate)
    ds = f.sweep(method="A", N=[1, 2, 3])
    run = f.submit(pj.grid(method="A", N=[1, 2, 3]))
    assert isinstance(run.id, str) and run.done() and len(calls(call_log)) == 3
    assert run.status()["cached"] == 3
    again = pj.attach(run.id)
    xr.testing.assert_equal(again.dataset(), ds)
    row = pj.runs().set_index("id").loc[run.id]
    assert row.func_id == ds.attrs["func_id"] and row.finished >= row.submitted
    assert row.state == "done" and row.cached == row.total == 3
    assert f.submit(pj.grid(method="A", N=[1, 2, 3])).id == run.id  # not a new run each time


@pytest.mark.slow
def test_capture_false_shows_what_the_workers_print(cache_dir, weird_tmp_path):
    out = run_script(weird_tmp_path, """
        import pyjoule as pj

        @pj.experiment(workers=2, capture=False)
        def noisy(x):
            print(f"hello from pset {x}")
            return x

        noisy.sweep(x=range(4))
        print("map returned")
    """).stdout.splitlines()
    assert sorted(line for line in out if line.startswith("hello")) == \
        [f"hello from pset {x}" for x in range(4)]
    assert out[-1] == "map returned"  # all of it before map returns


def _blas_threads_here(i):
    from threadpoolctl import threadpool_info

    return max(x["num_threads"] for x in threadpool_info() if x["user_api"] == "blas")


def test_threads_limits_blas_in_the_forked_pool_and_leaves_the_caller_alone(cache_dir):
    """The caller (numpy loaded, its BLAS at its default) forks the pool; ``threads=``
    holds in every worker process, map after map, and the caller's BLAS is untouched."""
    import numpy as np

    default = _blas_threads_here(0)
    if default < 2:
        pytest.skip("needs a BLAS that defaults to more than one thread")
    for threads, offset in ((1, 0), (2, 10), (1, 20)):
        f = pj.experiment(workers=2, threads=threads, progress=False)(_blas_threads_here)
        ds = f.map([{"i": offset + k} for k in range(6)])
        assert set(np.ravel(ds["result"].values)) == {threads}, (threads, ds)
        assert _blas_threads_here(0) == default


@pytest.mark.parametrize("call", ["call", "map", "submit"])
def test_a_call_identifies_the_function_once(cache_dir, monkeypatch, call):
    """Identifying walks the function's code and globals: each call does it once (the
    cache key, the run's by-value modules and a host's requirements share it)."""
    from pyjoule import _identity

    real, seen = _identity.identify, []
    monkeypatch.setattr(_identity, "identify",
                        lambda *a, **k: seen.append(1) or real(*a, **k))
    f = pj.experiment(workers=1, progress=False)(simulate)
    if call == "call":
        f(method="EnKF", N=1)
    elif call == "map":
        f.sweep(method=["EnKF"], N=[1, 2])
    else:
        f.submit(pj.grid(method=["EnKF"], N=[1, 2])).wait()
    assert len(seen) == 1
