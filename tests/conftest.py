"""Shared fixtures. Tests that start processes guard themselves: a per-test timeout
(pytest-timeout, in pyproject.toml), faulthandler, and a check that no worker process
outlives its test."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

import pytest

faulthandler.enable()

from helpers import REPO, processes, run_script, uv_project  # noqa: E402,F401 - tests import them from here too


def pytest_sessionstart(session):
    """Compile the environment's missing bytecode once where Python cannot
    (PYTHONDONTWRITEBYTECODE): every fresh interpreter of the suite imports from it."""
    from bytecode_caches import compile_missing

    if sys.dont_write_bytecode:  # else Python writes them on import
        compile_missing()


def pytest_configure(config):
    """Mark this session's processes (tests/strays.py), before any test starts one.

    A shell that starts pytest in the background (``pytest &``, no job control) has it
    ignore SIGINT, which every script a test starts would inherit: the Ctrl-C tests
    would then fail for want of a KeyboardInterrupt. Ctrl-C is restored here."""
    from strays import mark_session

    mark_session()
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Test files that start engines in the test process: concurrent.futures and loky
# executors (loky's threads outlive a broken executor's shutdown), dask's distributed
# (threads that stay, and tblib's pickling of every exception class then defined) and
# Ray (its threads). They run last, so that no other test runs in a process they have
# changed: pyjoule forks its pool only from a single-threaded process, and
# tests/test_call_errors.py checks exceptions that do not pickle.
ENGINE_FILES = ("test_executor.py", "test_executor_dask.py", "test_executor_ray.py")


def pytest_collection_modifyitems(session, config, items):
    """Move the tests of :data:`ENGINE_FILES` to the end, in their order."""
    last = [item for item in items if item.path.name in ENGINE_FILES]
    if last:
        items[:] = [item for item in items if item.path.name not in ENGINE_FILES] + last


@pytest.fixture
def weird_tmp_path(tmp_path: Path) -> Path:
    """A folder whose name has spaces, quotes and a semicolon: every path pyjoule
    builds crosses a command line, and must survive that."""
    path = tmp_path / "a b'c\"d;e"
    path.mkdir()
    return path


@pytest.fixture
def cache_dir(weird_tmp_path: Path, monkeypatch) -> Path:
    """A fresh cache for the test, also as PYJOULE_CACHE for child processes."""
    cache = weird_tmp_path / "cache"
    monkeypatch.setenv("PYJOULE_CACHE", str(cache))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    return cache


@pytest.fixture(autouse=True)
def _close_scripts():
    """What the test started with ``helpers.start_script`` ends with it."""
    from helpers import close_started

    yield
    close_started()


@pytest.fixture(scope="session")
def _worker_owner(tmp_path_factory):
    from strays import Owner

    return Owner(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def no_stray_workers(_worker_owner):
    """Fail a test that leaves a pyjoule worker process running: one of its own
    (tests/strays.py tells them from the machine's others). A worker gets 10 s to end
    (``PJ_TEST_STRAY_WAIT_S``: tests/test_strays.py, whose inner tests do leave one,
    waits less)."""
    from strays import worker_pids

    before = worker_pids()
    _worker_owner.known.clear()  # by pid: a pid may come again
    yield
    deadline = time.monotonic() + float(os.environ.get("PJ_TEST_STRAY_WAIT_S", "10"))
    while (leaked := _worker_owner.ours(worker_pids() - before)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leaked, f"worker processes left running: {sorted(leaked)}"


# ------------------------------------------------------------------ real sshd
@pytest.fixture(scope="session")
def sshd():
    """A real OpenSSH server on 127.0.0.1 (tests/sshd_server.py). In CI a server that
    cannot be started fails the tests that need it; elsewhere they are skipped."""
    from sshd_server import ensure_server

    try:
        return ensure_server()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the test sshd: {exc}")
        pytest.skip(f"no test sshd: {exc}")


@pytest.fixture
def ssh_host(sshd):
    """The test server as a ``pj.Host``; the test's connections are closed after it
    (paramiko's thread would otherwise keep later tests from forking workers)."""
    import pyjoule as pj
    from pyjoule._transport import ssh

    yield pj.Host(sshd.alias, ssh_config=sshd.ssh_config)
    ssh.close_all()


# ------------------------------------------------------------ real SLURM
def ensure_slurm(max_array_size: int = 1001, accounting: bool = False):
    """The test SLURM cluster (tests/slurm_cluster.py) with this config. In CI a cluster
    that cannot be started fails the test; elsewhere it is skipped."""
    from slurm_cluster import ensure_cluster

    try:
        return ensure_cluster(max_array_size, accounting)
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the test SLURM cluster: {exc}")
        pytest.skip(f"no test SLURM cluster: {exc}")


@pytest.fixture
def slurm():
    """The test cluster with its default config; what pyjoule learnt of the cluster
    (asked once per process) is forgotten before and after, since tests change it."""
    from pyjoule._backends import slurm as backend

    backend.reset_facts()
    yield ensure_slurm()
    backend.reset_facts()


def log_call(tag: str) -> None:
    """Called by a test's experiment function: one line per call in the file named by
    ``PJ_TEST_CALLS`` (the ``call_log`` fixture), so tests count what really ran."""
    path = os.environ.get("PJ_TEST_CALLS")
    if path:
        with open(path, "a") as fh:
            fh.write(tag + "\n")


def calls(path: Path) -> list[str]:
    """The calls ``log_call`` wrote."""
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def call_log(tmp_path, monkeypatch):
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("PJ_TEST_CALLS", str(path))
    return path


@pytest.fixture
def remote_project(weird_tmp_path, sshd, monkeypatch):
    """A user's project (locked with real uv) whose study runs on the test host."""
    root = uv_project(weird_tmp_path / "study", "study")
    (root / "physics.py").write_text("def energy(m, v):\n    return 0.5 * m * v * v\n")
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    monkeypatch.setenv("PYJOULE_CACHE", str(root / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    return root
