"""Plan → backend → watch → ingest: the one place that composes the store, function
identity, the worker's run directories and the backends.

``plan`` normalises and hashes the psets and splits them into cached / in flight in
another live run / to run. ``launch`` writes a run directory and starts a backend.
``LiveRun`` follows one run: it reads new result records by offset, ingests them into
the cache and, once the worker has ended, accounts for every pset it was given.

One run state, each field with one source of truth:

- the registry row (``runs``, in the index) for all that processes must agree on:
  ``state`` and ``finished`` (moved on only in transactions: the claim,
  ``Store.claim_finish``, ``_claims.release``), ``options["attempt"]``
  (``Store.claim_attempt``), the driver and finisher processes, ``offsets``
  (committed with the entries they ingested), ``job_ids`` and the counts;
- ``LiveRun.rec`` is this process's copy of the row, patched only after the row
  was written, and read again from the row where a decision depends on it
  (:meth:`LiveRun._attempt_due`, ``_await_start``, ``finish``);
- the backend for how to reach the work (``Backend.describe()`` is kept in the
  row's ``options``; SLURM's waves in ``slurm.json``); the run directory for what
  the worker tells (task files: which psets; results; pid; exit);
- the cache's entries for which psets finished, the failure table for which failed.

The package, lowest first: ``signature`` (what the function accepts), ``backends``
(backend objects by name, from the backend registry), ``payload`` (what is pickled for
a worker), ``live`` (following one run), ``liveness`` (whether a run may still compute,
and settling one whose driver died while starting it), ``reconcile`` (judging runs in
flight), ``plan`` (claiming), ``launch`` (starting), ``compose`` (one call: which
backend, how many workers, the live runs). Every name used outside is imported from
here.
"""

from __future__ import annotations

from .backends import make_backend, prepare
from .compose import Composed, backend_name, compose, registered
from .launch import launch, record_cached
from .live import INFRA_REASONS, LiveRun, settle
from .liveness import is_live
from .payload import pickle_function
from .plan import Plan, abandon, plan, plan_run, report_identity_change
from .reconcile import reconcile, settle_transient
from .signature import Signature

__all__ = ["INFRA_REASONS", "Composed", "LiveRun", "Plan", "Signature", "abandon", "backend_name",
           "compose", "is_live", "launch", "make_backend", "pickle_function", "plan", "plan_run",
           "prepare", "reconcile", "record_cached", "registered",
           "report_identity_change", "settle", "settle_transient"]
