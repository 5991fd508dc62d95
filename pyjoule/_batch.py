"""What an engine's worker runs for ``executor=``: one batch of psets.

:func:`run_batch` is the function a dask, Ray or ``concurrent.futures`` worker is
handed (by :mod:`._backends.executor`): the pickled payload (the function and its
options, the same bytes for every batch) and a slice of tasks, and it returns the
batch's framed records, the same bytes a pool worker appends to its result file
(:func:`._execute.execute` makes each; a failure is a record too). The payload is
unpickled once per worker process (kept by its digest).

With ``timeout_s`` the psets run in a forked child, so that one running too long can
be killed (its record: ``timeout``; a child that died: ``lost``) and the rest go on in
a new child; without it they run in the worker itself (no fork: the fast path).

Standard library, cloudpickle and pyjoule's worker-side modules only: it is imported
on engine workers that may have nothing else.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import select
import signal
import threading
import time

from . import _caches, _records
from ._execute import THREAD_VARS, _limit_threads, execute, failure_record
from ._files import write_all

# digest of a payload blob -> the payload it unpickles to, in this worker process
_payloads: dict[bytes, dict] = _caches.declare(__name__, "_payloads", {})
# threadpoolctl's scan of this process's libraries, made once (it costs ms)
_controller: list = _caches.declare(__name__, "_controller", [])
_KEEP = 4  # payloads kept: a worker serves a few runs at once at most


def _fresh_limits() -> None:
    _limits[:] = [0, {}, None]


# the thread limits of the batches running now, set by the first and undone by the last
# (an engine whose workers are threads runs several at once, in one process):
# [batches running, {variable: value before}, threadpoolctl's limiter]
_limits: list = _caches.declare(__name__, "_limits", [0, {}, None], reset=_fresh_limits)
_limits_lock = threading.Lock()


def run_batch(payload_blob: bytes, tasks_blob: bytes) -> bytes:
    """The framed records of the psets of ``tasks_blob`` (a pickled list of
    ``(pset_id, kwargs)``) run with the payload of ``payload_blob``."""
    tasks = pickle.loads(tasks_blob)
    try:
        payload = _payload(payload_blob)
    except Exception as exc:  # noqa: BLE001 - e.g. a module missing on this worker
        return _unloadable(tasks, exc)
    _enter(payload["threads"])
    try:
        if payload.get("timeout_s"):
            return _run_forked(payload, tasks, float(payload["timeout_s"]))
        func, capture = payload["func"], payload["capture"]
        return b"".join([execute(func, pset_id, kwargs, capture)
                         for pset_id, kwargs in tasks])
    finally:
        _leave()


def _enter(threads: int) -> None:
    """The first of the batches running at once limits the BLAS/OpenMP threads."""
    with _limits_lock:
        if _limits[0] == 0:
            if not _controller:
                from ._execute import thread_controller

                _controller.append(thread_controller())
            _limits[1] = {var: os.environ.get(var) for var in THREAD_VARS}
            _limits[2] = _limit_threads(threads, _controller[0])
        _limits[0] += 1


def _leave() -> None:
    """The last one undoes the limits (a thread-based engine runs in the caller)."""
    with _limits_lock:
        _limits[0] -= 1
        if _limits[0]:
            return
        _limits[2].restore_original_limits()
        for var, value in _limits[1].items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _payload(blob: bytes) -> dict:
    """The payload of ``blob``, unpickled once per process."""
    key = hashlib.blake2b(blob, digest_size=16).digest()
    payload = _payloads.get(key)
    if payload is None:
        payload = pickle.loads(blob)  # cloudpickle output loads with plain pickle
        if len(_payloads) >= _KEEP:
            _payloads.clear()
        _payloads[key] = payload
    return payload


def _failure(pset_id: str, error_type: str, message: str, reason: str,
             started: float | None = None) -> bytes:
    return _records.frame(_records.pack(failure_record(pset_id, error_type, message,
                                                       reason, started)))


def _unloadable(tasks: list, exc: Exception) -> bytes:
    """Each pset's failure when the function cannot be loaded on this worker."""
    import socket

    message = (f"the function could not be loaded on the engine's worker "
               f"{socket.gethostname()} (pid {os.getpid()}): {type(exc).__name__}: {exc}. "
               "Is a module it needs missing from that worker's environment?")
    return b"".join(_failure(pset_id, type(exc).__name__, message, "exception")
                    for pset_id, _ in tasks)


# ------------------------------------------------------------- with a timeout
def _run_forked(payload: dict, tasks: list, timeout_s: float) -> bytes:
    """Run ``tasks`` in forked children, killing one whose pset exceeds ``timeout_s``."""
    out: list[bytes] = []
    i = 0
    while i < len(tasks):
        done, data, ended_how = _child_run(payload, tasks[i:], timeout_s)
        out.append(data)
        i += done
        if i < len(tasks) and ended_how is not None:
            reason, started = ended_how
            pset_id = tasks[i][0]
            if reason == "timeout":
                out.append(_failure(pset_id, "TimeoutError", f"the pset ran longer than "
                                    f"timeout={timeout_s:g} s and was killed", "timeout",
                                    started))
            else:
                out.append(_failure(pset_id, "WorkerLost", "the process running this "
                                    "pset died (killed, or the function exited it)",
                                    "lost", started))
            i += 1
    return b"".join(out)


def _child_run(payload: dict, tasks: list, timeout_s: float
               ) -> tuple[int, bytes, tuple[str, float] | None]:
    """Run ``tasks`` in one forked child until all are done, one times out or the child
    dies: ``(psets done, their records, None or (why it stopped, that pset's start))``."""
    parent = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        code = 0
        try:
            os.setpgid(0, 0)  # what the function starts goes with it when it is killed
            from ._platform import die_with_parent

            die_with_parent(signal.SIGKILL, parent)
            func, capture = payload["func"], payload["capture"]
            for pset_id, kwargs in tasks:
                write_all(w, execute(func, pset_id, kwargs, capture))
        except BaseException:  # noqa: BLE001 - reported as the pset's loss
            code = 1
        os._exit(code)
    os.close(w)
    buf = bytearray()
    done, used = 0, 0
    started = time.time()
    deadline = time.monotonic() + timeout_s
    why: tuple[str, float] | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([r], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                why = ("timeout", started)
                _kill(pid)
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:  # the child ended
                break
            buf += chunk
            n, used = _records.complete(buf)
            if n > done:  # a pset finished: the next one's clock starts
                done, started = n, time.time()
                deadline = time.monotonic() + timeout_s
    finally:
        os.close(r)
        _reap(pid)
    if why is None and done < len(tasks):
        why = ("lost", started)
    return done, bytes(buf[:used]), why


def _kill(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
            return
        except OSError:
            pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
