"""What SlurmBackend runs where sbatch is, built against the in-memory transport
(pyjoule._transport.fake): the commands, and what their answers become. What runs
for real (sbatch, squeue, the probe on a host) is tested in test_slurm.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule._backends import slurm as slurm_backend
from pyjoule._backends.slurm import SlurmBackend
from pyjoule._rundir import RunDir
from pyjoule._transport.base import Result
from pyjoule._transport.fake import FakeTransport

GOLDEN = Path(__file__).resolve().parent / "golden"
SEP = slurm_backend.FACTS_SEP


@pytest.fixture(autouse=True)
def fresh_facts():
    slurm_backend.reset_facts()
    yield
    slurm_backend.reset_facts()


def facts_answer() -> bytes:
    parts = [(GOLDEN / n).read_text() for n in ("sbatch-help-22.05.txt",
                                                "scontrol-show-config-22.05.txt",
                                                "sinfo-partitions-22.05.txt")]
    return f"\n{SEP}\n".join(parts).encode()


def backend(tmp_path, t: FakeTransport, **slurm) -> SlurmBackend:
    b = SlurmBackend(pj.Slurm(**slurm), transport=t)
    b.run_dir = str(tmp_path / "run")
    return b


def wave(job="100", count=2) -> dict:
    return {"wave": "w0", "tasks": ["tasks.pkl"], "batch": 1, "n_batches": count,
            "workers": 1, "arrays": [{"job": job, "offset": 0, "count": count}]}


def test_the_clusters_facts_are_asked_once_per_place(tmp_path):
    t = FakeTransport("login1")
    t.answer("sbatch --help", stdout=facts_answer())
    b = backend(tmp_path, t, partition="debug")
    facts = b.facts()
    b.check()  # the options against the cluster's own --help: no second command
    assert len(t.commands) == 1 and "sbatch --help" in t.commands[0][-1]
    assert "partition" in facts.options
    again = backend(tmp_path, t)
    assert again.facts() is facts and len(t.commands) == 1
    other = FakeTransport("login2")
    other.answer("sbatch --help", stdout=facts_answer())
    backend(tmp_path, other).facts()
    assert len(other.commands) == 1


@pytest.mark.parametrize("local", [False, True], ids=["host", "here"])
def test_no_sbatch_says_how_to_load_slurm(tmp_path, local):
    t = FakeTransport("login1", local=local)
    t.answer("sbatch --help", returncode=127, stderr=b"sh: sbatch: not found")
    with pytest.raises(pj.SlurmError) as info:
        backend(tmp_path, t).facts()
    text = str(info.value)
    assert "no SLURM on " + t.where in text and "sbatch: not found" in text
    assert ("load it before starting Python" in text) == local
    assert ("pj.Host(setup=['module load slurm'])" in text) != local


def test_sbatch_refusing_shows_its_words_and_an_answer_gives_the_job_id(tmp_path):
    t = FakeTransport()
    t.answer("--partition=nope", returncode=1, stderr=b"invalid partition specified")
    t.answer("sbatch", stdout=b"4242\n")
    b = backend(tmp_path, t)
    site = {"project": "/home/me/proj"}
    assert b._sbatch(["sbatch", "--parsable", "job.sh"], site) == "4242"
    assert t.calls[-1]["cwd"] == "/home/me/proj"
    with pytest.raises(pj.SlurmError, match="refused the job: invalid partition") as info:
        b._sbatch(["sbatch", "--partition=nope", "job.sh"], site)
    assert "sbatch --partition=nope job.sh" in str(info.value)


def probe_answer(**answer) -> bytes:
    return json.dumps({"files": [], "claimed": {}, "pending": {}, "ends": {},
                       "logs": {}, **answer}).encode() + b"\n"


def test_a_look_on_a_host_is_one_probe_command_asking_for_every_job(tmp_path):
    t = FakeTransport()
    t.answer("python3 -c", stdout=probe_answer(
        squeue={"100_0": ["RUNNING", "None"], "100_1": ["PENDING", "Priority"]}))
    b = backend(tmp_path, t)
    b.waves = [wave()]
    assert b.alive()
    (argv,) = t.commands
    assert argv[:2] == ["python3", "-c"] and argv[2] == slurm_backend._probe_source()
    request = json.loads(argv[3])
    assert request["job_ids"] == ["100"] and request["expected"] == ["100_0", "100_1"]
    assert request["run_dir"] == b.run_dir and request["offsets"] == {}
    assert b.states == {"100_0": "RUNNING", "100_1": "PENDING"}
    assert b.running_slots() == 1


def test_wait_looks_until_the_run_ends(tmp_path, monkeypatch):
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.01")
    states = iter(["PENDING", "RUNNING", "COMPLETED"])

    def look(argv):
        answer = probe_answer(squeue={"100_0": [next(states), "None"]})
        return Result("probe", 0, answer, b"")

    t = FakeTransport()
    t.answer("python3 -c", result=look)
    b = backend(tmp_path, t)
    b.waves = [wave(count=1)]
    assert b.wait(10) is True and len(t.commands) == 3
    t2 = FakeTransport()
    t2.answer("python3 -c", stdout=probe_answer(squeue={"100_0": ["RUNNING", "None"]}))
    b2 = backend(tmp_path, t2)
    b2.waves = [wave(count=1)]
    assert b2.wait(0.1) is False and b2.alive()  # still running when time is up


def test_cancel_is_one_scancel_of_every_job_then_looks_until_they_ended(tmp_path):
    t = FakeTransport()
    t.answer("python3 -c", stdout=probe_answer(  # first: the probe's text names scancel
        squeue={}, sacct={"100_0": ["CANCELLED", ""], "100_1": ["CANCELLED", ""],
                          "101_0": ["CANCELLED", ""]}))
    t.answer("scancel", stdout=b"")
    b = backend(tmp_path, t)
    b.waves = [wave(), {**wave("101", 1), "wave": "w1"}]
    b.cancel()
    assert t.commands[0] == ["scancel", "100", "101"]
    assert len(t.commands) == 2 and not b.alive()


def test_tidy_on_a_host_removes_its_run_directory_or_all_but_the_logs(tmp_path):
    t = FakeTransport()
    b = backend(tmp_path, t)
    b.tidy(keep_log=False)
    assert t.commands[-1] == ["rm", "-rf", b.run_dir]
    b.tidy(keep_log=True)
    assert t.commands[-1][:2] == ["sh", "-c"] and t.commands[-1][-2:] == [b.run_dir, "logs"]


def test_the_logs_of_tasks_are_copied_from_the_host_private(tmp_path):
    t = FakeTransport()
    b = backend(tmp_path, t)
    t.put(RunDir(b.run_dir).log_file("100_0"), b"p4 started\n")
    got = b._fetch_logs({"100_0", "100_1"})  # 100_1 wrote no log
    assert list(got) == ["100_0"]
    assert Path(got["100_0"]).read_bytes() == b"p4 started\n"
    assert stat.S_IMODE(os.stat(got["100_0"]).st_mode) == 0o600
