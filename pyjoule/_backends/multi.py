"""One sweep over several SSH hosts at once (``host=["ws1", "ws2"]``): one run, one
Dataset.

Each host is an :class:`~.ssh.SSHBackend` (its project synced, its environment built;
the hosts prepared concurrently) with two *slots*: folders ``hosts/<run id>-h<i>a``
and ``-h<i>b`` of the local run directory, each a run directory of that host (its
payload, chunks of tasks, the result files streamed back; on the host
``<workdir>/runs/<run id>-h<i>a``). A dispatcher in the driver, one thread per host,
hands out chunks of the run's tasks by measured throughput: a chunk is a task file in
a slot, started with ``SSHBackend.start(slot, workers, [chunk])``; its size is half the
host's share of what is left (by the psets/s measured there), so chunks shrink as the
work runs out (guided self-scheduling) and a slow host ends with the others instead of
holding the sweep back. The next chunk starts in the other slot while the current
one's last psets run, so a host's workers do not wait for a start.

What a slot's host writes is copied into the run's ``results/`` as ``h<i><slot>-<name>``:
hosts never clobber each other's files (their pids may collide), and
:class:`~.._dispatch.live.LiveRun` ingests them as any backend's.

A host that drops (its connection fails, or its worker ends without reporting every
pset of its chunk) is left out for the rest of the run: the psets of its chunk without
a record go back to the queue and run on the others; a pset with a record is never
handed out again. (A worker on a host whose connection dropped may still compute its
chunk: its records are no longer read.) What was never handed out when the driver
died (the dispatcher lives in it) is recorded ``lost`` when the run is finished, so
``retries=`` or the next call runs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import shutil
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .. import _platform
from .._errors import HostError
from .._rundir import PAYLOAD, STARTED, RunDir
from ._multi_lanes import LANES, Lane, Slot, read_ids, slot_dir, twin
from .base import Backend
from .ssh import SSHBackend

log = logging.getLogger("pyjoule")

HOST_NAME = "PYJOULE_HOST_NAME"  # read by the worker (_execute): a record's host
STEP_S = 0.1  # how often a host's thread copies what its host streamed back
TAIL_S = 1.0  # a chunk is at least this long on its host once its speed is known
LEAD_S = 0.5  # the next chunk starts this long before the current one ends (a start's time)


class MultiBackend(Backend):
    name = "multi"

    def __init__(self, lanes: list[Lane], run_dir: str | None = None,
                 driver: dict | None = None):
        self.lanes, self.run_dir, self.driver = lanes, run_dir, driver
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------- setting up
    @classmethod
    def prepare(cls, *, host=None, slurm=None, identity=None,
                batch: int | None = None, executor=None) -> MultiBackend:
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
            lanes.append(Lane(i, [ssh, twin(ssh)], ssh.cpus))
        return cls(lanes)

    def use_workers(self, given: int | None) -> int:
        """Run ``given`` workers on every host (None: each host's CPUs); returns how
        many run in all (the run's worker count)."""
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
            lane = Lane(i, [SSHBackend.from_description(
                slot_dir(run_dir, i, k) if run_dir else None,  # type: ignore[arg-type]
                {"ssh": desc}) for k in (0, 1)], workers)
            for slot in lane.slots:
                slot.dir = slot.ssh.run_dir
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
        with open(rd.payload, "rb") as fh:
            payload = fh.read()
        for lane in self.lanes:
            lane.dropped = lane.busy = False
            for k, slot in enumerate(lane.slots):
                slot.dir = slot.ssh.run_dir = slot_dir(run_dir, lane.index, k)
                slot_rd = RunDir(slot.dir).make()
                if not os.path.exists(slot_rd.payload):
                    slot_rd.write(PAYLOAD, payload)
        self._threads = [threading.Thread(target=self._dispatch, args=(lane,), daemon=True,
                                          name=f"pyjoule-{lane.target}")
                         for lane in self.lanes]
        for t in self._threads:
            t.start()

    def _take(self, lane: Lane) -> list | None:
        """The next chunk for ``lane``: [] while the queue is empty but a host may
        still give psets back; None when there is nothing left to hand out to it."""
        with self._lock:
            if self._stop.is_set() or lane.dropped:
                return None
            if not self._queue:
                return [] if any(other.busy for other in self.lanes) else None
            size = self._chunk_size(lane)
            chunk = [self._queue.popleft() for _ in range(size)]
            lane.busy = True
            return chunk

    def _chunk_size(self, lane: Lane) -> int:
        """Guided self-scheduling by speed: half of this host's share of what is left
        (by psets/s; a host not measured yet counted at this one's speed per worker),
        at least one pset per worker and ``TAIL_S`` of work. Before its own speed is
        known, a host gets a small first chunk to measure it."""
        left = len(self._queue)
        active = [other for other in self.lanes if not other.dropped]
        rate = lane.rate
        if rate is None:
            share = lane.workers / sum(other.workers for other in active)
            size = min(math.ceil(left * share / 2), 2 * lane.workers)
        else:
            per_worker = rate / lane.workers
            total = sum(other.rate if other.rate is not None
                        else per_worker * other.workers for other in active)
            size = max(math.ceil(left * rate / total / 2), math.ceil(rate * TAIL_S))
        return max(1, min(left, max(size, lane.workers)))

    def _dispatch(self, lane: Lane) -> None:
        """A host's loop: keep a chunk running there, and start the next in the other
        slot as soon as the current one's last psets are running; measure; until
        nothing is left to hand out."""
        while True:
            running = lane.running()
            if len(running) < 2 and (not running or self._tail(lane, running[0])):
                chunk = self._take(lane)
                if chunk:
                    slot = next(s for s in lane.slots if s.chunk is None)
                    self._launch(lane, slot, chunk)
                elif chunk is None and not running:
                    return
                running = lane.running()
            if running:
                self._step(lane, running)
            else:
                time.sleep(STEP_S)

    def _tail(self, lane: Lane, slot: Slot) -> bool:
        """Whether ``slot``'s chunk ends within the time a start takes (``LEAD_S``):
        the psets left are running, or will be done by then at the host's speed."""
        left = len(slot.chunk or ()) - len(slot.seen)
        return left <= lane.workers + (lane.rate or 0.0) * LEAD_S

    def _launch(self, lane: Lane, slot: Slot, chunk: list) -> None:
        assert slot.dir is not None
        rd = RunDir(slot.dir)
        lane.chunks += 1
        name = os.path.basename(rd.write(f"chunk-{lane.chunks}.pkl", _pickled(chunk)))
        slot.chunk, slot.seen, slot.error, slot.used = chunk, set(), None, True
        slot.offsets = rd.offsets()
        log.debug("host %s: chunk %d of %d psets", lane.target, lane.chunks, len(chunk))
        try:
            slot.ssh.start(slot.dir, min(lane.workers, len(chunk)), [name])
        except Exception as exc:  # noqa: BLE001 - a host that drops: its psets go on
            slot.error = exc

    def _step(self, lane: Lane, running: list[Slot]) -> None:
        """Wait a moment for the running chunks, copy and count what came back, and
        settle the chunks that ended."""
        t0 = time.monotonic()
        ended = []
        for slot in running:
            done = slot.error is not None
            if not done:
                try:
                    done = slot.ssh.wait(STEP_S / len(running))
                except Exception as exc:  # noqa: BLE001 - the host dropped
                    slot.error, done = exc, True
            if done:
                ended.append(slot)
        lane.copy(self.run_dir)
        new = 0
        for slot in running:
            assert slot.dir is not None
            ids = read_ids(RunDir(slot.dir).results, slot.offsets)
            slot.seen.update(ids)
            new += len(ids)
        with self._lock:
            lane.busy_s += time.monotonic() - t0
            lane.done += new
            lane.measured = lane.measured or lane.done >= lane.workers
            for slot in ended:
                self._settle(lane, slot)
            lane.busy = bool(lane.running())

    def _settle(self, lane: Lane, slot: Slot) -> None:
        """A chunk ended (with the lock held): what it did not report goes back to the
        queue, and a host that did not report all of its chunk is out of the run."""
        chunk, slot.chunk = slot.chunk or [], None
        missing = [task for task in chunk if task[0] not in slot.seen]
        if self._stop.is_set() or (slot.error is None and not missing):
            return
        lane.dropped = True
        self._queue.extendleft(reversed(missing))
        why = slot.error or "its worker ended without reporting them"
        log.warning("host %s dropped out of run %s (%s): %d pset(s) of its chunk go to "
                    "the other hosts", lane.target, os.path.basename(self.run_dir or ""),
                    why, len(missing))

    # ------------------------------------------------------------- following
    def _driver_alive(self) -> bool:
        """For a process following a run it did not start: whether the driver (which
        hands out the chunks) still runs."""
        d = self.driver
        return d is not None and _platform.here(d) and \
            _platform.is_running(d["pid"], d.get("start", ""))

    def _slots(self):
        """(lane, slot) of the slots in use (all of them, for a follower)."""
        return [(lane, slot) for lane in self.lanes for slot in lane.slots
                if slot.dir is not None and (slot.used or not self._threads)]

    def alive(self) -> bool:
        """The dispatcher runs; for a process following the run: its driver lives (and
        copies what comes back), else a host's worker runs (pulled here, every slot
        at every look: one that had ended may have got a chunk since)."""
        if self._threads:
            return any(t.is_alive() for t in self._threads)
        if self._driver_alive():
            return True
        hosts = False
        for lane, slot in self._slots():
            slot.ssh._alive = None  # ask the host anew, not what an earlier look found
            try:
                hosts = slot.ssh.alive() or hosts
            except Exception as exc:  # noqa: BLE001 - unreachable: nothing more from it
                log.debug("host %s: %s", lane.target, exc)
            slot.copy(self.run_dir)
        return hosts

    def wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        if self._threads:
            for t in self._threads:
                t.join(max(0.0, deadline - time.monotonic()))
            return not any(t.is_alive() for t in self._threads)
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
        for lane, slot in self._slots():
            try:
                slot.ssh.cancel()
            except Exception as exc:  # noqa: BLE001 - an unreachable host: nothing to stop
                log.warning("could not cancel the worker on %s: %s", lane.target, exc)
        for t in self._threads:
            t.join(10)
        for lane in self.lanes:
            lane.copy(self.run_dir)

    def tidy(self, keep_log: bool) -> None:
        for lane, slot in self._slots():
            try:
                slot.ssh.tidy(keep_log)
            except Exception as exc:  # noqa: BLE001 - litter on one host only
                log.warning("could not clean up on %s: %s", lane.target, exc)
        if self.run_dir:
            shutil.rmtree(os.path.join(self.run_dir, LANES), ignore_errors=True)

    def worker_log(self, run_dir: str) -> str | None:
        return None  # one log per host and slot: none is the run's

    def orphan_reasons(self, pset_ids: list[str]) -> dict[str, dict]:
        if self._threads or self._driver_alive():
            return {}
        msg = ("never reported: the process handing out the chunks (the call's) ended "
               "before this pset ran or came back")
        return {p: {"reason": "lost", "message": msg, "log_path": None} for p in pset_ids}

    def __repr__(self) -> str:
        return f"<MultiBackend {', '.join(lane.target for lane in self.lanes)} {self.run_dir}>"


def _named(host):
    """``host`` whose worker names it in its records (``_host``) as the user did."""
    return dataclasses.replace(host, env={**host.env, HOST_NAME: host.target})


def _pickled(tasks: list) -> bytes:
    """A chunk's task file: as the run's (cloudpickle: a notebook's values load)."""
    import cloudpickle  # the driver has it (it pickled the payload)

    return cloudpickle.dumps(tasks, protocol=pickle.DEFAULT_PROTOCOL)
