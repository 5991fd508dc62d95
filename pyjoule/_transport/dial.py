"""The pieces of opening an SSH connection that the ssh config decides: the
ProxyCommand as socket, the agent IdentityAgent names, a key's certificate
(CertificateFile), and which host key types to ask for.

Kept out of :mod:`.ssh` (which runs the connection) so each stays small.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile

from .._errors import HostError
from .hosts import Endpoint

log = logging.getLogger("pyjoule")
# id(socket) -> (ProxyCommand process, its stderr): the live proxies of this
# process's connections (not a cache), each removed by close_proxy
_proxies: dict[int, tuple] = {}


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


def proxy_command(ep: Endpoint) -> socket.socket:
    """The connection's socket for a ProxyCommand: one end of a socket pair, the
    other the command's stdin and stdout, run by ``/bin/sh -c "exec ..."`` as ssh
    does. Not paramiko.ProxyCommand: it splits the command without a shell (no
    pipes, no quoting as ssh_config allows) and never sees its EOF (a command that
    exits at once leaves the handshake waiting for ConnectTimeout). Its stderr
    goes to an unlinked private file: shown when the connection fails, and never a
    full pipe that would stop the command while it works."""
    ours, theirs = socket.socketpair()
    err = tempfile.TemporaryFile()  # noqa: SIM115 - the proxy's stderr, closed with the socket
    try:
        process = subprocess.Popen(["/bin/sh", "-c", f"exec {ep.proxy_command}"],
                                   stdin=theirs, stdout=theirs, stderr=err,
                                   start_new_session=True)
    except OSError as exc:
        ours.close()
        err.close()
        raise HostError(f"cannot start the ProxyCommand of {ep.alias} "
                        f"({ep.proxy_command}): {exc}. Fix it in {ep.config_path}.") from exc
    finally:
        theirs.close()
    _proxies[id(ours)] = (process, err)
    return ours


def proxy_stderr(sock) -> str | None:
    """What the ProxyCommand of ``sock`` wrote to stderr, with its exit code once
    it ended (None: ``sock`` is not a ProxyCommand's)."""
    found = _proxies.get(id(sock))
    if found is None:
        return None
    process, err = found
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    err.seek(0)
    text = err.read(1 << 16).decode("utf-8", "replace").strip()
    code = process.poll()
    return (text + (f" (exit code {code})" if code is not None else "")).strip()


def close_proxy(sock) -> None:
    """Close ``sock`` and end its ProxyCommand (when it has one)."""
    if sock is None:
        return
    found = _proxies.pop(id(sock), None)
    sock.close()
    if found is not None:
        process, err = found
        err.close()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
