"""The portable paths are tested on every commit, not only on a Mac; and the failure
reports hold with the newest cloudpickle the package allows, not only the locked one.

Both run other test files again in a pytest subprocess: the local-engine tests with
``PYJOULE_PORTABLE_ONLY=1`` (``_platform``'s Linux fast paths off: psutil, watcher
threads, polling, as on macOS), and the failure-reporting tests in an environment
with the newest cloudpickle (``uv run --with``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# the local-engine tests that go through _platform (process start times, zombies,
# groups, pidfds, parent death, waitid); test_faults' [linux] cases are the same
# as its [fallback] ones in this mode, so they are left out. Two pytests run them side
# by side (about 1 min instead of 2: they mostly wait for processes); each judges only
# its own workers (tests/strays.py), so neither fails for the other's.
PORTABLE_TESTS = [["tests/test_cancel.py"], ["tests/test_worker.py", "tests/test_faults.py"]]

# the tests of what a failure reports (tracebacks, messages, captured output)
FAILURE_TESTS = ["tests/test_failures.py", "-k",
                 "traceback or failures_are_data or captured_output or unpicklable"]


def _pytest_cmd(argv: list[str], prefix=None) -> list[str]:
    return [*(prefix or [sys.executable, "-m"]), "pytest", "-q", "-p", "no:cacheprovider",
            "-o", "addopts=-ra", *argv]


def _passed(cmd: list[str], proc) -> None:
    """The pytest ``cmd`` passed every test it ran, and ran some."""
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{tail}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail


def _pytest(argv: list[str], env: dict, timeout: float, prefix=None):
    cmd = _pytest_cmd(argv, prefix)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    _passed(cmd, proc)
    return proc


def _pytests_side_by_side(argvs: list[list[str]], env: dict, timeout: float) -> None:
    """One pytest per ``argvs`` item, all at once; each must pass."""
    cmds = [_pytest_cmd(argv) for argv in argvs]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in cmds]
    try:
        # each drains its pipes in a thread of its own (communicate), so none blocks
        with ThreadPoolExecutor(len(procs)) as pool:
            outs = list(pool.map(lambda p: p.communicate(timeout=timeout), procs))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for cmd, proc, (stdout, stderr) in zip(cmds, procs, outs):
        _passed(cmd, subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))


@pytest.mark.slow
def test_local_engine_tests_pass_with_only_the_portable_paths():
    env = dict(os.environ, PYJOULE_PORTABLE_ONLY="1")
    check = subprocess.run([sys.executable, "-c",
                            "from pyjoule import _platform; print(_platform.LINUX)"],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "False"  # the switch works, so the run below means it
    _pytests_side_by_side([[*files, "-k", "not linux"] for files in PORTABLE_TESTS], env,
                          timeout=600)


def _uv() -> str | None:
    return os.environ.get("UV") or shutil.which("uv")


@pytest.mark.slow
def test_failure_reports_with_the_newest_allowed_cloudpickle():
    import cloudpickle

    uv = _uv()
    if uv is None:
        if IN_CI:
            pytest.fail("uv is needed to test the newest cloudpickle (pip install uv)")
        pytest.skip("no uv here")
    prefix = [uv, "run", "--frozen", "--with", "cloudpickle>=3.1.3",
              "--refresh-package", "cloudpickle"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOULE_")}
    version = subprocess.run([*prefix, "python", "-c",
                              "import cloudpickle; print(cloudpickle.__version__)"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if version.returncode != 0 and not IN_CI and "network" in version.stderr.lower():
        pytest.skip(f"PyPI not reachable: {version.stderr[-200:]}")
    assert version.returncode == 0, version.stderr
    newest = version.stdout.strip()
    assert tuple(map(int, newest.split(".")[:3])) >= (3, 1, 3), newest
    assert newest != cloudpickle.__version__ or not cloudpickle.__version__.startswith("3.1.2")
    out = _pytest(FAILURE_TESTS, env, timeout=300, prefix=prefix)
    assert "deselected" in out.stdout  # the -k chose some, not none
