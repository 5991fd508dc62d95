"""SLURM without a scheduler: the job script and the ``sbatch`` command line pyjoule
writes (golden files, see tests/slurm_helpers.py), and the job id ``sbatch`` answers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from slurm_helpers import check_golden, facts, write_exe

from pyjoule import _slurm
from pyjoule._slurm import Slurm

# ====================================================== 1. the job script and argv
# Values with everything a shell could misread: spaces, both quotes, a semicolon,
# $ and backticks (expansion), a glob.
AWKWARD = "a b'c\"d;e $HOME `id` *"
GOLDEN_SCRIPT = dict(
    run_id="20260102-030405-ab12cd", wave="w1",
    run_dir="/scratch/u/cache dir; 'q' \"dq\"/runs/20260102-030405-ab12cd",
    project=f"/home/u/my project {AWKWARD}",
    python="/home/u/.pyjoule/envs/py 3.11/bin/python",
    pythonpath=f"/home/u/.pyjoule/lib $x:/home/u/my project {AWKWARD}",
    workers=16,
    setup=["module load python/3.11", "source /opt/site/env.sh"],
    env={"OMP_PLACES": "cores", "GREETING": f"hello world; {AWKWARD}"},
)


def test_job_script_matches_its_golden_file():
    script = _slurm.render_script(**GOLDEN_SCRIPT)
    check_golden("slurm-job-script.sh", script)


def test_job_script_is_valid_bash_without_eval(tmp_path):
    script = _slurm.render_script(**GOLDEN_SCRIPT)
    path = tmp_path / "job.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert script.startswith("#!/bin/bash\n")
    assert not re.search(r"\beval\b", script)
    # the user's setup lines are in it verbatim, before the worker starts
    lines = script.splitlines()
    assert lines.index("module load python/3.11") < lines.index("source /opt/site/env.sh") \
        < next(i for i, line in enumerate(lines) if line.startswith("exec "))
    assert "set -e" in lines  # a failing setup line stops the task before the worker


FAKE_PYTHON = r"""#!/bin/sh
# prints what it was started with, NUL-separated, so every byte can be compared
for a in "$@"; do printf 'arg=%s\0' "$a"; done
printf 'PYTHONPATH=%s\0' "$PYTHONPATH"
printf 'GREETING=%s\0' "$GREETING"
printf 'FROM_SETUP=%s\0' "$FROM_SETUP"
printf 'PWD=%s\0' "$(pwd)"
"""
FAKE_MODULE = """#!/bin/sh
printf '%s\\n' "$*" >> "$MODULE_LOG"
"""


def run_rendered(tmp: Path, run_dir: str) -> tuple[dict, list[str], Path, str]:
    """Render a job script with awkward real paths under ``tmp``, run it with bash and
    a fake ``python``; return what the fake saw, its argv, the project and pythonpath."""
    project = tmp / f"proj {AWKWARD}"
    project.mkdir()
    python = write_exe(tmp / "bin dir; 'x'" / "python", FAKE_PYTHON)
    write_exe(tmp / "tools" / "module", FAKE_MODULE)
    pythonpath = f"{tmp}/lib dir:{project}"
    script = _slurm.render_script(
        run_id="r1", wave="w0", run_dir=run_dir, project=str(project), python=str(python),
        pythonpath=pythonpath, workers=3,
        setup=["module load python/3.11", 'export FROM_SETUP="set up; ok"'],
        env={"GREETING": f"hello world; {AWKWARD}"})
    path = tmp / "job.sh"
    path.write_text(script)
    env = {"PATH": f"{tmp / 'tools'}:/usr/bin:/bin", "MODULE_LOG": str(tmp / "module.log"),
           "HOME": "/nonexistent-home"}
    proc = subprocess.run(["bash", str(path)], capture_output=True, env=env, cwd=tmp,
                          timeout=20)
    assert proc.returncode == 0, proc.stderr.decode()
    seen: dict = {"args": []}
    for item in proc.stdout.decode().split("\0")[:-1]:
        key, _, value = item.partition("=")
        if key == "arg":
            seen["args"].append(value)
        else:
            seen[key] = value
    return seen, (tmp / "module.log").read_text().splitlines(), project, pythonpath


def test_job_script_passes_every_value_through_unchanged(weird_tmp_path):
    run_dir = str(weird_tmp_path / f"runs {AWKWARD}" / "r1")
    seen, module_calls, project, pythonpath = run_rendered(weird_tmp_path, run_dir)
    assert seen["args"] == ["-m", "pyjoule.worker", run_dir, "--slurm", "w0",
                            "--workers", "3"]
    assert seen["PYTHONPATH"] == pythonpath
    assert seen["GREETING"] == f"hello world; {AWKWARD}"
    assert seen["FROM_SETUP"] == "set up; ok"  # the setup lines ran, in the same shell
    assert os.path.samefile(seen["PWD"], project)
    assert module_calls == ["load python/3.11"]


def test_job_script_survives_a_line_break_in_the_run_directory(weird_tmp_path):
    # The run directory is under the cache, which the user chooses. The script's header
    # comments name it: a line break there must not end the comment (BUG: it does, and
    # the rest of the path becomes a command line; the script then fails).
    run_dir = str(weird_tmp_path / "new\nline; touch pwned" / "r1")
    seen, _, _, _ = run_rendered(weird_tmp_path, run_dir)
    assert seen["args"][2] == run_dir
    assert not (weird_tmp_path / "pwned").exists()


GOLDEN_SLURM = Slurm(time="01:00:00", mem="2G", cpus_per_task=16, exclusive=True,
                     partition="normal", mail_type=["END", "FAIL"], comment="a b; 'c'",
                     requeue=False, account=None, array_parallelism=6)
GOLDEN_LOGS = "/scratch/u/100% done; 'q'/runs/r1/logs"


def golden_argvs() -> list[list[str]]:
    # 60 psets in batches of 2 where one array holds at most 20 tasks: two arrays
    packing = _slurm.pack(60, workers=16, batch=2, facts=facts(max_array_size=20),
                          parallelism=GOLDEN_SLURM.array_parallelism)
    assert packing.arrays == [(0, 20), (20, 10)]
    return [_slurm.sbatch_argv(GOLDEN_SLURM,
                               array_spec=packing.array_spec(count, 6),
                               log_dir=GOLDEN_LOGS, job_name="pyjoule-r1",
                               script="/scratch/u/100% done; 'q'/runs/r1/w0.sh")
            for _, count in packing.arrays]


def test_sbatch_argv_matches_its_golden_file():
    argvs = golden_argvs()
    assert all("\n" not in word for argv in argvs for word in argv)
    check_golden("sbatch-argv.txt", "\n\n".join("\n".join(a) for a in argvs) + "\n")


def test_sbatch_argv_words():
    first, second = golden_argvs()
    assert first[:2] == ["sbatch", "--parsable"]
    assert first[2] == "--array=0-19%3" and second[2] == "--array=0-9%3"  # 6 shared by 2
    # % in the log folder is doubled: sbatch reads % as a pattern; %A_%a stays single
    assert first[3] == "--output=/scratch/u/100%% done; 'q'/runs/r1/logs/%A_%a.out"
    assert "--job-name=pyjoule-r1" in first
    assert "--exclusive" in first and "--time=01:00:00" in first
    assert "--mail-type=END,FAIL" in first and "--comment=a b; 'c'" in first
    assert not any(w.startswith(("--requeue", "--account")) for w in first)
    assert first[-1] == "/scratch/u/100% done; 'q'/runs/r1/w0.sh"  # the script: last


def test_sbatch_argv_keeps_the_users_job_name():
    argv = _slurm.sbatch_argv(Slurm(job_name="mine"), array_spec="0-3", log_dir="/l",
                              job_name="pyjoule-r1", script="/s.sh")
    assert [w for w in argv if w.startswith("--job-name")] == ["--job-name=mine"]


@pytest.mark.parametrize("stdout, job", [("123\n", "123"), ("123;cluster\n", "123"),
                                         ("sbatch: warning: x\n456\n", "456")])
def test_parse_job_id(stdout, job):
    assert _slurm.parse_job_id(stdout) == job


@pytest.mark.parametrize("stdout", ["", "\n", "Submitted batch job 5\n", "abc"])
def test_parse_job_id_refuses_what_is_not_a_job_id(stdout):
    with pytest.raises(ValueError, match="not a job id"):
        _slurm.parse_job_id(stdout)
