"""SLURM without a scheduler: the pure functions of ``pyjoule._slurm``, the worker's
batch queue, the probe and the backend's state logic, fed with what SLURM prints.

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

    PYJOULE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_slurm_units.py -q

and review the diff (``git diff tests/golden``) before committing it. The captured
SLURM output is not rewritten by the tests (the test cluster's config changes while
other tests run); capture it again by hand, on the test cluster in its default config
(``tests/slurm_cluster.py start``), with ``sbatch --help``, ``scontrol show config``
and ``sinfo -h -o '%P|%C'``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyjoule as pj
from pyjoule import _slurm, _slurm_task
from pyjoule._backends import _slurm_probe
from pyjoule._backends.slurm import BACKOFF, FIRST_INTERVAL_S, MAX_INTERVAL_S, SlurmBackend, \
    _probe_source
from pyjoule._slurm import ClusterFacts, Slurm

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("PYJOULE_UPDATE_GOLDEN") == "1"


# =================================================================== helpers
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


# ============================================================== 2. pj.Slurm options
def test_snake_and_kebab_case_keys_are_the_same_option():
    a = pj.Slurm(cpus_per_task=4, mem_per_cpu="1G")
    b = pj.Slurm({"cpus-per-task": 4, "mem-per-cpu": "1G"})
    c = pj.Slurm({"cpus_per_task": 4}, **{"mem-per-cpu": "1G"})
    assert a == b == c
    assert a.options == {"cpus-per-task": "4", "mem-per-cpu": "1G"}
    assert a.argv() == ["--cpus-per-task=4", "--mem-per-cpu=1G"]
    assert a.cpus_per_task == 4


def test_option_values():
    s = pj.Slurm(time="01:00:00", exclusive=True, requeue=False, account=None,
                 nodelist=["n1", "n2"], constraint=("a", "b"), nice=10, mem="2G")
    assert s.argv() == ["--time=01:00:00", "--exclusive", "--nodelist=n1,n2",
                        "--constraint=a,b", "--nice=10", "--mem=2G"]
    assert s.time_limit_s == 3600.0
    assert pj.Slurm().argv() == [] and pj.Slurm().time_limit_s is None


def test_the_docstring_example():
    assert pj.Slurm(time="01:00:00", mem="2G", cpus_per_task=4).argv() == \
        ["--time=01:00:00", "--mem=2G", "--cpus-per-task=4"]


@pytest.mark.parametrize("name", sorted(_slurm.RESERVED))
def test_reserved_options_are_refused_with_the_reason(name):
    for key in {name, name.replace("-", "_")}:
        with pytest.raises(pj.OptionError) as err:
            pj.Slurm({key: "x"})
        message = str(err.value)
        assert "set by pyjoule" in message and _slurm.RESERVED[name] in message
    with pytest.raises(pj.OptionError, match="set by pyjoule"):
        pj.Slurm(**{name: True})


def test_the_array_option_points_at_batch_and_array_parallelism():
    with pytest.raises(pj.OptionError, match="batch=.*array_parallelism"):
        pj.Slurm(array="0-9%2")


@pytest.mark.parametrize("key", ["Time", "cpus per task", "--time", "1time", "", "time-",
                                 "cpus__per_task", "time=1", "mem;rm", 3])
def test_invalid_option_names(key):
    with pytest.raises(pj.OptionError, match="not an sbatch long option name"):
        pj.Slurm({key: "1"})


@pytest.mark.parametrize("value", ["1\n#SBATCH --mem=1T", "a\0b"])
def test_values_with_line_breaks_are_refused(value):
    with pytest.raises(pj.OptionError, match="line break"):
        pj.Slurm(comment=value)


@pytest.mark.parametrize("value", [{"a": 1}, object(), b"bytes"])
def test_values_of_other_types_are_refused(value):
    with pytest.raises(pj.OptionError, match="expected a string, number"):
        pj.Slurm(comment=value)


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "4"])
def test_array_parallelism_must_be_a_positive_int(value):
    with pytest.raises(pj.OptionError, match="array_parallelism"):
        pj.Slurm(array_parallelism=value)


def test_array_parallelism():
    assert pj.Slurm(array_parallelism=4).array_parallelism == 4
    assert pj.Slurm({"array-parallelism": 3}).array_parallelism == 3
    assert pj.Slurm(array_parallelism=None).array_parallelism is None
    s = pj.Slurm(array_parallelism=4, time="5")
    assert s.argv() == ["--time=5"]  # pyjoule's own: not an sbatch option
    assert "array_parallelism=4" in repr(s)


def test_of_and_description_round_trip():
    s = pj.Slurm(time="5", exclusive=True, array_parallelism=2)
    assert Slurm.of(s) is s
    assert Slurm.of({"time": "5", "exclusive": True, "array_parallelism": 2}) == s
    assert Slurm.from_description(json.loads(json.dumps(s.describe()))) == s
    assert s != pj.Slurm(time="5", exclusive=True)
    with pytest.raises(pj.OptionError, match="dict of sbatch options"):
        Slurm.of("--time=5")


def _f(x):
    return x


def test_experiment_validates_slurm_names_at_decoration():
    with pytest.raises(pj.OptionError, match="set by pyjoule"):
        pj.experiment(slurm={"array": "0-3"})(_f)
    with pytest.raises(pj.OptionError, match="set by pyjoule"):
        pj.experiment(slurm={"chdir": "/tmp"})
    with pytest.raises(pj.OptionError, match="not an sbatch long option name"):
        pj.experiment(slurm={"cpus per task": 2})(_f)
    with pytest.raises(pj.OptionError, match="array_parallelism"):
        pj.experiment(slurm={"array_parallelism": 0})(_f)
    with pytest.raises(pj.OptionError, match="dict of sbatch options"):
        pj.experiment(slurm="--time=5")(_f)
    # a misspelt name is refused at decoration too, against the built-in list
    with pytest.raises(pj.OptionError, match="Did you mean 'cpus_per_task'"):
        pj.experiment(slurm={"cpus_per_tsk": 2})(_f)
    exp = pj.experiment(slurm={"time": "5", "cpus_per_task": 2})(_f)
    assert exp._options["slurm"].options == {"time": "5", "cpus-per-task": "2"}


# -------------------------------------------- names checked against SBATCH_OPTIONS
def test_a_typo_in_slurm_raises_at_experiment_decoration():
    with pytest.raises(pj.OptionError) as err:
        pj.experiment(slurm={"tiem": "1:00:00"})
    message = str(err.value)
    assert "'tiem'" in message and "--tiem" in message
    assert "Did you mean 'time'?" in message
    assert "sbatch --help" in message and "https://slurm.schedmd.com/sbatch.html" in message
    assert isinstance(err.value, TypeError)  # pj.OptionError is a TypeError


def test_a_typo_in_pj_slurm_raises_at_once():
    with pytest.raises(pj.OptionError, match="Did you mean 'time'"):
        pj.Slurm(tiem="1:00:00")
    with pytest.raises(pj.OptionError, match="Did you mean 'partition'"):
        pj.Slurm({"partiton": "debug"}, time="5")


@pytest.mark.parametrize("key, hint", [
    ("cpus-per-tsk", "cpus-per-task"), ("cpus_per_tsk", "cpus_per_task"),
    ("mem-per-cpus", "mem-per-cpu"), ("mem_per_cpus", "mem_per_cpu"),
    ("job-nam", "job-name"), ("ntask", "ntasks"), ("memory", "mem"),
    ("array_paralelism", "array_parallelism"),  # pyjoule's own option
])
def test_the_hint_is_spelt_like_the_key(key, hint):
    with pytest.raises(pj.OptionError) as err:
        pj.Slurm({key: "1"})
    message = str(err.value)
    assert f"Did you mean {hint!r}?" in message and f"--{key.replace('_', '-')}" in message
    with pytest.raises(pj.OptionError, match=f"Did you mean {hint!r}"):
        pj.experiment(slurm={key: "1"})


@pytest.mark.parametrize("key", ["zzzqqq", "qwertyuiop", "foo_bar_baz"])
def test_a_name_close_to_nothing_is_refused_without_a_hint(key):
    with pytest.raises(pj.OptionError) as err:
        pj.Slurm({key: "1"})
    message = str(err.value)
    assert repr(key) in message and "Did you mean" not in message
    assert "sbatch --help" in message and "https://slurm.schedmd.com/sbatch.html" in message
    assert "wckey" not in message and len(message) < 300  # no dump of the valid names


def test_a_typo_close_to_an_option_pyjoule_sets_says_so():
    with pytest.raises(pj.OptionError) as err:
        pj.Slurm(arary="0-3")
    message = str(err.value)
    assert "--array is close" in message and "set by pyjoule" in message
    assert "Did you mean 'array'" not in message


@pytest.mark.parametrize("key", [
    "gpus_per_task", "tres_per_task", "tres-bind", "oom_kill_step", "container_id",
    "stepmgr", "segment", "resv_ports", "extra", "ntasks_per_gpu", "kill-on-invalid-dep",
    "wait_all_nodes", "acctg_freq", "mem_bind", "open_mode", "hint", "export_file",
    "cluster_constraint", "spread_job", "thread_spec", "power", "prefer", "mcs_label",
])
def test_valid_but_rarely_used_options_are_accepted(key):
    name = key.replace("_", "-")
    assert name in _slurm.SBATCH_OPTIONS
    assert pj.Slurm({key: "1"}).argv() == [f"--{name}=1"]
    exp = pj.experiment(slurm={key: True, "time": "5"})(_f)
    assert exp._options["slurm"].options == {name: None, "time": "5"}


def test_the_builtin_list():
    names = _slurm.SBATCH_OPTIONS
    assert isinstance(names, frozenset) and len(names) == 110
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", n) for n in names)
    assert _slurm.UNLISTED <= names and set(_slurm.RESERVED) <= names
    assert _slurm.parse_help(SBATCH_HELP["golden"]) <= names  # all of 22.05's --help
    assert not {"spread-segments", "consolidate-segments", "mem-update"} & names  # 25.x+
    assert not {"x11", "cpu-bind", "pty", "overlap", "ntasks-per-tres"} & names  # srun's


SBATCH_HELP = captured("sbatch-help-22.05.txt", ["sbatch", "--help"])


def test_the_golden_sbatch_help_is_22_05():
    text = SBATCH_HELP["golden"]
    assert text.startswith("Usage: sbatch [OPTIONS(0)...]")
    assert len(_slurm.parse_help(text)) == 91  # as SLURM 22.05.8 lists them


def _unchecked(**options) -> Slurm:
    """A Slurm with names the decoration check would refuse (what check_options sees
    from a cluster that lacks an option of the built-in list)."""
    return Slurm.from_description({"options": {k.replace("_", "-"): v
                                               for k, v in options.items()}})


@sources("sbatch-help")
def test_parse_help_finds_the_long_options(source):
    known = _slurm.parse_help(pick(SBATCH_HELP, source))
    assert {"time", "mem", "cpus-per-task", "partition", "exclusive", "array", "output",
            "job-name", "mail-type", "export", "gres", "ntasks", "nodes", "qos",
            "account", "constraint", "dependency", "mem-per-cpu"} <= known
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", name) for name in known)
    assert not {"ncpus", "min", "mins", "name", "jobname"} & known  # metavars, not options


@sources("sbatch-help")
@pytest.mark.parametrize("key, hint", [("cpus_per_tsk", "cpus_per_task"),
                                       ("partiton", "partition"), ("memory", "mem"),
                                       ("job-nam", "job_name")])
def test_check_options_suggests_the_option_meant(source, key, hint):
    known = _slurm.parse_help(pick(SBATCH_HELP, source))
    with pytest.raises(pj.OptionError) as err:
        _slurm.check_options(_unchecked(**{key: "1"}), known, "cluster")
    message = str(err.value)
    assert f"Did you mean {hint!r}?" in message
    assert f"--{key.replace('_', '-')}" in message and "sbatch on cluster" in message


@sources("sbatch-help")
def test_check_options_accepts_what_help_lists(source):
    known = _slurm.parse_help(pick(SBATCH_HELP, source))
    _slurm.check_options(pj.Slurm(time="1", mem="1G", cpus_per_task=2, exclusive=True,
                                  partition="debug", mail_type=["END"]), known, "cluster")


@sources("sbatch-help")
def test_check_options_does_not_suggest_an_option_pyjoule_sets(source):
    # "arary" is closest to "array", which pj.Slurm refuses: the hint must not send the
    # user there without saying so (BUG: it says "Did you mean 'array'?").
    known = _slurm.parse_help(pick(SBATCH_HELP, source))
    with pytest.raises(pj.OptionError) as err:
        _slurm.check_options(_unchecked(arary="0-3"), known, "cluster")
    message = str(err.value)
    assert "Did you mean 'array'?" not in message or "set by pyjoule" in message


def test_check_options_still_catches_an_option_the_cluster_lacks():
    # --tres-per-task is in the built-in list (23.02+) but not in 22.05's sbatch
    known = _slurm.parse_help(SBATCH_HELP["golden"])
    with pytest.raises(pj.OptionError, match="sbatch on cluster has no option --tres-per-task"):
        _slurm.check_options(pj.Slurm(tres_per_task="cpu=2"), known, "cluster")


# sbatch 22.05.8 accepts these (checked with `sbatch --test-only` on the test cluster)
# and its man page documents them, but `sbatch --help` does not list them.
UNLISTED = {"hint": "nomultithread", "open_mode": "append", "acctg_freq": "task=30",
            "mem_bind": "local", "kill_on_invalid_dep": "yes", "wait_all_nodes": "1"}


@sources("sbatch-help")
@pytest.mark.parametrize("key", sorted(UNLISTED))
def test_check_options_accepts_real_options_help_does_not_list(source, key):
    # BUG: check_options knows only what `sbatch --help` lists, so these valid options
    # are refused before submit.
    known = _slurm.parse_help(pick(SBATCH_HELP, source))
    _slurm.check_options(pj.Slurm({key: UNLISTED[key]}), known, "cluster")


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


# ================================================================= 5. packing
def test_pack_with_a_batch():
    p = _slurm.pack(1000, workers=4, batch=7, facts=facts())
    assert (p.batch, p.n_batches, p.n_tasks) == (7, 143, 143)
    assert p.arrays == [(0, 143)] and p.array_spec(143, None) == "0-142"
    assert batch_sizes(p) == [7] * 142 + [6]


def test_pack_splits_into_arrays_of_at_most_max_array_size():
    p = _slurm.pack(45, workers=1, batch=1, facts=facts(max_array_size=20))
    assert p.n_tasks == 45
    assert p.arrays == [(0, 20), (20, 20), (40, 5)]
    specs = [p.array_spec(count, None) for _, count in p.arrays]
    assert specs == ["0-19", "0-19", "0-4"]  # never an index above MaxArraySize - 1


def test_pack_a_batch_that_needs_more_jobs_than_the_cluster_keeps():
    f = facts(max_job_count=100)
    with pytest.raises(pj.OptionError) as err:
        _slurm.pack(1000, workers=1, batch=1, facts=f)
    message = str(err.value)
    assert "MaxJobCount=100" in message and "1000 array tasks" in message
    suggested = int(re.search(r"use a batch of at least (\d+)", message)[1])
    p = _slurm.pack(1000, workers=1, batch=suggested, facts=f)  # the suggestion works
    assert p.n_tasks <= 50
    with pytest.raises(pj.OptionError):
        _slurm.pack(1000, workers=1, batch=suggested - 1, facts=f)  # and is the least


def test_pack_automatic_fills_the_partition():
    # 8 CPUs, 2 workers per task: 4 tasks, each taking about four batches
    p = _slurm.pack(1000, workers=2, batch=None, facts=facts(cpus=8))
    assert p.n_tasks == 4 and p.batch == 63 and p.n_batches == 16
    # the partition asked for counts, not the default one
    p = _slurm.pack(10_000, workers=4, batch=None, facts=facts(cpus=8, big=400),
                    partition="big")
    assert p.n_tasks == 100 and p.n_batches == 400
    # never more tasks than one array allows
    p = _slurm.pack(100_000, workers=1, batch=None, facts=facts(cpus=5000, max_array_size=20))
    assert p.n_tasks == 20 and p.arrays == [(0, 20)]


def test_pack_automatic_small_studies():
    p = _slurm.pack(3, workers=16, batch=None, facts=facts(cpus=64))
    assert (p.n_tasks, p.batch, p.n_batches) == (1, 16, 1)  # batch >= workers
    p = _slurm.pack(10, workers=1, batch=None, facts=facts(cpus=8))
    assert p.n_tasks == 8 and p.batch == 1 and p.n_batches == 10
    p = _slurm.pack(1, workers=32, batch=None, facts=facts(cpus=8))  # more workers than CPUs
    assert (p.n_tasks, p.n_batches) == (1, 1)
    with pytest.raises(ValueError):
        _slurm.pack(0, workers=1, batch=None, facts=facts())


def test_pack_automatic_respects_the_throttle():
    p = _slurm.pack(1000, workers=1, batch=None, facts=facts(cpus=64), parallelism=5)
    assert p.n_tasks == 5 and p.array_spec(5, 5) == "0-4%5"


def test_pack_automatic_stays_within_max_job_count():
    # A big partition and a small MaxJobCount: automatic packing must not make an array
    # the cluster refuses; with batch= the same limit gives an OptionError (BUG: the
    # automatic branch ignores MaxJobCount and makes 1001 tasks).
    f = facts(cpus=100_000, max_array_size=1001, max_job_count=100)
    p = _slurm.pack(100_000, workers=1, batch=None, facts=f)
    assert p.n_tasks <= f.max_job_count // 2


def test_throttle_is_shared_among_arrays():
    p = _slurm.pack(100, workers=1, batch=1, facts=facts(max_array_size=30))
    assert len(p.arrays) == 4
    throttles = [spec_indices(p.array_spec(c, 10))[2] for _, c in p.arrays]
    assert throttles == [2, 2, 2, 2] and sum(throttles) <= 10
    assert [spec_indices(p.array_spec(c, 3))[2] for _, c in p.arrays] == [1, 1, 1, 1]
    assert p.array_spec(30, None) == "0-29"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 300_000), workers=st.integers(1, 64),
       batch=st.one_of(st.none(), st.integers(1, 5000)),
       max_array_size=st.integers(1, 2000), max_job_count=st.integers(2, 100_000),
       cpus=st.integers(1, 20_000), parallelism=st.one_of(st.none(), st.integers(1, 500)))
def test_pack_covers_every_pset_exactly_once(n, workers, batch, max_array_size,
                                             max_job_count, cpus, parallelism):
    f = facts(max_array_size=max_array_size, max_job_count=max_job_count, cpus=cpus)
    try:
        p = _slurm.pack(n, workers=workers, batch=batch, facts=f, parallelism=parallelism)
    except pj.OptionError:
        assert batch is not None and math.ceil(n / batch) > max(1, max_job_count // 2)
        return
    assert p.n_psets == n
    assert p.n_batches * p.batch >= n > (p.n_batches - 1) * p.batch
    sizes = batch_sizes(p)
    assert sum(sizes) == n and all(s > 0 for s in sizes)
    # arrays: contiguous offsets, each within MaxArraySize, together n_tasks
    assert sum(c for _, c in p.arrays) == p.n_tasks
    assert [o for o, _ in p.arrays] == [sum(c for _, c in p.arrays[:i])
                                        for i in range(len(p.arrays))]
    assert 1 <= p.n_tasks <= p.n_batches  # no task is started without a batch for it
    for _, count in p.arrays:
        assert 1 <= count <= max_array_size
        first, last, throttle = spec_indices(p.array_spec(count, parallelism))
        assert first == 0 and last == count - 1 <= max_array_size - 1
        if parallelism:
            assert 1 <= throttle <= parallelism
            assert throttle * len(p.arrays) <= max(parallelism, len(p.arrays))
    if batch is not None:
        assert p.batch == batch and p.n_tasks == p.n_batches
    else:
        assert p.batch >= workers
        assert p.n_tasks <= max(1, cpus // workers) and p.n_tasks <= max_array_size
        assert len(p.arrays) == 1
        if parallelism:
            assert p.n_tasks <= parallelism
        if p.batch > workers:  # sized to give each task about four batches
            assert p.n_batches <= 4 * p.n_tasks


def test_packing_100_000_psets_is_fast():
    t0 = time.perf_counter()
    packings = [_slurm.pack(100_000, workers=16, batch=batch, facts=facts(cpus=512))
                for batch in (None, 20, 100)]
    assert time.perf_counter() - t0 < 0.5
    assert [p.n_tasks for p in packings] == [32, 5000, 1000]
    assert [len(p.arrays) for p in packings] == [1, 5, 1]


# ===================================================== 6. the worker's batch queue
def write_tasks(run_dir: Path, n: int, name: str = "tasks.pkl", prefix: str = "p") -> list:
    tasks = [(f"{prefix}{i}", {"x": i}) for i in range(n)]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / name).write_bytes(pickle.dumps(tasks))
    return tasks


def test_make_queue(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    write_tasks(run_dir, 7)
    write_tasks(run_dir, 4, "retry.pkl", "r")
    assert _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl", "retry.pkl"], 3) == 4
    queue = run_dir / "queue" / "w0"
    assert sorted(os.listdir(queue / "pending")) == ["000000", "000001", "000002", "000003"]
    assert os.listdir(queue / "claimed") == []
    assert json.loads((queue / "meta.json").read_text()) == \
        {"tasks": ["tasks.pkl", "retry.pkl"], "batch": 3, "n": 11}
    assert all((run_dir / sub).is_dir() for sub in ("ends", "logs", "results"))


def test_claim_takes_batches_in_order_then_none(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    write_tasks(run_dir, 5)
    _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 2)
    folder = str(run_dir / "queue" / "w0")
    assert [_slurm_task.claim(folder, "9_0"), _slurm_task.claim(folder, "9_1"),
            _slurm_task.claim(folder, "9_0")] == [0, 1, 2]
    assert _slurm_task.claim(folder, "9_0") is None
    assert sorted(os.listdir(os.path.join(folder, "claimed"))) == \
        ["000000.9_0", "000001.9_1", "000002.9_0"]
    assert _slurm_task.claim(str(run_dir / "queue" / "w9"), "9_0") is None  # no such wave


def _claim_all(folder: str, me: str, start, out) -> None:
    start.wait()
    got = []
    while (b := _slurm_task.claim(folder, me)) is not None:
        got.append(b)
    out.put((me, got))


def test_concurrent_claimers_take_each_batch_exactly_once(weird_tmp_path):
    run_dir = weird_tmp_path / "run"
    write_tasks(run_dir, 500)
    assert _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 1) == 500
    folder = str(run_dir / "queue" / "w0")
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(folder, f"7_{i}", start, out))
             for i in range(4)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(10)
        assert proc.exitcode == 0
    claimed = [b for got in results.values() for b in got]
    assert len(claimed) == 500 and set(claimed) == set(range(500))  # each exactly once
    names = sorted(os.listdir(os.path.join(folder, "claimed")))
    assert names == sorted(f"{b:06d}.{me}" for me, got in results.items() for b in got)
    assert os.listdir(os.path.join(folder, "pending")) == []


# ================================================== 7. the backend's state logic
def wave(name="w0", job="100", count=2, batch=2, n_batches=3, tasks=("tasks.pkl",),
         workers=1, offset=0) -> dict:
    return {"wave": name, "tasks": list(tasks), "batch": batch, "n_batches": n_batches,
            "workers": workers, "arrays": [{"job": job, "offset": offset, "count": count}]}


def backend(run_dir: Path, *waves: dict) -> SlurmBackend:
    b = SlurmBackend(pj.Slurm(), ssh=None)
    b.run_dir = str(run_dir)
    b.waves = list(waves)
    return b


def answer(squeue: dict | None = None, *, claimed=None, pending=None, ends=None,
           logs=None, sacct=None, files=(), error="") -> dict:
    """A probe answer (see _slurm_probe.probe); squeue=None is 'the controller is down'."""
    a = {"squeue": squeue, "error": error, "claimed": claimed or {},
         "pending": pending or {}, "ends": ends or {}, "logs": logs or {},
         "files": [list(f) for f in files]}
    if sacct is not None:
        a["sacct"] = sacct
    return a


@pytest.fixture
def run_dir(weird_tmp_path) -> Path:
    """A run directory with tasks.pkl of p0..p5 (batches of 2: [p0 p1] [p2 p3] [p4 p5])."""
    path = weird_tmp_path / "run"
    write_tasks(path, 6)
    return path


@pytest.fixture(autouse=True)
def default_polls(monkeypatch):
    monkeypatch.delenv("PYJOULE_POLL_INTERVAL", raising=False)


TIME_LIMIT_LOG = ("p4 started\nslurmstepd-localhost: error: *** JOB 101 ON localhost "
                  "CANCELLED AT 2026-12-02T20:40:12 DUE TO TIME LIMIT ***\n")


def test_a_task_timed_out_in_squeue(run_dir):
    b = backend(run_dir, wave())
    b._update(answer({"100_0": ["TIMEOUT", "TimeLimit"], "100_1": ["COMPLETED", "None"]},
                     claimed={"w0": ["000000.100_0", "000001.100_1", "000002.100_1"]},
                     pending={"w0": 0}), ["100_0", "100_1"])
    assert b.states == {"100_0": "TIMEOUT", "100_1": "COMPLETED"}
    assert b.claims == {"w0": {0: "100_0", 1: "100_1", 2: "100_1"}}
    assert not b.alive()
    out = b.orphan_reasons(["p0", "p1", "p3"])
    assert {p: o["reason"] for p, o in out.items()} == \
        {"p0": "timeout", "p1": "timeout", "p3": "lost"}
    assert "100_0 ended TIMEOUT" in out["p0"]["message"]
    assert out["p0"]["log_path"] == os.path.join(str(run_dir), "logs", "100_0.out")
    assert "worker died" in out["p3"]["message"]  # COMPLETED, yet p3 has no record


@pytest.mark.parametrize("state, reason", [
    ("TIMEOUT", "timeout"), ("DEADLINE", "timeout"), ("CANCELLED", "cancelled"),
    ("CANCELLED by 0", "cancelled"), ("PREEMPTED", "preempted"),
    ("NODE_FAIL", "node_failure"), ("BOOT_FAIL", "node_failure"),
    ("OUT_OF_MEMORY", "out_of_memory"), ("FAILED", "lost"), ("COMPLETED", "lost"),
    ("LOST", "lost"), (None, "lost"), ("", "lost")])
def test_reason_for(state, reason):
    assert _slurm.reason_for(state) == reason


def test_a_task_squeue_forgot_whose_log_says_time_limit(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({}, claimed={"w0": ["000000.100_0", "000001.100_1"]},
                     ends={"100_1": "0 done 3"}, logs={"100_0": TIME_LIMIT_LOG}),
              ["100_0", "100_1"])
    assert b.states == {"100_0": "TIMEOUT", "100_1": "COMPLETED"}
    assert not b.alive()
    assert b.orphan_reasons(["p0"])["p0"]["reason"] == "timeout"


@pytest.mark.parametrize("line, state, reason", [
    ("*** JOB 100 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO PREEMPTION ***",
     "PREEMPTED", "preempted"),
    ("*** JOB 100 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO NODE FAILURE ***",
     "NODE_FAIL", "node_failure"),
    ("slurmstepd: error: Detected 1 oom-kill event(s) in StepId=100.batch", "OUT_OF_MEMORY",
     "out_of_memory"),
    ("*** JOB 100 ON n1 CANCELLED AT 2026-01-01T00:00:00 ***", "CANCELLED", "cancelled")])
def test_log_markers(run_dir, line, state, reason):
    b = backend(run_dir, wave(count=1))
    b._update(answer({}, claimed={"w0": ["000000.100_0"]},
                     logs={"100_0": f"some output\n{line}\n"}), ["100_0"])
    assert b.states["100_0"] == state
    assert b.orphan_reasons(["p1"])["p1"]["reason"] == reason


def test_a_task_squeue_forgot_with_an_exit_file(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({}, claimed={"w0": ["000000.100_0", "000001.100_1"]},
                     ends={"100_0": "0 done 3", "100_1": "1 error 0"}), ["100_0", "100_1"])
    assert b.states == {"100_0": "COMPLETED", "100_1": "FAILED"}
    assert not b.alive()


def test_a_task_squeue_forgot_without_any_trace_is_lost(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer({}, claimed={"w0": ["000000.100_0"]}, logs={"100_0": None}), ["100_0"])
    assert b.states == {"100_0": "LOST"}
    assert not b.alive()
    out = b.orphan_reasons(["p0"])["p0"]
    assert out["reason"] == "lost" and "100_0 ended LOST" in out["message"]


def test_sacct_speaks_for_tasks_squeue_forgot(run_dir):
    b = backend(run_dir, wave(count=3))
    b._update(answer({"100_2": ["RUNNING", "None"]},
                     claimed={"w0": ["000000.100_0", "000001.100_1", "000002.100_2"]},
                     sacct={"100_0": ["OUT_OF_MEMORY", "sacct"],
                            "100_1": ["CANCELLED", "sacct"],
                            "100_2": ["PENDING", "sacct"]}),  # stale: squeue knows better
              ["100_0", "100_1", "100_2"])
    assert b.states == {"100_0": "OUT_OF_MEMORY", "100_1": "CANCELLED", "100_2": "RUNNING"}
    assert b.alive()
    assert {p: o["reason"] for p, o in b.orphan_reasons(["p0", "p2"]).items()} == \
        {"p0": "out_of_memory", "p2": "cancelled"}


def test_a_time_limit_killed_task_after_squeue_forgot_it(run_dir, monkeypatch):
    # The worker traps SIGTERM (sent at the time limit) and writes "143 terminated N";
    # SLURM then appends the time-limit line to the log. When squeue has purged the task
    # (MinJobAge, e.g. a client that re-attaches later) its reason must still be
    # 'timeout', from the log (or sacct), not 'lost' from the non-zero exit file.
    b = backend(run_dir, wave(count=1, batch=6, n_batches=1))
    for sub in ("ends", "logs"):
        (run_dir / sub).mkdir()
    (run_dir / "ends" / "100_0").write_text("143 terminated 0\n")
    (run_dir / "logs" / "100_0.out").write_text(TIME_LIMIT_LOG)
    queue = run_dir / "queue" / "w0"
    (queue / "pending").mkdir(parents=True)
    (queue / "claimed").mkdir()
    (queue / "claimed" / "000000.100_0").write_text("")
    got, _ = _slurm_probe.probe(str(run_dir), [], None, False, ["100_0"])
    b._update(got, ["100_0"])
    assert not b.alive()
    assert b.orphan_reasons(["p3"])["p3"]["reason"] == "timeout"


def test_unclaimed_batches_after_a_timed_out_wave(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer({"100_0": ["TIMEOUT", "TimeLimit"]}, claimed={"w0": ["000000.100_0"]},
                     pending={"w0": 2}), ["100_0"])
    assert b.pending_batches == {"w0": 2}
    out = b.orphan_reasons(["p1", "p2", "p5"])
    assert {p: o["reason"] for p, o in out.items()} == \
        {"p1": "timeout", "p2": "timeout", "p5": "timeout"}
    assert "no array task started" in out["p5"]["message"] and out["p5"]["log_path"] is None


def test_unclaimed_batches_when_tasks_stopped_claiming_for_lack_of_time(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer({"100_0": ["COMPLETED", "None"]}, claimed={"w0": ["000000.100_0"]},
                     ends={"100_0": "0 time 1"}, pending={"w0": 2}), ["100_0"])
    assert b.orphan_reasons(["p4"])["p4"]["reason"] == "timeout"


def test_unclaimed_batches_of_a_cancelled_wave(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({"100_0": ["CANCELLED", "None"], "100_1": ["TIMEOUT", "TimeLimit"]},
                     claimed={"w0": ["000000.100_0"]}), ["100_0", "100_1"])
    assert b.orphan_reasons(["p4"])["p4"]["reason"] == "cancelled"


def test_a_wave_no_task_claimed_from_says_where_to_look(run_dir):
    b = backend(run_dir, wave(count=2))
    b._update(answer({"100_0": ["FAILED", "NonZeroExitCode"],
                      "100_1": ["FAILED", "NonZeroExitCode"]}), ["100_0", "100_1"])
    out = b.orphan_reasons(["p0"])["p0"]
    assert out["reason"] == "lost"
    assert f"{run_dir}/logs" in out["message"] and "docs/slurm.md" in out["message"]
    # SQLite's WAL does not work across hosts: never tell users to share the cache
    assert "PYJOULE_CACHE" not in out["message"]
    assert "visible to the compute nodes" in out["message"]
    assert "FAILED" in out["message"]


def test_orphan_reasons_find_the_batch_across_task_files_and_waves(run_dir):
    # wave w0 ran tasks.pkl; the retry wave w1 ran p4, p5 and two new psets, in batches
    # of 3 over two files: [p4 p5 q0] [q1]
    (run_dir / "retry.pkl").write_bytes(pickle.dumps([("p4", {}), ("p5", {})]))
    (run_dir / "more.pkl").write_bytes(pickle.dumps([("q0", {}), ("q1", {})]))
    w0 = wave(count=2)
    w1 = wave("w1", job="200", count=2, batch=3, n_batches=2, tasks=("retry.pkl", "more.pkl"))
    b = backend(run_dir, w0, w1)
    b._update(answer({"100_0": ["TIMEOUT", "TimeLimit"], "100_1": ["TIMEOUT", "TimeLimit"],
                      "200_0": ["OUT_OF_MEMORY", "OutOfMemory"],
                      "200_1": ["PREEMPTED", "None"]},
                     claimed={"w0": ["000000.100_0", "000001.100_1", "000002.100_0"],
                              "w1": ["000000.200_1", "000001.200_0"]}),
              ["100_0", "100_1", "200_0", "200_1"])
    out = b.orphan_reasons(["p1", "p4", "p5", "q0", "q1"])
    assert {p: o["reason"] for p, o in out.items()} == {
        "p1": "timeout", "p4": "preempted", "p5": "preempted", "q0": "preempted",
        "q1": "out_of_memory"}
    assert not b.alive()


def test_controller_down_keeps_the_run_going(run_dir, caplog):
    b = backend(run_dir, wave(count=2))
    b._update(answer({"100_0": ["RUNNING", "None"], "100_1": ["RUNNING", "None"]}),
              ["100_0", "100_1"])
    with caplog.at_level(logging.INFO, logger="pyjoule"):
        for _ in range(3):
            b._update(answer(None, error="slurm_load_jobs error: Unable to contact slurm "
                                         "controller (connect failure)"), ["100_0", "100_1"])
            assert b.alive()
        b._update(answer({"100_0": ["COMPLETED", "None"], "100_1": ["RUNNING", "None"]}),
                  ["100_0", "100_1"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "does not answer" in warnings[0].getMessage()
    assert "connect failure" in warnings[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert b.states == {"100_0": "COMPLETED", "100_1": "RUNNING"} and b.alive()


def test_controller_down_at_the_first_look(run_dir):
    b = backend(run_dir, wave(count=1))
    b._update(answer(None, error="boom"), ["100_0"])  # must not raise
    assert b.alive() and b.states == {}


def test_a_hopeless_pending_reason_warns_once_per_job(run_dir, caplog):
    b = backend(run_dir, wave(count=2), wave("w1", job="200", count=1))
    hopeless = {"100_0": ["PENDING", "PartitionConfig"], "100_1": ["PENDING",
                                                                  "PartitionConfig"]}
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        for _ in range(3):
            b._update(answer({**hopeless, "200_0": ["PENDING", "Resources"]}),
                      ["100_0", "100_1", "200_0"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "job 100" in warnings[0] and "PartitionConfig" in warnings[0]
    assert b.alive()  # pending is not an end: the user decides to cancel
    assert b.reasons["100_0"] == "PartitionConfig"


@pytest.mark.parametrize("reason, warns", [
    ("PartitionConfig", True), ("BadConstraints", True), ("DependencyNeverSatisfied", True),
    ("PartitionTimeLimit", True), ("Resources", False), ("Priority", False),
    ("JobArrayTaskLimit", False), ("BeginTime", False),
    ("ReqNodeNotAvail, UnavailableNodes:localhost", False)])  # a node down: it may return
def test_which_pending_reasons_warn(run_dir, caplog, reason, warns):
    b = backend(run_dir, wave(count=1))
    with caplog.at_level(logging.WARNING, logger="pyjoule"):
        b._update(answer({"100_0": ["PENDING", reason]}), ["100_0"])
    assert any(r.levelno == logging.WARNING for r in caplog.records) == warns


def test_running_slots_count_workers_of_running_tasks(run_dir):
    b = backend(run_dir, wave(count=3, workers=4), wave("w1", job="200", count=1, workers=2))
    b._update(answer({"100_0": ["RUNNING", "None"], "100_1": ["RUNNING", "None"],
                      "100_2": ["PENDING", "Resources"], "200_0": ["RUNNING", "None"]}),
              ["100_0", "100_1", "100_2", "200_0"])
    assert b.running_slots() == 4 + 4 + 2


def test_polls_back_off_while_nothing_happens(run_dir, monkeypatch):
    b = backend(run_dir, wave(count=1))
    running = answer({"100_0": ["RUNNING", "None"]})
    b._update(running, ["100_0"])  # a change (no state known before): no back-off
    assert b._interval == FIRST_INTERVAL_S
    b._update(running, ["100_0"])
    assert b._interval == FIRST_INTERVAL_S * BACKOFF
    for _ in range(30):
        b._update(running, ["100_0"])
    assert b._interval == MAX_INTERVAL_S  # backed off, up to the cap
    assert time.monotonic() + MAX_INTERVAL_S - 1 < b._next_look
    # results grew: work is moving, so it looks more often again, down to the first
    b._update(answer({"100_0": ["RUNNING", "None"]}, files=[("a.rec", 120)]), ["100_0"])
    assert FIRST_INTERVAL_S <= b._interval < MAX_INTERVAL_S
    for _ in range(10):
        b._update(answer({"100_0": ["RUNNING", "None"]}, files=[("a.rec", 1)]), ["100_0"])
    assert b._interval == FIRST_INTERVAL_S
    # a state change counts as activity too
    for _ in range(5):
        b._update(running, ["100_0"])
    before = b._interval
    b._update(answer({"100_0": ["COMPLETED", "None"]}), ["100_0"])
    assert FIRST_INTERVAL_S <= b._interval < before
    monkeypatch.setenv("PYJOULE_POLL_INTERVAL", "0.25")  # a fixed interval wins
    b._update(running, ["100_0"])
    assert b._interval == 0.25


def test_a_local_look_is_one_squeue_for_all_jobs(run_dir, tmp_path, monkeypatch):
    # a fake squeue at the command boundary; the backend runs the probe in-process
    calls = tmp_path / "calls"
    write_exe(tmp_path / "bin" / "squeue", f"""#!/bin/sh
printf '%s\\n' "$*" >> '{calls}'
echo '100_0|RUNNING|None'
echo '100_1|PENDING|Resources'
echo '200_0|COMPLETED|None'
""")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    b = backend(run_dir, wave(count=2), wave("w1", job="200", count=1))
    _slurm_task.make_queue(str(run_dir), "w0", ["tasks.pkl"], 2)
    assert b.alive()
    assert calls.read_text().splitlines() == ["-h -r -t all -j 100,200 -o %i|%T|%r"]
    assert b.states == {"100_0": "RUNNING", "100_1": "PENDING", "200_0": "COMPLETED"}
    assert b.pending_batches == {"w0": 3} and b.queries == 1


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


@pytest.mark.parametrize("key, advice", [
    ("timeout_min", "time=90 (minutes), or time='01:30:00'"),
    ("mem_gb", "mem='4G'"),
    ("slurm_partition", "partition=<value>"),
    ("slurm_array_parallelism", "array_parallelism=<n>"),
    ("tasks_per_node", "ntasks_per_node=<n>"),
    ("mem-gb", "mem='4G'"),
])
def test_submitit_names_say_what_to_write_instead(key, advice):
    """A user coming from submitit types its names; the hint is the sbatch name, not
    the closest spelling (``timeout_min`` is near ``time-min``, another option)."""
    with pytest.raises(pj.OptionError) as err:
        pj.Slurm({key: 1})
    assert "submitit's name" in str(err.value)
    assert advice in str(err.value)
    assert "time_min" not in str(err.value) and "mem_bind" not in str(err.value)
