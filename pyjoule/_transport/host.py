"""A host's :class:`.base.Transport` by name, for objects that outlive a connection.

A backend followed across calls (or rebuilt from the run registry) keeps a
:class:`HostTransport`, not a connection: each call uses the process's connection to
the host (:func:`.ssh.connect`: reopened after a drop, a fresh one in a forked child),
and paramiko is imported only when a command is first run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .base import Result, Transport
from .hosts import Host


class HostTransport(Transport):
    """Commands and files on ``host``, through the process's connection to it."""

    local = False

    def __init__(self, host: Host | str):
        self.host = Host.of(host)

    @property
    def where(self) -> str:
        return self.host.target

    @property
    def key(self) -> str:
        return self.connection().key

    def connection(self):
        """The process's open :class:`.ssh.Connection` to the host."""
        from . import ssh

        return ssh.connect(self.host)

    def run(self, argv: Sequence[str], *, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            idempotent: bool = True, secret_env: Mapping[str, str] | None = None) -> Result:
        return self.connection().run(argv, input=input, timeout=timeout, check=check,
                                     env=env, cwd=cwd, idempotent=idempotent,
                                     secret_env=secret_env)

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self.connection().put(path, data, mode)

    def get(self, path: str) -> bytes:
        return self.connection().get(path)

    def __repr__(self) -> str:
        return f"<HostTransport {self.host.target}>"
