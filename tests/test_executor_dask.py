"""``executor=`` on a real dask cluster: a ``LocalCluster`` of 2 worker processes (one
for the module), a notebook kernel that connects to it, and a dask-jobqueue
``SLURMCluster`` on the test SLURM cluster.

The cluster's scheduler gives up on a batch at the first worker that dies with it
(``allowed-failures: 0``, where dask's default is to re-run it 3 times), so that a
killed worker is what dask reports lost, and pyjoule's ``retries=`` is what runs its
psets again.
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap

import pytest
from engine_helpers import calls, cancel_once_running, dies_once, need, slow_logged

import pyjoule as pj

pytestmark = pytest.mark.slow
# imported by the tests, not at collection: distributed's import makes every exception
# class defined by then picklable (tblib), which other tests check is not so


@pytest.fixture(scope="module")
def client():
    dask, distributed = need("dask"), need("distributed")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _square(log):
    def square(x):
        with open(log, "a") as fh:
            fh.write(f"{x}\n")
        return x * x
    return square


def test_values_then_everything_from_the_cache(client, cache_dir, tmp_path):
    log = tmp_path / "calls"
    f = pj.experiment(executor=client)(_square(log))
    ds = f.sweep(x=range(30))
    assert ds.result.values.tolist() == [x * x for x in range(30)]
    assert calls(log) == dict.fromkeys(range(30), 1)
    again = f.sweep(x=range(30))
    assert again.result.values.tolist() == ds.result.values.tolist()
    assert sum(calls(log).values()) == 30  # nothing ran, nothing was submitted


def test_a_failing_pset_fails_alone(client, cache_dir):
    def picky(x):
        if x == 3:
            raise ValueError("not 3")
        return x

    run = pj.experiment(executor=client, errors="ignore", batch=4)(picky).submit(
        [{"x": x} for x in range(10)])
    run.wait(60)
    failures = run.failures
    assert failures["x"].tolist() == [3]
    assert failures["reason"].tolist() == ["exception"]
    assert failures["error_type"].tolist() == ["ValueError"]
    assert run.status()["done"] == 9


def test_a_killed_worker_loses_its_batch_and_retries_run_only_that(client, cache_dir,
                                                                   tmp_path):
    log, marker = tmp_path / "calls", tmp_path / "died"
    # batches of 3 (0-2, 3-5...): the worker running 3, 4, 5 dies at 4
    f = pj.experiment(executor=client, batch=3, errors="ignore")(dies_once(log, marker))
    run = f.submit([{"x": x} for x in range(12)])
    run.wait(120)
    failures = run.failures
    # dask reports lost every batch the dead worker held: the one running, and any
    # queued behind it there (those never started)
    lost = set(failures["x"])
    assert {3, 4, 5} <= lost
    assert all({b, b + 1, b + 2} <= lost for b in lost if b % 3 == 0)
    assert set(failures["reason"]) == {"lost"}
    assert "KilledWorker" in failures["message"].iloc[0]
    assert run.status()["done"] == 12 - len(lost)
    ds = f.sweep(x=range(12))
    assert ds.result.values.tolist() == list(range(12))
    assert {x: n for x, n in calls(log).items() if x not in lost} == \
        dict.fromkeys(set(range(12)) - lost, 1)  # finished psets never ran again

    log2, marker2 = tmp_path / "calls2", tmp_path / "died2"
    g = pj.experiment(executor=client, batch=3, retries=1, version="2")(
        dies_once(log2, marker2))
    assert g.sweep(x=range(12)).result.values.tolist() == list(range(12))
    assert marker2.exists()
    assert calls(log2)[3] == calls(log2)[4] == 2  # the lost batch, once more
    assert all(calls(log2)[x] <= 2 for x in range(12))


@pytest.mark.parametrize("timeout", [None, 60], ids=["in-worker", "forked-for-timeout"])
def test_cancel_stops_the_batches_on_the_workers(client, cache_dir, tmp_path, timeout):
    log = tmp_path / "calls"
    f = pj.experiment(executor=client, batch=10, timeout=timeout)(slow_logged(log))
    run = f.submit([{"x": x} for x in range(40)])
    cancel_once_running(run, log, 40)
    assert sum(client.run(lambda: 1).values()) == 2  # the workers are still up
    ds = f.sweep(x=range(40))
    assert ds.result.values.tolist() == list(range(40))  # the rest runs on a re-call


NOTEBOOK_CELLS = [
    """
    import json, pyjoule as pj
    from dask.distributed import Client
    client = Client({address!r})
    """,
    """
    @pj.experiment(executor=client)
    def cube(x, offset=0):
        return x ** 3 + offset
    """,
    """
    ds = cube.sweep(x=range(6), offset=[0, 1])
    again = cube.submit([dict(x=x, offset=o) for x in range(6) for o in (0, 1)])
    print(json.dumps({{"values": ds.result.values.tolist(), "cached": again.status()}}))
    client.close()
    """,
]


def test_a_function_defined_in_a_notebook(client, cache_dir, tmp_path, tmp_path_factory,
                                         monkeypatch):
    nbformat = need("nbformat")
    nbclient = need("nbclient")
    spec = tmp_path_factory.mktemp("jupyter") / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pyjoule tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parent.parent))
    address = client.scheduler.address
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(textwrap.dedent(cell.format(address=address)))
        for cell in NOTEBOOK_CELLS])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    (out,) = [o for o in nb.cells[-1].outputs if o.output_type == "stream"]
    probe = json.loads(out.text.strip().splitlines()[-1])
    assert probe["values"] == [[x ** 3, x ** 3 + 1] for x in range(6)]
    assert probe["cached"]["cached"] == 12  # the second call ran nothing


# ------------------------------------------------------------- dask-jobqueue
def test_a_slurm_cluster_of_dask_jobqueue(cache_dir, tmp_path):
    from conftest import ensure_slurm

    jobqueue, distributed = need("dask_jobqueue"), need("distributed")
    ensure_slurm()
    logs = tmp_path / "slurm-logs"
    cluster = jobqueue.SLURMCluster(
        cores=1, processes=1, memory="1GB", walltime="00:10:00", queue="debug",
        python=sys.executable, log_directory=str(logs),
        local_directory=str(tmp_path / "dask-worker"),
        scheduler_options={"dashboard_address": ":0"},
        job_script_prologue=[f"cd {shlex.quote(str(tmp_path))}"])
    with cluster, distributed.Client(cluster) as client:
        f = pj.experiment(executor=client)(_square(tmp_path / "calls"))
        assert not client.nthreads()
        run = f.submit([{"x": x} for x in range(8)])  # before any worker: it waits
        cluster.scale(jobs=1)
        run.wait(120)
        assert run.status()["done"] == 8
        ds = f.sweep(x=range(8))  # from the cache
    assert ds.result.values.tolist() == [x * x for x in range(8)]
    assert sum(calls(tmp_path / "calls").values()) == 8
