"""SLURM without a scheduler: the probe (one ``python3 -c`` on the cluster that reads a
run directory and asks ``squeue``/``sacct``), fed with fake commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_helpers import backend, wave, write_exe

from pyjoule._backends import _slurm_probe
from pyjoule._backends.slurm import _probe_source


# ======================================================================== 8. the probe
def make_probe_dir(run_dir: Path) -> None:
    q = run_dir / "queue"
    for wave_name, pending, claimed in (("w0", [], ["000000.100_0", "000001.100_1"]),
                                        ("w1", ["000001", "000002"], ["000000.200_0"])):
        (q / wave_name / "pending").mkdir(parents=True)
        (q / wave_name / "claimed").mkdir()
        for name in pending:
            (q / wave_name / "pending" / name).write_text("")
        for name in claimed:
            (q / wave_name / "claimed" / name).write_text("")
    (run_dir / "ends").mkdir()
    (run_dir / "ends" / "100_0").write_text("0 done 1\n")
    (run_dir / "ends" / "100_1").write_text("143 terminated 0\n")
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "200_0.out").write_bytes(b"x" * 10_000 + b"\nthe end\n")
    (run_dir / "results").mkdir()
    (run_dir / "results" / "a.rec").write_bytes(b"0123456789")
    (run_dir / "results" / "b.rec").write_bytes(b"\x00\xffbinary\n")


def test_probe_reads_claims_pending_ends_logs_and_new_result_bytes(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    make_probe_dir(run_dir)
    got, chunks = _slurm_probe.probe(str(run_dir), [], {"a.rec": 4, "b.rec": 9},
                                     False, ["100_0", "100_1", "200_0", "200_1"])
    assert got["squeue"] == {} and got["error"] == ""
    assert got["claimed"] == {"w0": ["000000.100_0", "000001.100_1"], "w1": ["000000.200_0"]}
    assert got["pending"] == {"w0": 0, "w1": 2}
    assert got["ends"] == {"100_0": "0 done 1", "100_1": "143 terminated 0"}
    # logs: for the tasks expected that squeue does not show, unless their exit file
    # says they ended well ("143 terminated": killed, the log says why)
    assert set(got["logs"]) == {"100_1", "200_0", "200_1"}
    assert got["logs"]["200_1"] is None and got["logs"]["100_1"] is None
    tail = got["logs"]["200_0"]
    assert len(tail) == _slurm_probe.LOG_TAIL and tail.endswith("\nthe end\n")
    assert "sacct" not in got
    assert got["files"] == [["a.rec", 6], ["b.rec", 0]]
    assert chunks == [b"456789", b""]
    # no offsets: everything from the start; offsets=None: no result bytes at all
    got, chunks = _slurm_probe.probe(str(run_dir), [], {})
    assert got["files"] == [["a.rec", 10], ["b.rec", 9]] and b"".join(chunks) == \
        b"0123456789\x00\xffbinary\n"
    got, chunks = _slurm_probe.probe(str(run_dir), [])
    assert got["files"] == [] and chunks == []


def test_probe_of_an_empty_run_dir(tmp_path):
    got, chunks = _slurm_probe.probe(str(tmp_path / "nothing"), [], {}, False, ["1_0"])
    assert got["claimed"] == {} and got["pending"] == {} and got["ends"] == {}
    assert got["logs"] == {"1_0": None} and chunks == []


def test_probe_main_prints_a_json_line_then_the_bytes(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    make_probe_dir(run_dir)
    source = _probe_source()  # what is sent: the run directory's names, then the probe
    request = {"run_dir": str(run_dir), "job_ids": [], "offsets": {"a.rec": 8},
               "expected": ["200_0"]}
    python3 = shutil.which("python3") or sys.executable
    # -I: the standard library only, as over SSH; not run from the repository
    proc = subprocess.run([python3, "-I", "-c", source, json.dumps(request)],
                          capture_output=True, cwd=weird_tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    line, _, rest = proc.stdout.partition(b"\n")
    got = json.loads(line)
    expected, chunks = _slurm_probe.probe(str(run_dir), [], {"a.rec": 8}, False, ["200_0"])
    assert got == expected
    assert got["files"] == [["a.rec", 2], ["b.rec", 9]]
    assert rest == b"89" + b"\x00\xffbinary\n" == b"".join(chunks)


def fake_command(tmp_path: Path, name: str, stdout: str, stderr: str = "", code: int = 0):
    calls = tmp_path / f"{name}.calls"
    write_exe(tmp_path / "bin" / name, f"""#!/bin/sh
printf '%s\\n' "$*" >> '{calls}'
printf '%s' '{stdout}'
printf '%s' '{stderr}' >&2
exit {code}
""")
    return calls


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    return tmp_path


def test_probe_squeue_answer(fake_path):
    calls = fake_command(fake_path, "squeue",
                         "100_0|RUNNING|None\n100_1|PENDING|ReqNodeNotAvail, Reserved\n"
                         "garbage line\n")
    got, _ = _slurm_probe.probe(str(fake_path / "run"), ["100", "101"], None, False,
                                ["100_0", "100_1", "101_0"])
    assert got["squeue"] == {"100_0": ["RUNNING", "None"],
                             "100_1": ["PENDING", "ReqNodeNotAvail, Reserved"]}
    assert calls.read_text() == "-h -r -t all -j 100,101 -o %i|%T|%r\n"
    assert set(got["logs"]) == {"101_0"}  # not in squeue: its log was read


def test_probe_every_job_purged_is_an_empty_answer(fake_path):
    fake_command(fake_path, "squeue", "",
                 "slurm_load_jobs error: Invalid job id specified", 1)
    got, _ = _slurm_probe.probe(str(fake_path / "run"), ["100"], None, False, ["100_0"])
    assert got["squeue"] == {} and got["error"] == "" and "100_0" in got["logs"]


def test_probe_controller_down(fake_path):
    fake_command(fake_path, "squeue", "",
                 "slurm_load_jobs error: Unable to contact slurm controller", 1)
    got, _ = _slurm_probe.probe(str(fake_path / "run"), ["100"], None, True, ["100_0"])
    assert got["squeue"] is None and "Unable to contact" in got["error"]
    assert got["logs"] == {} and "sacct" not in got  # nothing is concluded from it


def test_probe_asks_sacct_for_tasks_squeue_forgot(fake_path):
    fake_command(fake_path, "squeue", "100_2|RUNNING|None\n")
    calls = fake_command(fake_path, "sacct", "100_0|TIMEOUT|0:0\n100_1|CANCELLED by 0|0:0\n"
                                             "100_[3-4%2]|PENDING|0:0\n")
    got, _ = _slurm_probe.probe(str(fake_path / "run"), ["100"], None, True,
                                ["100_0", "100_1", "100_2", "100_3", "100_4"])
    assert calls.read_text() == "-n -P -X -j 100 -o JobID,State,ExitCode\n"
    assert got["sacct"] == {"100_0": ["TIMEOUT", "sacct"], "100_1": ["CANCELLED", "sacct"]}
    assert set(got["logs"]) == {"100_3", "100_4"}
    b = backend(fake_path / "run", wave(count=5))
    b._update(got, ["100_0", "100_1", "100_2", "100_3", "100_4"])
    assert b.states == {"100_0": "TIMEOUT", "100_1": "CANCELLED", "100_2": "RUNNING",
                        "100_3": "LOST", "100_4": "LOST"}


def test_probe_without_squeue_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    got, _ = _slurm_probe.probe(str(tmp_path), ["100"], None, False, ["100_0"])
    assert got["squeue"] is None and got["error"]
