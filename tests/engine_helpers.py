"""What the tests of ``executor=`` on real engines (dask, Ray) share: the engine's
package or a skip (a failure in CI, where every engine must be there), and the call log
that the tests' psets append a line to when they start (``x``), from whichever process
runs them (the functions write it themselves: an engine's worker may not import this
module)."""

from __future__ import annotations

import importlib
import os
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """``module``, imported; the test module is skipped without it, except in CI
    (``CI=true``), where a missing engine fails it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {module} for the executor= tests: {exc}", pytrace=False)
        pytest.skip(f"{module} is not installed: {exc}", allow_module_level=True)
        raise  # unreachable: skip raises


def calls(path: Path) -> Counter:
    """How many times each pset started, by its ``x``."""
    if not path.exists():
        return Counter()
    return Counter(int(line) for line in path.read_text().split())


def wait_for_calls(path: Path, n: int, timeout_s: float = 60) -> None:
    """Until at least ``n`` psets have started."""
    deadline = time.monotonic() + timeout_s
    while sum(calls(path).values()) < n:
        assert time.monotonic() < deadline, f"fewer than {n} psets started"
        time.sleep(0.05)


def slow_logged(log: Path):
    """A pset of 0.2 s that logs its start to ``log``."""
    def slow(x):
        with open(log, "a") as fh:
            fh.write(f"{x}\n")
        time.sleep(0.2)
        return x
    return slow


def cancel_once_running(run, log: Path, total: int) -> None:
    """Cancel ``run`` once 3 of its psets have started, then check that no pset starts
    any more (on the engine's workers, whatever ran them) and that not all finished."""
    wait_for_calls(log, 3)
    run.cancel()
    time.sleep(0.3)
    started = sum(calls(log).values())
    time.sleep(1.5)
    assert sum(calls(log).values()) == started < total  # nothing runs on after the cancel
    assert run.status()["done"] < total


def dies_once(log: Path, marker: Path):
    """A function that logs each call and, the first time ``x == 4``, kills the
    worker process running it (``os._exit``): a worker the engine loses once."""
    def dies_once(x):
        with open(log, "a") as fh:
            fh.write(f"{x}\n")
        if x == 4 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        return x
    return dies_once
