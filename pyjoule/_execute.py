"""What the worker does with one pset: run it, capture what it printed, frame its
record (a failure is a record too); and the thread limits its processes run under.
Standard library, cloudpickle (through :mod:`._records`) and threadpoolctl only."""

from __future__ import annotations

import io
import os
import socket
import sys
import time
import traceback

from . import _raised, _records

# the host a record names: the name host=[...] gave it (the multi backend sets this in
# the worker's environment), else this machine's
_HOST = os.environ.get("PYJOULE_HOST_NAME") or socket.gethostname()


# --------------------------------------------------------------------------- tasks
def execute(func, pset_id: str, kwargs: dict, capture: bool) -> bytes:
    """Run one pset and return its framed record (success or failure alike)."""
    started = time.time()
    t0 = time.perf_counter()
    out = err = None
    status, value, error = "done", None, None
    if capture:  # plain assignment: contextlib's redirect costs more than a no-op pset
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
    try:
        value = func(**kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - failures are data, SystemExit too
        status, error = "failed", _describe(exc, "exception")
    finally:
        if capture:
            sys.stdout, sys.stderr = saved
    record = (pset_id, status, value, time.perf_counter() - t0, started, time.time(), _HOST,
              os.getpid(), _captured(out), _captured(err), error)
    try:
        return _records.frame(record)
    except Exception:  # noqa: BLE001 - e.g. an instance of a class sent by value
        pass
    try:
        return _records.frame(record, by_value=True)
    except Exception as exc:  # noqa: BLE001 - a return value that cannot be pickled
        error = _unpicklable(value, exc)
        return _records.frame(record[:1] + ("failed", None) + record[3:-1] + (error,))


def _unpicklable(value, exc: Exception) -> dict:
    """The failure of a pset whose return value cannot be pickled: a
    ``pj.SerializationError`` saying which item (of a dict, list or tuple) and why,
    rather than pickle's own traceback through cloudpickle."""
    from ._errors import SerializationError

    part = ""
    if isinstance(value, (dict, list, tuple)):
        import cloudpickle

        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            try:
                cloudpickle.dumps(item, protocol=5)
            except Exception as item_exc:  # noqa: BLE001 - the culprit
                part, exc = f"its item {key!r}: ", item_exc
                break
    error = SerializationError(
        f"the return value could not be pickled: {part}{exc} ({type(exc).__name__}); "
        "return plain data (numbers, strings, numpy arrays, dicts and lists of them)")
    return {"error_type": "SerializationError", "message": str(error),
            "traceback": f"pyjoule.SerializationError: {error}\n", "reason": "exception",
            "exception": _raised.dumps(error)}


def _captured(stream: io.StringIO | None) -> str:
    """What the pset printed to ``stream``; "" if not captured, a note if the function
    closed it (a closed StringIO has forgotten its text)."""
    if stream is None:
        return ""
    try:
        return stream.getvalue()
    except ValueError:
        return "[pyjoule: the function closed this stream; its output is lost]\n"


def _describe(exc: BaseException, reason: str) -> dict:
    tb = exc.__traceback__  # from the function's frame on: execute()'s is no news
    tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb
    return {
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
        "reason": reason,
        "exception": _raised.dumps(exc),  # for f(**kw) to raise it again
    }


def failure_record(pset_id: str, error_type: str, message: str, reason: str,
                   started: float | None = None) -> dict:
    """A record for a pset that no child could report on (timeout, lost worker)."""
    now = time.time()
    return {
        "pset_id": pset_id, "status": "failed", "value": None,
        "runtime_s": (now - started) if started else None,
        "started": started, "finished": now, "host": _HOST, "pid": os.getpid(),
        "stdout": "", "stderr": "", "error_type": error_type, "message": message,
        "traceback": "", "reason": reason,
    }


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS")


def thread_controller():
    """threadpoolctl's view of the thread-pool libraries loaded in this process. Made
    by a caller before it forks the supervisor, so that the supervisor limits them
    without scanning the loaded libraries itself: the scan costs 5-15 ms in a process
    that loaded pandas, and a few ms when repeated in the same process."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _limit_threads(threads: int, controller=None):
    """Limit BLAS/OpenMP pools: libraries loaded already (threadpoolctl; ``controller``
    if the caller scanned them) and those the function loads later (they read these
    variables when they load)."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    if controller is None:
        controller = thread_controller()
    return controller.limit(limits=threads)
