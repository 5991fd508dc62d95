"""Progress reporting, kept apart from logging.

A tqdm bar (``tqdm.auto``: a widget in Jupyter, text on a terminal) when someone is
watching, and an INFO log line every ``log_every_s`` seconds otherwise (batch jobs,
CI logs), so nobody's log fills with carriage returns.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("pyjoule")


def _interactive() -> bool:
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Counts psets: ``done``, ``failed`` and ``cached`` out of ``total``."""

    def __init__(self, total: int, cached: int = 0, *, enabled: bool = True,
                 label: str = "pyjoule", log_every_s: float = 10.0):
        self.total, self.cached = total, cached
        self.done = self.failed = 0
        self.label = label
        self._bar = None
        self._last_log = time.monotonic()
        self._log_every_s = log_every_s
        self.enabled = enabled and total > cached
        if self.enabled and _interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=cached, desc=label, unit="pset",
                             dynamic_ncols=True, leave=True)
            self._postfix()

    def _postfix(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"done={self.done} failed={self.failed} cached={self.cached}", refresh=False)

    def update(self, done: int = 0, failed: int = 0) -> None:
        if not (done or failed):
            return
        self.done += done
        self.failed += failed
        if self._bar is not None:
            self._postfix()
            self._bar.update(done + failed)
        elif self.enabled and time.monotonic() - self._last_log >= self._log_every_s:
            self._last_log = time.monotonic()
            log.info("%s: %d/%d psets (done %d, failed %d, cached %d)", self.label,
                     self.cached + self.done + self.failed, self.total, self.done,
                     self.failed, self.cached)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
