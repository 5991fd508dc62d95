"""The pieces of opening an SSH connection that the ssh config decides: the
ProxyCommand as socket, the agent IdentityAgent names, a key's certificate
(CertificateFile), and which host key types to ask for.

Kept out of :mod:`.ssh` (which runs the connection) so each stays small.
"""

from __future__ import annotations

import logging
import os
import select
import socket

from .._errors import HostError
from .hosts import Endpoint

log = logging.getLogger("pyjoule")


def prefer_key_types(transport, plain, cas) -> None:
    """Ask for the host key types we can check, as OpenSSH does: certificates first
    when a @cert-authority line matches (paramiko does not ask for them by itself),
    then the types recorded for the host."""
    opts = transport.get_security_options()
    known = {e.key.get_name() for e in plain}
    certs = [f"{t}-cert-v01@openssh.com" for t in opts.key_types] if cas else []
    supported = set(transport._key_info)  # the types paramiko can load
    wanted = [t for t in certs if t in supported] + [t for t in opts.key_types if t in known]
    if wanted:
        opts.key_types = wanted + [t for t in opts.key_types if t not in wanted]


def proxy_command(ep: Endpoint):
    """A ProxyCommand as the connection's socket (paramiko.ProxyCommand)."""
    import paramiko

    try:
        proxy = paramiko.ProxyCommand(ep.proxy_command)
    except (OSError, ValueError) as exc:
        raise HostError(f"cannot start the ProxyCommand of {ep.alias} "
                        f"({ep.proxy_command}): {exc}. Fix it in {ep.config_path}.") from exc
    proxy.settimeout(ep.connect_timeout)
    return proxy


def proxy_stderr(sock) -> str | None:
    """What a ProxyCommand that failed wrote to stderr (None: not a ProxyCommand)."""
    process = getattr(sock, "process", None)
    if process is None:
        return None
    try:
        process.wait(timeout=2)
    except Exception:  # noqa: BLE001 - still running: read what is there
        pass
    chunks = []
    while select.select([process.stderr], [], [], 0.2)[0]:
        data = os.read(process.stderr.fileno(), 1 << 16)
        if not data:
            break
        chunks.append(data)
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    code = process.poll()
    return (text + (f" (exit code {code})" if code is not None else "")).strip()


def agent(path: str | None):
    """The ssh agent: ``$SSH_AUTH_SOCK``'s, or the socket IdentityAgent names."""
    import paramiko

    if path is None:
        return paramiko.Agent()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    agent = paramiko.Agent.__new__(paramiko.Agent)
    paramiko.agent.AgentSSH.__init__(agent)
    agent._connect(sock)
    return agent


def certificate_for(path: str, key, certificate_files) -> str | None:
    """Load into ``key`` the certificate for it: a CertificateFile whose key is
    ``key``, or ``<path>-cert.pub`` beside it (as ssh does); returns its path."""
    import paramiko

    for cert in (*certificate_files, f"{path}-cert.pub"):
        if not os.path.exists(cert):
            continue
        try:
            key.load_certificate(cert)
            return cert
        except (ValueError, OSError, paramiko.SSHException) as exc:
            log.debug("certificate %s not for %s: %s", cert, path, exc)
    return None
