"""An in-memory :class:`.base.Transport` for unit tests of command building.

It runs nothing: it records every command (:attr:`FakeTransport.commands`, argument
lists as given), answers each with the first scripted result whose text occurs in the
command (:meth:`FakeTransport.answer`; unscripted: exit 127, as a missing program),
and keeps files in a dict. Tests of what runs for real use the real transports.

>>> t = FakeTransport()
>>> t.answer("sbatch", stdout=b"Submitted batch job 42\\n")
>>> t.run(["sbatch", "--parsable", "job.sh"]).text
'Submitted batch job 42\\n'
>>> t.commands
[['sbatch', '--parsable', 'job.sh']]
>>> t.run(["squeue"], check=False).returncode
127
>>> t.put("/runs/r1/job.sh", b"#!/bin/bash")
>>> t.get("/runs/r1/job.sh"), oct(t.modes["/runs/r1/job.sh"])
(b'#!/bin/bash', '0o600')
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence

from .base import Result, Transport, remote_error


class FakeTransport(Transport):
    """Records commands, returns scripted results, keeps files in :attr:`files`."""

    def __init__(self, where: str = "fakehost", *, local: bool = False):
        self._where, self.local = where, local
        self.commands: list[list[str]] = []
        self.calls: list[dict] = []  # each command's keywords (input, env, cwd...)
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self._answers: list[tuple[str, Callable[[list[str]], Result]]] = []

    @property
    def where(self) -> str:
        return self._where

    @property
    def key(self) -> str:
        return self._where

    def answer(self, contains: str, stdout: bytes = b"", returncode: int = 0,
               stderr: bytes = b"", *, result: Callable[[list[str]], Result] | None = None
               ) -> None:
        """Answer commands whose shell text contains ``contains`` (first match wins):
        with the given output, or with ``result(argv)``."""
        if result is None:
            def result(argv: list[str]) -> Result:
                return Result(shlex.join(argv), returncode, stdout, stderr)
        self._answers.append((contains, result))

    def run(self, argv: Sequence[str], *, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            idempotent: bool = True, secret_env: Mapping[str, str] | None = None) -> Result:
        words = [str(a) for a in argv]
        self.commands.append(words)
        self.calls.append({"input": input, "env": dict(env or {}), "cwd": cwd,
                           "secret_env": dict(secret_env or {}), "timeout": timeout})
        text = shlex.join(words)
        for contains, result in self._answers:
            if contains in text:
                res = result(words)
                break
        else:
            res = Result(text, 127, b"", f"{words[0]}: not scripted".encode())
        if check and res.returncode != 0:
            raise remote_error(self.where, res)
        return res

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self.files[path], self.modes[path] = bytes(data), mode

    def get(self, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None
