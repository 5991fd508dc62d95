"""The API layer: the decorator and the ``Experiment`` it returns, the ``Run`` handle,
and the registry functions (``runs``, ``attach``, ``load``) and ``ui`` (the browser view).

``decorator`` holds the typed signatures of ``@pj.experiment`` and ``f.options``;
``decorated`` the decorated function's object (``Experiment``; not named
``experiment``: that name is the decorator's); ``session`` what one call finds once;
``run`` the handle of a submission; ``registry`` the runs as the user lists them;
``ui`` serves their browser view. The names other modules import live here, at the
package.
"""

from __future__ import annotations

from .._config import apply_log_level_from_env
from .decorated import Experiment
from .decorator import OptionsMethod, experiment
from .registry import attach, existing_cache, follow, load, recorded, refresh_local_runs, runs
from .run import Run
from .session import _Session
from .ui import ui

__all__ = ["Experiment", "OptionsMethod", "Run", "_Session", "attach",
           "existing_cache", "experiment", "follow", "load", "recorded", "refresh_local_runs",
           "runs", "ui"]

apply_log_level_from_env()
