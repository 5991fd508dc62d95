"""``pyjoule hosts``: the diagnostic of a remote host (``pyjoule hosts check``).

The check itself is :func:`pyjoule._transport.check.check_host`; this module turns
its options into a ``pj.Host`` and its report into text or JSON and an exit code.
"""

from __future__ import annotations

import click

from .._errors import PyjouleError
from ._args import group_json, json_option
from ._errors import Group, from_exception
from ._format import dump, epilog

_HOSTS_EPILOG = epilog("bad usage (an unknown option, a bad option value)",
                       one="a check failed (its PROBLEM line says what to do),\n"
                           "or the host is unknown or cannot be reached",
                       zero="every check passed", cache=False)


@click.group(cls=Group, epilog=_HOSTS_EPILOG)
@group_json
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
@json_option()
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
    from .._transport import check
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
        check.close_connections()
    if as_json:
        dump({"host": report.host, "ok": report.ok, "rtt_ms": report.rtt_ms,
              "facts": report.facts, "problems": report.problems})
    else:
        click.echo(str(report))
    if not report.ok:
        ctx.exit(1)
