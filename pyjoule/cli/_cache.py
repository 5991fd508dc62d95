"""``pyjoule cache``: what the result cache holds (``info``), and clearing it
(``clear``), collecting its garbage (``gc``) and checking it for damage (``check``).

What these do to a cache lives in the store and in ``pyjoule._repair``; here are the
arguments, the confirmation and the report.
"""

from __future__ import annotations

import sys
from collections import Counter

import click

from . import _complete
from ._args import (
    Duration,
    Size,
    cache_option,
    default_cache,
    group_json,
    json_option,
    match_function,
    open_store,
)
from ._errors import Failure, Group
from ._format import NO_CACHE, dump, epilog, human, iso, short, table


@click.group(cls=Group, epilog=epilog(
    f"bad usage, an unknown function, {NO_CACHE}",
    one="`cache check` found damage, `cache clear` was not confirmed"))
@cache_option
@group_json
def cache():
    """Look into and clean up the result cache.

    \b
    Examples:
      pyjoule cache info
      pyjoule cache clear simulate --old-versions --yes
      pyjoule cache gc --older-than 30d --max-size 10G
    """


@cache.command(epilog=epilog(f"bad usage, {NO_CACHE}"))
@json_option()
@cache_option
@click.pass_context
def info(ctx, as_json):
    """Cached results per function: entries, size, versions.

    Also the newest entry's time, totals and the size of the index.

    A version is one function identity (func_id): editing the function makes a
    new one, and the old one's results stay until cleared.

    \b
    Example:
      pyjoule cache info --json
    """
    from .._repair import summary

    store = open_store(ctx)
    funcs, total, index = summary(store)
    funcs = [{**f, "newest": iso(f["newest"])} for f in funcs]
    if as_json:
        return dump({"cache": str(store.root), "functions": funcs,
                     "total": {**total, "functions": len(funcs)}, "index_bytes": index})
    click.echo(f"cache {store.root} (index {human(index)})")
    if not funcs:
        return click.echo("no cached results")
    rows = [[short(f["name"], 40), f["entries"], human(f["bytes"]), f["versions"],
             (f["newest"] or "-").replace("T", " ").replace("+00:00", " UTC")]
            for f in funcs]
    rows.append(["total", total["entries"], human(total["bytes"]), total["versions"], ""])
    click.echo(table(["function", "entries", "size", "versions", "newest"], rows,
                     right={1, 2, 3}))


@cache.command(epilog=epilog(
    f"bad usage, an unknown function, {NO_CACHE},\nno terminal to ask on and no --yes",
    one="the confirmation was answered no", zero="removed, or nothing to remove"))
@click.argument("function", metavar="[FUNC]", required=False,
                shell_complete=_complete.functions)
@click.option("--old-versions", is_flag=True,
              help="Keep each function's newest version (the one with the most recent "
                   "entry); delete the others.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option()
@cache_option
@click.pass_context
def clear(ctx, function, old_versions, yes, as_json):
    """Delete cached results (all, or of one function).

    FUNC is a full function name (module.qualname) or its last part. Deleted
    results are recomputed when asked for again. Asks before deleting unless
    --yes; without a terminal to ask on, --yes is required.

    \b
    Examples:
      pyjoule cache clear --yes
      pyjoule cache clear simulate --old-versions --yes
    """
    from .._repair import to_clear

    store = open_store(ctx)
    name = match_function(store, function) if function else None
    doomed = to_clear(store, name, old_versions)
    entries, size = sum(v["entries"] for v in doomed), sum(v["bytes"] for v in doomed)
    names = Counter()
    for v in doomed:
        names[v["name"]] += v["entries"]
    if not doomed:
        return dump({"entries": 0, "bytes": 0, "functions": {}}) if as_json else \
            click.echo("nothing to remove")
    what = (f"{entries} cached results ({human(size)}) of {len(doomed)} function "
            f"version(s) from {store.root}")
    if not yes:
        if not sys.stdin.isatty():
            raise Failure(f"not deleting {what} without confirmation: stdin is not a "
                          "terminal, pass --yes", kind="UsageError")
        click.confirm(f"Delete {what}?", abort=True, err=True)  # stdout: the result only
    store.clear([v["func_id"] for v in doomed])
    if as_json:
        return dump({"entries": entries, "bytes": size, "functions": dict(names)})
    click.echo(f"removed {what}: " + ", ".join(f"{n} ({k})" for n, k in names.items()))


@cache.command(epilog=epilog(
    f"bad usage (a bad --older-than or --max-size), {NO_CACHE}"))
@click.option("--older-than", type=Duration(), metavar="DURATION",
              help="Remove results not created or used for this long, and finished runs "
                   "that old (units s, m, h, d, w: 30d).")
@click.option("--max-size", type=Size(), metavar="SIZE",
              help="Then remove the least recently used results until they take at most "
                   "this much (K, M, G, T: powers of 1024: 10G).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@json_option()
@cache_option
@click.pass_context
def gc(ctx, older_than, max_size, dry_run, as_json):
    """Remove old results and keep the cache under a size.

    An entry's age is the time since its batch was stored or its function version
    was last used, whichever is later. Results no entry points at any more (the
    pset was recomputed) are always removed. Removed results are recomputed when
    asked for again, also those of runs in flight. Runs on this machine that a
    crash left starting, running or finishing (their processes are gone) are
    finished first, and their psets freed.

    \b
    Example:
      pyjoule cache gc --older-than 30d --max-size 10G --dry-run
    """
    from .._repair import gc as collect

    report = collect(open_store(ctx), older_than_s=older_than, max_bytes=max_size,
                     dry_run=dry_run)
    if as_json:
        return dump(report)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report['entries']} results in {report['segments']} segment files "
               f"({human(report['bytes'])}), {report['runs']} finished runs, "
               f"{report['files']} stray files; results {'would ' if dry_run else ''}"
               f"take {human(report['bytes_left'])}")
    if report.get("runs_settled"):
        click.echo(f"finished {report['runs_settled']} runs a crash had left starting, "
                   "running or finishing (their psets are free to run again)")


@cache.command("check", epilog=epilog(
    f"bad usage, {NO_CACHE}", one="damage found (and not repaired: no --repair)",
    zero="no damage found, or --repair repaired it"))
@click.option("--repair", is_flag=True,
              help="Move damaged parts aside (to <cache>/damaged/<time>/) and rebuild "
                   "what can be: the index from the segment files; damaged results "
                   "are dropped and recomputed when asked for.")
@json_option()
@cache_option
@click.pass_context
def check_cache(ctx, repair, as_json):
    """Verify the index and every cached result's checksums (exit 1 on damage).

    Reports per function. Without --repair nothing is changed.

    \b
    Examples:
      pyjoule cache check
      pyjoule cache check --repair --json
    """
    from .._repair import check, require_cache

    root = require_cache(ctx.meta.get("pyjoule.cache") or default_cache()[0])
    report = check(root, repair=repair)
    damaged = bool(report["damaged"]["segments"]) or not report["index"]["ok"]
    if as_json:
        dump(report)
    else:
        _print_check(report)
    if damaged and not repair:
        ctx.exit(1)


def _print_check(report: dict) -> None:
    index = report["index"]
    click.echo(f"cache {report['cache']}")
    if index["ok"]:
        click.echo("index: ok (PRAGMA integrity_check)")
    else:
        done = "moved aside and rebuilt from the segment files" if index["rebuilt"] \
            else "run `pyjoule cache check --repair` to move it aside and rebuild it"
        click.echo(f"index: DAMAGED ({index['problem']}): {done}")
    rows = [[short(f["name"], 40), f["segments"], f["entries"],
             f["damaged_segments"] or "-", f["damaged_entries"] or "-"]
            for f in report["functions"]]
    if rows:
        click.echo(table(["function", "segments", "entries", "damaged", "entries lost"],
                         rows, right={1, 2, 3, 4}))
    for f in report["functions"]:
        for problem in f["problems"]:
            click.echo(f"  {f['name']}: {problem}")
    n = report["damaged"]["segments"]
    if n and report["repaired"]:
        click.echo(f"{n} damaged segment file(s) dropped (their psets are recomputed when "
                   f"asked for)")
    elif n:
        click.echo(f"{n} damaged segment file(s): run `pyjoule cache check --repair`")
    if report["moved_to"]:
        click.echo(f"damaged parts moved to {report['moved_to']}")
    if not n and index["ok"]:
        click.echo("no damage found")
