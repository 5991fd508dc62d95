"""Fault points: the places where the fault tests kill a process on purpose.

A promise such as "nothing is run twice" must hold when the driver dies at the worst
moment, and some of those moments are too short to hit from outside (between
starting a host's worker and recording that it runs). ``PYJOULE_FAULT=<point>`` in a
process's environment makes it kill itself (SIGKILL: no clean-up, as a closed laptop
or an OOM kill) when it reaches that point. Unset, a point costs one dictionary
lookup. The points are named in the code that calls :func:`point`.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    """Die here, at once, if the environment names this point."""
    if os.environ.get("PYJOULE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
