"""How the ``pyjoule`` command prints: tables, sizes and times, JSON documents, and the
help's closing paragraphs on exit codes and on which cache a command reads.

Only formatting: nothing here reads a cache or parses an argument.
"""

from __future__ import annotations

import json

import click

from .._display import human, iso, when  # noqa: F401 - the commands import them from here

CACHE_NOTE = """\b
The cache is --cache DIR (before or after the command), else $PYJOULE_CACHE,
else .pyjoule/ in the project root (nearest ancestor with pyproject.toml or
.git), else ~/.cache/pyjoule."""
NO_CACHE = "not a pyjoule cache"


def epilog(two: str, one: str = "", zero: str = "success", cache: bool = True) -> str:
    """The help's last paragraphs: the exit codes this command gives, and which cache
    it reads if it reads one. Each argument is one line or several, as printed."""
    def code(n: int, text: str) -> list[str]:
        first, *more = text.splitlines()
        return [f"  {n}  {first}", *(f"     {line}" for line in more)]

    lines = ["\b", "Exit codes:", *code(0, zero), *(code(1, one) if one else []),
             *code(2, two)]
    return "\n".join(lines) + ("\n\n" + CACHE_NOTE if cache else "")


EPILOG = epilog(
    one="the command ran and found a problem: a run with failed or\n"
        "cancelled psets, damage in the cache, a host that failed its\n"
        "check or cannot be reached, a confirmation answered no",
    two=f"bad usage, an unknown run or function, {NO_CACHE},\nother errors")


def table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def dump(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def run_json(rec: dict) -> dict:
    return {"id": rec["run_id"], "function": rec["name"], "func_id": rec["func_id"],
            "host": rec["host"], "backend": rec["backend"], "state": rec["state"],
            "total": rec["total"], "cached": rec["cached"], "done": rec["done"],
            "failed": rec["failed"], "workers": rec["workers"],
            "submitted": iso(rec["submitted"]), "finished": iso(rec["finished"]),
            "job_ids": rec["job_ids"], "run_dir": rec["run_dir"]}
