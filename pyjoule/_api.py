"""The decorator object, the ``Run`` handle, and option validation."""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
import os
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Generic, Literal, ParamSpec, TypeVar, cast

from . import _dispatch, _space
from ._config import apply_log_level_from_env, config, default_cache_dir
from ._decorator import OptionsMethod, experiment
from ._options import NAMES, Options, Resolved, resolve
from ._display import card, counts_bar, esc
from ._errors import ExperimentError, OptionError, RunNotFoundError
from ._interrupt import start_or_stop, stop_waiting, wait_or_cancel
from ._raised import Raise, original
from ._store import Store

if TYPE_CHECKING:
    import inspect

    import pandas as pd
    import xarray as xr

    from ._backends.base import Backend
    from ._backends.ssh import SSHBackend
    from ._identity import Identity

log = logging.getLogger("pyjoule")
apply_log_level_from_env()

OPTIONS = NAMES  # every option's name, in the order of the decorator's signature

_P = ParamSpec("_P")  # the decorated function's parameters: f(...) takes them
_R = TypeVar("_R")  # what it returns: f(...) returns it


class Experiment(OptionsMethod, Generic[_P, _R]):
    """A function with sweeping and caching attached (what ``@pj.experiment`` returns)."""

    def __init__(self, func: Callable[_P, _R], **options: Any):
        self._init(func, Options.of("@pj.experiment", options))

    @classmethod
    def _of(cls, func: Callable[_P, _R], options: Options) -> Experiment[_P, _R]:
        new = cls.__new__(cls)
        new._init(func, options)
        return new

    def _init(self, func: Callable[..., Any], options: Options) -> None:
        self._decorated, self._call = options, Options()
        self._func = func
        self._signature = _dispatch.Signature(func, ignore=options.ignore or ())
        from ._identity import module_label
        from ._project import identity_root

        module = getattr(func, '__module__', None)  # a script's name: from its project
        root = identity_root(func) if module == "__main__" else None
        self.name = f"{module_label(module, root)}." \
                    f"{getattr(func, '__qualname__', func)}"
        functools.update_wrapper(self, func)

    def _with_call_options(self, call: Options) -> Experiment[_P, _R]:
        new = copy.copy(self)  # same function, signature, name: same identity and keys
        new._call = call
        return new

    # -------------------------------------------------------------- options
    @property
    def func(self) -> Callable[_P, _R]:
        """The plain, undecorated function."""
        return self._func

    @property
    def _options(self) -> dict[str, Any]:
        """The options the decorator and ``f.options`` set, by name."""
        return self._call.over(self._decorated).given()

    def _resolved(self) -> Resolved:
        """Every option in force now (see ``_options.resolve``): within a call, what
        its ``_Session`` resolved once."""
        current = _IN_SESSION.get()
        if current is not None and current[0] is self:
            return current[1]
        return resolve(self._func, self._decorated, self._call)

    def _store(self, resolved: Resolved | None = None) -> Store:
        cache = (resolved or self._resolved()).cache
        if cache is False:
            raise OptionError(f"{self.name} has no cache (cache=False, set by "
                              f"{self._resolved().sources['cache']}): nothing is kept, so "
                              "there is nothing to read; give it a cache directory")
        return Store.open(cache)

    def _identity(self) -> Identity:
        from ._identity import identify

        return identify(self._func, version=self._call.over(self._decorated).version
                        or None)

    # ------------------------------------------------------------ execution
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run one pset (or return it from the cache) and return what the function
        returned, or raise what it raised (with the worker's traceback as its cause)."""
        outcome = self._call_one(args, kwargs)
        if isinstance(outcome, Raise):  # raised here: the user's traceback stops here
            raise outcome.exc
        return cast(_R, outcome)  # what the function returned, from its cache entry

    def _call_one(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            bound = self._signature_obj().bind_partial(*args, **kwargs)
            kwargs = dict(bound.arguments)
        with self._session() as (store, func_id):
            run = start_or_stop(self, [kwargs], store, func_id, progress=False)
            if not isinstance(run, KeyboardInterrupt) and run.plan.found:
                (pid,) = run.plan.ids
                value = store.read_values(func_id, run.plan.found).get(pid, _NOTHING)
                if value is not _NOTHING:
                    return value
                # a damaged entry, dropped just now: plan again, so it is computed
                run = start_or_stop(self, [kwargs], store, func_id, progress=False)
            if isinstance(run, KeyboardInterrupt):  # workers=0: Ctrl-C in the function
                return Raise(run)
            stopped = wait_or_cancel(run)  # Ctrl-C: stop its worker, as map does
            if stopped is not None:
                return Raise(stopped)
            found = store.lookup(func_id, run.plan.ids)
            if found:
                value = store.read_values(func_id, found).get(run.plan.ids[0], _NOTHING)
                if value is not _NOTHING:
                    return value
            failures = run._failures()
            raised = original(failures[0]) if len(failures) == 1 else None
            return Raise(raised or _experiment_error(run, self._func, failures))

    def _signature_obj(self) -> inspect.Signature:
        import inspect

        return inspect.signature(self._func)

    def map(self, space: Any, *, sparse: bool | Literal["auto"] = "auto") -> xr.Dataset:
        """Run every pset of ``space`` not already cached; return the ``xarray.Dataset``."""
        outcome = self._map(space, sparse)
        if isinstance(outcome, Raise):  # Ctrl-C: one line, none of pyjoule's frames
            raise outcome.exc
        return outcome

    def sweep(self, *, sparse: bool | Literal["auto"] = "auto", **axes: Any) -> xr.Dataset:
        """``f.map(pj.grid(**axes))``."""
        outcome = self._map(_space.grid(**axes), sparse)
        if isinstance(outcome, Raise):
            raise outcome.exc
        return outcome

    def _map(self, space: Any, sparse: bool | Literal["auto"]) -> xr.Dataset | Raise:
        _check_sparse(sparse)
        with self._session() as (store, func_id):
            for _ in range(3):  # again only if damaged cache entries were dropped
                started = start_or_stop(self, space, store, func_id)
                if isinstance(started, KeyboardInterrupt):  # workers=0: Ctrl-C in f
                    return Raise(started)
                run = started
                stopped = wait_or_cancel(run, progress=True)
                if stopped is not None:
                    return Raise(stopped)
                ds, n_found, n_read = run._dataset(sparse)
                run._settle()
                if n_read == n_found:
                    break
            return run._apply_errors(ds, self._resolved().errors)

    def submit(self, space: Any) -> Run:
        """Start the work and return a ``pj.Run`` at once."""
        resolved = self._resolved()
        if resolved.cache is False:
            raise OptionError("submit() needs a cache to keep results in; use map() with "
                              f"cache=False (set by {resolved.sources['cache']})")
        store = self._store(resolved)
        run = self._run(space, store, self._func_id_for(store), resolved=resolved)
        if run.id is None and len(run._attached) == 1:  # its psets are that run's
            run.id = run._attached[0].run_id
        elif run.id is None and not run._attached:  # all cached: a run, done at once
            rec = _dispatch.record_cached(store, func_id=run.func_id, name=self.name,
                                          plan_=run.plan)
            run.id = rec["run_id"]
        return run

    def _func_id_for(self, store: Store) -> str:
        identity = self._identity()
        _dispatch.report_identity_change(store, self.name, identity)
        return identity.func_id

    def _session(self) -> _Session:
        return _Session(self)

    def _run(self, space: Any, store: Store, func_id: str, progress: bool = True,
             resolved: Resolved | None = None) -> Run:
        resolved = resolved or self._resolved()
        opts = resolved.launch_options()
        backend_name = "slurm" if resolved.slurm is not None \
            else "ssh" if resolved.host is not None \
            else "inprocess" if resolved.workers == 0 else "pool"
        # planning claims the psets to run for a new run (nothing is run twice): it
        # must be launched or abandoned
        plan = own = None
        try:
            plan = _dispatch.plan_run(store, func_id, self._signature, space,
                                      config.get("limit"),
                                      run={"name": self.name, "backend": backend_name,
                                           "host": getattr(opts["host"], "target", "local")})
            if plan.to_run:
                backend = self._backend(backend_name, resolved, opts, plan)
                own = _dispatch.LiveRun(store, _dispatch.launch(
                    store, func=self._func, func_id=func_id, name=self.name, plan_=plan,
                    backend=backend, options=opts, by_value=self._identity().modules),
                    backend)
        except BaseException:
            if plan is not None:
                _dispatch.abandon(store, plan)  # a no-op once the backend started
            raise
        if own is not None:
            # capture=False: the pool's prints show here, as from a plain function
            own.relay_output = not opts["capture"] and backend_name == "pool"
        return Run(store, plan, own, [_dispatch.LiveRun(store, r) for r in plan.in_flight],
                   experiment=self, progress=progress and opts["progress"])

    def _backend(self, backend_name: str, resolved: Resolved, opts: dict[str, Any],
                 plan: _dispatch.Plan) -> Backend:
        """The backend for the claimed psets ``plan.to_run``; sets ``opts["workers"]``
        (on a host or under SLURM only ``f.options``/the decorator choose it: the
        global settings are this machine's)."""
        if backend_name == "slurm":
            slurm = resolved.slurm
            workers = resolved.workers_given or slurm.cpus_per_task or 1
            if slurm.cpus_per_task is None and workers > 1:  # allocate what the pool uses
                from ._slurm import Slurm

                slurm = Slurm(dict(slurm.options, cpus_per_task=workers),
                              array_parallelism=slurm.array_parallelism)
            backend: Backend = _dispatch.prepare_slurm(opts["host"], slurm, self._identity,
                                                       opts["batch"])
            opts["workers"] = workers
        elif backend_name == "ssh":
            ssh: SSHBackend = _dispatch.prepare_ssh(opts["host"], self._identity)
            if resolved.workers_given is None:  # the host's CPUs, not ours
                opts["workers"] = ssh.cpus
            backend = ssh
            opts["workers"] = max(1, min(opts["workers"], len(plan.to_run)))
        else:
            backend = _dispatch.make_backend(backend_name)
            opts["workers"] = max(1, min(opts["workers"], len(plan.to_run))) \
                if backend_name == "pool" else 0
        return backend

    # -------------------------------------------------------------- the cache
    def table(self, space: Any = None, output: bool = False) -> pd.DataFrame:
        """A ``pandas.DataFrame`` with one row per cached pset: of ``space`` in its order,
        else all, in the order they were first computed; ``output=True`` adds what each
        printed (``_stdout``, ``_stderr``)."""
        from ._results import table_for

        store = self._store()
        func_id = self._func_id_for(store)
        ids = None
        if space is not None:
            plan = _dispatch.plan(None, func_id, self._signature, space, warn=False)
            ids = plan.ids
        return table_for(store, func_id, ids, output=output)

    def cache_info(self) -> dict[str, Any]:
        """Entries and bytes cached for this function (current version and all); all
        zero, with ``cache`` None, for an experiment with no cache (``cache=False``)."""
        if self._resolved().cache is False:
            return {"func_id": self._identity().func_id, "cache": None, "entries": 0,
                    "bytes": 0, "versions": 0, "entries_all_versions": 0,
                    "bytes_all_versions": 0}
        store = self._store()
        func_id = self._func_id_for(store)
        versions = store.function_ids(self.name)
        current, everything = store.info([func_id]), store.info(versions)
        return {"func_id": func_id, "cache": str(store.root),
                "entries": current["entries"], "bytes": current["bytes"],
                "versions": len(versions), "entries_all_versions": everything["entries"],
                "bytes_all_versions": everything["bytes"]}

    def clear_cache(self) -> int:
        """Delete this function's cached results (every version); return how many (0
        with no cache: ``cache=False``)."""
        if self._resolved().cache is False:
            return 0
        store = self._store()
        # the current version too: identical code elsewhere may have registered it
        removed = store.clear(sorted({*store.function_ids(self.name),
                                      self._identity().func_id}))
        log.info("%s: removed %d cached results", self.name, removed)
        return removed

    def _summary(self) -> dict[str, Any]:
        """What the reprs show. Never raises, and never creates the cache directory."""
        shown: dict[str, Any] = {}
        for key, value in self._options.items():
            if value is None or key == "cache":
                continue
            if key == "host":
                value = value.target
            elif key == "slurm":
                value = ", ".join(f"{k}={v}" for k, v in value.options.items()) or "defaults"
            shown[key] = value
        out: dict[str, Any] = {"name": self.name, "options": shown, "func_id": "?",
                               "cache": "?", "cached": "?"}
        try:
            out["func_id"] = self._identity().func_id
        except Exception as exc:  # noqa: BLE001 - a repr reports, it does not raise
            out["func_id"] = f"unavailable ({type(exc).__name__})"
        try:
            cache = self._resolved().cache
            if cache is False:
                out["cache"], out["cached"] = "off (cache=False)", "nothing (cache=False)"
                return out
            root = cache
            out["cache"] = str(root.absolute())
            if not (root / "index.sqlite").exists():
                out["cached"] = "nothing yet"
                return out
            store = Store.open(root)
            versions = store.function_ids(self.name)
            current = store.info([out["func_id"]])["entries"]
            everything = store.info(versions)["entries"]
            out["cached"] = (f"{current} results of this version"
                             + (f", {everything} in {len(versions)} versions"
                                if len(versions) > 1 else ""))
        except Exception as exc:  # noqa: BLE001 - an unreadable cache is shown as such
            out["cached"] = f"unavailable ({exc})"
        return out

    def __repr__(self) -> str:
        s = self._summary()
        opts = "".join(f" {k}={v!r}" for k, v in s["options"].items())
        return (f"<pyjoule experiment {s['name']} func_id={s['func_id'][:12]}{opts} "
                f"cache={s['cache']!r} cached={s['cached']!r}>")

    def _repr_html_(self) -> str:
        s = self._summary()
        rows = [("function id", f"<code>{esc(s['func_id'])}</code>")]
        rows += [(k, esc(v)) for k, v in s["options"].items()]
        rows += [("cache", f"<code>{esc(s['cache'])}</code>"), ("cached", esc(s["cached"]))]
        return card(f"pyjoule experiment <code>{esc(s['name'])}</code>", rows)


_NOTHING = object()

# the options a call (``_Session``) resolved, for the code it runs: resolved once
_IN_SESSION: contextvars.ContextVar[tuple[Experiment[..., Any], Resolved] | None] = \
    contextvars.ContextVar("pyjoule_options", default=None)

class _Session:
    """The store and function id for one call; a throw-away cache for ``cache=False``
    (see :mod:`._nocache`: its pool dies with this process and removes it)."""

    def __init__(self, exp: Experiment[..., Any]):
        self.exp = exp
        self.tmp: str | None = None

    def __enter__(self) -> tuple[Store, str]:
        resolved = self.exp._resolved()
        if resolved.cache is False:
            from . import _nocache

            self.tmp = _nocache.create()
            store = Store(self.tmp)
        else:
            store = self.exp._store(resolved)
        self.store = store
        func_id = self.exp._func_id_for(store)
        self.token = _IN_SESSION.set((self.exp, resolved))  # for the call's _run
        return store, func_id

    def __exit__(self, *exc: object) -> None:
        _IN_SESSION.reset(self.token)
        if self.tmp is not None:
            from . import _nocache

            self.store.close()
            _nocache.remove(self.tmp)


# --------------------------------------------------------------------- runs
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
        return [r for r in ([self._own] if self._own else []) + self._attached]

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
        failed = len(self._failures())
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
        from ._progress import Progress

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
        from ._results import dataset_for

        exp = self._experiment
        attrs = {"function": getattr(exp, "name", ""), "func_id": self.func_id}
        dims = exp._options.get("dims") if exp is not None else None
        # nothing ran: the plan's lookup is still the whole truth
        found = self.plan.found if not self._live() else None
        made: tuple[xr.Dataset, int, int] = dataset_for(
            self._store, self.func_id, self.plan.ids, self.plan.psets, sparse=sparse,
            dims=dims, attrs=attrs, found=found)
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
        from ._results import table_for

        self._poll()
        return table_for(self._store, self.func_id, self.plan.ids, self._failures(),
                         output=output)

    def _failures(self) -> list[dict[str, Any]]:
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
        from ._results import failures_frame

        self._poll()
        return failures_frame(self._failures())

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
        failures = self._failures()
        if not failures or errors == "ignore":
            return ds
        func = self._experiment._func if self._experiment else None
        err = _experiment_error(self, func, failures, ds)
        if errors == "warn":
            warnings.warn(str(err), stacklevel=_user_stacklevel())
            return ds
        raise err


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside pyjoule, for warnings that point
    at the user's line (``sweep`` goes through ``map``, ``result`` through ``wait``)."""
    from ._identity import _is_under

    here = os.path.dirname(os.path.abspath(__file__))
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and _is_under(os.path.abspath(frame.f_code.co_filename), here):
        frame, level = frame.f_back, level + 1
    return level


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

    from ._results import failures_frame

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


# ---------------------------------------------------------------- registry
def _registry(cache: str | os.PathLike[str] | None) -> Store:
    return Store.open(cache if cache is not None else default_cache_dir())


def _registry_and_reason(cache: str | os.PathLike[str] | None) -> tuple[Store, str]:
    """The registry's store, and in words why that cache (see ``cache_choice``)."""
    from ._config import cache_choice

    if cache is not None:
        return Store.open(cache), "passed as cache="
    path, reason = cache_choice()
    return Store.open(path), reason


def _refresh_local_runs(store: Store) -> None:
    """Ingest what this machine's running runs have written, so the counts are current
    and a run whose process is gone (a kernel shut down mid-run) is finished. Remote
    runs are left as last seen: listing must not open connections."""
    for rec in store.list_runs():
        if rec["state"] == "running" and rec["backend"] == "pool":
            try:
                _dispatch.LiveRun(store, rec).refresh()  # starts no retry
            except Exception as exc:  # noqa: BLE001 - a listing must not fail on one run
                log.debug("could not refresh run %s: %s", rec["run_id"], exc)


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

    from ._runsframe import runs_frame

    rows = []
    store, reason = _registry_and_reason(cache)
    _refresh_local_runs(store)
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
    """The ``pj.Run`` with this id, from any process."""
    store = _registry(cache)
    rec = store.get_run(run_id)
    if rec is None:
        known = [r["run_id"] for r in store.list_runs()][-5:]
        raise RunNotFoundError(f"no run {run_id!r} in the cache at {store.root} "
                               f"(latest: {known}); pass cache= if it lives elsewhere")
    from ._rundir import RunDir

    ids, psets = RunDir(rec["run_dir"]).read_request()  # checked first: pickles are code
    plan = _dispatch.Plan(rec["func_id"], psets, ids, {})
    run = Run(store, plan, _dispatch.LiveRun(store, rec), [])
    run._cached = rec["cached"]  # which psets were cached is not kept, their number is
    return run


def load(func: Experiment[..., Any], *,
         sparse: bool | Literal["auto"] = "auto") -> xr.Dataset:
    """The Dataset of everything cached for ``func`` (current version); runs nothing."""
    from ._results import dataset_of_all

    _check_sparse(sparse)

    if not isinstance(func, Experiment):
        raise OptionError("pj.load takes a function decorated with @pj.experiment")
    store = func._store()
    func_id = func._func_id_for(store)
    ds: xr.Dataset = dataset_of_all(store, func_id, sparse=sparse,
                                    dims=func._options.get("dims"),
                                    attrs={"function": func.name, "func_id": func_id})
    return ds
