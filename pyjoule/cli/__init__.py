"""The ``pyjoule`` command (also ``python -m pyjoule``): runs, the cache, hosts.

The commands only parse, call the library and format; what they do to a cache lives
in ``pyjoule._store``. Expected errors (an unknown run, a directory that is not a cache)
print one line ``pyjoule: ...`` and exit with code 2 (see ``pyjoule.cli._errors``).

One module per command group: ``_runs`` (runs, status, cancel, logs; ``_status`` the
report of ``status``), ``_cache``, ``_hosts``, ``_ui`` (the browser view);
``_complete`` lists candidates for shell completion; ``_args`` holds the shared options
and what they name, ``_format`` the tables, JSON and help epilogs, ``_errors`` how an
error is reported.
"""

from __future__ import annotations

import click

from .. import __version__
from ._args import Duration, Size, cache_option, group_json
from ._cache import cache
from ._errors import Group
from ._format import EPILOG
from ._format import human as _human  # noqa: F401 - tests import it from here
from ._hosts import hosts
from ._runs import cancel, logs, runs_cmd, status
from ._ui import ui

__all__ = ["Duration", "Size", "cli", "main"]


@click.group("pyjoule", cls=Group, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="pyjoule",
                      message="%(prog)s %(version)s", help="Print the version and exit.")
@cache_option
@group_json
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


for _command in (runs_cmd, status, cancel, logs, cache, hosts, ui):
    cli.add_command(_command)
del _command


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
