"""Following one run (:class:`LiveRun`): its records ingested as they come, a
retry started while ``retries`` allow, every pset accounted for at the end.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from .. import _bulk, _callables, _claims, _interrupt, _records, _unfinished
from .._rundir import RETRY, TASKS, RunDir
from .._store import Store
from .backends import make_backend
from .liveness import is_live, settle_start
from .payload import _tasks_blob, _write

if TYPE_CHECKING:
    from .._backends.base import Backend

log = logging.getLogger("pyjoule")


#: what one ingest reads of the result files at most (~240,000 no-op records,
#: shared among the files, 1 MiB each at least): the records, their segment and its
#: columns stay a bounded part of the driver's memory however far behind it fell.
#: Each ingest's commit writes the index's pages its (random) pset ids fall on, all
#: of them once the index is large: at 1,000,000 psets, 8 MiB bites (23 commits)
#: took 1 s more than these (6), with the same peak memory
POLL_BYTES = 32 << 20

#: the key of a run record (``launch``'s) under which its tasks come in memory,
#: ``{pset_id: kwargs}``: its own follower need not read back what it just wrote
TASKS_HANDED = "_tasks"

INFRA_REASONS = ("timeout", "lost", "node_failure", "out_of_memory", "preempted")


_ERROR_TYPES = {"timeout": "TimeoutError", "out_of_memory": "OutOfMemory",
                "node_failure": "NodeFailure", "preempted": "Preempted",
                "cancelled": "Cancelled", "lost": "WorkerLost"}


class LiveRun:
    """Follows one run: ingests its records and accounts for every pset at the end."""

    def __init__(self, store: Store, rec: dict, backend=None):
        handed = rec.pop(TASKS_HANDED, None)
        self.store, self.rec = store, rec
        self.run_id, self.run_dir = rec["run_id"], rec["run_dir"]
        # another process is starting it: followed as running, its backend known
        # once it runs (see _await_start)
        self._starting = backend is None and rec.get("state") == "starting"
        self.backend: Backend | _claims.StartingBackend
        if self._starting:
            self.rec = dict(rec, state="running")
            self.backend = _claims.StartingBackend()
        else:
            self.backend = backend or make_backend(rec["backend"], self.run_dir,
                                                   rec.get("options"))
        self.rd = RunDir(self.run_dir)
        self.offsets: dict[str, int] = dict(rec.get("offsets") or {})
        self._kwargs: dict[str, dict] | None = handed
        self._handed = handed is not None
        self._stripped: tuple | None = None  # (tasks, their parameters as recorded)
        self._task_files: list[str] = [TASKS] if self._handed else []
        #: the tasks no record this process ingested said were done: what the end
        #: of the run looks up in the cache (not all 1,000,000), see _unaccounted
        self._pending: set[str] | None = None
        #: echo what the workers print (``capture=False``) on this process's stdout
        self.relay_output = False
        self._log_offset = 0

    def tasks(self) -> dict[str, dict]:
        if self._kwargs is None:
            self.rd.check()  # its pickles are code: before anything is listed or loaded
            self._task_files = self.rd.task_files()
            self._kwargs = _bulk.gc_paused(self.rd.read_tasks)(self._task_files)
        return self._kwargs

    def _params(self) -> dict[str, dict]:
        """The tasks' parameters as recorded: without the arguments ``ignore=`` names,
        functions and classes by their labels (a retry passes the tasks themselves)."""
        tasks = self.tasks()
        options = self.rec.get("options") or {}
        if not options.get("by_value"):
            return tasks
        if self._stripped is None or self._stripped[0] is not tasks:  # once per task set
            self._stripped = (tasks, _callables.recorded(tasks, options.get("ignore")))
        return self._stripped[1]

    def _await_start(self, timeout_s: float) -> bool:
        """For a run another process is starting: True once it runs (its backend is
        known now) or has ended (its driver died before starting it); False after
        ``timeout_s``. Its psets are never taken over while that driver lives."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.store.get_run(self.run_id) or {"state": "done", "finished": 0}
            if current["state"] == "starting" and not is_live(self.store, current):
                settle(self.store, self.run_id, current)
                continue
            if current["state"] != "starting":
                self._started(current)
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))

    def _started(self, current: dict) -> None:
        """Follow, from now on, the run another process has started (or given up)."""
        self._starting = False
        self.rec.update((k, v) for k, v in current.items() if k != "offsets")
        if current.get("finished") is not None and not self.rd.has_tasks():
            self.backend.ended = True  # never started: nothing to follow
        else:
            self.backend = make_backend(current["backend"], self.run_dir,
                                        current.get("options"))

    def refresh(self) -> None:
        """Look at the run without moving it on: ingest what was written, and finish
        it once its worker ended if no retry is left. Never starts work and never
        judges another process's run dead: what ``status()``, a repr or a listing
        call (the wait loop, :meth:`poll_until_finished`, retries; :func:`reconcile`
        finishes dead runs)."""
        if self._starting:
            current = self.store.get_run(self.run_id)
            if current is None or current["state"] == "starting":
                return
            self._started(current)
        ended = self.backend.wait(0)
        self.poll()
        if not ended or self.backend.alive():
            return
        self.poll()  # what was written between the last read and exit
        if self._attempt_due() is None or not self._retry_wanted():
            self.finish()

    def _attempt_due(self) -> tuple[int, int] | None:
        """``(the attempt a retry would start, retries)``; None: none left, or the run
        is no longer running. From the registry row: another follower may have
        started an attempt (this process's ``rec`` is a copy)."""
        if self.rec.get("state") == "cancelled":
            return None
        current = self.store.get_run(self.run_id) or {}
        options = current.get("options") or {}
        attempt = options.get("attempt", 0)
        retries = options.get("retries", 0)
        if current.get("state") != "running" or attempt >= retries:
            return None
        return attempt + 1, retries

    def _retry_wanted(self) -> bool:
        """Whether a pset of the ended run failed for an infrastructure reason or was
        never reported on (what :meth:`_maybe_retry` runs again); records nothing."""
        failures = [f for f in self.store.failures(run_id=self.run_id)
                    if not f.get("retried")]
        if any(f.get("reason") in INFRA_REASONS for f in failures):
            return True
        return bool(self._unaccounted({f["pset_id"] for f in failures}))

    def _unaccounted(self, reported: set[str]) -> list[str]:
        """The run's psets, in task order, neither cached nor in ``reported``. Only
        those no record this process ingested said were done are looked up."""
        tasks = self.tasks()
        maybe = [p for p in (tasks if self._pending is None else self._pending)
                 if p not in reported]
        if not maybe:
            return []
        found = self.store.lookup(self.rec["func_id"], maybe)
        left = {p for p in maybe if p not in found}
        return [p for p in tasks if p in left] if left else []

    def task_ids(self) -> set[str]:
        return set(self.tasks())

    def _relay(self) -> None:
        """Copy what the workers wrote to the run's log since the last poll to stdout."""
        try:
            with open(self.rd.log, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except OSError:
            return
        if data:
            self._log_offset += len(data)
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()

    def poll(self) -> tuple[int, int]:
        """Ingest records written since the last poll; return (done, failed) counts."""
        if self.relay_output:
            self._relay()
        names = self.rd.result_names()
        done = failed = 0
        more = bool(names)
        while more:  # in bites of at most POLL_BYTES: the driver's memory
            counts = self._ingest_some(names)
            if counts is None:
                break
            done, failed, more = done + counts[0], failed + counts[1], counts[2]
        return done, failed

    @_bulk.gc_paused
    def _ingest_some(self, names: list[str]) -> tuple[int, int, bool] | None:
        """Ingest the records in the next POLL_BYTES of the result files (one
        segment): ``(done, failed, whether a file has more)``; None: nothing new, or
        nothing to ingest them for."""
        folder = self.rd.results
        records = []
        before, offsets = self.offsets, dict(self.offsets)
        bite = max(1 << 20, POLL_BYTES // len(names))
        for name in names:
            new, offsets[name] = _records.read_from(os.path.join(folder, name),
                                                     offsets.get(name, 0), raw=True,
                                                     limit=bite)
            records.extend(new)
        if not records:
            return None
        if not self.tasks() or (self._handed and not self.rd.has_tasks()):
            # Its task files are gone: another process ingested everything and
            # finished the run (tidying removes them only after that).
            return None
        # A Ctrl-C waits until this process's account matches what it committed: one
        # between the ingest and the count would leave those psets counted nowhere
        # (the next poll re-reads them as already cached)
        with _interrupt.sigint_deferred():
            done, failed = self.store.ingest(self.rec["func_id"], self.run_id, records,
                                             offsets, kwargs=self._params())
            self.offsets = offsets
            if self._pending is None:
                self._pending = set(self.tasks())
            self._pending.difference_update(
                r[0] if type(r) is tuple else r.get("pset_id") for r in records
                if (r[1] if type(r) is tuple else r.get("status")) == "done")
            self.rec["done"] = self.rec.get("done", 0) + done
            self.store.update_run(self.run_id, done=self.rec["done"],
                                  failed=self.store.count_failures(self.run_id))
        more = any(offsets[n] - before.get(n, 0) >= bite // 2
                   for n in names)
        return done, failed, more

    def poll_until_finished(self, timeout_s: float | None = None, progress=None,
                            interval_s: float | None = None) -> bool:
        """Poll until the worker ended and everything is ingested (True), or time out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Each poll costs the workers some CPU, so polls start at 0.1 s (a progress
        # bar's pace) and grow; a local pool's end wakes the wait at once anyway.
        wait_s = interval_s or 0.1
        while True:
            step = wait_s if deadline is None else \
                max(0.0, min(wait_s, deadline - time.monotonic()))
            if self._starting and not self._await_start(step):
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                continue
            ended = self.backend.wait(step)
            counts = self.poll()
            if progress is not None:
                progress.update(*counts)
            if ended and not self.backend.alive():
                counts = self.poll()  # what was written between the last read and exit
                if progress is not None:
                    progress.update(*counts)
                if self._maybe_retry(progress):
                    continue
                self.finish()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if interval_s is None:
                wait_s = min(wait_s * 1.5, 0.5)

    def _maybe_retry(self, progress=None) -> bool:
        """Run again, as a new attempt, the psets that failed for infrastructure reasons
        (the worker's own, and those it never reported on) while ``retries`` allow."""
        due = self._attempt_due()
        if due is None:  # none left, or cancelled or finished elsewhere
            return False
        attempt, retries = due
        options = self.rec.setdefault("options", {})
        orphans = self._record_orphans("running")
        if progress is not None:
            progress.update(0, orphans)
        failed = [f for f in self.store.failures(run_id=self.run_id)
                  if f.get("reason") in INFRA_REASONS]
        if not failed:
            return False
        if not self.store.claim_attempt(self.run_id, attempt):
            return False  # another process following this run started the retry
        options["attempt"] = attempt
        # their records stand for this attempt's until it accounts for them
        self.store.ingest(self.rec["func_id"], self.run_id,
                          [dict(f, retried=attempt) for f in failed])
        known = self.tasks()  # what was passed (failures record it as recorded)
        tasks = [(f["pset_id"], known.get(f["pset_id"], f.get("kwargs", {}))) for f in failed]
        name = _write(self.rd, RETRY.format(attempt),
                      _tasks_blob(tasks) if options.get("by_value") else tasks)
        self._task_files.append(name)  # the same psets again: ``tasks()`` stays as read
        from collections import Counter

        why = ", ".join(f"{r}: {n}" for r, n in Counter(f["reason"] for f in failed).items())
        log.info("run %s: retrying %d pset(s) that failed for infrastructure reasons "
                 "(%s; attempt %d of %d)", self.run_id, len(tasks), why, attempt, retries)
        self.rd.clear_exit()  # the last attempt's would tell others it has ended
        self.backend.start(self.run_dir, self.rec.get("workers") or 1, [name])
        job_ids = self.backend.job_ids()
        if job_ids is not None:
            self.rec["job_ids"] = job_ids
            self.store.update_run(self.run_id, job_ids=job_ids)
        if progress is not None:  # they count again as pending
            progress.update(0, -len(tasks))
        return True

    def _record_orphans(self, state: str) -> int:
        """Record a failure for every pset of the run that no record speaks of: the
        reason the backend knows (a SLURM task's time limit...), else ``lost`` (or
        ``cancelled``)."""
        tasks = self.tasks()
        if not tasks:
            return 0
        params = self._params()
        reported = {f["pset_id"] for f in self.store.failures(run_id=self.run_id)
                    if not f.get("retried")}  # an earlier attempt's, retried since
        orphans = self._unaccounted(reported)
        if not orphans:
            return 0
        known = self.backend.orphan_reasons(orphans)
        if state == "cancelled":  # one row for them all, however many (_unfinished)
            logs = {p: why["log_path"] for p, why in known.items() if why.get("log_path")}
            key, record = _unfinished.encode(
                "cancelled", "the run was cancelled before this pset finished",
                list(tasks), orphans, self._task_files, logs)
            self.store.add_unfinished(self.run_id, self.rec["func_id"], key, record)
            return len(orphans)
        from .._execute import failure_record

        recs = []
        for pid in orphans:
            why = known.get(pid)
            if why is not None:
                rec = failure_record(pid, _ERROR_TYPES.get(why["reason"], "WorkerLost"),
                                     why["message"], why["reason"])
            else:
                rec = failure_record(pid, "WorkerLost", "the worker ended without "
                                     "reporting this pset (killed?)", "lost")
            if why is not None and why.get("log_path"):
                rec["log_path"] = why["log_path"]
            rec["kwargs"], rec["run_id"] = params.get(pid, {}), self.run_id
            recs.append(rec)
        self.store.ingest(self.rec["func_id"], self.run_id, recs)
        return len(recs)

    def finish(self, state: str | None = None) -> None:
        """Record psets the worker never reported on, mark the run ended, tidy up.

        Several processes may follow one run (its caller, and others that attached
        to it); the one that claims it in the registry finishes it, once.
        """
        previous = self.store.claim_finish(self.run_id)
        if previous is None:  # finished (or being finished) by another process
            current = self._wait_finished_elsewhere()
            self.rec.update(state=current.get("state", "done"),
                            failed=current.get("failed", 0))
            return
        try:
            if state is None:
                state = "cancelled" if "cancelled" in (previous, self.rec.get("state")) \
                    else "done"
            self._record_orphans(state)
            failed = self.store.count_failures(self.run_id)
            fields = {}
            queries = getattr(self.backend, "queries", None)
            if queries is not None:
                options = dict(self.store.get_run(self.run_id)["options"] or {})
                options["scheduler_queries"] = options.get("scheduler_queries", 0) + queries
                self.rec["options"] = fields["options"] = options
                log.info("run %s: %d scheduler queries from this process", self.run_id,
                         queries)
            # ended and its claims released in one step: never ended yet claimed
            _claims.release(self.store, self.run_id, state=state, finished=time.time(),
                            failed=failed, **fields)
        except BaseException:  # never left ``finishing``: back to where it was
            self.store.unclaim_finish(self.run_id, previous)
            raise
        self.rec.update(state=state, failed=failed)
        self._pending = None  # a set keeps its size when emptied: 32 MiB at 1M psets
        # a cancelled run's task files say which psets its one failure row stands for
        self.rd.tidy(keep_log=bool(failed), keep_tasks=state == "cancelled")
        try:
            self.backend.tidy(keep_log=bool(failed))
        except Exception as exc:  # noqa: BLE001 - everything is ingested: only litter
            log.warning("run %s: could not clean up after it: %s", self.run_id, exc)

    def _wait_finished_elsewhere(self, timeout_s: float = 30) -> dict:
        """The run's record once the process finishing it is through (its orphans
        recorded), or as it stands after ``timeout_s`` (that process died mid-way)."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.store.get_run(self.run_id) or {}
            if current.get("state") != "finishing" or time.monotonic() >= deadline:
                return current
            time.sleep(0.02)

    def cancel(self) -> None:
        """Stop the run's work, ingest what finished, record the rest as cancelled.
        A Ctrl-C meanwhile waits until that is through (then raises): a run is
        never left half-finished by an impatient second Ctrl-C."""
        with _interrupt.sigint_deferred():
            self.rec["state"] = "cancelled"
            _claims.mark_cancelled(self.store, self.run_id)
            self.backend.cancel()
            self.poll()
            self.finish("cancelled")


def settle(store, run_id: str, rec: dict | None = None) -> None:
    """Finish a dead run (ingest what it computed, record the rest as lost) and
    release its claims; a run already ended only loses its stale claims."""
    rec = rec or store.get_run(run_id)
    if rec is None or rec.get("state") not in _claims.ACTIVE \
            or rec.get("finished") is not None:
        _claims.release(store, run_id)
        return
    log.info("run %s (%s) is dead: finishing it, its unfinished psets are free again",
             run_id, rec["state"])
    if rec["state"] == "starting":
        rec = settle_start(store, rec)
        if rec is None:
            return
        if rec["state"] == "starting":
            _claims._settle_starting(store, rec)
            return
        if rec["state"] == "running" and rec.get("finished") is None and is_live(store, rec):
            return  # it had started, and it runs: it keeps its claims
    if rec["state"] in ("running", "cancelled"):
        LiveRun(store, rec).poll_until_finished(timeout_s=0)
        return
    if rec["state"] == "finishing":
        run = LiveRun(store, rec)
        run.poll()  # what it computed, before the rest is recorded as lost
        run.finish()
