"""Progress reporting, kept apart from logging.

Where the bar goes depends on who is watching:

- a Jupyter kernel: a tqdm widget (``tqdm.notebook``, which needs ipywidgets: the
  ``notebook`` extra); without ipywidgets, the text bar, quietly (tqdm would warn);
- a terminal (stderr is a tty): tqdm's text bar on stderr;
- nobody (batch jobs, CI logs, a pipe): a plain line on stderr every
  ``progress_interval_s`` seconds (30 by default) and one when the work ends, with
  done/failed/cached/total and the rate, so a batch log shows the work moving and
  nobody's log fills with carriage returns. Like the bar these lines are progress,
  not log records: they need no ``PYJOULE_LOG_LEVEL``, and ``progress=False`` hides
  them.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("pyjoule")


def _in_jupyter() -> bool:
    """Whether this is a Jupyter kernel (not a terminal IPython, which has a tty)."""
    shell = sys.modules.get("ipykernel.zmqshell")
    ipython = sys.modules.get("IPython")
    if shell is None or ipython is None:
        return False
    try:
        return isinstance(ipython.get_ipython(), shell.ZMQInteractiveShell)
    except Exception:  # noqa: BLE001 - an odd IPython: treat it as no notebook
        return False


def _interactive() -> bool:
    if _in_jupyter():
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _bar_class(notebook: bool):
    """``tqdm.notebook.tqdm`` in Jupyter when ipywidgets is there, else the text bar.

    Chosen here rather than by ``tqdm.auto``, which warns (TqdmWarning, "IProgress not
    found") in a kernel without ipywidgets before falling back to the same text bar.
    Kernels behind qtconsole and Spyder cannot show widgets: text there too, as tqdm does.
    """
    if notebook and not any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ):
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            pass
        else:
            from tqdm.notebook import tqdm

            return tqdm
    from tqdm.std import tqdm

    return tqdm


class Progress:
    """Counts psets: ``done``, ``failed`` and ``cached`` out of ``total``.

    Examples
    --------
    Without a terminal or a notebook it writes lines to stderr instead of drawing:

    >>> bar = Progress(4, cached=1, label="demo", log_every_s=3600, enabled=False)
    >>> bar.update(done=2, failed=1)
    >>> bar.close()
    >>> bar.done, bar.failed, bar.cached
    (2, 1, 1)
    >>> bar.line()
    'demo: 4/4 psets (done 2, failed 1, cached 1)'
    """

    def __init__(self, total: int, cached: int = 0, *, enabled: bool = True,
                 label: str = "pyjoule", log_every_s: float | None = None):
        self.total, self.cached = total, cached
        self.done = self.failed = 0
        self.label = label
        self._bar = None
        self._started = self._last_log = time.monotonic()
        if log_every_s is None:
            from ._config import config

            log_every_s = config.get("progress_interval_s")
        self._log_every_s = log_every_s
        self.enabled = enabled and total > cached
        if self.enabled and _interactive():
            tqdm = _bar_class(_in_jupyter())
            self._bar = tqdm(total=total, initial=cached, desc=label, unit="pset",
                             dynamic_ncols=True, leave=True)
            self._postfix()

    def _postfix(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"done={self.done} failed={self.failed} cached={self.cached}", refresh=False)

    def line(self, suffix: str = "") -> str:
        """The progress line: counts out of the total, then ``suffix``."""
        return (f"{self.label}: {self.cached + self.done + self.failed}/{self.total} psets "
                f"(done {self.done}, failed {self.failed}, cached {self.cached}){suffix}")

    def _log(self, suffix: str = "") -> None:
        """Write a progress line to stderr (the bar's place), never failing the run."""
        elapsed = time.monotonic() - self._started
        rate = (self.done + self.failed) / elapsed if elapsed > 0 else 0.0
        text = self.line(f"{suffix}, {rate:.3g} psets/s")
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):  # no stderr, or a closed one
            log.info("%s", text)

    def update(self, done: int = 0, failed: int = 0) -> None:
        """Count what finished; called at every poll (also with nothing new), so that
        a batch log gets its line on time while long psets run."""
        self.done += done
        self.failed += failed
        if self._bar is not None:
            if done or failed:
                self._postfix()
                self._bar.update(done + failed)
        elif self.enabled and time.monotonic() - self._last_log >= self._log_every_s:
            self._last_log = time.monotonic()
            self._log()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled:  # the line a batch log wants: how it ended, and how long
            self.enabled = False
            self._log(f" in {time.monotonic() - self._started:.1f} s")
