"""Start commands told to tidy whose answer is not through yet (an SSH run's start
command, a SLURM wave's follower): a later command on the same run directory waits
for it first, so that a new start never meets a removal still under way.

Process state, keyed by run id: :func:`hand_over` adds one, :func:`settle` waits
for one, :func:`reset` lets go of all (closing their channels).
"""

from __future__ import annotations

import os

from .. import _caches

_pending: dict = {}  # run id -> a stream told to tidy, its answer not read yet


def hand_over(run_dir: str, stream) -> None:
    """``stream`` was told to tidy ``run_dir``: the next command there waits for it."""
    _pending[os.path.basename(run_dir)] = stream


def settle(run_dir: str | None) -> None:
    """Wait until a tidy sent to the start command of ``run_dir`` is through."""
    stream = _pending.pop(os.path.basename(run_dir), None) if run_dir else None
    if stream is not None:
        stream.finish(timeout=30)
        stream.close()


def reset() -> None:
    """Let go of every pending tidy (their channels closed, their answers not read)."""
    while _pending:
        _, stream = _pending.popitem()
        stream.close()


_caches.declare(__name__, "_pending", _pending, reset=reset)
