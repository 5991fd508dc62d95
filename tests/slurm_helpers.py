"""Helpers of the SLURM tests without a scheduler (``tests/test_slurm_*.py`` but
``test_slurm.py`` and ``test_slurm_cluster.py``): the pure functions of
``pyjoule._slurm``, the worker's batch queue, the probe and the backend's state logic,
fed with what SLURM prints.

Fast and in-process (a few subprocesses: ``bash``, the probe's ``python3 -c``, and
``sbatch --help`` / ``scontrol show config`` / ``sinfo`` where they exist). The tests
on the real test cluster are in ``tests/test_slurm.py``.

Golden files
------------
``tests/golden/`` pins what pyjoule hands SLURM and what SLURM 22.05 prints:

* ``slurm-job-script.sh``: the job script ``render_script`` writes for awkward values.
* ``sbatch-argv.txt``: the ``sbatch`` command lines of a study split into two arrays,
  one word per line (each array's command separated by a blank line).
* ``sbatch-help-22.05.txt``, ``scontrol-show-config-22.05.txt`` and
  ``sinfo-partitions-22.05.txt``: captured from the test cluster (SLURM 22.05.8), so
  the parsing tests run where SLURM is not installed; where it is, the same tests also
  run on what this machine's commands print.

The first two are compared exactly. After a deliberate change to the script or the
command line, rewrite them with::

    PYJOULE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_slurm_script.py -q

and review the diff (``git diff tests/golden``) before committing it. The captured
SLURM output is not rewritten by the tests (the test cluster's config changes while
other tests run); capture it again by hand, on the test cluster in its default config
(``tests/slurm_cluster.py start``), with ``sbatch --help``, ``scontrol show config``
and ``sinfo -h -o '%P|%C'``.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import subprocess
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule import _slurm
from pyjoule._backends.slurm import SlurmBackend
from pyjoule._slurm import ClusterFacts

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PYJOULE_UPDATE_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    """``text`` must equal ``tests/golden/<name>`` (rewritten with PYJOULE_UPDATE_GOLDEN=1)."""
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with PYJOULE_UPDATE_GOLDEN=1 to write it"
    expected = path.read_text()
    assert text == expected, (f"{name} changed; if that is intended, rerun with "
                              "PYJOULE_UPDATE_GOLDEN=1 and review the diff")


def captured(name: str, argv: list[str]) -> dict:
    """SLURM output: the golden copy (``"golden"``), and the command that gives this
    machine's (``"argv"``, run by :func:`pick` against the test cluster)."""
    return {"golden": (GOLDEN / name).read_text(), "argv": argv}


def sources(name: str):
    """Parametrize a test over the golden copy and the test cluster's live output."""
    return pytest.mark.parametrize("source", ["golden", "live"],
                                   ids=[f"{name}-golden", f"{name}-live"])


def pick(texts: dict, source: str) -> str:
    """The golden text, or what the real command prints on the test cluster (started
    if need be: in CI a cluster that cannot start fails the test, elsewhere skips it)."""
    if source == "golden":
        return texts["golden"]
    from conftest import ensure_slurm

    ensure_slurm()
    proc = subprocess.run(texts["argv"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), (texts["argv"], proc.stderr)
    return proc.stdout


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def facts(max_array_size=1001, max_job_count=10000, cpus=8, partition="debug",
          **partitions) -> ClusterFacts:
    parts = {partition: cpus, **partitions}
    return ClusterFacts(options=set(), max_array_size=max_array_size,
                        max_job_count=max_job_count, partitions=parts,
                        default_partition=partition)


def batch_sizes(p: _slurm.Packing) -> list[int]:
    """How many psets each batch holds: the worker runs tasks[b*batch:(b+1)*batch]."""
    return [len(range(p.n_psets)[b * p.batch:(b + 1) * p.batch]) for b in range(p.n_batches)]


def spec_indices(spec: str) -> tuple[int, int, int | None]:
    """(first index, last index, throttle) of an ``--array`` spec ``A-B[%N]``."""
    m = re.fullmatch(r"(\d+)-(\d+)(?:%(\d+))?", spec)
    assert m, f"not an array spec: {spec!r}"
    return int(m[1]), int(m[2]), int(m[3]) if m[3] else None


SBATCH_HELP = captured("sbatch-help-22.05.txt", ["sbatch", "--help"])


def write_tasks(run_dir: Path, n: int, name: str = "tasks.pkl", prefix: str = "p") -> list:
    tasks = [(f"{prefix}{i}", {"x": i}) for i in range(n)]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / name).write_bytes(pickle.dumps(tasks))
    return tasks


# the backend's state logic
def wave(name="w0", job="100", count=2, batch=2, n_batches=3, tasks=("tasks.pkl",),
         workers=1, offset=0) -> dict:
    return {"wave": name, "tasks": list(tasks), "batch": batch, "n_batches": n_batches,
            "workers": workers, "arrays": [{"job": job, "offset": offset, "count": count}]}


def backend(run_dir: Path, *waves: dict) -> SlurmBackend:
    b = SlurmBackend(pj.Slurm(), ssh=None)
    b.run_dir = str(run_dir)
    b.waves = list(waves)
    return b
