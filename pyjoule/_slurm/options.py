"""SLURM without I/O: sbatch options, packing psets into array tasks, the job script,
and reading what ``squeue``, ``scontrol`` and ``sinfo`` print.

Everything here is a pure function of its arguments, so the command lines and the
script can be pinned by golden-file tests; :mod:`._backends.slurm` runs them.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from .._errors import OptionError
from .._rundir import LOG_SUFFIX

# sbatch options pyjoule sets itself; a user value would break the run
RESERVED = {
    "array": "pyjoule builds --array from batch= (psets per array task); use "
             "array_parallelism for the % throttle",
    "output": "each array task's log goes to the run directory (<run>/logs/), where "
              "run.failures finds it",
    "error": "stderr goes with stdout into the task's log in the run directory",
    "parsable": "pyjoule reads the job id with --parsable already",
    "wrap": "pyjoule writes the job script itself",
    "wait": "pyjoule watches the job instead: use f.map (blocks) or f.submit (returns)",
    "chdir": "the job runs in the project's folder on the cluster",
    "test-only": "it only checks the script and submits nothing: pyjoule needs the job",
    "help": "sbatch would print its help and submit nothing",
    "usage": "sbatch would print its usage and submit nothing",
    "version": "sbatch would print its version and submit nothing",
}
OWN = ("array_parallelism",)
# squeue states after which a job (or array task) does nothing more
FINAL_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED",
                          "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
                          "SPECIAL_EXIT", "REVOKED"})
# pending reasons that never resolve by themselves (the request cannot be satisfied)
HOPELESS_REASONS = frozenset({"PartitionConfig", "BadConstraints", "DependencyNeverSatisfied",
                              "PartitionNodeLimit", "PartitionTimeLimit", "AccountNotAllowed",
                              "InvalidAccount", "InvalidQOS"})
# an array task's final state -> the reason its unfinished psets get
REASONS = {"TIMEOUT": "timeout", "DEADLINE": "timeout", "CANCELLED": "cancelled",
           "PREEMPTED": "preempted", "NODE_FAIL": "node_failure", "BOOT_FAIL": "node_failure",
           "OUT_OF_MEMORY": "out_of_memory"}
# what slurmstepd writes into a job's output when it ends one (the record that is
# left when squeue has forgotten the job and there is no accounting)
LOG_MARKERS = (("DUE TO TIME LIMIT", "TIMEOUT"), ("DUE TO PREEMPTION", "PREEMPTED"),
               ("DUE TO NODE FAILURE", "NODE_FAIL"), ("oom-kill", "OUT_OF_MEMORY"),
               ("Out Of Memory", "OUT_OF_MEMORY"), ("CANCELLED AT", "CANCELLED"))


def reason_for(state: str | None) -> str:
    """The failure reason of a pset left unfinished by an array task in ``state``."""
    return REASONS.get((state or "").split()[0] if state else "", "lost")


# ------------------------------------------------------------------- options
class Slurm:
    """sbatch options for ``@pj.experiment(slurm=...)``.

    Keys are sbatch's long options, in ``snake_case`` or ``kebab-case``
    (``cpus_per_task=16`` or ``"cpus-per-task": 16``); ``True`` gives a bare flag
    (``exclusive=True`` → ``--exclusive``), ``False``/``None`` leaves the option out.
    pyjoule's own ``array_parallelism=N`` becomes the array's ``%N`` throttle. A name
    that is no sbatch option of Slurm 20.11 to 24.11 raises ``pj.OptionError`` at
    once, with the closest one; the first submit checks the names again against the
    cluster's own ``sbatch --help``.

    Parameters
    ----------
    options : dict, optional
        sbatch options as a dict (for names that are not identifiers, or a dict you
        already have); keywords are merged over it.
    **kwargs
        sbatch options as keywords, and ``array_parallelism``.

    Examples
    --------
    >>> import pyjoule as pj
    >>> pj.Slurm(time="01:00:00", mem="2G", cpus_per_task=4).argv()
    ['--time=01:00:00', '--mem=2G', '--cpus-per-task=4']
    >>> pj.Slurm({"cpus-per-task": 4}, exclusive=True, exclude=["node01", "node02"],
    ...          requeue=False).argv()
    ['--cpus-per-task=4', '--exclusive', '--exclude=node01,node02']
    """

    def __init__(self, options: Mapping[str, Any] | None = None, /, **kwargs: Any):
        merged = {**dict(options or {}), **kwargs}
        parallelism = None
        for key in ("array_parallelism", "array-parallelism"):
            if key in merged:
                parallelism = merged.pop(key)
        if parallelism is not None and (not isinstance(parallelism, int)
                                        or isinstance(parallelism, bool) or parallelism < 1):
            raise OptionError(f"slurm array_parallelism={parallelism!r} is not valid: "
                              "expected an int >= 1 (array tasks running at once)")
        self.array_parallelism: int | None = parallelism
        self.options: dict[str, str | None] = _normalise(merged)

    @classmethod
    def of(cls, value: Any) -> "Slurm":
        if isinstance(value, Slurm):
            return value
        if isinstance(value, Mapping):
            return cls(value)
        raise OptionError(f"slurm={value!r} is not valid: pass a dict of sbatch options "
                          'such as {"time": "01:00:00", "mem": "2G"}, or pj.Slurm(...)')

    def argv(self) -> list[str]:
        """The options as sbatch arguments (each one word: no shell is involved)."""
        return [f"--{k}" if v is None else f"--{k}={v}" for k, v in self.options.items()]

    @property
    def cpus_per_task(self) -> int | None:
        value = self.options.get("cpus-per-task")
        return int(value) if value and value.isdigit() else None

    @property
    def time_limit_s(self) -> float | None:
        value = self.options.get("time")
        return parse_duration(value) if value else None

    def describe(self) -> dict[str, Any]:
        return {"options": self.options, "array_parallelism": self.array_parallelism}

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> "Slurm":
        new = cls()
        new.options = dict(d.get("options") or {})
        new.array_parallelism = d.get("array_parallelism")
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slurm) and self.describe() == other.describe()

    def __repr__(self) -> str:
        items = [f"{k.replace('-', '_')}={v!r}" for k, v in self.options.items()]
        if self.array_parallelism:
            items.append(f"array_parallelism={self.array_parallelism}")
        return f"Slurm({', '.join(items)})"


_KEY = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def _normalise(options: Mapping[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in options.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise OptionError(f"slurm option {key!r} is not an sbatch long option name; "
                              'write it like "cpus_per_task" or "cpus-per-task"')
        name = key.replace("_", "-")
        if name in RESERVED:
            raise OptionError(f"slurm option {key!r} is set by pyjoule: {RESERVED[name]}")
        if name not in SBATCH_OPTIONS:
            raise OptionError(_unknown_option(key, name))
        if value is None or value is False:
            continue
        if value is True:
            out[name] = None
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, (str, int, float)):
            text = str(value)
            if "\n" in text or "\0" in text:
                raise OptionError(f"slurm option {key!r} has a line break in its value")
            out[name] = text
        else:
            raise OptionError(f"slurm option {key}={value!r}: expected a string, number, "
                              "bool or list")
    return out


def _unknown_option(key: str, name: str) -> str:
    """The message for a well-formed name that is no sbatch option, with the closest
    valid one spelt like ``key`` (snake_case or kebab-case)."""
    text = (f"slurm option {key!r} is not an sbatch option "
            f"(sbatch 20.11-24.11 has no --{name})")
    where = "see `sbatch --help` or https://slurm.schedmd.com/sbatch.html for the options"
    peer = _submitit_hint(name, "-" in key)
    if peer:
        return f"{text}. {peer}"
    names = SBATCH_OPTIONS | set(RESERVED) | {own.replace("_", "-") for own in OWN}
    close = difflib.get_close_matches(name, sorted(names), n=1)
    if not close:
        return f"{text}; {where}"
    if close[0] in RESERVED:
        return (f"{text}; --{close[0]} is close, but it is set by pyjoule: "
                f"{RESERVED[close[0]]}")
    hint = close[0] if "-" in key else close[0].replace("-", "_")
    return f"{text}. Did you mean {hint!r}? Or {where}."


# submitit's parameter names (``update_parameters``), which users coming from it type
# here: what to write instead. A close sbatch name would mislead (``timeout_min`` is
# near ``time-min``, a different option; ``mem_gb`` near ``mem-bind``).
_SUBMITIT = {
    "timeout-min": "{time}=90 (minutes), or {time}='01:30:00'",
    "mem-gb": "{mem}='4G'",
    "tasks-per-node": "{ntasks_per_node}=<n>",
    "name": "{job_name}='<name>'",
    "array-parallelism": "{array_parallelism}=<n> (the % throttle)",
    "additional-parameters": "the sbatch options themselves as keys of slurm=",
}


def _submitit_hint(name: str, kebab: bool) -> str | None:
    """What to write instead of a submitit parameter name (``slurm_`` prefix too)."""
    bare = name[len("slurm-"):] if name.startswith("slurm-") else name
    hint = _SUBMITIT.get(bare)
    if hint is None:
        if bare == name or bare not in SBATCH_OPTIONS | {"array-parallelism"}:
            return None
        hint = "{" + bare.replace("-", "_") + "}=<value>"
    def spell(match: re.Match[str]) -> str:
        return match.group(1).replace("_", "-") if kebab else match.group(1)

    text = re.sub(r"\{(\w+)\}", spell, hint)
    return f"That is submitit's name; in slurm= write {text}."


def parse_help(text: str) -> set[str]:
    """The long options ``sbatch --help`` lists."""
    return set(re.findall(r"(?:^|[\s,])--([a-z][a-z0-9-]*)", text, flags=re.M))


# sbatch options its man page documents but 22.05's `--help` does not list
UNLISTED = frozenset({"hint", "open-mode", "acctg-freq", "mem-bind", "kill-on-invalid-dep",
                      "wait-all-nodes", "network", "export-file", "get-user-env",
                      "ntasks-per-gpu", "gpus-per-socket", "cpu-freq", "uid", "gid"})

# sbatch's long options in Slurm 20.11 to 24.11 (their union), checked at decoration so a
# misspelt name fails before anything runs. Sources: the OPTIONS of the 20.11 and 22.05
# man pages (sbatch.1; 22.05.8 as Debian's slurm-wlm ships it) and 22.05's
# `sbatch --help`, every name of UNLISTED, and what SchedMD's NEWS lists as added since:
# --tres-per-task, --extra, --container-id (23.x), --segment, --stepmgr, --resv-ports,
# --tres-bind (24.05), --oom-kill-step (24.11); --power, gone from later man pages,
# stays (older clusters take it). Names added in 25.05 and later (--resources,
# --spread-segments, --consolidate-segments, --mem-update) are not here. A cluster may
# still lack one of these: the first submit checks against its own `sbatch --help`.
SBATCH_OPTIONS = frozenset({
    "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir",
    "cluster-constraint", "clusters", "comment", "constraint", "container",
    "container-id", "contiguous", "core-spec", "cores-per-socket", "cpu-freq",
    "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency",
    "distribution", "error", "exclude", "exclusive", "export", "export-file", "extra",
    "extra-node-info", "get-user-env", "gid", "gpu-bind", "gpu-freq", "gpus",
    "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags", "help",
    "hint", "hold", "ignore-pbs", "input", "job-name", "kill-on-invalid-dep",
    "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-bind", "mem-per-cpu",
    "mem-per-gpu", "mincpus", "network", "nice", "no-kill", "no-requeue", "nodefile",
    "nodelist", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu",
    "ntasks-per-node", "ntasks-per-socket", "oom-kill-step", "open-mode", "output",
    "overcommit", "oversubscribe", "parsable", "partition", "power", "prefer",
    "priority", "profile", "propagate", "qos", "quiet", "reboot", "requeue",
    "reservation", "resv-ports", "segment", "signal", "sockets-per-node", "spread-job",
    "stepmgr", "switches", "test-only", "thread-spec", "threads-per-core", "time",
    "time-min", "tmp", "tres-bind", "tres-per-task", "uid", "usage", "use-min-nodes",
    "verbose", "version", "wait", "wait-all-nodes", "wckey", "wrap"
})


def check_options(slurm: Slurm, known: set[str], where: str) -> None:
    """Raise :class:`OptionError` for an option that looks like a misspelt one of the
    host's sbatch (from its ``--help``). A name close to none is left for sbatch itself
    to judge at submit (its ``--help`` does not list every option it takes)."""
    known = known | UNLISTED
    for name in slurm.options:
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known | set(RESERVED)), n=1)
        if not close:
            continue
        key = name.replace("-", "_")
        if close[0] in RESERVED:
            raise OptionError(f"sbatch on {where} has no option --{name} (from slurm="
                              f"{{{key!r}: ...}}); --{close[0]} is close, but it is set by "
                              f"pyjoule: {RESERVED[close[0]]}")
        raise OptionError(f"sbatch on {where} has no option --{name} (from slurm="
                          f"{{{key!r}: ...}}). Did you mean "
                          f"{close[0].replace('-', '_')!r}? Its options are listed by "
                          "`sbatch --help` there.")


def parse_duration(text: str) -> float | None:
    """Seconds in a SLURM time (``minutes``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``);
    None for ``UNLIMITED``/``INFINITE``/``NOT_SET`` or anything else unknown."""
    text = str(text).strip()
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
        parts = text.split(":")
        while len(parts) < 3:
            parts.append("0")
    else:
        parts = text.split(":")
        if len(parts) == 1:  # plain minutes
            parts = ["0", parts[0], "0"]
        elif len(parts) == 2:  # MM:SS
            parts = ["0", *parts]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    h, m, s = (int(p) for p in parts)
    return float(((days * 24 + h) * 60 + m) * 60 + s)


# ------------------------------------------------------------------ the cluster
@dataclass
class ClusterFacts:
    """What pyjoule asks a cluster once per process: sbatch's options and the limits."""

    options: set[str]
    max_array_size: int = 1001
    max_job_count: int = 10000
    accounting: bool = False
    partitions: dict[str, int] = field(default_factory=dict)  # name -> CPUs
    default_partition: str | None = None

    def cpus(self, partition: str | None) -> int:
        name = partition or self.default_partition
        if name in self.partitions:
            return self.partitions[name]
        return max(self.partitions.values(), default=1)


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


def parse_facts(help_text: str, config_text: str, sinfo_text: str) -> ClusterFacts:
    """From ``sbatch --help``, ``scontrol show config`` and ``sinfo -h -o '%P|%C'``."""
    conf = parse_config(config_text)
    facts = ClusterFacts(options=parse_help(help_text))
    for key, attr in (("MaxArraySize", "max_array_size"), ("MaxJobCount", "max_job_count")):
        value = conf.get(key, "").split()[0] if conf.get(key) else ""
        if value.isdigit():
            setattr(facts, attr, int(value))
    facts.accounting = conf.get("AccountingStorageType", "accounting_storage/none") \
        not in ("accounting_storage/none", "")
    for line in sinfo_text.splitlines():
        name, _, cpus = line.strip().partition("|")
        if not name:
            continue
        if name.endswith("*"):
            name = name[:-1]
            facts.default_partition = name
        total = cpus.split("/")[-1]
        if total.isdigit():
            facts.partitions[name] = facts.partitions.get(name, 0) + int(total)
    return facts


# ------------------------------------------------------------------- packing
@dataclass
class Packing:
    """How a wave of psets becomes array jobs: ``batch`` psets per claimable batch,
    ``n_tasks`` array tasks in all, as arrays of at most ``MaxArraySize`` tasks."""

    n_psets: int
    batch: int
    n_batches: int
    n_tasks: int
    arrays: list[tuple[int, int]]  # (offset of the first task, number of tasks)

    def array_spec(self, count: int, parallelism: int | None) -> str:
        spec = f"0-{count - 1}"
        if parallelism:
            # the throttle is for the whole study: share it among its arrays
            spec += f"%{max(1, parallelism // len(self.arrays))}"
        return spec


def pack(n_psets: int, *, workers: int, batch: int | None, facts: ClusterFacts,
         partition: str | None = None, parallelism: int | None = None) -> Packing:
    """Pack ``n_psets`` into array tasks of ``workers`` processes each.

    With ``batch``: that many psets per array task. Automatic: enough tasks to fill
    the partition's CPUs (or the throttle), each task taking about four batches from
    the shared queue, so fast tasks take more work and stragglers do not hold up the
    end; never more tasks than one array allows.
    """
    if n_psets <= 0:
        raise ValueError("nothing to pack")
    limit = facts.max_array_size
    if batch is not None:
        n_batches = math.ceil(n_psets / batch)
        n_tasks = n_batches
        room = max(1, facts.max_job_count // 2)
        if n_tasks > room:
            raise OptionError(
                f"batch={batch} makes {n_tasks} array tasks for {n_psets} psets, more than "
                f"this cluster keeps (MaxJobCount={facts.max_job_count}); use a batch of "
                f"at least {math.ceil(n_psets / room)}, or leave batch unset")
    else:
        slots = max(1, facts.cpus(partition) // max(1, workers))
        if parallelism:
            slots = min(slots, parallelism)
        n_tasks = max(1, min(slots, math.ceil(n_psets / workers), limit,
                             max(1, facts.max_job_count // 2)))
        batch = max(workers, math.ceil(n_psets / (4 * n_tasks)))
        n_batches = math.ceil(n_psets / batch)
        n_tasks = min(n_tasks, n_batches)
    arrays = []
    offset = 0
    while offset < n_tasks:
        count = min(limit, n_tasks - offset)
        arrays.append((offset, count))
        offset += count
    return Packing(n_psets, batch, n_batches, n_tasks, arrays)


# -------------------------------------------------------------------- the job
def sbatch_argv(slurm: Slurm, *, array_spec: str, log_dir: str, job_name: str,
                script: str) -> list[str]:
    """The sbatch command line (a list: every word reaches sbatch as it is)."""
    argv = ["sbatch", "--parsable", f"--array={array_spec}",
            f"--output={_pattern_path(log_dir)}/%A_%a{LOG_SUFFIX}"]
    if "job-name" not in slurm.options:
        argv.append(f"--job-name={job_name}")
    return [*argv, *slurm.argv(), script]


def _pattern_path(path: str) -> str:
    return path.replace("%", "%%")  # sbatch reads % as a filename pattern


SCRIPT = """\
#!/bin/bash
# pyjoule array task: run {run_id}, wave {wave}. Written by pyjoule; do not edit.
# Each task claims batches of psets from {queue} and runs them with {workers}
# worker processes; results go to {results_comment} as they finish.
set -e
cd {project}
{setup}export PYTHONPATH={pythonpath}
{env}{env_file}exec {python} -m pyjoule.worker {run_dir} --slurm {wave} --workers {workers}
"""


def render_script(*, run_id: str, wave: str, run_dir: str, project: str, python: str,
                  pythonpath: str, workers: int, setup: list[str] | tuple[str, ...] = (),
                  env: Mapping[str, str] | None = None, env_file: str | None = None) -> str:
    """The job script of one wave: environment, the user's setup lines, the worker.

    ``env_file`` (the run's private ``host.env``) is read by the script, so that the
    values of pj.Host(env=...) are never in it, nor in the registry of a process
    that resubmits; the script is written 0600 all the same."""
    from .._rundir import RunDir

    q = shlex.quote
    rd = RunDir(run_dir)

    def comment(text: str) -> str:  # a line break would end the comment line
        return text.replace("\n", " ").replace("\r", " ")

    return SCRIPT.format(
        run_id=comment(run_id), wave=comment(wave), queue=comment(rd.queue(wave)),
        results_comment=comment(rd.results),
        run_dir=q(run_dir), project=q(project), python=q(python), pythonpath=q(pythonpath),
        workers=int(workers), setup="".join(f"{line}\n" for line in setup),
        env="".join(f"export {k}={q(str(v))}\n" for k, v in (env or {}).items()),
        env_file=f". {q(env_file)}\n" if env_file else "")


def parse_job_id(stdout: str) -> str:
    """The job id ``sbatch --parsable`` printed (``123`` or ``123;cluster``)."""
    text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job = text.split(";")[0].strip()
    if not job.isdigit():
        raise ValueError(f"sbatch printed {stdout!r}, not a job id")
    return job
