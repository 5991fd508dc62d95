"""SLURM without I/O: sbatch options, packing psets into array tasks, the job script,
and reading what ``squeue``, ``scontrol`` and ``sinfo`` print.

Everything here is a pure function of its arguments, so the command lines and the
script can be pinned by golden-file tests; :mod:`.._backends.slurm` runs them.
The names are imported from here (``pyjoule._slurm.Slurm``); the modules:
:mod:`.options` (``pj.Slurm`` and the sbatch options), :mod:`.cluster` (job states,
the cluster's facts, packing psets into array tasks), :mod:`.job` (sbatch's argv,
the job script, the job id).
"""

__all__ = [  # the names the rest of pyjoule uses
    "FINAL_STATES", "HOPELESS_REASONS", "LOG_MARKERS", "OWN", "REASONS", "RESERVED",
    "SBATCH_OPTIONS", "SCRIPT", "UNLISTED", "ClusterFacts", "Packing", "Slurm",
    "check_options", "pack", "parse_config", "parse_duration", "parse_facts", "parse_help",
    "parse_job_id", "reason_for", "render_script", "sbatch_argv"]

from .cluster import (
    FINAL_STATES,
    HOPELESS_REASONS,
    LOG_MARKERS,
    REASONS,
    ClusterFacts,
    Packing,
    pack,
    parse_config,
    parse_facts,
    reason_for,
)
from .job import SCRIPT, parse_job_id, render_script, sbatch_argv
from .options import (
    OWN,
    RESERVED,
    SBATCH_OPTIONS,
    UNLISTED,
    Slurm,
    check_options,
    parse_duration,
    parse_help,
)
