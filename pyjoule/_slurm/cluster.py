"""What pyjoule knows of a SLURM cluster, read from what its commands print: the
states of jobs (and why a pset they held did not finish), ``sbatch --help``,
``scontrol show config`` and ``sinfo`` (:class:`ClusterFacts`), and the psets packed
into array tasks within its limits (:func:`pack`). No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._errors import OptionError
from .options import parse_help

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
