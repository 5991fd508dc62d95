"""tests/slurm_cluster.py: the test SLURM cluster, checked with the real SLURM clients.

There is one cluster per machine (its config is /etc/slurm/slurm.conf), so the test
that changes MaxArraySize and the one with accounting put the default config back
before they end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import slurm_cluster
from conftest import ensure_slurm as _ensure
from slurm_cluster import SlurmCluster, ensure_cluster

USER = "pjhost"  # the user of tests/sshd_server.py, whose jobs will come through ssh


@pytest.fixture(scope="module")
def cluster() -> SlurmCluster:
    return _ensure()


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A folder that belongs to ``USER`` (pytest's tmp_path is root's only)."""
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
        account = pwd.getpwnam(USER)
    path = Path(tempfile.mkdtemp(prefix="pyjoule-slurm-"))
    os.chown(path, account.pw_uid, account.pw_gid)
    yield path
    shutil.rmtree(path)


def test_ensure_cluster_again_is_fast_and_changes_nothing(cluster):
    daemons = {name: slurm_cluster._pids(name) for name in ("munged", "slurmctld", "slurmd")}
    started = time.monotonic()
    again = ensure_cluster()
    elapsed = time.monotonic() - started
    assert again == cluster and again.running()
    assert {name: slurm_cluster._pids(name) for name in daemons} == daemons
    assert elapsed < 1, f"ensure_cluster() on a running cluster took {elapsed:.2f} s"
    conf = cluster.slurm_conf.read_text()
    assert "MaxArraySize=1001\n" in conf and "CPUs=8 " in conf
    assert oct(cluster.slurm_conf.stat().st_mode & 0o777) == "0o644"


@pytest.mark.slow
def test_an_array_job_runs_every_task(cluster, tmp_path):
    job = cluster.sbatch("--array=0-3%2", "--wrap",
                         "echo $SLURM_ARRAY_TASK_ID > out_$SLURM_ARRAY_TASK_ID", cwd=tmp_path)
    assert job.isdigit()
    rows = cluster.wait(job, timeout=30)
    assert sorted((r["array_job_id"], r["array_task_id"], r["state"]) for r in rows) == [
        (job, str(task), "COMPLETED") for task in range(4)]
    for task in range(4):
        assert (tmp_path / f"out_{task}").read_text() == f"{task}\n"
        assert (tmp_path / f"slurm-{job}_{task}.out").exists()


@pytest.mark.slow
def test_scancel_ends_a_running_job(cluster, tmp_path):
    job = cluster.sbatch("--wrap", "sleep 300", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while [r["state"] for r in cluster.squeue(job)] != ["RUNNING"]:
        assert time.monotonic() < deadline, cluster.squeue(job)
        time.sleep(0.1)
    subprocess.run(["scancel", job], check=True)
    assert [r["state"] for r in cluster.wait(job, timeout=20)] == ["CANCELLED"]


def test_a_job_of_another_user_runs_as_that_user(cluster, user_dir):
    job = cluster.sbatch("--wrap", "whoami > who; touch written", user=USER, cwd=user_dir)
    rows = cluster.wait(job, timeout=30)
    assert [(r["state"], r["user"]) for r in rows] == [("COMPLETED", USER)]
    assert (user_dir / "who").read_text() == f"{USER}\n"
    owner = pwd.getpwuid((user_dir / f"slurm-{job}.out").stat().st_uid).pw_name
    assert owner == USER
    # the user sees the queue too
    listed = subprocess.run(["runuser", "-u", USER, "--", "squeue", "-h", "-t", "all",
                             "-j", job, "-o", "%i"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == [job]


@pytest.mark.slow
def test_another_max_array_size_restarts_the_cluster(cluster, tmp_path):
    try:
        small = _ensure(max_array_size=20)
        assert small.running() and not cluster.running()
        with pytest.raises(RuntimeError, match="Invalid job array specification"):
            small.sbatch("--array=0-25", "--wrap", "true", cwd=tmp_path)
        job = small.sbatch("--array=0-19", "--output=/dev/null", "--wrap", "true",
                           cwd=tmp_path)
        rows = small.wait(job, timeout=30)
        assert [r["state"] for r in rows] == ["COMPLETED"] * 20
    finally:
        restored = _ensure()
    assert restored == cluster and cluster.running()
    job = cluster.sbatch("--array=0-25", "--output=/dev/null", "--wrap", "true",
                         cwd=tmp_path)
    assert len(cluster.wait(job, timeout=30)) == 26


@pytest.mark.slow
def test_with_accounting_sacct_records_jobs(cluster, tmp_path):
    try:
        accounted = _ensure(accounting=True)
        assert accounted.running() and not cluster.running()
        job = accounted.sbatch("--output=/dev/null", "--wrap", "exit 3", cwd=tmp_path)
        assert [r["state"] for r in accounted.wait(job, timeout=30)] == ["FAILED"]
        # sacct lags behind squeue by up to a few seconds
        deadline = time.monotonic() + 15
        while (rows := accounted.sacct(job)) != [
                {"JobID": job, "State": "FAILED", "ExitCode": "3:0"}]:
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
    finally:
        _ensure()
    assert cluster.running()
    with pytest.raises(RuntimeError, match="accounting storage is disabled"):
        cluster.sacct(job)
