"""``Experiment``: the object ``@pj.experiment`` returns: a call, ``map``/``sweep``,
``submit``, the function's cache (``table``, ``cache_info``, ``clear_cache``) and its
reprs. What runs where is decided in :mod:`.._dispatch.compose`; this module presents it."""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast

from .. import _dispatch, _space
from .._display import card, esc
from .._errors import OptionError
from .._interrupt import start_or_stop, wait_or_cancel
from .._options import Options, Resolved, resolve
from .._raised import Raise, original
from .._store import Store
from .decorator import OptionsMethod
from .run import Run, _check_sparse, _experiment_error
from .session import _Session

if TYPE_CHECKING:
    import inspect

    import pandas as pd
    import xarray as xr

    from .._identity import Identity

log = logging.getLogger("pyjoule")

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
        from .._identity import module_label
        from .._project import identity_root

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
        """Every option in force now (see ``_options.resolve``); a call resolves them
        once, in its ``_Session``."""
        return resolve(self._func, self._decorated, self._call)

    def _store(self, resolved: Resolved | None = None) -> Store:
        cache = (resolved or self._resolved()).cache
        if cache is False:
            raise OptionError(f"{self.name} has no cache (cache=False, set by "
                              f"{self._resolved().sources['cache']}): nothing is kept, so "
                              "there is nothing to read; give it a cache directory")
        return Store.open(cache)

    def _identity(self) -> Identity:
        from .._identity import identify

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
        with self._session() as call:
            store, func_id = call.store, call.func_id
            run = start_or_stop(self, [kwargs], call, progress=False)
            if not isinstance(run, KeyboardInterrupt) and run.plan.found:
                (pid,) = run.plan.ids
                value = store.read_values(func_id, run.plan.found).get(pid, _NOTHING)
                if value is not _NOTHING:
                    return value
                # a damaged entry, dropped just now: plan again, so it is computed
                run = start_or_stop(self, [kwargs], call, progress=False)
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
            failures = run.failure_records()
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
        with self._session() as call:
            for _ in range(3):  # again only if damaged cache entries were dropped
                started = start_or_stop(self, space, call)
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
            return run._apply_errors(ds, call.resolved.errors)

    def submit(self, space: Any) -> Run:
        """Start the work and return a ``pj.Run`` at once."""
        resolved = self._resolved()
        if resolved.cache is False:
            raise OptionError("submit() needs a cache to keep results in; use map() with "
                              f"cache=False (set by {resolved.sources['cache']})")
        store = self._store(resolved)
        run = self._run(space, store, self._identity_for(store), resolved=resolved)
        if run.id is None and len(run._attached) == 1:  # its psets are that run's
            run.id = run._attached[0].run_id
        elif run.id is None and not run._attached:  # all cached: a run, done at once
            rec = _dispatch.record_cached(store, func_id=run.func_id, name=self.name,
                                          plan_=run.plan)
            run.id = rec["run_id"]
        return run

    def _identity_for(self, store: Store) -> Identity:
        """The function's identity, identified once per call; a change since the
        cache last saw this function is reported (see ``report_identity_change``)."""
        identity = self._identity()
        _dispatch.report_identity_change(store, self.name, identity)
        return identity

    def _func_id_for(self, store: Store) -> str:
        return self._identity_for(store).func_id

    def _session(self) -> _Session:
        return _Session(self)

    def _run(self, space: Any, store: Store, identity: Identity, progress: bool = True,
             resolved: Resolved | None = None) -> Run:
        resolved = resolved or self._resolved()
        plan, own, in_flight = _dispatch.compose(
            store, func=self._func, name=self.name, signature=self._signature,
            space=space, resolved=resolved, identity=identity)
        return Run(store, plan, own, in_flight, experiment=self,
                   progress=progress and resolved.progress)

    # -------------------------------------------------------------- the cache
    def table(self, space: Any = None, output: bool = False) -> pd.DataFrame:
        """A ``pandas.DataFrame`` with one row per cached pset: of ``space`` in its order,
        else all, in the order they were first computed; ``output=True`` adds what each
        printed (``_stdout``, ``_stderr``)."""
        from .._results import table_for

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
