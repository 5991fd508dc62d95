"""The worker program: ``python -m pyjoule.worker RUN_DIR``.

The same code runs every batch everywhere: in the driver (``workers=0``), as a local
subprocess, on an SSH host and in a SLURM array task. Its import closure is the
standard library, cloudpickle, threadpoolctl and pyjoule's own small modules.

Its run directory (payload, tasks, results, ``worker.pid``, ``exit``,
``worker.log``, ``children.pids``) is described, named and written by
:mod:`._rundir`; SLURM array tasks are :mod:`._slurm_task`.

Everything it creates is private (files 0600, directories 0700), whatever the umask.
What it does with one pset is :mod:`._execute`; its process pool, :mod:`._supervisor`.

The supervisor forks ``--workers`` children. Each child runs the tasks it is handed
and appends one record per finished pset to its own file, so a crash loses only the
pset in flight. The supervisor hands out chunks (large first, smaller near the end,
so a slow core does not hold up the finish), kills a child whose pset exceeds the
timeout, and records ``timeout`` or ``lost`` for the pset a dead child was running.

Each child leads its own process group, so that what the function forks (a
``multiprocessing.Pool``, a ``subprocess``) goes with it when it is killed or ends;
the supervisor learns of a child's death from the kernel (a pidfd, or ``waitid``), not
from its pipe, which a grandchild may hold open. Children die with the supervisor
(``_platform.die_with_parent``); every record they finished is already on disk.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from . import _platform
from ._execute import THREAD_VARS, _limit_threads, execute, failure_record, thread_controller  # noqa: F401 - known here
from ._rundir import STARTED, RunDir, open_append, write_all
from ._supervisor import PARENT_DIED, Supervisor


def load_run(run_dir: str, task_files: list[str] | None = None):
    """The payload and tasks of ``run_dir`` (checked to be the user's own first)."""
    return RunDir(run_dir).load(task_files)


# ------------------------------------------------------------------- in-process
def run_inline(run_dir: str, task_files: list[str] | None = None) -> int:
    """Run every task in this process (``workers=0``): same records, no fork."""
    rd = RunDir(run_dir)
    payload, tasks = rd.load(task_files)
    fd = open_append(rd.result_file(f"inline-{os.getpid()}-{time.time_ns()}"))
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    try:
        with _limit_threads(payload["threads"]):
            for pset_id, kwargs in tasks:
                write_all(fd, execute(payload["func"], pset_id, kwargs, payload["capture"]))
    finally:
        os.close(fd)
        for var, value in saved.items():  # this is the caller's process: restore
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return 0





# ------------------------------------------------------------------------- main
process_start_time = _platform.process_start_time  # callers and tests know them here
is_zombie = _platform.is_zombie


def _remove_tree(path: str) -> None:
    """Remove ``path``; again if a process still exiting wrote into it meanwhile."""
    import shutil

    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.1)


def run(run_dir: str, workers: int, task_files: list[str] | None = None, *,
        done_fd: int | None = None, controller=None, parent: int | None = None,
        orphan_dir: str | None = None) -> int:
    """Run every task of ``run_dir`` with ``workers`` processes (0: in this process).

    ``exit`` is written as soon as every task is accounted for, which may be before
    the children have exited; then one byte goes to ``done_fd`` (a pipe), if given,
    so that a caller waiting on it can ingest meanwhile. ``controller``: the caller's
    :func:`thread_controller`, when it forked this process.

    ``parent``: the pid of the caller, to die with (a ``cache=False`` run: nobody
    else could use its results); ``orphan_dir``: a directory (the throw-away cache)
    to remove when it died."""
    rd = RunDir(run_dir).make()
    if rd.decide_fate(STARTED) != STARTED:
        # the run was settled as never started (its driver died while starting it):
        # its psets are free again and may be running elsewhere, so none run here
        print(f"pyjoule: run {os.path.basename(run_dir)} was abandoned before this "
              "worker started; nothing to do", file=sys.stderr)
        return 0
    if workers > 0:
        _platform.set_process_name(b"pyjoule-worker")
    rd.write_pid(os.getpid())
    if workers <= 0:
        code = 1
        try:
            code = run_inline(run_dir, task_files)
        finally:
            rd.write_exit(code)
        return code
    code = 1
    supervisor = None
    written = []
    orphaned = []  # the caller (``parent``) died

    def _done():
        rd.write_exit(0)
        written.append(True)
        if done_fd is not None:
            try:
                os.write(done_fd, b"d")
            except OSError:  # the caller is gone: nobody to tell
                pass

    try:
        payload, tasks = rd.load(task_files)
        import threadpoolctl  # noqa: F401 - once here rather than in every child

        supervisor = Supervisor(run_dir, payload, tasks, workers, on_done=_done,
                                controller=controller)

        def _terminate(signum, _frame):
            for sig in (signal.SIGTERM, PARENT_DIED):  # once: a second signal (each of a
                signal.signal(sig, signal.SIG_IGN)  # dying caller's threads sends one)
                # must not cut the clean-up short
            if signum == PARENT_DIED:
                orphaned.append(True)
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _terminate)
        if parent is not None:  # a signal of its own when it dies (or the loop notices)
            signal.signal(PARENT_DIED, _terminate)
            supervisor.parent = parent
            _platform.die_with_parent(PARENT_DIED, parent, watch=False)
        code = supervisor.run()
    except SystemExit as exc:
        code = int(exc.code or 1)
        raise
    finally:
        if supervisor is not None and supervisor.children:
            supervisor.stop()
        if orphaned and orphan_dir:
            _remove_tree(orphan_dir)  # the caller is gone: nobody else will
        elif not written:  # else every task is accounted for, and the caller may be tidying
            rd.write_exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    import argparse  # here: a driver imports this module for its pool, never main()

    parser = argparse.ArgumentParser(prog="python -m pyjoule.worker",
                                     description="Run the tasks of a pyjoule run directory.")
    parser.add_argument("run_dir")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tasks", nargs="*", default=None,
                        help="task files in RUN_DIR (default: tasks.pkl)")
    parser.add_argument("--done-fd", type=int, default=None,
                        help="an inherited pipe to write one byte to once every task "
                        "is accounted for")
    parser.add_argument("--parent", type=int, default=None,
                        help="the pid of the caller: stop when it dies")
    parser.add_argument("--orphan-dir", default=None,
                        help="with --parent: a directory to remove when the caller died")
    parser.add_argument("--check", action="store_true",
                        help="only load the function and tasks (a pre-flight check on a "
                        "host: a missing module fails here, with its traceback)")
    parser.add_argument("--make-queue", metavar="WAVE",
                        help="with --check: write the claimable batches of WAVE")
    parser.add_argument("--batch", type=int, default=1, help="psets per batch (--make-queue)")
    parser.add_argument("--slurm", metavar="WAVE",
                        help="run as a SLURM array task: claim batches of WAVE's queue")
    parser.add_argument("--abandon", action="store_true",
                        help="settle a run whose driver died while starting it: print "
                        "its fate (started, or abandoned from now on)")
    args = parser.parse_args(argv)
    if args.abandon:
        from ._rundir import ABANDONED

        print(RunDir(args.run_dir).decide_fate(ABANDONED))
        return 0
    if args.check:
        load_run(args.run_dir, args.tasks)
        if args.make_queue:
            from ._rundir import TASKS
            from ._slurm_task import make_queue

            print(make_queue(args.run_dir, args.make_queue, args.tasks or [TASKS],
                             args.batch))
        return 0
    if args.slurm:
        from ._slurm_task import run_slurm

        return run_slurm(args.run_dir, args.slurm, args.workers)
    return run(args.run_dir, args.workers, args.tasks, done_fd=args.done_fd,
               parent=args.parent, orphan_dir=args.orphan_dir)


if __name__ == "__main__":
    sys.exit(main())
