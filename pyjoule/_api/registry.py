"""The run registry as the user sees it: ``pj.runs()``, ``pj.attach(run_id)``, and
``pj.load(f)`` (everything cached for a function)."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Literal

from .. import _dispatch
from .._config import default_cache_dir
from .._errors import CacheError, OptionError, RunNotFoundError
from .._store import Store, not_a_cache
from .decorated import Experiment
from .run import Run, _check_sparse

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

log = logging.getLogger("pyjoule")


def _registry(cache: str | os.PathLike[str] | None) -> Store:
    return Store.open(cache if cache is not None else default_cache_dir())


def _registry_and_reason(cache: str | os.PathLike[str] | None) -> tuple[Store, str]:
    """The registry's store, and in words why that cache (see ``cache_choice``)."""
    from .._config import cache_choice

    if cache is not None:
        return Store.open(cache), "passed as cache="
    path, reason = cache_choice()
    return Store.open(path), reason


def existing_cache(cache: str | os.PathLike[str]) -> Store:
    """The store of the cache at ``cache`` for the ``pyjoule`` command, which reads
    caches and never makes one: a directory that is not a cache is a ``CacheError``
    saying why, and nothing is created there."""
    from pathlib import Path

    path = Path(cache).expanduser()
    why = not_a_cache(path)
    if why:
        raise CacheError(f"{path} is not a pyjoule cache ({why}); pass --cache DIR or set "
                         "PYJOULE_CACHE to the directory your experiments cache in")
    return Store.open(path)


def refresh_local_runs(store: Store) -> None:
    """Ingest what this machine's running runs have written, so the counts are current
    and a run whose process is gone (a kernel shut down mid-run) is finished. Remote
    runs are left as last seen: listing must not open connections."""
    for rec in store.list_runs():
        if rec["state"] == "running" and rec["backend"] == "pool":
            try:
                _dispatch.LiveRun(store, rec).refresh()  # starts no retry
            except Exception as exc:  # noqa: BLE001 - a listing must not fail on one run
                log.debug("could not refresh run %s: %s", rec["run_id"], exc)


def recorded(store: Store, rec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(counts, failures)`` of the run ``rec`` as the registry has them, polling
    nothing (``pyjoule status`` of an ended run, the browser view's fragments). A
    failure with no log of its own points at the run's log, as ``run.failures`` does."""
    from .._rundir import RunDir

    counts = {k: rec[k] or 0 for k in ("total", "cached", "done", "failed")}
    counts.update(pending=0, running=0)
    failures = store.failures(run_id=rec["run_id"])
    log_file = RunDir(rec["run_dir"]).log
    for f in failures:
        if not f.get("log_path") and os.path.exists(log_file):
            f["log_path"] = log_file
    return counts, failures


def runs(cache: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """A DataFrame of the runs in the cache's registry, newest last.

    Columns: ``id``, ``function``, ``host``, ``backend``, ``state``, the counts
    ``total``, ``cached``, ``done``, ``failed``, ``submitted`` and ``finished`` (UTC),
    the scheduler's ``job_ids``, ``func_id`` (the function version) and
    ``scheduler_queries`` (SLURM: commands sent to the scheduler for the run).
    ``attrs["cache"]`` names the cache listed (the project of the script or notebook
    being run, else of the cwd), ``attrs["cache_reason"]`` why; the repr starts with
    both.
    """
    import pandas as pd

    from .._runsframe import runs_frame

    rows = []
    store, reason = _registry_and_reason(cache)
    refresh_local_runs(store)
    for rec in store.list_runs():
        rows.append({"id": rec["run_id"], "function": rec["name"], "host": rec["host"],
                     "backend": rec["backend"], "state": rec["state"], "total": rec["total"],
                     "cached": rec["cached"], "done": rec["done"], "failed": rec["failed"],
                     "submitted": pd.to_datetime(rec["submitted"], unit="s", utc=True),
                     "finished": pd.to_datetime(rec["finished"], unit="s", utc=True),
                     "job_ids": rec["job_ids"], "func_id": rec["func_id"],
                     "scheduler_queries": (rec["options"] or {}).get("scheduler_queries")})
    cols = ["id", "function", "host", "backend", "state", "total", "cached", "done",
            "failed", "submitted", "finished", "job_ids", "func_id", "scheduler_queries"]
    return runs_frame(rows, cols, str(store.root), reason)


def attach(run_id: str, cache: str | os.PathLike[str] | None = None) -> Run:
    """The ``pj.Run`` with this id, from any process (a run on an ``executor=`` only
    from the process that owns the executor: elsewhere a ``pj.PyjouleError`` says so;
    its finished results are in the cache)."""
    return _registered(run_id, cache, attach=True)


def follow(run_id: str, cache: str | os.PathLike[str] | None = None) -> Run:
    """Like :func:`attach`, to look at a run or cancel it (``pyjoule status``,
    ``pyjoule cancel``): also another process's run on an executor."""
    return _registered(run_id, cache, attach=False)


def _registered(run_id: str, cache: str | os.PathLike[str] | None, attach: bool) -> Run:
    store = _registry(cache)
    rec = store.get_run(run_id)
    if rec is None:
        known = [r["run_id"] for r in store.list_runs()][-5:]
        raise RunNotFoundError(f"no run {run_id!r} in the cache at {store.root} "
                               f"(latest: {known}); pass cache= if it lives elsewhere")
    plan, own, _ = _dispatch.registered(store, rec, attach=attach)
    run = Run(store, plan, own, [])
    run._cached = rec["cached"]  # which psets were cached is not kept, their number is
    return run


def load(func: Experiment[..., Any], *,
         sparse: bool | Literal["auto"] = "auto") -> xr.Dataset:
    """The Dataset of everything cached for ``func`` (current version); runs nothing."""
    from .._results import dataset_of_all

    _check_sparse(sparse)

    if not isinstance(func, Experiment):
        raise OptionError("pj.load takes a function decorated with @pj.experiment")
    store = func._store()
    func_id = func._func_id_for(store)
    ds: xr.Dataset = dataset_of_all(store, func_id, sparse=sparse,
                                    dims=func._options.get("dims"),
                                    attrs={"function": func.name, "func_id": func_id})
    return ds
