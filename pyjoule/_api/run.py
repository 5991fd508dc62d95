"""``Run``: the handle of one submission (``f.submit``, ``pj.attach``): its counts,
waiting, the Dataset and table of what finished, failures, cancelling; and the error
``map`` raises when psets failed."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .. import _dispatch
from .._config import config
from .._display import card, counts_bar, esc
from .._errors import ExperimentError, OptionError
from .._identity import user_stacklevel
from .._interrupt import stop_waiting
from .._store import Store

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from .decorated import Experiment

log = logging.getLogger("pyjoule")


class Run:
    """The handle of one submission; its state lives in the cache's run registry."""

    def __init__(self, store: Store, plan: _dispatch.Plan, own: _dispatch.LiveRun | None,
                 attached: list[_dispatch.LiveRun],
                 experiment: Experiment[..., Any] | None = None,
                 progress: bool = False):
        self._store, self.plan = store, plan
        self._own, self._attached = own, attached
        self._experiment = experiment
        self._progress = progress
        self.id = own.run_id if own else None
        self.func_id = plan.func_id
        #: psets found cached when the run was submitted (pj.attach: from the registry)
        self._cached = len(plan.found)

    def _summary(self) -> dict[str, Any]:
        """What the reprs show (polls the run once); never raises."""
        try:
            counts: dict[str, Any] = self.status()
        except Exception as exc:  # noqa: BLE001 - e.g. the host is unreachable just now
            counts = {"error": f"status unavailable ({exc})"}
        recs = [r.rec for r in self._live()]
        exp = self._experiment
        if not recs:
            state = "all cached"
        elif any(r.get("state") == "running" for r in recs):
            state = "running"
        else:
            state = (self._own.rec if self._own else recs[0]).get("state") or "?"
        host = exp._options.get("host") if exp is not None else None
        hosts = {r.get("host") or "local" for r in recs} or {getattr(host, "target", "local")}
        try:
            job_ids = self.job_ids
        except Exception:  # noqa: BLE001
            job_ids = []
        return {"id": self.id or "(nothing to run)", "state": state, "counts": counts,
                "name": getattr(exp, "name", None) or (recs[0].get("name") if recs else "?"),
                "host": ", ".join(sorted(hosts)),
                "backend": ", ".join(sorted({r.get("backend") or "?" for r in recs})) or "none",
                "cache": str(self._store.root), "job_ids": job_ids,
                "waits_for": [r.run_id for r in self._attached]}

    def __repr__(self) -> str:
        s = self._summary()
        text = ", ".join(f"{k}={v}" for k, v in s["counts"].items())
        jobs = f" jobs={','.join(s['job_ids'])}" if s["job_ids"] else ""
        return (f"<pyjoule Run {s['id']} of {s['name']}: {s['state']}, {text}; "
                f"host={s['host']} backend={s['backend']}{jobs} cache={s['cache']!r}>")

    def _repr_html_(self) -> str:
        s = self._summary()
        rows = [("state", f"<b>{esc(s['state'])}</b>"), ("progress", counts_bar(s["counts"])),
                ("host", esc(s["host"])), ("backend", esc(s["backend"])),
                ("cache", f"<code>{esc(s['cache'])}</code>")]
        if s["job_ids"]:
            rows.append(("job ids", esc(", ".join(s["job_ids"]))))
        if s["waits_for"]:
            rows.append(("waits for runs", esc(", ".join(s["waits_for"]))))
        title = f"pyjoule run <code>{esc(s['id'])}</code> of <code>{esc(s['name'])}</code>"
        return card(title, rows)

    def _live(self) -> list[_dispatch.LiveRun]:
        return ([self._own] if self._own else []) + self._attached

    def _poll(self) -> None:
        """Ingest what the runs wrote; starts no work (``done()``/``wait()`` retry)."""
        for run in self._live():
            if run.rec.get("state") == "running":
                run.refresh()
        self._settle()

    def status(self) -> dict[str, int]:
        """Counts: ``total``, ``cached``, ``pending``, ``running``, ``done``, ``failed``."""
        self._poll()
        total, cached = len(self.plan.ids), self._cached
        done = len(self._store.lookup(self.func_id, self.plan.ids)) - cached
        failed = len(self.failure_records())
        remaining = max(0, total - cached - done - failed)
        alive = [r for r in self._live() if r.rec.get("state") == "running"]
        workers = 0
        for r in alive:
            slots = r.backend.running_slots()
            workers += max(1, r.rec.get("workers") or 1) if slots is None else slots
        running = min(workers, remaining) if alive else 0
        return {"total": total, "cached": cached, "pending": remaining - running,
                "running": running, "done": done, "failed": failed}

    def done(self) -> bool:
        """Whether every pset has finished (successfully or not). The wait loop's one
        step: a retry due is started here, as ``wait()`` would."""
        for run in self._live():
            if run.rec.get("state") == "running":
                run.poll_until_finished(timeout_s=0)
        self._settle()
        return all(r.rec.get("state") != "running" for r in self._live())

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run is done (or ``timeout`` seconds passed); return the run.

        Ctrl-C stops the waiting, not the run: one line says so (``run.cancel()``
        stops the run)."""
        stopped = stop_waiting(self, timeout)
        if stopped is not None:  # Ctrl-C: one line, none of pyjoule's frames
            raise stopped
        self._settle()
        return self

    def _wait(self, timeout: float | None = None, progress: bool = False) -> None:
        from .._progress import Progress

        live = [r for r in self._live() if r.rec.get("state") == "running"]
        if not live:
            return
        bar = Progress(len(self.plan.ids), self._cached,
                       enabled=progress and self._progress,
                       label=getattr(self._experiment, "__name__", "pyjoule"))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while live:
                step = 0.5 if len(live) > 1 else None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    step = min(step or left, left)
                interval = config.get("poll_interval_s")
                live = [r for r in live if not r.poll_until_finished(
                    timeout_s=step, progress=bar, interval_s=interval)]
        finally:
            bar.close()

    def _settle(self) -> None:
        """Reap what the finished runs left exiting (see ``Backend.settle``)."""
        for run in self._live():
            if run.rec.get("state") != "running":
                run.backend.settle()

    def _dataset(self, sparse: bool | Literal["auto"]) -> tuple[xr.Dataset, int, int]:
        from .._results import dataset_for

        exp = self._experiment
        attrs = {"function": getattr(exp, "name", ""), "func_id": self.func_id}
        dims = exp._options.get("dims") if exp is not None else None
        # nothing ran: the plan's lookup is still the whole truth
        found = self.plan.found if not self._live() else None
        locs = getattr(self.plan, "locs", None) if found is not None else None
        made: tuple[xr.Dataset, int, int] = dataset_for(
            self._store, self.func_id, self.plan.ids, self.plan.psets, sparse=sparse,
            dims=dims, attrs=attrs, found=found, locs=locs)
        return made

    def dataset(self, sparse: bool | Literal["auto"] = "auto") -> xr.Dataset:
        """The Dataset of what has finished so far."""
        _check_sparse(sparse)
        self._poll()
        return self._dataset(sparse)[0]

    def result(self, sparse: bool | Literal["auto"] = "auto") -> xr.Dataset:
        """``wait()``, then ``dataset()``, applying the ``errors`` policy."""
        _check_sparse(sparse)
        stopped = stop_waiting(self, None)
        if stopped is not None:
            raise stopped
        self._settle()
        errors = self._experiment._resolved().errors if self._experiment else "raise"
        return self._apply_errors(self._dataset(sparse)[0], errors)

    def table(self, output: bool = False) -> pd.DataFrame:
        """One row per pset of this run: parameters, results, bookkeeping columns;
        ``output=True`` adds what each printed (``_stdout``, ``_stderr``)."""
        from .._results import table_for

        self._poll()
        return table_for(self._store, self.func_id, self.plan.ids,
                         self.failure_records(), output=output)

    def failure_records(self) -> list[dict[str, Any]]:
        """The failure records of this run's psets not cached since (the rows of
        ``failures``), each with the log that tells more (``log_path``)."""
        out: dict[str, dict[str, Any]] = {}
        for run in self._live():
            worker_log = None
            for rec in self._store.failures(run_id=run.run_id):
                if not rec.get("log_path"):  # a SLURM task's own log stays as it is
                    worker_log = worker_log or run.backend.worker_log(run.run_dir)
                    rec["log_path"] = worker_log
                out[rec["pset_id"]] = rec
        if not out:
            return []
        wanted = set(self.plan.ids)  # attached runs may have had other psets too
        cached = self._store.lookup(self.func_id, list(out))
        return [r for p, r in out.items() if p in wanted and p not in cached]

    @property
    def failures(self) -> pd.DataFrame:
        """DataFrame of failed psets: parameters, error_type, message, traceback, reason, log."""
        from .._results import failures_frame

        self._poll()
        return failures_frame(self.failure_records())

    @property
    def scheduler_queries(self) -> int:
        """Commands this process sent the scheduler for this run (sbatch, squeue,
        sacct, scancel); 0 off SLURM."""
        return sum(getattr(r.backend, "queries", 0) for r in self._live())

    @property
    def job_ids(self) -> list[str]:
        """The SLURM job ids this run submitted (empty off SLURM)."""
        return [j for r in self._live() for j in (r.backend.job_ids() or [])]

    def cancel(self) -> None:
        """Stop the work this run started; results already finished are kept."""
        if self._own is not None and self._own.rec.get("state") == "running":
            self._own.cancel()
            log.info("run %s cancelled", self.id)

    def _apply_errors(self, ds: xr.Dataset, errors: str) -> xr.Dataset:
        failures = self.failure_records()
        if not failures or errors == "ignore":
            return ds
        func = self._experiment._func if self._experiment else None
        err = _experiment_error(self, func, failures, ds)
        if errors == "warn":
            warnings.warn(str(err), stacklevel=user_stacklevel())
            return ds
        raise err


def _check_sparse(sparse: Any) -> None:
    if sparse is True or sparse is False or (isinstance(sparse, str) and sparse == "auto"):
        return
    raise OptionError(f"sparse={sparse!r} is not valid: use True (sparse.COO arrays), "
                      "False (dense numpy arrays) or 'auto' (dense while the grid is small "
                      "next to the psets, the default)")


def _experiment_error(run: Run, func: Callable[..., Any] | None,
                      failures: list[dict[str, Any]],
                      ds: xr.Dataset | None = None) -> ExperimentError:
    from collections import Counter

    from .._results import failures_frame

    by_type = Counter(f.get("error_type") or "?" for f in failures)
    counts = ", ".join(f"{n} x {t}" for t, n in by_type.most_common())
    first = failures[0]
    name = getattr(func, "__name__", None)
    if name is None:  # an attached run: its registry record has the name
        recs = [r.rec for r in run._live()]
        name = (recs[0].get("name") or "the function").rsplit(".", 1)[-1] if recs \
            else "the function"
    detail = first.get("traceback") or first.get("message") or ""
    msg = (f"{len(failures)} of {len(run.plan.ids)} psets of {name} failed ({counts}). "
           f"First failure, pset {first.get('kwargs')} (reason: {first.get('reason')}):\n"
           f"{detail.rstrip()}\n"
           "See .failures for all of them; finished results are cached and failed psets "
           "run again on the next call.")
    return ExperimentError(msg, failures=failures_frame(failures), dataset=ds)
