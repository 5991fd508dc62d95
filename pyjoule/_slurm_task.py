"""One SLURM array task: ``python -m pyjoule.worker RUN_DIR --slurm WAVE``.

A SLURM run directory holds, per wave of array jobs (w0, then w1... for retries),
a queue of batches (names: :mod:`._rundir`)::

    queue/<wave>/meta.json       {"tasks": [task files], "batch": psets per batch, "n"}
    queue/<wave>/pending/<b>     one empty file per batch not yet claimed
    queue/<wave>/claimed/<b>.<array job>_<task>   claimed by that array task
    ends/<array job>_<task>      "<exit code> <why> <batches>" of a task, written last
    logs/<array job>_<task>.out  the task's stdout/stderr (sbatch --output)

Array tasks claim batches by renaming them (atomic on one file system, NFS too),
so a fast task takes more of them and the stragglers do not hold up the end. Each
batch runs under the worker's :class:`~.worker.Supervisor`.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from . import _platform, _rundir
from ._rundir import RunDir, atomic_write, makedirs_private

END_MARGIN_S = 10.0  # do not claim a batch with less time left than this ...
END_MARGIN_FACTOR = 1.5  # ... or than this many times the longest batch so far


def make_queue(run_dir: str, wave: str, task_files: list[str], batch: int) -> int:
    """Write the claimable batches of ``wave``; return how many there are."""
    import json

    rd = RunDir(run_dir)
    n = sum(len(rd.task_list([name])) for name in task_files)
    for sub in (_rundir.PENDING, _rundir.CLAIMED):
        makedirs_private(rd.queue(wave, sub))
    for folder in (rd.ends, rd.logs, rd.results):
        makedirs_private(folder)
    n_batches = -(-n // batch)
    for b in range(n_batches):
        os.close(os.open(rd.queue(wave, _rundir.PENDING, f"{b:06d}"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    atomic_write(rd.queue(wave, _rundir.META),
                 json.dumps({"tasks": task_files, "batch": batch, "n": n}).encode())
    return n_batches


def claim(folder: str, me: str) -> int | None:
    """Claim the next pending batch of a wave's queue (``folder``) for ``me``; None
    when empty."""
    pending = os.path.join(folder, _rundir.PENDING)
    while True:
        try:
            names = sorted(os.listdir(pending))
        except FileNotFoundError:
            return None
        if not names:
            return None
        for name in names:
            try:
                os.rename(os.path.join(pending, name),
                          os.path.join(folder, _rundir.CLAIMED, f"{name}.{me}"))
                return int(name)
            except FileNotFoundError:  # another task was quicker: try the next one
                continue


def array_task_id() -> str:
    """``<array job id>_<task id>`` of this SLURM array task (or the plain job id)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or f"local{os.getpid()}"


def job_end_time() -> float | None:
    """When SLURM will end this job (``SLURM_JOB_END_TIME``, else asking ``squeue``
    for the time left); None when unlimited or unknown."""
    import subprocess

    if os.environ.get("SLURM_JOB_END_TIME", "").isdigit():
        return float(os.environ["SLURM_JOB_END_TIME"])
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        left = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    seconds = _duration_s(left)
    return None if seconds is None else time.time() + seconds


def _duration_s(text: str) -> float | None:
    """Seconds in a SLURM time (squeue's ``%L``: ``[D-]HH:MM:SS``, ``MM:SS``); None if
    unlimited or unknown."""
    from ._slurm import parse_duration

    return parse_duration(text)


def run_slurm(run_dir: str, wave: str, workers: int) -> int:
    """One SLURM array task: claim batches of ``wave`` and run each with ``workers``
    processes, until the queue is empty or the job's end is too near for another.

    SLURM sends SIGTERM before it kills a task at its time limit (or on scancel): the
    children stop at once (every finished pset is on disk already), and the exit file
    says so. The psets left unfinished are accounted for by the dispatcher, from the
    task's state in the scheduler.
    """
    import json

    from .worker import Supervisor

    me = array_task_id()
    rd = RunDir(run_dir)
    if rd.decide_fate(_rundir.STARTED) != _rundir.STARTED:
        print(f"pyjoule: run {os.path.basename(run_dir)} was abandoned before this task "
              "started; nothing to do", file=sys.stderr)
        return 0
    folder = rd.queue(wave)
    with open(rd.queue(wave, _rundir.META)) as fh:
        meta = json.load(fh)
    payload, tasks = rd.load(meta["tasks"])
    size = int(meta["batch"])
    end = job_end_time()
    _platform.set_process_name(b"pyjoule-worker")
    code, why, batches, longest = 1, "error", 0, 0.0
    supervisor = None

    def _terminate(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        while True:
            if batches and end is not None:
                left = end - time.time()
                if left < max(END_MARGIN_S, END_MARGIN_FACTOR * longest):
                    print(f"pyjoule: {left:.0f} s left of this job's time, less than a "
                          f"batch takes ({longest:.0f} s): claiming no more", flush=True)
                    code, why = 0, "time"
                    break
            b = claim(folder, me)
            if b is None:
                code, why = 0, "done"
                break
            t0 = time.monotonic()
            supervisor = Supervisor(run_dir, payload, tasks[b * size:(b + 1) * size],
                                    workers, prefix=f"{me}-b{b}-")
            supervisor.run()
            supervisor = None
            batches += 1
            longest = max(longest, time.monotonic() - t0)
    except SystemExit as exc:
        code, why = int(exc.code or 1), "terminated"
        print(f"pyjoule: stopped by signal {code - 128} (time limit or scancel)", flush=True)
    finally:
        if supervisor is not None:
            supervisor.stop()
        atomic_write(rd.end_file(me), f"{code} {why} {batches}\n".encode())
    return code
