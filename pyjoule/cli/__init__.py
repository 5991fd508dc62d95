"""The ``pyjoule`` command (also ``python -m pyjoule``): runs, the cache, hosts.

The commands only parse, call the library and format; what they do to a cache lives
in ``pyjoule._store``. Expected errors (an unknown run, a directory that is not a cache)
print one line ``pyjoule: ...`` and exit with code 2 (see ``pyjoule.cli._errors``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import click

from .. import __version__
from . import _complete as _cli_complete
from ._errors import Failure, Group, from_exception
from .._errors import PyjouleError

_CACHE_NOTE = """\b
The cache is --cache DIR (before or after the command), else $PYJOULE_CACHE,
else .pyjoule/ in the project root (nearest ancestor with pyproject.toml or
.git), else ~/.cache/pyjoule."""
_NO_CACHE = "not a pyjoule cache"


def _epilog(two: str, one: str = "", zero: str = "success", cache: bool = True) -> str:
    """The help's last paragraphs: the exit codes this command gives, and which cache
    it reads if it reads one. Each argument is one line or several, as printed."""
    def code(n: int, text: str) -> list[str]:
        first, *more = text.splitlines()
        return [f"  {n}  {first}", *(f"     {line}" for line in more)]

    lines = ["\b", "Exit codes:", *code(0, zero), *(code(1, one) if one else []),
             *code(2, two)]
    return "\n".join(lines) + ("\n\n" + _CACHE_NOTE if cache else "")


EPILOG = _epilog(
    one="the command ran and found a problem: a run with failed or\n"
        "cancelled psets, damage in the cache, a host that failed its\n"
        "check or cannot be reached, a confirmation answered no",
    two=f"bad usage, an unknown run or function, {_NO_CACHE},\nother errors")

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS_B = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


_Failure, _Group = Failure, Group  # the names the commands use


# ---------------------------------------------------------------- parameters
class Duration(click.ParamType):
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value).lower())
        if not m:
            self.fail(f"{value!r} is not a duration: a number and a unit, one of "
                      "s, m, h, d, w (e.g. 30d, 12h)", param, ctx)
        return float(m.group(1)) * _UNITS_S[m.group(2)]


class Size(click.ParamType):
    """``10G``, ``500M``, ``1.5T``, ``100K``, ``4096`` -> bytes (powers of 1024)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value).lower())
        if not m:
            self.fail(f"{value!r} is not a size: a number with K, M, G or T "
                      "(powers of 1024, e.g. 10G, 500M), or bytes", param, ctx)
        return int(float(m.group(1)) * _UNITS_B[m.group(2)])


def _remember(ctx: click.Context, param: click.Parameter, value):
    """--cache and --json go before the command or after it; given twice, the one
    nearer the end of the command line (the command's own) wins. The value is kept
    in ``ctx.meta``, which the group and the command share."""
    key = f"pyjoule.{param.name}"
    if value:
        ctx.meta[key] = value
    return ctx.meta.get(key, value)


def _cache_option(f):
    return click.option("--cache", metavar="DIR", expose_value=False, callback=_remember,
                        type=click.Path(file_okay=True, dir_okay=True),
                        help="Cache directory (default: $PYJOULE_CACHE, else the "
                             "project's .pyjoule/).")(f)


def _json_option(help: str = "Print a JSON object instead.", expose_value: bool = True):
    return click.option("--json", "as_json", is_flag=True, expose_value=expose_value,
                        callback=_remember, help=help)


_group_json = _json_option("Print JSON instead of text (as the command's --json).",
                           expose_value=False)


# ------------------------------------------------------------------ helpers
def _default_cache() -> tuple[Path, str]:
    """The cache a command uses without --cache: the cwd's project's (the command has
    no code of the user's to find a project from), and why, in words."""
    from .._config import cache_choice

    return cache_choice(start=os.getcwd())


def _store(ctx: click.Context):
    """The store of the selected cache; one that is not a cache is an error, and
    nothing gets created there."""
    from .._store import Store, not_a_cache

    path = Path(ctx.meta.get("pyjoule.cache") or _default_cache()[0]).expanduser()
    why = not_a_cache(path)
    if why:
        raise _Failure(f"{path} is not a pyjoule cache ({why}); pass --cache DIR or set "
                       "PYJOULE_CACHE to the directory your experiments cache in",
                       kind="CacheError")
    return Store.open(path)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(
        timespec="seconds")


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _dump(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _match_function(store, name: str, extra: set[str] = frozenset()) -> str:
    """The full function name for ``name``: itself, or a unique ``.name`` suffix."""
    known = {v["name"] for v in store.versions()} | set(extra)
    if name in known:
        return name
    found = sorted(k for k in known if k.endswith("." + name))
    if len(found) == 1:
        return found[0]
    if found:
        raise _Failure(f"{name!r} matches several functions ({', '.join(found)}): "
                       "give the full name", kind="FunctionNotFoundError")
    raise _Failure(f"no function {name!r} in the cache at {store.root}; known: "
                   f"{', '.join(sorted(known)) or '(none)'}", kind="FunctionNotFoundError")


def _find_run(store, run_id: str) -> dict:
    """The registry record of ``run_id``, or of the one run whose id starts with it."""
    rec = store.get_run(run_id)
    if rec is not None:
        return rec
    runs = store.list_runs()
    found = [r for r in runs if r["run_id"].startswith(run_id)] if run_id else []
    if len(found) == 1:
        return found[0]
    if found:
        raise _Failure(f"run id prefix {run_id!r} matches {len(found)} runs "
                       f"({', '.join(r['run_id'] for r in found[:5])}, ...): give more of it",
                       kind="RunNotFoundError")
    latest = ", ".join(r["run_id"] for r in runs[-3:]) or "none"
    raise _Failure(f"no run {run_id!r} in the cache at {store.root} (latest: {latest}); "
                   "`pyjoule runs` lists them, --cache DIR selects another cache",
                   kind="RunNotFoundError")


def _run_json(rec: dict) -> dict:
    return {"id": rec["run_id"], "function": rec["name"], "func_id": rec["func_id"],
            "host": rec["host"], "backend": rec["backend"], "state": rec["state"],
            "total": rec["total"], "cached": rec["cached"], "done": rec["done"],
            "failed": rec["failed"], "workers": rec["workers"],
            "submitted": _iso(rec["submitted"]), "finished": _iso(rec["finished"]),
            "job_ids": rec["job_ids"], "run_dir": rec["run_dir"]}


# ------------------------------------------------------------------ commands
@click.group("pyjoule", cls=_Group, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="pyjoule",
                      message="%(prog)s %(version)s", help="Print the version and exit.")
@_cache_option
@_group_json
def cli() -> None:
    """Inspect and manage pyjoule runs, the result cache and remote hosts.

    --cache and --json go before the command or after it.

    \b
    Examples:
      pyjoule runs --last 5
      pyjoule status 20261203-114610-3fa2c1
      pyjoule --cache /scratch/me/.pyjoule cache info --json
      pyjoule --json runs --cache /scratch/me/.pyjoule
    """


@cli.command("runs", epilog=_epilog(f"bad usage, an unknown --function, {_NO_CACHE}"))
@click.option("--function", "function", metavar="NAME",
              shell_complete=_cli_complete.functions,
              help="Only runs of this function (full name, or its last part).")
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="Only the N newest runs.")
@_json_option("Print a JSON list instead of a table.")
@_cache_option
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
    from .._api import _refresh_local_runs

    store = _store(ctx)
    _refresh_local_runs(store)  # as pj.runs(): runs in flight on this machine, read now
    recs = store.list_runs()
    if function:
        name = _match_function(store, function, {r["name"] for r in recs})
        recs = [r for r in recs if r["name"] == name]
    if last:
        recs = recs[-last:]
    if as_json:
        return _dump([_run_json(r) for r in recs])
    if not recs:
        return click.echo(f"no runs in the cache at {store.root}")
    why = "--cache" if ctx.meta.get("pyjoule.cache") else _default_cache()[1]
    click.echo(f"cache {store.root} ({why})")
    rows = [[r["run_id"], _short(r["name"] or "?"), _short(f"{r['host']}/{r['backend']}", 24),
             r["state"], r["total"], r["cached"], r["done"], r["failed"],
             _when(r["submitted"])] for r in recs]
    click.echo(_table(["id", "function", "where", "state", "total", "cached", "done",
                       "failed", "submitted"], rows, right={4, 5, 6, 7}))


@cli.command(epilog=_epilog(
    f"bad usage, an unknown run, {_NO_CACHE}",
    one="the run has failed psets (a cancel's unfinished ones count),\nor was cancelled",
    zero="the run has no failed pset: done, or in flight with none so far"))
@click.argument("run_id", metavar="RUN", shell_complete=_cli_complete.run_ids)
@_json_option()
@_cache_option
@click.pass_context
def status(ctx, run_id, as_json):
    """Progress, failures and log paths of one run.

    RUN is a run id, or a prefix of one that only one run has. A run in flight is
    read first, so its counts are current.

    \b
    Example:
      pyjoule status 20261203-114610-3fa2c1
    """
    from . import _status as _cli_status

    store = _store(ctx)
    rec, counts, failures = _cli_status.gather(store, _find_run(store, run_id))
    info = _cli_status.info(_run_json(rec), counts, failures, rec["run_dir"])
    if as_json:
        _dump(info)
    else:
        _cli_status.show(info)
    ctx.exit(_cli_status.exit_code(info))


@cli.command(epilog=_epilog(f"bad usage, an unknown run, {_NO_CACHE}",
                            zero="cancelled, or the run had already ended"))
@click.argument("run_id", metavar="RUN", shell_complete=_cli_complete.run_ids)
@_json_option()
@_cache_option
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
    from .._api import attach

    store = _store(ctx)
    rec = _find_run(store, run_id)
    was = rec["state"]
    if was == "running":
        attach(rec["run_id"], store.root).cancel()
        rec = store.get_run(rec["run_id"]) or rec
    if as_json:
        return _dump({**_run_json(rec), "cancelled": was == "running"})
    if was != "running":
        return click.echo(f"run {rec['run_id']} has already ended ({was}): nothing to cancel")
    click.echo(f"cancelled run {rec['run_id']}: {rec['done']} psets finished and stay "
               f"cached, {rec['failed']} recorded as failed or cancelled")


@cli.command(epilog=_epilog(f"bad usage, an unknown run or pset, {_NO_CACHE}"))
@click.argument("run_id", metavar="RUN", shell_complete=_cli_complete.run_ids)
@click.argument("pset_key", metavar="[PSET]", required=False)
@_json_option()
@_cache_option
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

    store = _store(ctx)
    rec = _find_run(store, run_id)
    info = run_logs(store, rec, pset_key)
    if pset_key is not None and not info["psets"]:
        raise _Failure(f"no pset {pset_key!r} in run {rec['run_id']} (keys are the _key "
                       "column of f.table(); `pyjoule logs RUN` lists those that printed)",
                       kind="PsetNotFoundError")
    if as_json:
        return _dump(info)
    click.echo(logs_text(info))


# --------------------------------------------------------------------- cache
@cli.group(cls=_Group, epilog=_epilog(
    f"bad usage, an unknown function, {_NO_CACHE}",
    one="`cache check` found damage, `cache clear` was not confirmed"))
@_cache_option
@_group_json
def cache():
    """Look into and clean up the result cache.

    \b
    Examples:
      pyjoule cache info
      pyjoule cache clear simulate --old-versions --yes
      pyjoule cache gc --older-than 30d --max-size 10G
    """


def _by_name(versions: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for v in versions:
        if v["entries"] or v["segments"]:
            out.setdefault(v["name"], []).append(v)
    return out


@cache.command(epilog=_epilog(f"bad usage, {_NO_CACHE}"))
@_json_option()
@_cache_option
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
    store = _store(ctx)
    funcs = []
    for name, vs in sorted(_by_name(store.versions()).items()):
        newest = [v["newest"] for v in vs if v["newest"] is not None]
        funcs.append({"name": name, "entries": sum(v["entries"] for v in vs),
                      "bytes": sum(v["bytes"] for v in vs), "versions": len(vs),
                      "newest": _iso(max(newest)) if newest else None,
                      "func_ids": [v["func_id"] for v in vs]})
    index = sum(p.stat().st_size for p in store.root.glob("index.sqlite*") if p.is_file())
    total = {k: sum(f[k] for f in funcs) for k in ("entries", "bytes", "versions")}
    if as_json:
        return _dump({"cache": str(store.root), "functions": funcs,
                      "total": {**total, "functions": len(funcs)}, "index_bytes": index})
    click.echo(f"cache {store.root} (index {_human(index)})")
    if not funcs:
        return click.echo("no cached results")
    rows = [[_short(f["name"], 40), f["entries"], _human(f["bytes"]), f["versions"],
             (f["newest"] or "-").replace("T", " ").replace("+00:00", " UTC")]
            for f in funcs]
    rows.append(["total", total["entries"], _human(total["bytes"]), total["versions"], ""])
    click.echo(_table(["function", "entries", "size", "versions", "newest"], rows,
                      right={1, 2, 3}))


@cache.command(epilog=_epilog(
    f"bad usage, an unknown function, {_NO_CACHE},\nno terminal to ask on and no --yes",
    one="the confirmation was answered no", zero="removed, or nothing to remove"))
@click.argument("function", metavar="[FUNC]", required=False,
                shell_complete=_cli_complete.functions)
@click.option("--old-versions", is_flag=True,
              help="Keep each function's newest version (the one with the most recent "
                   "entry); delete the others.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_json_option()
@_cache_option
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
    store = _store(ctx)
    by_name = _by_name(store.versions())
    if function:
        name = _match_function(store, function)
        by_name = {name: by_name.get(name, [])}
    doomed = []
    for vs in by_name.values():
        if old_versions:  # the CLI cannot import the code: newest entry = current
            vs = sorted(vs, key=lambda v: (v["newest"] or 0, v["last_used"] or 0))[:-1]
        doomed += vs
    entries, size = sum(v["entries"] for v in doomed), sum(v["bytes"] for v in doomed)
    names = Counter()
    for v in doomed:
        names[v["name"]] += v["entries"]
    if not doomed:
        return _dump({"entries": 0, "bytes": 0, "functions": {}}) if as_json else \
            click.echo("nothing to remove")
    what = (f"{entries} cached results ({_human(size)}) of {len(doomed)} function "
            f"version(s) from {store.root}")
    if not yes:
        if not sys.stdin.isatty():
            raise _Failure(f"not deleting {what} without confirmation: stdin is not a "
                           "terminal, pass --yes", kind="UsageError")
        click.confirm(f"Delete {what}?", abort=True, err=True)  # stdout: the result only
    store.clear([v["func_id"] for v in doomed])
    if as_json:
        return _dump({"entries": entries, "bytes": size, "functions": dict(names)})
    click.echo(f"removed {what}: " + ", ".join(f"{n} ({k})" for n, k in names.items()))


@cache.command(epilog=_epilog(
    f"bad usage (a bad --older-than or --max-size), {_NO_CACHE}"))
@click.option("--older-than", type=Duration(), metavar="DURATION",
              help="Remove results not created or used for this long, and finished runs "
                   "that old (units s, m, h, d, w: 30d).")
@click.option("--max-size", type=Size(), metavar="SIZE",
              help="Then remove the least recently used results until they take at most "
                   "this much (K, M, G, T: powers of 1024: 10G).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@_json_option()
@_cache_option
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
    store = _store(ctx)
    report = store.gc(older_than_s=older_than, max_bytes=max_size, dry_run=dry_run)
    if as_json:
        return _dump(report)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report['entries']} results in {report['segments']} segment files "
               f"({_human(report['bytes'])}), {report['runs']} finished runs, "
               f"{report['files']} stray files; results {'would ' if dry_run else ''}"
               f"take {_human(report['bytes_left'])}")
    if report.get("runs_settled"):
        click.echo(f"finished {report['runs_settled']} runs a crash had left starting, "
                   "running or finishing (their psets are free to run again)")


@cache.command("check", epilog=_epilog(
    f"bad usage, {_NO_CACHE}", one="damage found (and not repaired: no --repair)",
    zero="no damage found, or --repair repaired it"))
@click.option("--repair", is_flag=True,
              help="Move damaged parts aside (to <cache>/damaged/<time>/) and rebuild "
                   "what can be: the index from the segment files; damaged results "
                   "are dropped and recomputed when asked for.")
@_json_option()
@_cache_option
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

    root = require_cache(ctx.meta.get("pyjoule.cache") or _default_cache()[0])
    report = check(root, repair=repair)
    damaged = bool(report["damaged"]["segments"]) or not report["index"]["ok"]
    if as_json:
        _dump(report)
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
    rows = [[_short(f["name"], 40), f["segments"], f["entries"],
             f["damaged_segments"] or "-", f["damaged_entries"] or "-"]
            for f in report["functions"]]
    if rows:
        click.echo(_table(["function", "segments", "entries", "damaged", "entries lost"],
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


# --------------------------------------------------------------------- hosts
_HOSTS_EPILOG = _epilog("bad usage (an unknown option, a bad option value)",
                        one="a check failed (its PROBLEM line says what to do),\n"
                            "or the host is unknown or cannot be reached",
                        zero="every check passed", cache=False)

@cli.group(cls=_Group, epilog=_HOSTS_EPILOG)
@_group_json
def hosts():
    """Remote hosts.

    \b
    Example:
      pyjoule hosts check workstation
    """


@hosts.command(epilog=_HOSTS_EPILOG)
@click.argument("host", metavar="ALIAS")
@click.option("--setup", "setup", multiple=True, metavar="LINE",
              help="A shell line run first, as pj.Host(setup=...) (repeatable).")
@click.option("--workdir", default=None, help="As pj.Host(workdir=...).")
@click.option("--python", "python", default=None,
              help="As pj.Host(python=...): a version, or a path on the host.")
@click.option("--existing", is_flag=True,
              help="As pj.Host(environment='existing'): use --python as it is.")
@_json_option()
@click.pass_context
def check(ctx, host, setup, workdir, python, existing, as_json):
    """Connect to ALIAS and report Python, uv, disk, CPUs and SLURM (exit 1 on a problem).

    ALIAS is an ~/.ssh/config alias ($PYJOULE_SSH_CONFIG picks another file) or
    user@name:port. The Python is looked for as a run looks for it: after the
    --setup lines, on PATH, then by uv.

    \b
    Examples:
      pyjoule hosts check cluster --json
      pyjoule hosts check cluster --setup "module load python/3.11"
    """
    from .._transport import check, ssh
    from .._transport.hosts import Host

    options = {"setup": setup, "python": python,
               "environment": "existing" if existing else "auto"}
    if workdir:
        options["workdir"] = workdir
    target = Host(host, **options)  # bad options: a usage error (exit 2)
    try:
        report = check.check_host(target)
    except (PyjouleError, OSError) as exc:  # unknown, unreachable, refused: a problem
        raise from_exception(exc, exit_code=1) from None
    finally:
        ssh.close_all()
    if as_json:
        _dump({"host": report.host, "ok": report.ok, "rtt_ms": report.rtt_ms,
               "facts": report.facts, "problems": report.problems})
    else:
        click.echo(str(report))
    if not report.ok:
        ctx.exit(1)


def main(argv: list[str] | None = None) -> int:
    """Run the ``pyjoule`` command with ``argv`` (default: ``sys.argv[1:]``); return its
    exit code.

    Examples
    --------
    >>> main(["--help"])  # doctest: +ELLIPSIS
    Usage: pyjoule [OPTIONS] COMMAND [ARGS]...
    ...
    0
    """
    try:
        cli.main(args=argv, prog_name="pyjoule")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
