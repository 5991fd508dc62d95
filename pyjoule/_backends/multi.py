"""One sweep over several SSH hosts at once (``host=["ws1", "ws2"]``): one run, one
Dataset.

Each host is an :class:`~.ssh.SSHBackend` of its own (its project synced, its
environment built, prepared concurrently), working in a *lane*: a folder
``hosts/<run id>-h<i>`` of the local run directory, which is that host's run directory
(its payload, its chunks of tasks, the result files streamed back from it; on the host,
``<workdir>/runs/<run id>-h<i>``). A dispatcher in the driver, one thread per host,
hands out chunks of the run's tasks by measured throughput: a chunk is a task file in
the lane, started on the host with ``SSHBackend.start(lane, workers, [chunk])``; its
size is the host's share of what is left (by psets/s measured on its earlier chunks)
halved, so chunks shrink as the work runs out (guided self-scheduling) and a slow host
ends with the others instead of holding the sweep back.

What a lane's host writes is copied into the run's ``results/`` under the name
``h<i>-<name>``: hosts never clobber each other's files (their pids may collide), and
:class:`~.._dispatch.live.LiveRun` ingests them as any backend's.

A host that drops (its connection fails, or its worker ends without reporting every
pset of its chunk) is left out for the rest of the run: the psets of its chunk without
a record go back to the queue and run on the others; a pset with a record is never
handed out again. (A worker on a host whose connection dropped may still compute its
chunk: its records are no longer read, the other host's are kept.) What was never
handed out when the driver died (the dispatcher lives in it) is recorded ``lost`` when
the run is finished, so ``retries=`` or the next call runs it.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .. import _platform, _records
from .._errors import HostError
from .._files import open_append, write_all
from .._rundir import PAYLOAD, STARTED, RunDir
from .base import Backend
from .ssh import SSHBackend

log = logging.getLogger("pyjoule")

LANES = "hosts"  # the lanes' folder in the local run directory
HOST_NAME = "PYJOULE_HOST_NAME"  # read by the worker (_execute): a record's host
STEP_S = 0.1  # how often a lane copies what its host streamed back
TAIL_S = 1.0  # a chunk is at least this long on its host once its speed is known


def lane_dir(run_dir: str, index: int) -> str:
    """The local run directory of host ``index`` (named after the run: the host's
    run directory is named after it too)."""
    return os.path.join(run_dir, LANES, f"{os.path.basename(run_dir)}-h{index}")


def copy_results(src: str, dst: str, prefix: str) -> int:
    """Append what the files of ``src`` (a lane's ``results``) gained to their copies
    ``<prefix><name>`` in ``dst`` (the run's ``results``); the copy's size is how much
    was copied. A lock per copy: a follower copying at the same time appends nothing
    twice. Returns the bytes copied."""
    import fcntl  # POSIX (Linux, macOS): the client platforms

    try:
        names = sorted(n for n in os.listdir(src) if not n.startswith("."))
    except FileNotFoundError:
        return 0
    copied = 0
    for name in names:
        fd = open_append(os.path.join(dst, prefix + name))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            done = os.fstat(fd).st_size
            with open(os.path.join(src, name), "rb") as fh:
                fh.seek(done)
                data = fh.read()
            if data:
                write_all(fd, data)
                copied += len(data)
        finally:
            os.close(fd)  # releases the lock
    return copied


def reported(results: str, offsets: dict[str, int]) -> set[str]:
    """The pset ids of the records in ``results`` after ``offsets`` (a chunk's)."""
    ids: set[str] = set()
    try:
        names = os.listdir(results)
    except FileNotFoundError:
        return ids
    for name in names:
        recs, _ = _records.read_from(os.path.join(results, name), offsets.get(name, 0))
        ids.update(r["pset_id"] for r in map(_records.as_dict, recs) if isinstance(r, dict))
    return ids


class Lane:
    """One host of the run: its SSH backend, its folder, its measured speed."""

    def __init__(self, index: int, ssh: SSHBackend, workers: int):
        self.index, self.ssh, self.workers = index, ssh, workers
        self.target = ssh.host.target
        self.dir: str | None = None
        self.done = 0          # psets reported from its chunks
        self.busy_s = 0.0      # the time its chunks took, start to end
        self.chunks = 0
        self.busy = False      # a chunk is out on it
        self.dropped = False

    @property
    def rate(self) -> float | None:
        """Psets/s measured on its finished chunks (None before the first ends)."""
        return self.done / self.busy_s if self.busy_s > 0 and self.done else None

    def copy(self, run_dir: str | None) -> None:
        if self.dir is not None and run_dir is not None:
            copy_results(RunDir(self.dir).results, RunDir(run_dir).results,
                         f"h{self.index}-")


class MultiBackend(Backend):
    name = "multi"

    def __init__(self, lanes: list[Lane], run_dir: str | None = None,
                 driver: dict | None = None):
        self.lanes, self.run_dir, self.driver = lanes, run_dir, driver
        self.fixed_workers: int | None = None
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------- setting up
    @classmethod
    def prepare(cls, *, host=None, slurm=None, identity=None,
                batch: int | None = None) -> MultiBackend:
        """Every host of ``host`` (a ``Hosts``) prepared as :meth:`SSHBackend.prepare`
        does, all at once; a host that cannot be is left out with a warning while at
        least one is ready."""
        hosts = list(host)
        with ThreadPoolExecutor(len(hosts)) as pool:
            futures = [pool.submit(SSHBackend.prepare, host=h, identity=identity)
                       for h in hosts]
        ready, errors = [], []
        for h, fut in zip(hosts, futures):
            error = fut.exception()
            if error is None:
                ready.append(fut.result())
            else:  # said below, or raised if no host is ready
                errors.append((h, error))
        if not ready:
            raise errors[0][1]
        for h, error in errors:
            log.warning("host %s left out of this run: %s", h.target, error)
        lanes = []
        for i, ssh in enumerate(ready):
            ssh.host = _named(ssh.host)
            ssh.env_names = sorted(ssh.host.env)
            lanes.append(Lane(i, ssh, ssh.cpus))
        return cls(lanes)

    def use_workers(self, given: int | None) -> int:
        """Run ``given`` workers on every host (None: each host's CPUs); returns how
        many run in all (the run's worker count)."""
        self.fixed_workers = given
        for lane in self.lanes:
            lane.workers = max(1, given if given is not None else lane.ssh.cpus)
        return sum(lane.workers for lane in self.lanes)

    def describe(self) -> dict:
        return {"multi": {"hosts": [lane.ssh.describe()["ssh"] for lane in self.lanes],
                          "workers": [lane.workers for lane in self.lanes]}}

    @classmethod
    def from_record(cls, run_dir: str | None, options: dict) -> MultiBackend:
        d = options["multi"]
        lanes = []
        for i, (desc, workers) in enumerate(zip(d["hosts"], d["workers"])):
            where = lane_dir(run_dir, i) if run_dir else None
            lane = Lane(i, SSHBackend.from_description(where, {"ssh": desc}),  # type: ignore[arg-type]
                        workers)
            lane.dir = where
            lanes.append(lane)
        return cls(lanes, run_dir, options.get("driver"))

    # ----------------------------------------------------------------- running
    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        """Queue the tasks of ``task_files`` (the run's tasks, or a retry's) and start
        handing them out: one dispatcher thread per host. ``workers`` is the run's
        total; each host runs its own count (:meth:`use_workers`)."""
        self.run_dir = run_dir
        rd = RunDir(run_dir)
        if rd.decide_fate(STARTED) != STARTED:  # settled as never started meanwhile
            raise HostError(f"run {os.path.basename(run_dir)} was abandoned before it "
                            "started: nothing was handed out")
        self._queue = deque(rd.task_list(task_files))
        self._stop.clear()
        for lane in self.lanes:
            lane.dropped = lane.busy = False
            lane.dir = lane_dir(run_dir, lane.index)
            lane.ssh.run_dir = lane.dir
            lane_rd = RunDir(lane.dir).make()
            if not os.path.exists(lane_rd.payload):
                with open(rd.payload, "rb") as fh:
                    lane_rd.write(PAYLOAD, fh.read())
        self._threads = [threading.Thread(target=self._dispatch, args=(lane,), daemon=True,
                                          name=f"pyjoule-{lane.target}")
                         for lane in self.lanes]
        for t in self._threads:
            t.start()

    def _take(self, lane: Lane) -> list | None:
        """The next chunk for ``lane``: [] while the queue is empty but another host
        may still give psets back; None when there is nothing left to hand out."""
        with self._lock:
            if self._stop.is_set() or lane.dropped:
                return None
            if not self._queue:
                busy = any(other.busy for other in self.lanes if other is not lane)
                return [] if busy else None
            size = self._chunk_size(lane)
            chunk = [self._queue.popleft() for _ in range(size)]
            lane.busy = True
            return chunk

    def _chunk_size(self, lane: Lane) -> int:
        """Guided self-scheduling by speed: half of this host's share of what is left
        (its psets/s among the hosts'), at least one pset per worker and, once its speed
        is known, ``TAIL_S`` of work."""
        left = len(self._queue)
        active = [other for other in self.lanes if not other.dropped]
        rates = [r for other in active if (r := other.rate) is not None]
        if lane.rate is None or len(rates) < len(active):
            share = lane.workers / sum(other.workers for other in active)
            size = min(math.ceil(left * share / 2), 2 * lane.workers)  # a first probe
        else:
            size = math.ceil(left * lane.rate / sum(rates) / 2)
            size = max(size, math.ceil(lane.rate * TAIL_S))
        return max(1, min(left, max(size, lane.workers)))

    def _dispatch(self, lane: Lane) -> None:
        """A host's loop: take a chunk, run it there, measure, until none is left."""
        while True:
            chunk = self._take(lane)
            if chunk is None:
                return
            if not chunk:
                time.sleep(STEP_S)
                continue
            try:
                self._run_chunk(lane, chunk)
            finally:
                lane.busy = False

    def _run_chunk(self, lane: Lane, chunk: list) -> None:
        assert lane.dir is not None and self.run_dir is not None  # set by start()
        lane_rd = RunDir(lane.dir)
        lane.chunks += 1
        name = lane_rd.write(f"chunk-{lane.chunks}.pkl", _pickled(chunk))
        name = os.path.basename(name)
        before = lane_rd.offsets()
        t0 = time.monotonic()
        error = None
        try:
            lane.ssh.start(lane.dir, min(lane.workers, len(chunk)), [name])
            while not lane.ssh.wait(STEP_S):
                lane.copy(self.run_dir)
                if self._stop.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - a host that drops: its psets go on
            error = exc
        lane.copy(self.run_dir)
        ids = reported(lane_rd.results, before)
        missing = [task for task in chunk if task[0] not in ids]
        with self._lock:
            if not self._stop.is_set():
                lane.busy_s += time.monotonic() - t0
                lane.done += len(chunk) - len(missing)
                if error is not None or missing:
                    lane.dropped = True
                    self._queue.extendleft(reversed(missing))
        if lane.dropped:
            why = error if error is not None else "its worker ended without reporting them"
            log.warning("host %s dropped out of run %s (%s): %d pset(s) of its chunk go "
                        "to the other hosts", lane.target, os.path.basename(self.run_dir),
                        why, len(missing))

    # ------------------------------------------------------------- following
    def _driving(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _driver_alive(self) -> bool:
        """For a process following a run it did not start: whether the driver (which
        hands out the chunks) still runs."""
        d = self.driver
        return d is not None and _platform.here(d) and \
            _platform.is_running(d["pid"], d.get("start", ""))

    def alive(self) -> bool:
        if self._threads:
            return self._driving()
        hosts = False
        for lane in self.lanes:
            try:
                hosts = lane.ssh.alive() or hosts
            except Exception as exc:  # noqa: BLE001 - unreachable: nothing more from it
                log.debug("host %s: %s", lane.target, exc)
            lane.copy(self.run_dir)
        return hosts or self._driver_alive()

    def wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        if self._threads:
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))
            return not self._driving()
        while True:
            if not self.alive():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.25))

    def cancel(self) -> None:
        self._stop.set()
        with self._lock:
            self._queue.clear()
        for lane in self.lanes:
            if lane.dir is None:
                continue
            try:
                lane.ssh.cancel()
            except Exception as exc:  # noqa: BLE001 - an unreachable host: nothing to stop
                log.warning("could not cancel the worker on %s: %s", lane.target, exc)
        for t in self._threads:
            t.join(10)
        for lane in self.lanes:
            lane.copy(self.run_dir)

    def tidy(self, keep_log: bool) -> None:
        for lane in self.lanes:
            if lane.dir is None:
                continue
            try:
                lane.ssh.tidy(keep_log)
            except Exception as exc:  # noqa: BLE001 - litter on one host only
                log.warning("could not clean up on %s: %s", lane.target, exc)
        if self.run_dir:
            shutil.rmtree(os.path.join(self.run_dir, LANES), ignore_errors=True)

    def worker_log(self, run_dir: str) -> str | None:
        return None  # a log per host: there is no one log of the run

    def orphan_reasons(self, pset_ids: list[str]) -> dict[str, dict]:
        if self._threads or self._driver_alive():
            return {}
        msg = ("never reported: the process handing out the chunks (the call's) ended "
               "before this pset ran or came back")
        return {p: {"reason": "lost", "message": msg, "log_path": None} for p in pset_ids}

    def running_slots(self) -> int | None:
        return None

    def __repr__(self) -> str:
        return f"<MultiBackend {', '.join(lane.target for lane in self.lanes)} {self.run_dir}>"


def _named(host):
    """``host`` whose worker names it in its records (``_host``) as the user did."""
    import dataclasses

    return dataclasses.replace(host, env={**host.env, HOST_NAME: host.target})


def _pickled(tasks: list) -> bytes:
    """A chunk's task file: as the run's (cloudpickle: a notebook's values load)."""
    import cloudpickle

    return cloudpickle.dumps(tasks, protocol=pickle.DEFAULT_PROTOCOL)
