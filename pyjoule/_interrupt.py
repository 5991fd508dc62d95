"""Ctrl-C held back while a step that must not be cut in two finishes.

A second Ctrl-C while a cancel records the run's end would otherwise leave the run
``finishing`` (and its psets claimed). That step is short (under a second for
200,000 psets), so the signal waits for it and is delivered right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigint_deferred():
    """Hold a Ctrl-C (SIGINT) until the block is through, then deliver it. Only in
    the main thread (elsewhere Python delivers no SIGINT anyway)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:  # not ours to change
        yield
        return
    caught: list = []
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
