"""``pj.Slurm`` and the sbatch options: their names checked (against the long
options of Slurm 20.11 to 24.11 at decoration, and against a cluster's own ``sbatch
--help`` at its first submit), the options pyjoule sets itself refused, and what
users of submitit type pointed at its sbatch name. No I/O."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from .._errors import OptionError

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
    def of(cls, value: Any) -> Slurm:
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
    def from_description(cls, d: dict[str, Any]) -> Slurm:
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
