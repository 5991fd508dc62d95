"""One call composed: which backend runs the psets a plan claims, with how many workers,
and the live runs a ``pj.Run`` follows.

``_api`` presents (the decorator object, the ``Run`` handle); this module decides:
``executor`` when an engine is given (``executor=``), else ``slurm`` when a scheduler
is set, else ``multi`` for several hosts, else ``ssh`` when a host is, else
``inprocess`` for ``workers=0``, else the local ``pool``. The worker count is computed
here, once, into the frozen :class:`~._options.LaunchOptions` the run starts with: on a
host or under SLURM only ``f.options``/the decorator choose it (the global settings
describe this machine), a pool never starts more workers than it has psets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .._config import config
from .._options import LaunchOptions, Resolved
from .backends import prepare
from .launch import launch
from .live import LiveRun
from .plan import Plan, abandon, plan_run

if TYPE_CHECKING:
    from .._backends.base import Backend
    from .._backends.multi import MultiBackend
    from .._backends.ssh import SSHBackend
    from .._identity import Identity
    from .._store import Store
    from .signature import Signature


class Composed(NamedTuple):
    """What a ``pj.Run`` is made of: the plan, the run this call started (None when
    nothing was left to run), and the other processes' runs it waits for."""

    plan: Plan
    own: LiveRun | None
    in_flight: list[LiveRun]


def backend_name(resolved: Resolved) -> str:
    """The backend the options choose (registered with the run before it starts)."""
    several = isinstance(resolved.host, tuple)  # host=[...]: a Hosts
    if several and resolved.slurm is not None:
        from .._errors import OptionError

        raise OptionError("host=[...] (several hosts) together with slurm= is not "
                          "supported: give one host for the SLURM cluster's login node")
    return "executor" if resolved.executor is not None \
        else "slurm" if resolved.slurm is not None \
        else "multi" if several \
        else "ssh" if resolved.host is not None \
        else "inprocess" if resolved.workers == 0 else "pool"


def compose(store: Store, *, func: Callable[..., Any], name: str,
            signature: Signature, space: Any, resolved: Resolved,
            identity: Identity) -> Composed:
    """Plan ``space`` and start a run for the psets neither cached nor in flight.

    Planning claims the psets to run for a new run (nothing is run twice): it is
    launched, or abandoned on any failure (a no-op once the backend started)."""
    kind = backend_name(resolved)
    plan = own = None
    try:
        # plan_run: the runs found in flight are judged (reconcile), the dead ones'
        # psets claimed for this run
        plan = plan_run(store, identity.func_id, signature, space,
                                  config.get("limit"),
                                  run={"name": name, "backend": kind,
                                       "host": getattr(resolved.host, "target", "local")})
        if plan.to_run:
            backend, options = _backend(kind, resolved, len(plan.to_run), identity)
            own = LiveRun(store, launch(
                store, func=func, func_id=identity.func_id, name=name, plan_=plan,
                backend=backend, options=options, by_value=identity.modules), backend)
            # capture=False: the pool's prints show here, as from a plain function
            own.relay_output = not options.capture and kind == "pool"
    except BaseException:
        if plan is not None:
            abandon(store, plan)
        raise
    return Composed(plan, own, [LiveRun(store, r) for r in plan.in_flight])


def _backend(kind: str, resolved: Resolved, n_to_run: int,
             identity: Identity) -> tuple[Backend, LaunchOptions]:
    """The backend for ``n_to_run`` claimed psets and the options it starts with."""
    identified = lambda: identity  # noqa: E731 - the one identity of this call
    if kind == "slurm":
        slurm = resolved.slurm
        workers = resolved.workers_given or slurm.cpus_per_task or 1
        if slurm.cpus_per_task is None and workers > 1:  # allocate what the pool uses
            from .._slurm import Slurm

            slurm = Slurm(dict(slurm.options, cpus_per_task=workers),
                          array_parallelism=slurm.array_parallelism)
        backend: Backend = prepare("slurm", host=resolved.host, slurm=slurm,
                                   identity=identified, batch=resolved.batch)
    elif kind == "executor":
        backend = prepare("executor", executor=resolved.executor, batch=resolved.batch)
        workers = backend.running_slots() or 1  # the engine's, recorded with the run
    elif kind == "ssh":
        ssh = cast("SSHBackend", prepare("ssh", host=resolved.host, identity=identified))
        # the host's CPUs, not ours, unless f.options/the decorator chose a number
        workers = ssh.cpus if resolved.workers_given is None else resolved.workers
        backend, workers = ssh, max(1, min(workers, n_to_run))
    elif kind == "multi":
        backend = prepare("multi", host=resolved.host, identity=identified)
        # each host's CPUs, unless f.options/the decorator chose a number for each
        workers = cast("MultiBackend", backend).use_workers(resolved.workers_given)
    else:
        backend = prepare(kind)
        workers = max(1, min(resolved.workers, n_to_run)) if kind == "pool" else 0
    return backend, LaunchOptions.of(resolved, workers)


def registered(store: Store, rec: dict[str, Any], *, attach: bool = True) -> Composed:
    """The parts of a ``pj.Run`` for a run in the registry (``pj.attach``): its psets
    from the request its run directory keeps (checked first: pickles are code).
    ``attach=False``: only to look at it or cancel it (``pyjoule status``/``cancel``),
    which works for another process's run on an executor too."""
    from .._rundir import RunDir

    if attach:
        _check_attachable(rec)
    ids, psets = RunDir(rec["run_dir"]).read_request()
    plan = Plan(rec["func_id"], psets, ids, {})
    return Composed(plan, LiveRun(store, rec), [])


def _check_attachable(rec: dict[str, Any]) -> None:
    """A run on an executor lives in the process that owns the engine's client: from
    any other process, while it is active, there is nothing to attach to."""
    from .. import _platform
    from .._errors import PyjouleError

    driver = (rec.get("options") or {}).get("driver")
    if rec.get("backend") != "executor" or rec.get("finished") is not None \
            or rec.get("state") not in ("starting", "running", "finishing") \
            or (driver and _platform.here(driver) and driver.get("pid") == os.getpid()):
        return
    raise PyjouleError(
        f"run {rec['run_id']} runs on an executor ({(rec.get('options') or {}).get('engine')}"
        "): such a run lives only in the Python process that owns the executor or "
        "client, and cannot be attached to from another one. Its finished results are "
        "in the cache already: call f.map (or f.sweep) with the same psets to get them "
        "and run the rest.")
