"""The job of one wave: ``sbatch``'s argument list and the job script (both pinned by
golden files), and the job id ``sbatch --parsable`` answers. No I/O."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from .._rundir import LOG_SUFFIX
from .options import Slurm


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
