"""Progress where nobody watches a terminal: a batch job's stderr gets plain lines."""

from __future__ import annotations

import re

import pytest

from conftest import run_script

pytestmark = pytest.mark.slow  # each test runs a script

SCRIPT = """
    import time
    import pyjoule as pj

    @pj.experiment(workers=2, errors="ignore")
    def slow(x):
        time.sleep(0.2)
        if x in (4, 9):
            raise ValueError(x)
        return x

    with pj.config(progress=False):  # three cached before the batch run
        slow.sweep(x=range(3))
    slow.sweep(x=range(20))
    print("finished")
"""

LINE = re.compile(r"^slow: (\d+)/20 psets \(done (\d+), failed (\d+), cached (\d+)\)"
                  r"(?: in ([0-9.]+) s)?, ([0-9.e+]+) psets/s$")


def test_a_batch_run_writes_progress_lines_to_stderr(cache_dir, weird_tmp_path):
    env = {"PYJOULE_PROGRESS": "1", "PYJOULE_PROGRESS_INTERVAL": "0.3",
           "PYJOULE_LOG_LEVEL": ""}  # the default level: the lines are no log records
    out = run_script(weird_tmp_path, SCRIPT, env=env)  # stderr is a pipe, not a tty
    assert "finished" in out.stdout
    lines = [m for m in map(LINE.match, out.stderr.splitlines()) if m]
    assert len(lines) >= 2, out.stderr  # lines while it ran, and the last one
    periodic, last = lines[:-1], lines[-1]
    assert all(m.group(5) is None for m in periodic), out.stderr
    assert last.group(5) is not None, out.stderr  # "in N s": how it ended
    assert last.group(1, 2, 3, 4) == ("20", "15", "2", "3"), out.stderr
    assert float(last.group(6)) > 0
    counts = [int(m.group(1)) for m in lines]
    assert counts == sorted(counts), out.stderr  # only ever forward


def test_progress_false_writes_nothing(cache_dir, weird_tmp_path):
    env = {"PYJOULE_PROGRESS": "0", "PYJOULE_PROGRESS_INTERVAL": "0.3"}
    out = run_script(weird_tmp_path, SCRIPT, env=env)
    assert "psets" not in out.stderr, out.stderr
