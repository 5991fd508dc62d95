"""What the function raised, carried from the worker back to the caller of ``f(**kw)``.

The worker pickles the exception next to its type, message and traceback in the
failure record (:func:`dumps`), and loads it back once to be sure it comes back
(an exception whose ``__init__`` takes other arguments than ``args`` does not). The
caller loads it from its own private cache, like every other pickle there
(:func:`original`), and raises it with the worker's traceback attached as its
``__cause__`` (and, on Python 3.11+, a note naming the pset). When it cannot be
pickled or loaded, the caller raises ``pj.ExperimentError`` as ``map`` does.

The worker's half imports only the standard library (cloudpickle when needed).
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

log = logging.getLogger("pyjoule")

#: A larger pickled exception (one holding a big array, say) is not kept: the caller
#: raises ``pj.ExperimentError`` with the message and traceback instead.
MAX_BYTES = 1 << 20


# ----------------------------------------------------------------- in the worker
def dumps(exc: BaseException) -> bytes | None:
    """``exc`` pickled for the caller, or None. Only ``Exception``s: a ``SystemExit``
    in a worker is a failure like any other, not a reason to end the caller.

    Plain pickle first; cloudpickle for a class that exists only by value here (defined
    in the user's script or notebook: cloudpickle gives it the same class back there)."""
    if not isinstance(exc, Exception):
        return None
    for by_value in (False, True):
        try:
            if by_value:
                import cloudpickle

                data: bytes = cloudpickle.dumps(exc, protocol=5)
            else:
                data = pickle.dumps(exc, protocol=5)
            if len(data) > MAX_BYTES:
                return None
            pickle.loads(data)  # noqa: S301 - our own bytes, just made: does it come back?
            return data
        except Exception:  # noqa: BLE001,S112 - then the caller gets ExperimentError
            continue
    return None


# ----------------------------------------------------------------- in the caller
class Raise:
    """An exception for the public method to raise itself, so that the traceback the
    user sees goes from their line into that method and stops there."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


def original(failure: dict[str, Any]) -> Exception | None:
    """The exception of ``failure`` (a failure record of the user's own cache), with
    the worker's traceback as its ``__cause__``; None if it did not come with one or
    cannot be loaded here."""
    data = failure.get("exception")
    if not data or failure.get("reason") != "exception":
        return None
    try:
        exc = pickle.loads(data)  # noqa: S301 - from the user's private cache (trusted)
    except Exception as err:  # noqa: BLE001 - e.g. its class is not importable here
        log.debug("the exception of pset %s cannot be loaded here: %s",
                  failure.get("pset_id"), err)
        return None
    if not isinstance(exc, Exception):
        return None
    where = _where(failure)
    tb = (failure.get("traceback") or "").rstrip()
    tb = tb if "Traceback (most recent call last)" in tb else ""  # not just its message
    if tb:
        from ._errors import WorkerTraceback

        exc.__cause__ = WorkerTraceback(f"the function raised this {where}:\n{tb}")
    add_note = getattr(exc, "add_note", None)  # Python 3.11+ (PEP 678)
    if add_note is not None:
        try:
            add_note(f"pyjoule: raised by the function {where}"
                     + ("; its traceback there is shown above" if tb else ""))
        except Exception:  # noqa: BLE001 - a class that refuses notes still raises
            pass
    return exc


def _where(failure: dict[str, Any]) -> str:
    kwargs = failure.get("kwargs")
    host = failure.get("host")
    return (f"in a worker for pset {kwargs!r}" if kwargs is not None else "in a worker") \
        + (f" on {host}" if host else "")
