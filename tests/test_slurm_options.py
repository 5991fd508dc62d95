"""SLURM without a scheduler: ``pj.Slurm`` options, their names checked against what
``sbatch --help`` lists (golden and live, see tests/slurm_helpers.py)."""

from __future__ import annotations

import json
import re

import pytest
from slurm_helpers import SBATCH_HELP, pick, sources

import pyjoule as pj
from pyjoule import _slurm
from pyjoule._slurm import Slurm


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
    assert names >= _slurm.UNLISTED and set(_slurm.RESERVED) <= names
    assert _slurm.parse_help(SBATCH_HELP["golden"]) <= names  # all of 22.05's --help
    assert not {"spread-segments", "consolidate-segments", "mem-update"} & names  # 25.x+
    assert not {"x11", "cpu-bind", "pty", "overlap", "ntasks-per-tres"} & names  # srun's


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
