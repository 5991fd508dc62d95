"""Plan → backend → watch → ingest: the one place that composes the store, function
identity, the worker's run directories and the backends.

``plan`` normalises and hashes the psets and splits them into cached / in flight in
another live run / to run. ``launch`` writes a run directory and starts a backend.
``LiveRun`` follows one run: it reads new result records by offset, ingests them into
the cache and, once the worker has ended, accounts for every pset it was given.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import pickle
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import (_callables, _claims, _faults, _hashing, _interrupt, _keying, _pickling,
               _private, _records, _space, _unfinished)
from ._errors import OptionError, SerializationError
from ._rundir import PAYLOAD, REQUEST, RETRY, TASKS, RunDir
from ._store import Store

if TYPE_CHECKING:
    from ._backends.base import Backend
    from ._options import LaunchOptions

log = logging.getLogger("pyjoule")

INFRA_REASONS = ("timeout", "lost", "node_failure", "out_of_memory", "preempted")
_ERROR_TYPES = {"timeout": "TimeoutError", "out_of_memory": "OutOfMemory",
                "node_failure": "NodeFailure", "preempted": "Preempted",
                "cancelled": "Cancelled", "lost": "WorkerLost"}
_logged_changes: set[tuple[str, str]] = set()


# ----------------------------------------------------------------- signature
class Signature:
    """What the function accepts: names in order, defaults, whether it has ``**kw``,
    and the arguments named by ``ignore=``: passed to the function, left out of the key."""

    def __init__(self, func: Callable, ignore: Any = ()):
        sig = inspect.signature(func)
        params = sig.parameters.values()
        kinds = inspect.Parameter
        self.names = [p.name for p in params
                      if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
        self.defaults = {p.name: p.default for p in params
                         if p.default is not p.empty and p.name in self.names}
        self.required = [n for n in self.names if n not in self.defaults]
        self.var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params)
        self.func_name = getattr(func, "__name__", "function")
        self.ignore = _keying.ignored_names(ignore, self)
        self._plans: dict[tuple, dict] = {}

    def keyed(self, psets: list[dict]) -> list[dict]:
        """The psets as they are keyed and recorded: without the ignored arguments."""
        if not self.ignore:
            return psets
        drop = self.ignore
        return [{k: v for k, v in p.items() if k not in drop} for p in psets]

    def normalise(self, psets: Sequence[dict]) -> list[dict]:
        """Psets with defaults filled in; unknown or missing arguments raise."""
        out = []
        plans = self._plans
        for i, p in enumerate(psets):
            keys = tuple(p)
            fill = plans.get(keys)
            if fill is None:
                fill = plans[keys] = self._plan(keys, i)
            out.append(p | fill if fill else p)
        return out

    def _plan(self, keys: tuple, index: int) -> dict:
        if not self.var_kw:
            for key in keys:
                if key not in self.names:
                    raise OptionError(self._unknown(key, index))
        missing = [n for n in self.required if n not in keys]
        if missing:
            raise OptionError(
                f"pset {index} lacks required argument(s) {missing} of "
                f"{self.func_name}(); add them to the space or give them defaults")
        return {n: v for n, v in self.defaults.items() if n not in keys}

    def _unknown(self, key: str, index: int) -> str:
        close = difflib.get_close_matches(key, self.names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"pset {index} has key {key!r}, which {self.func_name}() does not accept "
                f"(it takes {self.names}){hint}")


# ---------------------------------------------------------------------- plan
@dataclass
class Plan:
    func_id: str
    psets: list[dict]  # unique, normalised, in first-seen order
    ids: list[str]
    found: dict[str, int]  # cached: pset_id -> loc (see Store.lookup)
    in_flight: list[dict] = field(default_factory=list)  # run records to attach to
    to_run: list[int] = field(default_factory=list)  # indices into psets
    run_id: str | None = None  # the run registered (``starting``) for ``to_run``
    #: the keyword arguments passed, when they differ from ``psets`` (``ignore=``)
    calls: list[dict] | None = None
    ignored: tuple[str, ...] = ()  # the names ``psets`` leaves out of ``calls``
    #: values that plain pickle cannot send (functions, ignored objects): cloudpickle
    by_value: bool = False


def plan(store: Store | None, func_id: str, signature: Signature, space: Any,
         limit: int | None = None, run: dict | None = None, warn: bool = True) -> Plan:
    """Normalise, hash and split ``space`` (fast: 1,000,000 psets in seconds).

    With a store, the psets to run are claimed, in the same transaction, for a new
    run registered ``starting`` (``Plan.run_id``; ``run``: its registry fields), and
    psets other live runs have claimed are left to them (``in_flight``): follow the
    plan with :func:`launch`, or :func:`abandon` it. A plan that finds everything
    cached writes nothing. Duplicates run once; ``warn``: say so (``UserWarning``).
    """
    calls = signature.normalise(_space.as_psets(space))
    psets = signature.keyed(calls)  # ``calls`` itself unless arguments are ignored
    n_callables = _callables.seen
    ids = _hashing.pset_ids(psets)
    by_value = bool(signature.ignore) or _callables.seen != n_callables
    first = dict(zip(ids, range(len(ids))))  # later duplicates overwrite ...
    if len(first) != len(ids):  # ... so keep the first occurrence explicitly
        first = {}
        for i, pid in enumerate(ids):
            first.setdefault(pid, i)
        if warn:
            _keying.warn_duplicates(len(ids), len(first), calls, signature)
        psets = [psets[i] for i in first.values()]
        calls = [calls[i] for i in first.values()]
        ids = list(first)
    found = {} if store is None else store.verify_present(store.lookup(func_id, ids))
    missing = [i for i, pid in enumerate(ids) if pid not in found]
    result = Plan(func_id, psets, ids, found, by_value=by_value)
    if signature.ignore:
        result.calls, result.ignored = calls, tuple(sorted(signature.ignore))
    if store is not None and missing:
        registered: dict = {}
        try:
            result.run_id, result.in_flight, missing, newly = _claims.claim(
                store, func_id, ids, missing, run or {"name": "", "backend": "pool",
                                                      "host": "local"}, limit, registered)
        except BaseException:  # e.g. a Ctrl-C just after the claim was committed
            if registered:
                _claims.abandon(store, registered["run_id"])
            raise
        found.update(newly)
        if result.in_flight:
            log.info("attaching to %d run(s) already computing some of these psets",
                     len(result.in_flight))
    elif limit is not None and len(missing) > limit:
        log.warning("limit=%d (PYJOULE_LIMIT or pj.config): running only %d of %d "
                    "missing psets; the others stay missing from the results", limit,
                    limit, len(missing))
        missing = missing[:limit]
    result.to_run = missing
    return result


def abandon(store: Store, plan_: Plan) -> None:
    """Release what ``plan_`` claimed, when its run will not be started after all."""
    if plan_.run_id is not None:
        _claims.abandon(store, plan_.run_id)
        plan_.run_id = None


def report_identity_change(store: Store, name: str, identity) -> None:
    """One INFO line when older versions of this function have cached results."""
    from ._identity import describe_change

    older, used_before = store.register_function(identity.func_id, name, identity.components)
    if used_before is not None and older and used_before >= older[0]["last_used"]:
        return  # the version used last time too: nothing changed since
    if older and (older[0]["func_id"], identity.func_id) not in _logged_changes:
        _logged_changes.add((older[0]["func_id"], identity.func_id))
        what = describe_change(older[0]["components"], identity.components)
        if store.has_entries(identity.func_id):  # back to a version cached before
            log.info("%s: %s since the version used last; this version's cached results "
                     "are used", name, what)
        else:
            log.info("%s: %s since results were last cached; recomputing (older results "
                     "kept, clear them with .clear_cache())", name, what)


# -------------------------------------------------------------------- launch
def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _tasks_blob(tasks: list, by_value: Sequence[str] = ()) -> bytes:
    """Tasks whose values include the user's functions or objects, for the worker:
    pickled by value, as the function is."""
    modules = _callables.user_modules(kwargs for _, kwargs in tasks)
    return pickle_function(None, tasks, (*by_value, *modules), what="the psets' values")


def pickle_function(func: Callable | None, payload: Any, by_value: Sequence[str] = (),
                    what: str | None = None) -> bytes:
    """cloudpickle the payload, naming the offending global when that fails.

    The modules ``by_value`` (the user's, as the identity found them) are pickled by
    value: a worker runs the code this process has loaded and identified, not what
    the file holds now (a notebook's helper module edited without a reload would
    otherwise compute new results under the old identity)."""
    import cloudpickle

    registered = []
    try:
        for name in by_value:
            module = sys.modules.get(name)
            if module is None or name in cloudpickle.list_registry_pickle_by_value():
                continue
            cloudpickle.register_pickle_by_value(module)
            registered.append(module)
        return _pickling.dumps(payload, protocol=5)  # code keeps its file names
    except Exception as exc:  # noqa: BLE001 - any pickling failure gets explained
        culprit = _unpicklable_global(func) if func is not None else None
        where = f": the global {culprit!r} it uses cannot be pickled" if culprit else ""
        what = what or repr(getattr(func, '__name__', func))
        raise SerializationError(
            f"cannot send {what} to a worker{where} ({exc}). "
            "Create such objects inside the function, or pass what they need as "
            "parameters.") from exc
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _unpicklable_global(func: Callable) -> str | None:
    import cloudpickle

    code = getattr(func, "__code__", None)
    if code is None:
        return None
    names = set(code.co_names)
    stack = [c for c in code.co_consts if inspect.iscode(c)]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(x for x in c.co_consts if inspect.iscode(x))
    candidates = {n: func.__globals__[n] for n in names if n in func.__globals__}
    for i, cell in enumerate(func.__closure__ or ()):
        candidates[code.co_freevars[i]] = cell.cell_contents
    for name, value in candidates.items():
        try:
            cloudpickle.dumps(value)
        except Exception:  # noqa: BLE001
            return name
    return None


def launch(store: Store, *, func: Callable, func_id: str, name: str, plan_: Plan,
           backend, options: LaunchOptions, request: bool = True,
           by_value: Sequence[str] = ()) -> dict:
    """Write the run directory of the run ``plan_`` claimed, start the backend, and
    mark the run ``running``. On any failure the claim is released (nothing was
    started, nothing is left behind)."""
    run_id = plan_.run_id
    if run_id is None:  # plan() claims the psets; without a store it cannot
        raise ValueError("launch() needs a plan made with a store (it claims the psets)")
    run_dir = os.path.join(store.root, "runs", run_id)
    calls = plan_.psets if plan_.calls is None else plan_.calls
    tasks = [(plan_.ids[i], calls[i]) for i in plan_.to_run]
    host = options.host
    rec = dict(run_id=run_id, func_id=func_id, name=name,
               host=getattr(host, "target", host) or "local",
               backend=backend.name, run_dir=run_dir, state="running",
               total=len(plan_.ids), cached=len(plan_.found), done=0, failed=0,
               workers=options.workers, submitted=time.time(), finished=None,
               job_ids=None, options={"retries": options.retries, "attempt": 0,
                                      "driver": _claims.me(), **backend.describe()})
    if plan_.ignored:  # recorded without them, by whichever process ingests the results
        rec["options"]["ignore"] = list(plan_.ignored)
    if plan_.by_value:  # a retry sends them as the first attempt did
        rec["options"]["by_value"] = True
    log.debug("run %s: %d psets to run, %d cached", run_id, len(tasks), len(plan_.found))
    started = registered = False
    fields = {k: v for k, v in rec.items() if k not in ("run_id", "func_id")}
    try:
        rd = RunDir(run_dir).make()
        payload = {"func": func, "threads": options.threads,
                   "timeout_s": options.timeout, "capture": options.capture,
                   "batch": options.batch}
        _write(rd, PAYLOAD, pickle_function(func, payload, by_value))
        _write(rd, TASKS, _tasks_blob(tasks, by_value) if plan_.by_value else tasks)
        if request:
            _write(rd, REQUEST, _keying.request(plan_))
        if backend.name == "inprocess":
            # Runs to the end inside start(): running (alive while this process lives
            # and has not written ``exit``) before it starts.
            store.update_run(run_id, **fields)
            started = registered = True
            backend.start(run_dir, options.workers)
        else:
            # Marked running once started, so that whoever finds it running also
            # finds its pid file (else it would take the run for dead and finish it);
            # until then others see it ``starting``, alive while this process is.
            # Its backend is recorded first: should this process die while starting
            # it, whoever settles the run asks the backend's side whether a worker
            # started (then it is followed) or not (then none ever will), see
            # _claims.settle_start.
            store.update_run(run_id, **dict(fields, state="starting", options=dict(
                fields["options"], launching=True)))
            _faults.point("launch:before-start")
            backend.start(run_dir, options.workers)
            started = True
            _faults.point("launch:started")
            rec["job_ids"] = fields["job_ids"] = backend.job_ids()
            store.update_run(run_id, **fields)
            registered = True
    except BaseException as exc:
        if not started:  # nothing started: leave nothing behind either
            try:
                backend.tidy(keep_log=False)
            except Exception:  # noqa: BLE001 - the start's error is the one to see
                pass
            abandon(store, plan_)
        elif not registered:  # started (and computing on): others must see it running
            store.update_run(run_id, **fields)
        elif backend.name == "inprocess" and isinstance(exc, KeyboardInterrupt):
            # Ctrl-C in the function itself: cancelled, as a pool's map would be
            LiveRun(store, dict(rec, offsets={}), backend).cancel()
        raise
    rec["offsets"] = {}
    return rec


def record_cached(store: Store, *, func_id: str, name: str, plan_: Plan) -> dict:
    """Register a submission that had nothing to run (everything cached): it still gets
    an id, for ``pj.attach`` and ``pj.runs()``, and is done at once. The id depends on
    the psets only, so re-running a notebook's cell gives the same run, not a new one."""
    import hashlib

    digest = hashlib.sha256("\0".join([func_id, *plan_.ids]).encode()).hexdigest()
    run_id = f"cached-{digest[:12]}"
    existing = store.get_run(run_id)
    if existing is not None:
        return existing
    run_dir = os.path.join(store.root, "runs", run_id)
    _write(RunDir(run_dir).make(results=False), REQUEST, _keying.request(plan_))
    now = time.time()
    rec = dict(run_id=run_id, func_id=func_id, name=name, host="local",
               backend="inprocess", run_dir=run_dir, state="done", total=len(plan_.ids),
               cached=len(plan_.found), done=0, failed=0, workers=0, submitted=now,
               finished=now, job_ids=None, options={"retries": 0, "attempt": 0})
    try:
        store.add_run(**rec)
    except sqlite3.IntegrityError:  # another process registered it just now
        return store.get_run(run_id) or rec
    rec["offsets"] = {}
    return rec


def prepare_ssh(host, identity: Callable[[], Any]):
    """The SSH backend for ``host``, with the project of the running code (or, with
    no project, the folder of the script or notebook) synced there, wherever the
    process was started from; ``identity()`` gives the packages the function uses,
    for a folder with no project of its own."""
    from . import _project
    from ._backends.ssh import SSHBackend
    from ._transport.env import requirements_from

    root = _project.project_of()
    if root is None:  # a script's or notebook's folder: synced only if the user's alone
        root = _project.code_folder()
        why = _private.problem(os.stat(root))
        if why is not None:  # e.g. /tmp: others' files would be imported on the host
            from ._errors import HostError

            raise HostError(
                f"pyjoule will not copy {root} to the host: {why}, so files another user "
                "put there would run there as your code. Work from a folder of your own "
                "(ideally with a pyproject.toml), not a shared one.")
    return SSHBackend.prepare(host, root, lambda: requirements_from(identity().components))


def prepare_slurm(host, slurm, identity: Callable[[], Any], batch: int | None):
    """The SLURM backend: sbatch on ``host`` over SSH (its project synced as for
    :func:`prepare_ssh`), or this machine's sbatch when ``host`` is None."""
    from ._backends.slurm import SlurmBackend

    ssh = prepare_ssh(host, identity) if host is not None else None
    backend = SlurmBackend(slurm, ssh=ssh, batch=batch)
    backend.check()  # a misspelt option fails now, before anything is written
    return backend


def make_backend(backend_name: str, run_dir: str | None = None,
                 options: dict | None = None):
    """The backend object for a registered run (imported lazily: only dispatch needs them)."""
    if backend_name == "slurm":
        from ._backends.slurm import SlurmBackend

        return SlurmBackend.from_description(run_dir, options or {})
    if backend_name == "inprocess":
        from ._backends.inprocess import InProcessBackend

        return InProcessBackend(run_dir, (options or {}).get("driver"))
    if backend_name == "ssh":
        from ._backends.ssh import SSHBackend

        return SSHBackend.from_description(run_dir, options or {})
    from ._backends.pool import PoolBackend

    return PoolBackend(run_dir)


# ----------------------------------------------------------------------- watch
class LiveRun:
    """Follows one run: ingests its records and accounts for every pset at the end."""

    def __init__(self, store: Store, rec: dict, backend=None):
        self.store, self.rec = store, rec
        self.run_id, self.run_dir = rec["run_id"], rec["run_dir"]
        # another process is starting it: followed as running, its backend known
        # once it runs (see _await_start)
        self._starting = backend is None and rec.get("state") == "starting"
        self.backend: Backend | _claims.StartingBackend
        if self._starting:
            self.rec = dict(rec, state="running")
            self.backend = _claims.StartingBackend()
        else:
            self.backend = backend or make_backend(rec["backend"], self.run_dir,
                                                   rec.get("options"))
        self.rd = RunDir(self.run_dir)
        self.offsets: dict[str, int] = dict(rec.get("offsets") or {})
        self._kwargs: dict[str, dict] | None = None
        self._stripped: tuple | None = None  # (tasks, their parameters as recorded)
        self._task_files: list[str] = []
        #: echo what the workers print (``capture=False``) on this process's stdout
        self.relay_output = False
        self._log_offset = 0

    def tasks(self) -> dict[str, dict]:
        if self._kwargs is None:
            self.rd.check()  # its pickles are code: before anything is listed or loaded
            self._task_files = self.rd.task_files()
            self._kwargs = self.rd.read_tasks(self._task_files)
        return self._kwargs

    def _params(self) -> dict[str, dict]:
        """The tasks' parameters as recorded: without the arguments ``ignore=`` names,
        functions and classes by their labels (a retry passes the tasks themselves)."""
        tasks = self.tasks()
        options = self.rec.get("options") or {}
        if not options.get("by_value"):
            return tasks
        if self._stripped is None or self._stripped[0] is not tasks:  # once per task set
            self._stripped = (tasks, _callables.recorded(tasks, options.get("ignore")))
        return self._stripped[1]

    def _await_start(self, timeout_s: float) -> bool:
        """For a run another process is starting: True once it runs (its backend is
        known now) or has ended (its driver died before starting it); False after
        ``timeout_s``. Its psets are never taken over while that driver lives."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.store.get_run(self.run_id) or {"state": "done", "finished": 0}
            if current["state"] == "starting" and not _claims.is_live(self.store, current):
                _claims.settle(self.store, self.run_id, current)
                continue
            if current["state"] != "starting":
                self._starting = False
                self.rec.update((k, v) for k, v in current.items() if k != "offsets")
                if current.get("finished") is not None and not self.rd.has_tasks():
                    self.backend.ended = True  # never started: nothing to follow
                else:
                    self.backend = make_backend(current["backend"], self.run_dir,
                                                current.get("options"))
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))

    def task_ids(self) -> set[str]:
        return set(self.tasks())

    def _relay(self) -> None:
        """Copy what the workers wrote to the run's log since the last poll to stdout."""
        try:
            with open(self.rd.log, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except OSError:
            return
        if data:
            self._log_offset += len(data)
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()

    def poll(self) -> tuple[int, int]:
        """Ingest records written since the last poll; return (done, failed) counts."""
        if self.relay_output:
            self._relay()
        folder = self.rd.results
        records = []
        names = self.rd.result_names()
        if names is None:
            return 0, 0
        offsets = dict(self.offsets)
        for name in names:
            new, offsets[name] = _records.read_from(os.path.join(folder, name),
                                                     offsets.get(name, 0), raw=True)
            records.extend(new)
        if not records:
            return 0, 0
        if not self.tasks():
            # Its task files are gone: another process ingested everything and
            # finished the run (tidying removes them only after that).
            return 0, 0
        done, failed = self.store.ingest(self.rec["func_id"], self.run_id, records, offsets,
                                         kwargs=self._params())
        self.offsets = offsets
        self.rec["done"] = self.rec.get("done", 0) + done
        self.store.update_run(self.run_id, done=self.rec["done"],
                              failed=self.store.count_failures(self.run_id))
        return done, failed

    def poll_until_finished(self, timeout_s: float | None = None, progress=None,
                            interval_s: float | None = None) -> bool:
        """Poll until the worker ended and everything is ingested (True), or time out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Each poll costs the workers some CPU, so polls start at 0.1 s (a progress
        # bar's pace) and grow; a local pool's end wakes the wait at once anyway.
        wait_s = interval_s or 0.1
        while True:
            step = wait_s if deadline is None else \
                max(0.0, min(wait_s, deadline - time.monotonic()))
            if self._starting and not self._await_start(step):
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                continue
            ended = self.backend.wait(step)
            counts = self.poll()
            if progress is not None:
                progress.update(*counts)
            if ended and not self.backend.alive():
                counts = self.poll()  # what was written between the last read and exit
                if progress is not None:
                    progress.update(*counts)
                if self._maybe_retry(progress):
                    continue
                self.finish()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if interval_s is None:
                wait_s = min(wait_s * 1.5, 0.5)

    def _maybe_retry(self, progress=None) -> bool:
        """Run again, as a new attempt, the psets that failed for infrastructure reasons
        (the worker's own, and those it never reported on) while ``retries`` allow."""
        options = self.rec.get("options") or {}
        attempt, retries = options.get("attempt", 0), options.get("retries", 0)
        if attempt >= retries or self.rec.get("state") == "cancelled":
            return False
        current = self.store.get_run(self.run_id) or {}
        if current.get("state") != "running":  # cancelled or finished elsewhere
            return False
        orphans = self._record_orphans("running")
        if progress is not None:
            progress.update(0, orphans)
        failed = [f for f in self.store.failures(run_id=self.run_id)
                  if f.get("reason") in INFRA_REASONS]
        if not failed:
            return False
        if not self.store.claim_attempt(self.run_id, attempt + 1):
            return False  # another process following this run started the retry
        attempt += 1
        options["attempt"] = attempt
        # their records stand for this attempt's until it accounts for them
        self.store.ingest(self.rec["func_id"], self.run_id,
                          [dict(f, retried=attempt) for f in failed])
        known = self.tasks()  # what was passed (failures record it as recorded)
        tasks = [(f["pset_id"], known.get(f["pset_id"], f.get("kwargs", {}))) for f in failed]
        name = _write(self.rd, RETRY.format(attempt),
                      _tasks_blob(tasks) if options.get("by_value") else tasks)
        self._kwargs = None
        from collections import Counter

        why = ", ".join(f"{r}: {n}" for r, n in Counter(f["reason"] for f in failed).items())
        log.info("run %s: retrying %d pset(s) that failed for infrastructure reasons "
                 "(%s; attempt %d of %d)", self.run_id, len(tasks), why, attempt, retries)
        self.rd.clear_exit()  # the last attempt's would tell others it has ended
        self.backend.start(self.run_dir, self.rec.get("workers") or 1, [name])
        job_ids = self.backend.job_ids()
        if job_ids is not None:
            self.rec["job_ids"] = job_ids
            self.store.update_run(self.run_id, job_ids=job_ids)
        if progress is not None:  # they count again as pending
            progress.update(0, -len(tasks))
        return True

    def _record_orphans(self, state: str) -> int:
        """Record a failure for every pset of the run that no record speaks of: the
        reason the backend knows (a SLURM task's time limit...), else ``lost`` (or
        ``cancelled``)."""
        tasks = self.tasks()
        if not tasks:
            return 0
        params = self._params()
        found = self.store.lookup(self.rec["func_id"], list(tasks))
        reported = {f["pset_id"] for f in self.store.failures(run_id=self.run_id)
                    if not f.get("retried")}  # an earlier attempt's, retried since
        orphans = [pid for pid in tasks if pid not in found and pid not in reported]
        if not orphans:
            return 0
        known = self.backend.orphan_reasons(orphans)
        if state == "cancelled":  # one row for them all, however many (_unfinished)
            logs = {p: why["log_path"] for p, why in known.items() if why.get("log_path")}
            key, record = _unfinished.encode(
                "cancelled", "the run was cancelled before this pset finished",
                list(tasks), orphans, self._task_files, logs)
            self.store.add_unfinished(self.run_id, self.rec["func_id"], key, record)
            return len(orphans)
        from .worker import failure_record

        recs = []
        for pid in orphans:
            why = known.get(pid)
            if why is not None:
                rec = failure_record(pid, _ERROR_TYPES.get(why["reason"], "WorkerLost"),
                                     why["message"], why["reason"])
            else:
                rec = failure_record(pid, "WorkerLost", "the worker ended without "
                                     "reporting this pset (killed?)", "lost")
            if why is not None and why.get("log_path"):
                rec["log_path"] = why["log_path"]
            rec["kwargs"], rec["run_id"] = params.get(pid, {}), self.run_id
            recs.append(rec)
        self.store.ingest(self.rec["func_id"], self.run_id, recs)
        return len(recs)

    def finish(self, state: str | None = None) -> None:
        """Record psets the worker never reported on, mark the run ended, tidy up.

        Several processes may follow one run (its caller, and others that attached
        to it); the one that claims it in the registry finishes it, once.
        """
        previous = self.store.claim_finish(self.run_id)
        if previous is None:  # finished (or being finished) by another process
            current = self._wait_finished_elsewhere()
            self.rec.update(state=current.get("state", "done"),
                            failed=current.get("failed", 0))
            return
        try:
            if state is None:
                state = "cancelled" if "cancelled" in (previous, self.rec.get("state")) \
                    else "done"
            self._record_orphans(state)
            failed = self.store.count_failures(self.run_id)
            fields = {}
            queries = getattr(self.backend, "queries", None)
            if queries is not None:
                options = dict(self.store.get_run(self.run_id)["options"] or {})
                options["scheduler_queries"] = options.get("scheduler_queries", 0) + queries
                self.rec["options"] = fields["options"] = options
                log.info("run %s: %d scheduler queries from this process", self.run_id,
                         queries)
            # ended and its claims released in one step: never ended yet claimed
            _claims.release(self.store, self.run_id, state=state, finished=time.time(),
                            failed=failed, **fields)
        except BaseException:  # never left ``finishing``: back to where it was
            self.store.unclaim_finish(self.run_id, previous)
            raise
        self.rec.update(state=state, failed=failed)
        # a cancelled run's task files say which psets its one failure row stands for
        self.rd.tidy(keep_log=bool(failed), keep_tasks=state == "cancelled")
        try:
            self.backend.tidy(keep_log=bool(failed))
        except Exception as exc:  # noqa: BLE001 - everything is ingested: only litter
            log.warning("run %s: could not clean up after it: %s", self.run_id, exc)

    def _wait_finished_elsewhere(self, timeout_s: float = 30) -> dict:
        """The run's record once the process finishing it is through (its orphans
        recorded), or as it stands after ``timeout_s`` (that process died mid-way)."""
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.store.get_run(self.run_id) or {}
            if current.get("state") != "finishing" or time.monotonic() >= deadline:
                return current
            time.sleep(0.02)

    def cancel(self) -> None:
        """Stop the run's work, ingest what finished, record the rest as cancelled.
        A Ctrl-C meanwhile waits until that is through (then raises): a run is
        never left half-finished by an impatient second Ctrl-C."""
        with _interrupt.sigint_deferred():
            self.rec["state"] = "cancelled"
            _claims.mark_cancelled(self.store, self.run_id)
            self.backend.cancel()
            self.poll()
            self.finish("cancelled")


def _write(rd: RunDir, name: str, data) -> str:
    """Write the file ``name`` of ``rd`` (``data``: bytes, or an object to pickle);
    returns ``name``. A full disk is a ``CacheError`` naming the file, as the store's
    own writes are."""
    from ._store import _full

    if not isinstance(data, bytes):
        data = pickle.dumps(data, protocol=5)
    try:
        rd.write(name, data)
    except OSError as exc:
        raise _full(exc, rd.join(name)) from exc
    return name
