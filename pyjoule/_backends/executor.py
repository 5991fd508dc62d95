"""``executor=``: the psets of a run handed, in batches, to an engine the user runs
(a ``concurrent.futures`` executor, a dask ``Client``, Ray; see :mod:`.engines`).

:meth:`ExecutorBackend.start` starts a daemon *feeder* thread in the calling process:
it cuts the tasks into batches (pickled one batch at a time, a bounded number in
flight: the memory of the caller stays flat however many psets), submits
:func:`pyjoule._batch.run_batch` for each, and appends each finished batch's records
to a result file of the run directory, where the dispatcher ingests them as it does a
pool's. ``exit`` is written once every batch is accounted for.

A batch the engine lost (:class:`.engines.EngineLost`) writes nothing: its psets are
recorded ``lost`` (with the engine's words, :meth:`~ExecutorBackend.orphan_reasons`)
and ``retries=`` runs them again. So are the psets of an executor that refuses work
(a broken pool): nothing hangs, nothing is dropped unrecorded. Any other error of a
batch becomes a failure record of each of its psets.

The run lives in the process that owns the client: another process follows it
(:meth:`~ExecutorBackend.from_record`: alive while that process lives and has not
written ``exit``), and cancels it through a ``cancel`` file the feeder looks for. At
interpreter exit a run still in flight is cancelled (its finished records are on
disk; the next call settles it).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import threading
import time
from typing import Any

from .. import _caches, _records
from .._execute import failure_record
from .._rundir import CANCEL, STARTED, RunDir, open_append, write_all
from .base import Backend, wait_while
from .engines import Engine, EngineLost, engine_for

log = logging.getLogger("pyjoule")

# the runs this process feeds, by run directory (process state, not a cache): a second
# follower in this process finds the live backend, and interpreter exit cancels them
_live: dict[str, ExecutorBackend] = _caches.declare(__name__, "_live", {})
_TARGET_S = 0.5       # a batch's aimed duration: amortises the engine's cost per task
_MAX_BATCH = 100_000  # psets per batch at most (memory of one batch's tasks and records)


class _Sizer:
    """Psets per batch: ``batch=`` if given; else from the measured cost per pset (a
    finished batch's time from submission to result, over its psets), growing from 1
    at most 4× a step, and small again near the end so that the workers finish
    together. A batch's time includes the engine's own cost per task and any wait in
    its queue (two batches per worker are in flight), so the estimate errs long: the
    batches err short of the aim, never long."""

    def __init__(self, workers: int, fixed: int | None):
        self.workers, self.fixed = max(1, workers), fixed
        self.cost: float | None = None
        self.size = 1

    def next(self, remaining: int) -> int:
        if self.fixed:
            return self.fixed
        size = 1 if self.cost is None else \
            min(int(_TARGET_S / max(self.cost, 1e-7)), self.size * 4)
        tail = remaining // (2 * self.workers)
        self.size = max(1, min(size, max(tail, 1), _MAX_BATCH))
        return self.size

    def observe(self, psets: int, seconds: float) -> None:
        """A batch of ``psets`` took ``seconds`` from submission to its result."""
        cost = seconds / max(psets, 1)
        self.cost = cost if self.cost is None else 0.5 * self.cost + 0.5 * cost


def _dumps(tasks: list) -> bytes:
    """One batch's tasks, for the engine (cloudpickle for values only it can send)."""
    try:
        return pickle.dumps(tasks, protocol=5)
    except Exception:  # noqa: BLE001 - e.g. a lambda among the values
        from .._pickling import dumps

        return dumps(tasks, protocol=5)


def _failures(ids: list[str], exc: BaseException) -> bytes:
    message = f"the engine failed this pset's batch: {type(exc).__name__}: {exc}"
    return b"".join(_records.frame(_records.pack(failure_record(
        pset_id, type(exc).__name__, message, "exception"))) for pset_id in ids)


class ExecutorBackend(Backend):
    """Feeds a run's psets to an engine from a thread of this process."""

    name = "executor"

    def __init__(self, run_dir: str | None = None, engine: Engine | None = None,
                 batch: int | None = None, driver: dict | None = None):
        self.run_dir, self.engine, self.batch, self.driver = run_dir, engine, batch, driver
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._lost: dict[str, str] = {}  # pset id -> what the engine said
        self._refused: str | None = None  # the executor took no more batches: why

    @classmethod
    def prepare(cls, *, executor: Any = None, batch: int | None = None,
                **_: Any) -> ExecutorBackend:
        return cls(engine=engine_for(executor), batch=batch)

    @classmethod
    def from_record(cls, run_dir: str | None, options: dict) -> ExecutorBackend:
        own = _live.get(run_dir or "")
        return own if own is not None else cls(run_dir, driver=options.get("driver"))

    def describe(self) -> dict:
        return {"engine": self.engine.describe()} if self.engine is not None else {}

    def running_slots(self) -> int | None:
        return self.engine.workers() if self.engine is not None else None

    # ---------------------------------------------------------------- starting
    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        if self.engine is None:
            # Another process following the run claimed its retry before the owner did
            # (a rare race): only the owner can reach the engine, so this attempt runs
            # nothing and its psets are recorded lost, to run again on the next call.
            self.run_dir, self._lost = run_dir, {}
            self._refused = ("its retry was claimed by a process that does not own the "
                             "executor; call again to run it")
            RunDir(run_dir).write_exit(0)  # ended, to every follower
            return
        if self._thread is not None:  # a retry: the last attempt's feeder has ended
            self._thread.join()
        self.run_dir = run_dir
        self._stop.clear()
        self._ended.clear()
        self._lost, self._refused = {}, None
        rd = RunDir(run_dir)
        if rd.decide_fate(STARTED) != STARTED:  # abandoned: its psets are free again
            self._ended.set()
            return
        rd.check()  # what the engine unpickles is code: the user's own files only
        with open(rd.payload, "rb") as fh:
            shared = self.engine.share(fh.read())
        _live[run_dir] = self
        _exit_hook()
        # the tasks are read by the feeder: f.submit returns while a big file loads
        self._thread = threading.Thread(target=self._feed, args=(rd, shared, task_files),
                                        name=f"pyjoule-feeder-{os.path.basename(run_dir)}",
                                        daemon=True)
        self._thread.start()

    def _feed(self, rd: RunDir, shared: Any, task_files: list[str] | None) -> None:
        """Keep the engine busy with batches; write each finished one's records."""
        from .._batch import run_batch

        assert self.engine is not None
        engine = self.engine
        sizer = _Sizer(engine.workers(), self.batch)
        in_flight: dict[Any, tuple[list[str], float]] = {}  # handle -> (ids, submitted)
        fd = open_append(rd.result_file(f"executor-{os.getpid()}-{time.time_ns()}"))
        try:
            tasks = rd.task_list(task_files)
            tasks.reverse()  # batches are cut from the end: what was sent is let go
            looked = time.monotonic()
            while not self._stopping(rd):
                if time.monotonic() - looked > 1:  # a cluster may grow or shrink
                    sizer.workers, looked = max(1, engine.workers()), time.monotonic()
                cap = 2 * sizer.workers  # in flight: every worker has its next batch
                while tasks and len(in_flight) < max(2, cap) and self._refused is None:
                    size = sizer.next(len(tasks))
                    chunk = tasks[:-size - 1:-1]  # the next ``size`` tasks, in order
                    del tasks[-size:]
                    try:
                        handle = engine.submit(run_batch, shared, _dumps(chunk))
                    except Exception as exc:  # noqa: BLE001 - a broken or shut executor
                        self._refused = (f"the executor took no more work "
                                         f"({type(exc).__name__}: {exc})")
                        break
                    in_flight[handle] = ([pset_id for pset_id, _ in chunk], time.monotonic())
                if not in_flight:
                    break
                for handle in engine.wait_any(list(in_flight), 0.2):
                    ids, submitted = in_flight.pop(handle)
                    write_all(fd, self._outcome(handle, ids))
                    sizer.observe(len(ids), time.monotonic() - submitted)
            if in_flight:  # cancelled: those not started never start
                engine.cancel(list(in_flight))
        except BaseException as exc:  # the rest are recorded lost, with these words
            self._refused = f"pyjoule's feeder failed ({type(exc).__name__}: {exc})"
            log.exception("run %s: feeding the executor failed", rd.path)
        finally:
            os.close(fd)
            rd.write_exit(0)
            self._ended.set()

    def _stopping(self, rd: RunDir) -> bool:
        if not self._stop.is_set() and os.path.exists(rd.join(CANCEL)):
            self._stop.set()  # another process cancelled the run
        return self._stop.is_set()

    def _outcome(self, handle: Any, ids: list[str]) -> bytes:
        """A finished batch's records; for a lost batch none (its psets are lost)."""
        assert self.engine is not None
        try:
            return self.engine.result(handle)
        except EngineLost as exc:
            message = f"the engine lost this pset's batch: {exc}"
            self._lost.update(dict.fromkeys(ids, message))
            return b""
        except Exception as exc:  # noqa: BLE001 - the engine's own error, per pset
            return _failures(ids, exc)

    # ---------------------------------------------------------------- following
    def _own(self) -> ExecutorBackend | None:
        return self if self._thread is not None else _live.get(self.run_dir or "")

    def alive(self) -> bool:
        own = self._own()
        if own is not None:
            return not own._ended.is_set()
        if self.run_dir is None or RunDir(self.run_dir).exited() or not self.driver:
            return False
        from .._platform import process_alive

        return process_alive(self.driver)

    def wait(self, timeout_s: float) -> bool:
        own = self._own()
        if own is not None:
            return own._ended.wait(timeout_s)
        return wait_while(self.alive, timeout_s)

    def cancel(self) -> None:
        """Stop feeding and cancel the batches in flight (this process's run), or ask
        the owning process to (another's: a ``cancel`` file its feeder looks for)."""
        own = self._own()
        if own is None:
            if self.run_dir is not None and self.alive():
                RunDir(self.run_dir).write(CANCEL, b"")
                self.wait(30)
            return
        own._stop.set()
        if own._thread is not None:
            own._thread.join(30)

    def orphan_reasons(self, pset_ids: list[str]) -> dict[str, dict]:
        out = {}
        for pset_id in pset_ids:
            message = self._lost.get(pset_id) or self._refused
            if message:
                out[pset_id] = {"reason": "lost", "message": message, "log_path": None}
        return out

    def tidy(self, keep_log: bool) -> None:
        if self.run_dir is not None and _live.get(self.run_dir) is self:
            del _live[self.run_dir]


_hooked: list[bool] = _caches.declare(__name__, "_hooked", [])


def _exit_hook() -> None:
    """Once per process: at interpreter exit, cancel the runs still fed from here."""
    if not _hooked:
        atexit.register(_cancel_all)
        _hooked.append(True)


def _cancel_all() -> None:
    for backend in list(_live.values()):
        if backend._thread is not None and backend._thread.is_alive():
            log.info("run %s: cancelled at interpreter exit (its finished psets are "
                     "cached; call again for the rest)", backend.run_dir)
            backend.cancel()
