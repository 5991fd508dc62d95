"""SLURM without I/O: sbatch options, packing psets into array tasks, the job script,
and reading what ``squeue``, ``scontrol`` and ``sinfo`` print.

Everything here is a pure function of its arguments, so the command lines and the
script can be pinned by golden-file tests; :mod:`.._backends.slurm` runs them.
The names are imported from here (``pyjoule._slurm.Slurm``); the modules:
:mod:`.options` (``pj.Slurm`` and the sbatch options).
"""

from .options import *  # noqa: F401,F403
from .options import (  # noqa: F401 - the names the rest of pyjoule uses
    FINAL_STATES, HOPELESS_REASONS, LOG_MARKERS, OWN, REASONS, RESERVED, SBATCH_OPTIONS,
    SCRIPT, UNLISTED, ClusterFacts, Packing, Slurm, check_options, pack, parse_config,
    parse_duration, parse_facts, parse_help, parse_job_id, reason_for, render_script,
    sbatch_argv)
