"""SLURM without a scheduler: SLURM's durations, and what the cluster says of itself
(``scontrol show config``, ``sinfo``; golden and live, see tests/slurm_helpers.py)."""

from __future__ import annotations

import os
import re

import pytest
from slurm_helpers import SBATCH_HELP, captured, pick, sources

from pyjoule import _slurm, _slurm_task

# ======================================================== 3. durations (SLURM time)
DURATIONS = [
    ("5", 300.0),  # minutes
    ("0", 0.0),
    ("05:30", 330.0),  # MM:SS
    ("1:00:00", 3600.0),  # HH:MM:SS (squeue prints H:MM:SS)
    ("12:34:56", 45296.0),
    ("2-0", 2 * 86400.0),  # D-HH
    ("1-02", 93600.0),
    ("1-02:30", 95400.0),  # D-HH:MM
    ("1-02:30:15", 95415.0),  # D-HH:MM:SS
    ("10-00:00:00", 864000.0),
]
NOT_DURATIONS = ["UNLIMITED", "INFINITE", "NOT_SET", "INVALID", "", "1:2:3:4", "x-01",
                 "1-x", "-5", "1.5"]


@pytest.mark.parametrize("text, seconds", DURATIONS)
def test_parse_duration(text, seconds):
    assert _slurm.parse_duration(text) == seconds
    assert _slurm.parse_duration(f"  {text}\n") == seconds


@pytest.mark.parametrize("text", NOT_DURATIONS)
def test_parse_duration_of_what_is_no_time(text):
    assert _slurm.parse_duration(text) is None


# what squeue's %L (time left) prints: [D-]H:MM:SS or MM:SS, or a word
SQUEUE_TIME_LEFT = [("59:58", 3598.0), ("1:00:00", 3600.0), ("23:59:59", 86399.0),
                    ("1-00:00:00", 86400.0), ("3-04:05:06", 273906.0), ("0:05", 5.0)]


@pytest.mark.parametrize("text, seconds", SQUEUE_TIME_LEFT)
def test_worker_duration_of_squeue_time_left(text, seconds):
    assert _slurm_task._duration_s(text) == seconds
    assert _slurm.parse_duration(text) == seconds  # the two agree


@pytest.mark.parametrize("text", NOT_DURATIONS)
def test_worker_duration_of_what_is_no_time(text):
    assert _slurm_task._duration_s(text) is None


@pytest.mark.parametrize("text, seconds", DURATIONS)
def test_worker_duration_never_misreads_a_slurm_time(text, seconds):
    # BUG for "5", "1-02", "1-02:30": _duration_s reads plain minutes as seconds
    # and D-HH[:MM] as [MM:]SS. Either the right number or None, never a wrong one.
    assert _slurm_task._duration_s(text) in (seconds, None)


def test_array_task_id(monkeypatch):
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert _slurm_task.array_task_id() == f"local{os.getpid()}"
    monkeypatch.setenv("SLURM_JOB_ID", "905")
    assert _slurm_task.array_task_id() == "905"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "900")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    assert _slurm_task.array_task_id() == "900_5"  # the array's id, not the task's own job id


# ========================================================= 4. what the cluster says
CONFIG = captured("scontrol-show-config-22.05.txt", ["scontrol", "show", "config"])
SINFO = captured("sinfo-partitions-22.05.txt", ["sinfo", "-h", "-o", "%P|%C"])


def test_parse_facts_of_the_golden_test_cluster():
    f = _slurm.parse_facts(SBATCH_HELP["golden"], CONFIG["golden"], SINFO["golden"])
    assert (f.max_array_size, f.max_job_count, f.accounting) == (1001, 10000, False)
    assert f.partitions == {"debug": 8} and f.default_partition == "debug"
    assert f.cpus(None) == 8 and f.cpus("debug") == 8
    assert "cpus-per-task" in f.options


def _config_value(text: str, key: str) -> str:
    m = re.search(rf"^{key}\s*=\s*(\S+)", text, re.M)
    assert m, key
    return m[1]


@sources("scontrol")
def test_parse_facts_of_scontrol_show_config(source):
    text = pick(CONFIG, source)
    f = _slurm.parse_facts("", text, "")
    assert f.max_array_size == int(_config_value(text, "MaxArraySize"))
    assert f.max_job_count == int(_config_value(text, "MaxJobCount"))
    assert f.accounting == (_config_value(text, "AccountingStorageType")
                            != "accounting_storage/none")
    conf = _slurm.parse_config(text)
    assert conf["ClusterName"] == _config_value(text, "ClusterName")
    assert conf["SLURM_VERSION"].startswith("22.05") or source == "live"


def test_parse_facts_other_limits_and_accounting():
    text = CONFIG["golden"]
    text = re.sub(r"^MaxArraySize\s*=.*$", "MaxArraySize            = 20", text, flags=re.M)
    text = re.sub(r"^MaxJobCount\s*=.*$", "MaxJobCount             = 350", text, flags=re.M)
    text = re.sub(r"^AccountingStorageType\s*=.*$",
                  "AccountingStorageType   = accounting_storage/slurmdbd", text, flags=re.M)
    f = _slurm.parse_facts("", text, "")
    assert (f.max_array_size, f.max_job_count, f.accounting) == (20, 350, True)
    # nothing known: SLURM's defaults
    f = _slurm.parse_facts("", "", "")
    assert (f.max_array_size, f.max_job_count, f.accounting) == (1001, 10000, False)
    assert f.cpus(None) == 1


@pytest.mark.slow
@sources("sinfo")
def test_parse_facts_of_sinfo(source):
    text = pick(SINFO, source)
    f = _slurm.parse_facts("", "", text)
    rows = [line.split("|") for line in text.split()]
    assert f.partitions == {p.rstrip("*"): int(c.split("/")[3]) for p, c in rows}
    assert f.default_partition == next(p[:-1] for p, _ in rows if p.endswith("*"))


def test_partitions_and_their_cpus():
    f = _slurm.parse_facts("", "", "debug*|0/8/0/8\nlong|2/14/0/16\ngpu|0/4/4/8\n\n")
    assert f.partitions == {"debug": 8, "long": 16, "gpu": 8}
    assert f.default_partition == "debug"
    assert f.cpus(None) == 8 and f.cpus("long") == 16
    assert f.cpus("unknown") == 16  # a partition sinfo did not show: the largest
    f = _slurm.parse_facts("", "", "long|0/16/0/16\nshort|0/4/0/4\n")  # no default
    assert f.default_partition is None and f.cpus(None) == 16
