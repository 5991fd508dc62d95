"""How the ``pyjoule`` command reports an error: one line ``pyjoule: ...`` on stderr,
never a traceback; with ``--json`` also ``{"error": ..., "type": ...}`` on stdout, so
that a script reading stdout gets a JSON document whatever happened. The exit code is
the same either way: 2 for bad usage and for names that match nothing (a run, a
function, a cache), 1 where a command says so (a host it cannot reach).
"""

from __future__ import annotations

import json
from contextvars import ContextVar

import click

from .._errors import PyjouleError

#: whether this invocation asked for --json (set by ``Group.main`` from the command
#: line for the invocation's length, as a usage error may come before click has read
#: the flag)
_json: ContextVar[bool] = ContextVar("pyjoule_cli_json", default=False)


class Failure(click.ClickException):
    """An expected error: one line on stderr (and JSON on stdout under ``--json``),
    exit code 2 unless given, no traceback. ``kind`` names it in the JSON: the
    exception class it stands for (``RunNotFoundError``, ``UsageError``, ...)."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None,
                 kind: str = "PyjouleError") -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.kind = kind

    def show(self, file=None) -> None:
        if _json.get():
            click.echo(json.dumps({"error": self.message, "type": self.kind}))
        click.echo(f"pyjoule: {self.message}", err=True)


def from_exception(exc: BaseException, exit_code: int | None = None) -> Failure:
    return Failure(str(exc).strip() or type(exc).__name__, exit_code, type(exc).__name__)


def usage(exc: click.UsageError) -> click.ClickException:
    """click's usage error as one line: what is wrong, click's suggestion, where the
    help is. ``pyjoule`` alone still prints the help (not under --json)."""
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        if not _json.get():
            return exc
        path = exc.ctx.command_path if exc.ctx is not None else "pyjoule"
        return Failure(f"missing command; see {path} --help", kind="UsageError")
    path = exc.ctx.command_path if exc.ctx is not None else "pyjoule"
    what, hint = " ".join(exc.format_message().split()), ""
    base = " ".join(exc.message.split())
    if getattr(exc, "possibilities", None) and base and what.startswith(base):
        what, hint = base, what[len(base):].strip()  # click's "Did you mean '--cache'?"
    what = what[:1].lower() + what[1:].rstrip(".")
    if isinstance(exc, (click.NoSuchOption, click.MissingParameter)) \
            or hasattr(exc, "command_name"):  # NoSuchCommand, click >= 8.4
        what += f" for {path!r}"
    if hint:
        hint = hint.replace("Did you mean", "did you mean", 1)
        what += " " + (hint if hint.startswith("(") else f"({hint})")
    return Failure(f"{what}; see {path} --help", kind="UsageError")


def _wants_json(args: list[str]) -> bool:
    return "--json" in (args[:args.index("--")] if "--" in args else args)


class Group(click.Group):
    """A group whose errors are :class:`Failure`\\ s."""

    def main(self, args=None, *rest, **kwargs):
        import sys

        token = _json.set(_wants_json(list(sys.argv[1:] if args is None else args)))
        try:
            return super().main(args, *rest, **kwargs)
        finally:
            _json.reset(token)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:  # the group's own options
            raise usage(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `pyjoule runs | head`: click ends quietly
            raise
        except click.UsageError as exc:  # an unknown command, a command's arguments
            raise usage(exc) from None
        except (PyjouleError, OSError) as exc:  # OSError: a bad path, a dropped host
            raise from_exception(exc) from None
        except click.Abort:  # a confirmation answered no
            raise Failure("aborted: nothing was changed", 1, "Abort") from None
        except KeyboardInterrupt:
            raise Failure("interrupted", 1, "KeyboardInterrupt") from None

