"""The check that no worker outlives its test (``no_stray_workers``, tests/strays.py):
it fails a test that leaves its own worker behind, here or on the test sshd, and leaves
alone the workers of other sessions on the machine. Each case runs a small test file
in a pytest of its own (pytester), with the suite's conftest."""

from __future__ import annotations

import os
import pwd
import re
import signal
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # most tests here take seconds

TESTS = REPO / "tests"

def _run_inner(pytester, monkeypatch, source: str):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(test_inner=source)
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{REPO}")
    # a left worker still fails its test, after 2 s instead of 10
    monkeypatch.setenv("PJ_TEST_STRAY_WAIT_S", "2")
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _leaked(result) -> list[int]:
    found = re.search(r"worker processes left running: \[([\d, ]+)\]", result.stdout.str())
    return [int(pid) for pid in found.group(1).split(",")] if found else []


KILLED_SCRIPT = """
from helpers import start_sleeper

def test_leaves_a_worker(tmp_path):
    start_sleeper(tmp_path / "study", tmp_path / "cache", {host}).kill()
"""


def test_a_worker_left_by_a_killed_script_fails_its_test(pytester, monkeypatch):
    result = _run_inner(pytester, monkeypatch, KILLED_SCRIPT.format(host=""))
    leaked = _leaked(result)
    try:
        result.assert_outcomes(passed=1, errors=1)
        assert leaked
    finally:
        _kill(leaked)


@pytest.mark.slow
def test_a_worker_left_on_the_test_sshd_fails_its_test(pytester, monkeypatch, sshd):
    """The host's worker is no descendant and has no mark: its run id tells it."""
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    result = _run_inner(pytester, monkeypatch, KILLED_SCRIPT.format(host=repr(sshd.alias)))
    leaked = _leaked(result)
    try:
        result.assert_outcomes(passed=1, errors=1)
        assert leaked
        owners = {psutil.Process(pid).uids().real for pid in leaked}
        assert owners == {pwd.getpwnam(sshd.user).pw_uid}  # the host user's, not ours
    finally:
        _kill(leaked)


OTHER_SESSION = """
import os
from pathlib import Path
from helpers import start_sleeper

def test_meanwhile_someone_else_runs_a_worker():
    elsewhere = Path(os.environ["ELSEWHERE"])
    proc = start_sleeper(elsewhere / "study", elsewhere / "cache",
                         env={"PYJOULE_TEST_SESSION": "another-session"})
    proc.kill()  # adopted by init: not ours by descent either
"""


def test_the_workers_of_another_session_do_not_fail_a_test(pytester, monkeypatch,
                                                           tmp_path):
    monkeypatch.setenv("ELSEWHERE", str(tmp_path))
    try:
        result = _run_inner(pytester, monkeypatch, OTHER_SESSION)
        result.assert_outcomes(passed=1)
    finally:
        _kill(_pids_of(tmp_path / "cache"))


def _pids_of(cache: Path) -> list[int]:
    deadline = time.monotonic() + 10
    pids = []
    while not pids and time.monotonic() < deadline:
        pids = [int(f.read_text().split()[0]) for f in cache.glob("runs/*/worker.pid")
                if f.read_text().strip()]
        time.sleep(0.05)
    return pids
