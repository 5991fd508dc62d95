"""The worker's supervisor: it forks ``--workers`` children, hands them chunks of the
tasks, enforces ``timeout=``, and records ``timeout`` or ``lost`` for the pset a dead
child was running.

Each child runs the tasks it is handed and appends one record per finished pset to
its own file, so a crash loses only the pset in flight. Each child leads its own
process group, so that what the function forks goes with it when it is killed or
ends; the supervisor learns of a child's death from the kernel (a pidfd, or
``waitid``), not from its pipe, which a grandchild may hold open. Children die with
the supervisor (``_platform.die_with_parent``); their pids and start times go to the
run directory (:meth:`RunDir.note_child`), so that whoever finishes a run whose
supervisor was killed outright kills what they left.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import struct
import sys
import time
import traceback
from collections import deque

from . import _platform, _records
from ._execute import _limit_threads, execute, failure_record
from ._rundir import RunDir, open_append, write_all

_SLOT = struct.Struct("<qd")  # index of the task being run (-1: idle), its start time
_MSG = struct.Struct("<qq")  # chunk handed to a child: [start, stop); stop < 0 = quit


# --------------------------------------------------------------------- children
def _child(slot: int, shm: mmap.mmap, tasks: list, payload: dict, rfd: int, wfd: int,
           path: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # not the supervisor's
        signal.signal(sig, signal.SIG_DFL)
    func, capture = payload["func"], payload["capture"]
    fd = open_append(path)
    offset = slot * _SLOT.size
    while True:
        msg = _read_exact(rfd, _MSG.size)
        if not msg:
            break
        start, stop = _MSG.unpack(msg)
        if stop < 0:
            break
        for i in range(start, stop):
            _SLOT.pack_into(shm, offset, i, time.time())
            pset_id, kwargs = tasks[i]
            # The record is on disk before the slot moves on: a kill between the two
            # at worst reports a finished pset as lost too, and "done" wins on ingest.
            write_all(fd, execute(func, pset_id, kwargs, capture))
        _SLOT.pack_into(shm, offset, -1, 0.0)
        os.write(wfd, b"k")
    os.close(fd)


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


class _Child:
    __slots__ = ("chunk", "from_child", "killed_for", "pid", "pidfd", "to_child")

    def __init__(self, pid, to_child, from_child):
        self.pid, self.to_child, self.from_child = pid, to_child, from_child
        self.pidfd = _platform.pidfd(pid)  # readable once it exits (None: not Linux)
        self.chunk: tuple[int, int] | None = None
        self.killed_for: str | None = None

    def exited(self) -> bool:
        """Whether it has exited; it stays unreaped (its pid, the group's id, is held)."""
        return _platform.child_exited(self.pid)


def _end_forked(code: int) -> None:
    """End a forked process: flush what it printed if that still works, then
    ``os._exit`` whatever happens (the function may have closed ``sys.stdout`` or
    fd 1), so that it never unwinds into the code of the process it was forked from."""
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - closed, None, a broken pipe...
                pass
    finally:
        os._exit(code)


class Supervisor:
    """Fork ``workers`` children and feed them chunks of ``tasks`` until done."""

    def __init__(self, run_dir: str, payload: dict, tasks: list, workers: int,
                 prefix: str = "", on_done=None, controller=None,
                 parent: int | None = None):
        self.run_dir, self.payload, self.tasks = run_dir, payload, tasks
        self.rd = RunDir(run_dir)
        self.controller = controller  # of :func:`thread_controller`, made by the caller
        # called once every task is accounted for (its record on disk), before the
        # children are stopped and reaped: the caller can ingest while they exit
        self.on_done = on_done
        self.parent = parent  # stop when this process (our parent) dies
        self.prefix = prefix  # of its result files: unique per SLURM array task and batch
        self.workers = max(1, min(workers, len(tasks) or 1))
        self.timeout_s = payload.get("timeout_s")
        self.max_chunk = payload.get("batch") or 2000
        self.shm = mmap.mmap(-1, _SLOT.size * self.workers)
        self.queue: deque[tuple[int, int]] = deque([(0, len(tasks))] if tasks else [])
        self.children: dict[int, _Child] = {}
        self.spawned = 0
        self.noted_fd: int | None = None  # children.pids, opened at the first spawn
        self.own_fd = open_append(self.rd.result_file(f"{prefix}supervisor-{os.getpid()}"))

    # chunks shrink as work runs out: guided scheduling
    def _next_chunk(self) -> tuple[int, int] | None:
        if not self.queue:
            return None
        start, stop = self.queue.popleft()
        remaining = sum(b - a for a, b in self.queue) + (stop - start)
        size = max(1, min(stop - start, remaining // (3 * self.workers), self.max_chunk))
        if start + size < stop:
            self.queue.appendleft((start + size, stop))
        return start, start + size

    def _spawn(self, slot: int) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.spawned += 1
        path = self.rd.result_file(f"{self.prefix}w{os.getpid()}-{self.spawned}")
        _SLOT.pack_into(self.shm, slot * _SLOT.size, -1, 0.0)
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                os.setpgid(0, 0)  # its own group: what it forks is killed with it
                _platform.die_with_parent(signal.SIGKILL, me)
                os.close(down_w)
                os.close(up_r)
                for other in self.children.values():
                    os.close(other.to_child)
                    os.close(other.from_child)
                    if other.pidfd is not None:
                        os.close(other.pidfd)
                _child(slot, self.shm, self.tasks, self.payload, down_r, up_w, path)
                code = 0
            except BaseException:  # noqa: BLE001
                try:
                    traceback.print_exc()
                except BaseException:  # noqa: BLE001 - stderr closed by the function
                    pass
            finally:
                _end_forked(code)
        try:
            os.setpgid(pid, pid)  # also here: whichever runs first, the group exists
        except OSError:  # it has set it itself, or died already
            pass
        os.close(down_r)
        os.close(up_w)
        self.children[slot] = _Child(pid, down_w, up_r)
        self._note(pid)
        self._feed(slot)

    def _note(self, pid: int) -> None:
        """Record a child's pid and start time: if this supervisor is killed outright,
        whoever finishes the run kills what the child's group left
        (:meth:`RunDir.kill_orphans`)."""
        self.noted_fd = self.rd.note_child(self.noted_fd, pid)

    def _feed(self, slot: int) -> None:
        child = self.children[slot]
        child.chunk = self._next_chunk()
        start, stop = child.chunk if child.chunk else (0, -1)
        try:
            os.write(child.to_child, _MSG.pack(start, stop))
        except BrokenPipeError:
            pass  # it died; its reaping tells us

    def run(self) -> int:
        import gc

        # Once here, not in every child: they inherit the limits (and the variables
        # for libraries loaded later), and threadpoolctl's scan of the loaded
        # libraries costs 5-15 ms a process, in parallel with the first tasks.
        _limit_threads(self.payload["threads"], self.controller)
        gc.freeze()  # children share the loaded function and tasks without copying them
        for slot in range(self.workers):
            if self.queue:
                self._spawn(slot)
        while self.children:
            by_fd = {}
            for child in self.children.values():
                by_fd[child.from_child] = child
                if child.pidfd is not None:
                    by_fd[child.pidfd] = child
            ready, _, _ = select.select(list(by_fd), [], [], self._wait_s())
            for fd in ready:
                child = by_fd[fd]
                slot = self._slot_of(child)
                if slot is None or fd != child.from_child:
                    continue  # reaped already in this round, or its pidfd: see below
                if os.read(fd, 1):
                    self._feed(slot)
                else:  # EOF: it is exiting
                    self._reap(slot)
            # A child's death, from the kernel: its pipe may be held open by what the
            # function forked, so an EOF may never come.
            for slot, child in list(self.children.items()):
                if child.exited():
                    self._reap(slot)
            self._enforce_timeout()
            if self.parent is not None and _platform.parent_died(self.parent):
                os.kill(os.getpid(), PARENT_DIED)  # where no PDEATHSIG does it: see run()
            if self.on_done is not None and not self.queue and all(
                    c.chunk is None for c in self.children.values()):
                # every child has been told to quit: no record is still to come
                self.on_done()
                self.on_done = None
        os.close(self.own_fd)
        if self.noted_fd is not None:
            os.close(self.noted_fd)
        return 0

    def _slot_of(self, child: _Child) -> int | None:
        for slot, c in self.children.items():
            if c is child:
                return slot
        return None

    def _wait_s(self) -> float:
        if not self.timeout_s:
            return 1.0 if _platform.LINUX else 0.1  # without pidfds, deaths are polled
        return max(0.01, min(1.0, self.timeout_s / 20))

    def _enforce_timeout(self) -> None:
        if not self.timeout_s:
            return
        now = time.time()
        for slot, child in self.children.items():
            index, started = _SLOT.unpack_from(self.shm, slot * _SLOT.size)
            if index >= 0 and now - started > self.timeout_s and not child.killed_for:
                child.killed_for = "timeout"
                _kill_child(child.pid)

    def _reap(self, slot: int) -> None:
        child = self.children.pop(slot)
        if child.chunk is not None and _finished_chunk(child.from_child):
            child.chunk = None  # it said "k" before it died: nothing of it is missing
        _kill_child(child.pid)  # what it forked dies with it
        _, status = os.waitpid(child.pid, 0)
        for fd in (child.to_child, child.from_child, child.pidfd):
            if fd is not None:
                os.close(fd)
        index, started = _SLOT.unpack_from(self.shm, slot * _SLOT.size)
        if child.chunk is not None and index >= 0:
            pset_id = self.tasks[index][0]
            if child.killed_for == "timeout":
                rec = failure_record(pset_id, "TimeoutError",
                                     f"pset exceeded timeout={self.timeout_s}s; its worker "
                                     "process was killed and replaced", "timeout", started)
            else:
                rec = failure_record(pset_id, "WorkerLost",
                                     f"the worker process died ({_exit_text(status)}) while "
                                     "running this pset", "lost", started)
            _records.append(self.own_fd, rec)
            if index + 1 < child.chunk[1]:
                self.queue.appendleft((index + 1, child.chunk[1]))
        elif child.chunk is not None:
            self.queue.appendleft(child.chunk)  # died before starting its chunk
        if self.queue:
            self._spawn(slot)

    def stop(self) -> None:
        """Kill every child with its group, and reap them: once this returns, none of
        them writes anything more (the caller may remove the run directory)."""
        for child in self.children.values():
            _kill_child(child.pid)
        for child in self.children.values():
            try:
                os.waitpid(child.pid, 0)
            except ChildProcessError:
                pass


# Sent to a supervisor whose caller died (a cache=False run): SIGTERM means cancel.
# Its own session has no terminal, so no other SIGHUP reaches it.
PARENT_DIED = signal.SIGHUP


def _finished_chunk(fd: int) -> bool:
    """Whether a dead child's pipe still holds its "chunk finished" byte."""
    try:
        os.set_blocking(fd, False)
        return b"k" in os.read(fd, 16)
    except OSError:  # nothing there (EAGAIN), or closed
        return False


def _kill_child(pid: int) -> None:
    """SIGKILL a child and its process group (what the function forked)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        hint = " - out of memory?" if sig == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {os.WEXITSTATUS(status)}"
