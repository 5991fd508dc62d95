"""The ``pyjoule`` command's shared arguments and what they name: the ``--cache`` and
``--json`` options (before or after the command), durations and sizes, and the cache,
run and function an argument selects (an unknown one is a :class:`Failure`, exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ._errors import Failure


# ---------------------------------------------------------------- parameters
class Duration(click.ParamType):
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> seconds."""

    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        from .._repair import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Size(click.ParamType):
    """``10G``, ``500M``, ``1.5T``, ``100K``, ``4096`` -> bytes (powers of 1024)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from .._repair import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _remember(ctx: click.Context, param: click.Parameter, value):
    """--cache and --json go before the command or after it; given twice, the one
    nearer the end of the command line (the command's own) wins. The value is kept
    in ``ctx.meta``, which the group and the command share."""
    key = f"pyjoule.{param.name}"
    if value:
        ctx.meta[key] = value
    return ctx.meta.get(key, value)


def cache_option(f):
    return click.option("--cache", metavar="DIR", expose_value=False, callback=_remember,
                        type=click.Path(file_okay=True, dir_okay=True),
                        help="Cache directory (default: $PYJOULE_CACHE, else the "
                             "project's .pyjoule/).")(f)


def json_option(help: str = "Print a JSON object instead.", expose_value: bool = True):
    return click.option("--json", "as_json", is_flag=True, expose_value=expose_value,
                        callback=_remember, help=help)


group_json = json_option("Print JSON instead of text (as the command's --json).",
                         expose_value=False)


# ------------------------------------------------------------ what they name
def default_cache() -> tuple[Path, str]:
    """The cache a command uses without --cache: the cwd's project's (the command has
    no code of the user's to find a project from), and why, in words."""
    from .._config import cache_choice

    return cache_choice(start=os.getcwd())


def open_store(ctx: click.Context):
    """The store of the selected cache; one that is not a cache is an error (a
    ``CacheError``, exit 2), and nothing gets created there."""
    from .._api import existing_cache

    return existing_cache(ctx.meta.get("pyjoule.cache") or default_cache()[0])


def match_function(store, name: str, extra: set[str] = frozenset()) -> str:
    """The full function name for ``name``: itself, or a unique ``.name`` suffix."""
    known = {v["name"] for v in store.versions()} | set(extra)
    if name in known:
        return name
    found = sorted(k for k in known if k.endswith("." + name))
    if len(found) == 1:
        return found[0]
    if found:
        raise Failure(f"{name!r} matches several functions ({', '.join(found)}): "
                      "give the full name", kind="FunctionNotFoundError")
    raise Failure(f"no function {name!r} in the cache at {store.root}; known: "
                  f"{', '.join(sorted(known)) or '(none)'}", kind="FunctionNotFoundError")


def find_run(store, run_id: str) -> dict:
    """The registry record of ``run_id``, or of the one run whose id starts with it."""
    rec = store.get_run(run_id)
    if rec is not None:
        return rec
    runs = store.list_runs()
    found = [r for r in runs if r["run_id"].startswith(run_id)] if run_id else []
    if len(found) == 1:
        return found[0]
    if found:
        raise Failure(f"run id prefix {run_id!r} matches {len(found)} runs "
                      f"({', '.join(r['run_id'] for r in found[:5])}, ...): give more of it",
                      kind="RunNotFoundError")
    latest = ", ".join(r["run_id"] for r in runs[-3:]) or "none"
    raise Failure(f"no run {run_id!r} in the cache at {store.root} (latest: {latest}); "
                  "`pyjoule runs` lists them, --cache DIR selects another cache",
                  kind="RunNotFoundError")
