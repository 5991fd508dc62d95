"""The one interface for "run a command, move bytes", here or on a host.

:class:`Transport` is what a backend is given to reach where its work runs:
:class:`.local.LocalTransport` (this machine), :class:`.ssh.Connection` (a host's
open connection), :class:`.host.HostTransport` (a host by name: the process's
connection to it at each call) and, for unit tests of command building,
:class:`.fake.FakeTransport`. They share one signature, as ``invoke`` and ``fabric``
share ``run()`` and its result: a backend builds its argument lists once, and never
asks which kind it was given except through :attr:`Transport.local` (whether paths
are this machine's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .._errors import HostError, RemoteCommandError


@dataclass
class Result:
    """What a command did (here or on a host)."""

    command: str
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class ConnectionLost(HostError):
    """The connection dropped while a command ran (it may or may not have finished)."""


class Transport:
    """Runs argument lists (each word quoted, under ``umask 077``) and moves files.

    Subclasses implement :meth:`run`, :meth:`put` and :meth:`get`; the defaults of
    ``run``'s keywords are the same everywhere (``check=True``: a non-zero exit
    raises :class:`~pyjoule.RemoteCommandError`)."""

    local = False  # True: the paths it runs on are this machine's

    @property
    def where(self) -> str:
        """For messages: "this machine", the host's target."""
        raise NotImplementedError

    @property
    def key(self) -> str:
        """One per place: per-process caches of facts about it are keyed by it."""
        raise NotImplementedError

    def run(self, argv: Sequence[str], *, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            idempotent: bool = True, secret_env: Mapping[str, str] | None = None) -> Result:
        """Run ``argv`` there and wait for it. ``env`` and ``secret_env`` (values that
        must show nowhere) reach the command without appearing in its argv;
        ``idempotent``: it may be run again if the connection dropped meanwhile."""
        raise NotImplementedError

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` there, created with ``mode`` (private by default)."""
        raise NotImplementedError

    def get(self, path: str) -> bytes:
        """The bytes of ``path`` there (``FileNotFoundError`` if there is none)."""
        raise NotImplementedError


def remote_error(endpoint, result: Result, what: str = "command") -> RemoteCommandError:
    """The error for a command that failed on ``endpoint`` (a host, or "this machine"):
    the command, its exit code, the end of its stderr, and a hint for a full disk."""
    stderr = result.stderr.decode("utf-8", "replace")
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    hint = ""
    if "No space left on device" in stderr or "Disk quota exceeded" in stderr:
        hint = ("\nThe host's disk (or quota) is full: free space there, or point "
                "pj.Host(workdir=...) at a file system with room.")
    if len(result.command) > 500:  # e.g. a program given with python -c
        shown = result.command[:200] + " ... " + result.command[-200:]
    else:
        shown = result.command
    return RemoteCommandError(
        f"{what} on {endpoint} failed with exit code {result.returncode}: {shown}"
        + (f"\n--- last lines of stderr ---\n{tail}" if tail else "") + hint,
        result.command, result.returncode, stderr)
