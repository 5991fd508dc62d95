"""Logging in: the agent's keys and the identity files (with their certificates),
then a password or one-time code when a person is there to type it.

A mixin of :class:`.ssh.Connection` (it uses ``self.endpoint`` and keeps the answers
given this process in ``self._secrets``), kept apart so each module stays small.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys

from .._errors import AuthenticationError
from . import dial

log = logging.getLogger("pyjoule")
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


def interactive() -> bool:
    """Whether a person can answer a prompt: a terminal, or a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


class Authenticating:
    """Connection's login steps."""

    def _authenticate(self, transport) -> None:
        import paramiko

        ep = self.endpoint
        tried: list[str] = []
        allowed: list[str] | None = None
        for label, key in self._keys():
            tried.append(label)
            try:
                transport.auth_publickey(ep.user, key)
                return
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                break
            except paramiko.AuthenticationException:
                continue
            except paramiko.SSHException as exc:
                raise AuthenticationError(f"authentication with {ep} failed: {exc}") from exc
        if transport.is_authenticated():
            return
        if allowed is None:
            allowed = _allowed_methods(transport, ep.user)
        prompts = [m for m in ("keyboard-interactive", "password") if m in allowed]
        if prompts and not ep.batch_mode and interactive():
            try:
                if prompts[0] == "keyboard-interactive":
                    transport.auth_interactive(ep.user, self._answer)
                else:
                    transport.auth_password(ep.user, self._ask(f"{ep} password: "))
                return
            except paramiko.AuthenticationException as exc:
                self._secrets.clear()
                raise AuthenticationError(f"{ep} refused the password or code: {exc}") \
                    from exc
        keys = ", ".join(tried) or "none found"
        if prompts:
            raise AuthenticationError(
                f"{ep} asks for a password or code ({', '.join(prompts)}) and there is no "
                f"terminal or notebook to type it in (keys tried: {keys}). Set up key "
                f"login (ssh-copy-id {ep.alias}), or connect from a terminal or notebook.")
        raise AuthenticationError(
            f"{ep} refused every key offered (tried: {keys}). Check User and IdentityFile "
            f"in {ep.config_path}, and that the public key is in the host's "
            f"~/.ssh/authorized_keys.")

    def _keys(self):
        """(label, key) pairs to offer: the agent's, then the identity files."""
        import paramiko

        ep = self.endpoint
        if ep.use_agent and not ep.identities_only:
            try:
                for key in dial.agent(ep.identity_agent).get_keys():
                    yield f"agent key {key.get_name()}", key
            except (paramiko.SSHException, OSError) as exc:
                log.info("ssh agent %s not usable: %s", ep.identity_agent or "", exc)
        files = ep.identity_files or tuple(os.path.expanduser(p) for p in DEFAULT_KEYS)
        for path in files:
            if not os.path.exists(path):
                continue
            try:
                key = paramiko.PKey.from_path(path)
                cert = dial.certificate_for(path, key, ep.certificate_files)
                if cert:
                    yield f"{path} with certificate {cert}", key
                    key = paramiko.PKey.from_path(path)  # and the bare key after it
                yield path, key
            except paramiko.PasswordRequiredException:
                if ep.batch_mode or not interactive():
                    log.info("skipping %s: it needs a passphrase and there is no "
                             "terminal", path)
                    continue
                try:
                    yield path, paramiko.PKey.from_path(
                        path, self._ask(f"passphrase for {path}: "))
                except paramiko.SSHException as exc:
                    raise AuthenticationError(f"cannot unlock {path}: {exc}") from exc
            except (paramiko.SSHException, OSError, ValueError) as exc:
                log.info("skipping %s: %s", path, exc)

    def _ask(self, prompt: str, echo: bool = False) -> str:
        if prompt not in self._secrets:
            answer = input(prompt) if echo else getpass.getpass(prompt)
            self._secrets[prompt] = answer
        return self._secrets[prompt]

    def _answer(self, title, instructions, prompts):
        # the server's title and instructions are part of the first prompt shown
        header = "\n".join(t for t in (title, instructions) if t)
        # one-time codes must be asked every time; passwords once per process
        answers = []
        for i, (prompt, echo) in enumerate(prompts):
            if i == 0 and header:
                prompt = f"{header}\n{prompt}"
            answer = self._ask(prompt, echo)
            if "code" in prompt.lower() or "token" in prompt.lower():
                self._secrets.pop(prompt, None)
            answers.append(answer)
        return answers


def _allowed_methods(transport, user: str) -> list[str]:
    import paramiko

    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as exc:
        return list(exc.allowed_types)
    except paramiko.SSHException:
        pass
    return []
