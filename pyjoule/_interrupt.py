"""Ctrl-C: held back while a step that must not be cut in two finishes, and told in
one line when it stops a call waiting for its run (:func:`wait_or_cancel`).

A second Ctrl-C while a cancel records the run's end would otherwise leave the run
``finishing`` (and its psets claimed). That step is short (under a second for
200,000 psets), so the signal waits for it and is delivered right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import Experiment, Run, _Session


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block is through, then deliver it. Only in
    the main thread (elsewhere Python delivers no SIGINT anyway)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:  # not ours to change
        yield
        return
    caught: list[tuple[Any, ...]] = []
    previous = signal.signal(signal.SIGINT, lambda *sig: caught.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(*caught[0])
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


def start_or_stop(exp: Experiment[..., Any], space: Any, call: _Session,
                  **kwargs: Any) -> Run | KeyboardInterrupt:
    """``exp._run(space, ...)`` in the call ``call``, the ``pj.Run`` it starts; or,
    for a Ctrl-C in the function itself under ``workers=0`` (its psets run inside the
    start, which has cancelled the run already), the one-line ``KeyboardInterrupt``
    to raise."""
    resolved = call.resolved
    try:
        return exp._run(space, call.store, call.identity, resolved=resolved, **kwargs)
    except KeyboardInterrupt:
        if resolved.workers != 0 or resolved.host is not None or \
                resolved.slurm is not None:
            raise
    from . import _dispatch

    try:  # planned again, without claiming anything: only to count
        ids = _dispatch.plan(None, call.func_id, exp._signature, space).ids
        kept = len(call.store.lookup(call.func_id, ids))
    except Exception:  # noqa: BLE001 - the line must not hide the Ctrl-C
        return KeyboardInterrupt(_GENERIC)
    return KeyboardInterrupt(_LINE.format(kept=kept, total=len(ids)))


def wait_or_cancel(run: Run, progress: bool = False) -> KeyboardInterrupt | None:
    """Wait for ``run`` (a ``pj.Run``); on Ctrl-C, cancel what it started and return
    the ``KeyboardInterrupt`` for the caller to raise: one line saying what is kept,
    without the frames of the wait it cut short (the poll, the pool, ``select``)."""
    try:
        if any(r.rec.get("state") == "running" for r in run._live()):
            _import_what_ingesting_needs()
        run._wait(progress=progress)
        return None
    except KeyboardInterrupt:
        pass
    while True:
        try:
            run.cancel()  # a no-op once the run is cancelled
            break
        except KeyboardInterrupt:
            # a second Ctrl-C: either held until the cancel was through, or in the
            # moment before it began, which would leave the run running with its
            # workers on: begin it again until it has been through
            continue
    return KeyboardInterrupt(_cancelled_line(run))


def stop_waiting(run: Run, timeout: float | None) -> KeyboardInterrupt | None:
    """``run.wait(timeout)``; on Ctrl-C, the ``KeyboardInterrupt`` to raise: one line
    saying that the run goes on (a submitted run is not the caller's to stop: its
    workers outlive this process) and how to follow or stop it."""
    try:
        if any(r.rec.get("state") == "running" for r in run._live()):
            _import_what_ingesting_needs()
        run._wait(timeout=timeout, progress=run._progress)
        return None
    except KeyboardInterrupt:
        pass
    try:
        kept = len(run._store.lookup(run.func_id, run.plan.ids))
    except Exception:  # noqa: BLE001 - the line must not hide the Ctrl-C
        kept = None
    ids = [r.run_id for r in run._live()] or [run.id or "?"]
    name = ", ".join(ids)
    have = "" if kept is None else f"{kept} of {len(run.plan.ids)} psets are in the cache; "
    return KeyboardInterrupt(
        f"stopped waiting: {have}run {name} goes on (pj.attach({ids[0]!r}).wait() to "
        f"follow it, `pyjoule cancel {ids[0]}` to stop it)")


def _import_what_ingesting_needs() -> None:
    """Import numpy (through the column code) now, with Ctrl-C held: the first poll
    would, and a Ctrl-C in the middle of that import leaves submodules bound to a
    half-made ``numpy`` that fails the cancel (``module 'numpy' has no attribute
    'broadcast_to'``) and so leaves the run unfinished."""
    with sigint_deferred():
        from . import _columns, _unfinished  # noqa: F401


def _cancelled_line(run: Run) -> str:
    total = len(run.plan.ids)
    try:
        kept = len(run._store.lookup(run.func_id, run.plan.ids))
    except Exception:  # noqa: BLE001 - the line must not hide the Ctrl-C
        return _GENERIC
    if run._own is None and run._attached:  # waiting for another process's run
        ids = ", ".join(r.run_id for r in run._attached)
        return (f"stopped waiting: {kept} of {total} psets are in the cache; run {ids} "
                "of another process goes on (run again to follow it)")
    return _LINE.format(kept=kept, total=total)


_LINE = "cancelled: {kept} of {total} psets kept in the cache; run again to continue"
_GENERIC = "cancelled; finished results are kept in the cache; run again to continue"
