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

import pytest

from conftest import REPO

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# the local-engine tests that go through _platform (process start times, zombies,
# groups, pidfds, parent death, waitid); test_faults' [linux] cases are the same
# as its [fallback] ones in this mode, so they are left out (keeps this under ~90 s)
PORTABLE_TESTS = ["tests/test_worker.py", "tests/test_cancel.py", "tests/test_faults.py"]

# the tests of what a failure reports (tracebacks, messages, captured output)
FAILURE_TESTS = ["tests/test_failures.py", "-k",
                 "traceback or failures_are_data or captured_output or unpicklable"]


def _pytest(argv: list[str], env: dict, timeout: float, prefix=None):
    cmd = [*(prefix or [sys.executable, "-m"]), "pytest", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=-ra", *argv]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{tail}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
    return proc


@pytest.mark.slow
def test_local_engine_tests_pass_with_only_the_portable_paths():
    env = dict(os.environ, PYJOULE_PORTABLE_ONLY="1")
    check = subprocess.run([sys.executable, "-c",
                            "from pyjoule import _platform; print(_platform.LINUX)"],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "False"  # the switch works, so the run below means it
    _pytest([*PORTABLE_TESTS, "-k", "not linux"], env, timeout=600)


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
