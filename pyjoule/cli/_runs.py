"""The commands on runs: ``pyjoule runs``, ``status``, ``cancel`` and ``logs``.

They parse, call the library and format; what ``status`` reports is
:mod:`pyjoule.cli._status`.
"""

from __future__ import annotations

import click

from . import _complete
from ._args import cache_option, default_cache, find_run, json_option, match_function, open_store
from ._errors import Failure
from ._format import NO_CACHE, dump, epilog, run_json, short, table, when


@click.command("runs", epilog=epilog(f"bad usage, an unknown --function, {NO_CACHE}"))
@click.option("--function", "function", metavar="NAME",
              shell_complete=_complete.functions,
              help="Only runs of this function (full name, or its last part).")
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="Only the N newest runs.")
@json_option("Print a JSON list instead of a table.")
@cache_option
@click.pass_context
def runs_cmd(ctx, function, last, as_json):
    """Table of the runs in the cache's registry, newest last.

    Runs in flight on this machine's pool are read first; those on a remote host
    or SLURM show their counts as of the last poll by a process following them
    (`pyjoule status RUN` reads them now).

    \b
    Example:
      pyjoule runs --function simulate --last 3
    """
    from .._api import refresh_local_runs

    store = open_store(ctx)
    refresh_local_runs(store)  # as pj.runs(): runs in flight on this machine, read now
    recs = store.list_runs()
    if function:
        name = match_function(store, function, {r["name"] for r in recs})
        recs = [r for r in recs if r["name"] == name]
    if last:
        recs = recs[-last:]
    if as_json:
        return dump([run_json(r) for r in recs])
    if not recs:
        return click.echo(f"no runs in the cache at {store.root}")
    why = "--cache" if ctx.meta.get("pyjoule.cache") else default_cache()[1]
    click.echo(f"cache {store.root} ({why})")
    rows = [[r["run_id"], short(r["name"] or "?"), short(f"{r['host']}/{r['backend']}", 24),
             r["state"], r["total"], r["cached"], r["done"], r["failed"],
             when(r["submitted"])] for r in recs]
    click.echo(table(["id", "function", "where", "state", "total", "cached", "done",
                      "failed", "submitted"], rows, right={4, 5, 6, 7}))


@click.command(epilog=epilog(
    f"bad usage, an unknown run, {NO_CACHE}",
    one="the run has failed psets (a cancel's unfinished ones count),\nor was cancelled",
    zero="the run has no failed pset: done, or in flight with none so far"))
@click.argument("run_id", metavar="RUN", shell_complete=_complete.run_ids)
@json_option()
@cache_option
@click.pass_context
def status(ctx, run_id, as_json):
    """Progress, failures and log paths of one run.

    RUN is a run id, or a prefix of one that only one run has. A run in flight is
    read first, so its counts are current.

    \b
    Example:
      pyjoule status 20261203-114610-3fa2c1
    """
    from . import _status

    store = open_store(ctx)
    rec, counts, failures = _status.gather(store, find_run(store, run_id))
    info = _status.info(run_json(rec), counts, failures, rec["run_dir"])
    if as_json:
        dump(info)
    else:
        _status.show(info)
    ctx.exit(_status.exit_code(info))


@click.command(epilog=epilog(f"bad usage, an unknown run, {NO_CACHE}",
                             zero="cancelled, or the run had already ended"))
@click.argument("run_id", metavar="RUN", shell_complete=_complete.run_ids)
@json_option()
@cache_option
@click.pass_context
def cancel(ctx, run_id, as_json):
    """Stop a run's work everywhere; finished results stay cached.

    Kills the local worker pool, the workers on an SSH host, or scancels the
    SLURM jobs, whichever process started the run. A run that has already
    ended is left as it is (exit 0).

    \b
    Example:
      pyjoule cancel 20261203-114610-3fa2c1
    """
    from .._api import follow

    store = open_store(ctx)
    rec = find_run(store, run_id)
    was = rec["state"]
    if was == "running":
        follow(rec["run_id"], store.root).cancel()
        rec = store.get_run(rec["run_id"]) or rec
    if as_json:
        return dump({**run_json(rec), "cancelled": was == "running"})
    if was != "running":
        return click.echo(f"run {rec['run_id']} has already ended ({was}): nothing to cancel")
    click.echo(f"cancelled run {rec['run_id']}: {rec['done']} psets finished and stay "
               f"cached, {rec['failed']} recorded as failed or cancelled")


@click.command(epilog=epilog(f"bad usage, an unknown run or pset, {NO_CACHE}"))
@click.argument("run_id", metavar="RUN", shell_complete=_complete.run_ids)
@click.argument("pset_key", metavar="[PSET]", required=False)
@json_option()
@cache_option
@click.pass_context
def logs(ctx, run_id, pset_key, as_json):
    """What the psets of a run printed, and the tracebacks of those that failed.

    Lists each pset that printed something (captured with capture=True, the
    default) or failed; PSET (its key, the _key column of f.table(), or a prefix
    of it) shows that pset only.

    \b
    Examples:
      pyjoule logs 20261203-114610-3fa2c1
      pyjoule logs 20261203-114610-3fa2c1 9c1e52
    """
    from .._output import logs_text, run_logs

    store = open_store(ctx)
    rec = find_run(store, run_id)
    info = run_logs(store, rec, pset_key)
    if pset_key is not None and not info["psets"]:
        raise Failure(f"no pset {pset_key!r} in run {rec['run_id']} (keys are the _key "
                      "column of f.table(); `pyjoule logs RUN` lists those that printed)",
                      kind="PsetNotFoundError")
    if as_json:
        return dump(info)
    click.echo(logs_text(info))
