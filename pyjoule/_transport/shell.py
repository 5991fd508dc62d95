"""The shell text of a remote command: quoting, the environment on stdin, the umask.

Every remote command is an argument list; each argument is quoted (``shlex.join``),
so no parameter value or path reaches the remote shell unquoted. Environment values
are not arguments at all: ``ps`` shows every process's argv to every user of the
host, so they travel on the command's stdin, and what logs and errors show of a
command names the variables with ``***`` for their values. Every command runs under
``umask 077``: what pyjoule creates on a host is private (0700 / 0600).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence

UMASK = "umask 077"  # what pyjoule creates on a host is private: 0700 / 0600
# Reads the environment from stdin (export lines, every value quoted by env_input),
# then runs the command: values never appear in an argv, which `ps` shows to all.
_WITH_ENV = 'eval "$(cat)" && exec "$@"'


def build_command(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                  cwd: str | None = None, shown_env: Mapping[str, str] | None = None,
                  secret: Iterable[str] | None = None) -> str:
    """The shell text for ``argv``: every argument and path quoted, under ``umask 077``.

    With ``env``, the command reads the variables from its stdin (give it
    :func:`env_input`); ``shown_env`` is for logs and errors: the variables named in
    ``secret`` (default: all) show ``***`` for their values, pyjoule's own settings
    (``UV_PROJECT_ENVIRONMENT`` and the like) show theirs, so the command can be rerun."""
    if isinstance(argv, str):
        raise TypeError("pass the command as a list of arguments, not a string: "
                        "each argument is quoted for the remote shell")
    words = [str(a) for a in argv]
    if env:
        words = ["sh", "-c", _WITH_ENV, "sh", *words]
    elif shown_env:
        hidden = set(shown_env) if secret is None else set(secret)
        words = ["env", *(f"{k}=***" if k in hidden else f"{k}={v}"
                          for k, v in shown_env.items()), *words]
    command = shlex.join(words)
    if cwd:
        command = f"cd {shlex.quote(cwd)} && {command}"
    return f"{UMASK} && {command}"


def env_input(env: Mapping[str, str]) -> bytes:
    """The stdin of a command built with ``env``: one quoted export per variable."""
    for key in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in env.items()).encode()


def mask(data: bytes, values: Iterable[str]) -> bytes:
    """``data`` with every occurrence of each value (of 4 characters or more: a shorter
    one would garble the text and hide little) replaced by ``***``."""
    for value in sorted((str(v) for v in values), key=len, reverse=True):
        if len(value) >= 4:
            data = data.replace(value.encode(), b"***")
    return data
