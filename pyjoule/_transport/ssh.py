"""One SSH connection per host per process, on paramiko.

:func:`connect` returns the process's :class:`Connection` for a host, opening it on
first use: one TCP socket (``TCP_NODELAY`` set: without it every command waits ~40 ms
for a delayed ACK), one paramiko ``Transport``, every command and the SFTP session
multiplexed as channels on it (or a ProxyJump channel, or a ProxyCommand: :mod:`.dial`).
The host is resolved as ``ssh`` resolves it (:mod:`.ssh_config`), its key or
certificate checked against known_hosts as OpenSSH does (:mod:`.known_hosts`), the
login done by :mod:`.auth`. A dropped connection is reopened, with back-off, by the
next call.

Every remote command goes through :meth:`Connection.run`, which takes an argument
list and quotes each argument (``shlex.join``): no parameter value or path ever
reaches the remote shell unquoted. Its environment travels on stdin, never in an
argv, and it runs under ``umask 077`` (:mod:`.shell`).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence

from .. import _caches
from .._errors import AuthenticationError, HostError, HostKeyError, RemoteCommandError
from . import dial, known_hosts
from .auth import Authenticating, interactive  # noqa: F401 - interactive: callers
from .base import ConnectionLost, Result, Transport, remote_error
from .channel import exec_nowait
from .hosts import Endpoint, Host, resolve
from .shell import build_command, env_input, mask

log = logging.getLogger("pyjoule")
# paramiko logs the errors of its thread with tracebacks; with no logging set up they
# would reach Python's last-resort stderr handler next to our own error. A NullHandler
# stops that; records still propagate to the handlers a user configures.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

KEEPALIVE_S = 30
RECONNECT_DELAYS_S = (0.2, 0.5, 1, 2, 4, 8, 15)  # about 30 s of trying in all


class Connection(Authenticating, Transport):
    """An open (or reopenable) SSH connection to one host: a :class:`.base.Transport`."""

    def __init__(self, host: Host, endpoint: Endpoint, via: Connection | None = None):
        self.host, self.endpoint = host, endpoint
        self.transport = None
        self.sock: socket.socket | None = None
        self._via = via  # the jump host's connection, for ProxyJump
        self._sftp = None
        self._home: str | None = None
        self._lock = threading.RLock()
        self._secrets: dict[str, str] = {}  # answers given this process (2FA: once)
        self.connects = 0
        self.commands = 0

    @property
    def where(self) -> str:
        return self.host.target

    @property
    def key(self) -> str:
        return self.endpoint.alias

    def __repr__(self) -> str:
        state = "open" if self.is_active() else "closed"
        return f"<pyjoule ssh {self.endpoint} ({state})>"

    # ---------------------------------------------------------------- opening
    def is_active(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    def ensure(self) -> Connection:
        """Open the connection if it is not open; reopen it with back-off if it was
        open and dropped."""
        with self._lock:
            if self.is_active():
                return self
            if self.connects == 0:
                self._open()
                return self
            self._reopen()
            return self

    def _reopen(self) -> None:
        log.info("connection to %s lost; reconnecting", self.endpoint)
        self.close()
        last: Exception | None = None
        for delay in (0, *RECONNECT_DELAYS_S):
            time.sleep(delay)
            try:
                self._open()
                return
            except (HostKeyError, AuthenticationError):
                raise
            except HostError as exc:
                last = exc
                log.debug("reconnect to %s failed: %s", self.endpoint, exc)
        raise HostError(f"lost the connection to {self.endpoint} and could not reconnect "
                        f"for {sum(RECONNECT_DELAYS_S):.0f} s: {last}. The remote work "
                        "goes on; re-call or pj.attach(run_id) once the host is back.")

    def _open(self) -> None:
        import paramiko

        ep = self.endpoint
        entries = known_hosts.load(ep.known_hosts, ep.key_name)
        plain, cas = known_hosts.for_host(entries, ep.key_name)
        sock = self._dial()
        transport = paramiko.Transport(sock)
        dial.prefer_key_types(transport, plain, cas)
        # our own timeout below speaks first, not paramiko's banner timeout (15 s)
        transport.banner_timeout = ep.connect_timeout + 1
        try:
            transport.start_client(timeout=ep.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._proxy_failed(sock, transport, exc)
            raise HostError(f"SSH handshake with {ep} failed: {exc or type(exc).__name__}. "
                            "Is an SSH server listening there?") from exc
        if not transport.completion_event.is_set():  # start_client returned at timeout
            self._proxy_failed(sock, transport, "no SSH greeting")
            raise HostError(
                f"no SSH answer from {ep} within {ep.connect_timeout:g} s (ConnectTimeout): "
                "it accepted the connection but sent no SSH greeting. Check that the port "
                "is the SSH server's (not a proxy or another service) and that the host is "
                f"not overloaded; on a slow link raise ConnectTimeout in {ep.config_path}.")
        try:
            known_hosts.verify(ep, self.host.target, transport.get_remote_server_key(),
                               entries, plain, cas)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            dial.close_proxy(sock)
            raise
        transport.set_keepalive(ep.server_alive_interval or KEEPALIVE_S)
        self.transport, self.sock, self._sftp, self._home = transport, sock, None, None
        self.connects += 1
        log.debug("connected to %s", ep)

    def _proxy_failed(self, sock, transport, why) -> None:
        """Close a connection whose handshake failed; when it came through a
        ProxyCommand, raise the error that shows the command's stderr."""
        ep = self.endpoint
        stderr = dial.proxy_stderr(sock)
        transport.close()
        dial.close_proxy(sock)
        if stderr is not None:
            raise HostError(
                f"the ProxyCommand of {ep.alias} ({ep.proxy_command}) gave no SSH "
                f"connection to {ep} ({why or type(why).__name__}); its stderr: "
                f"{stderr or '(empty)'}. Check the ProxyCommand in {ep.config_path}: "
                f"`ssh {ep.alias}` must work.")

    def _dial(self):
        ep = self.endpoint
        via = self._via
        if via is None and ep.proxy_jump:
            # ProxyJump a,b: reach a, then b through a, then the target through b
            for hop in ep.proxy_jump:
                via = _jump(hop, self.host, via)
            self._via = via
        if via is not None:
            via.ensure()
            try:
                return via.transport.open_channel(
                    "direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0),
                    timeout=ep.connect_timeout)
            except Exception as exc:
                raise HostError(f"cannot reach {ep} through the jump host "
                                f"{via.endpoint}: {exc}") from exc
        if ep.proxy_command:
            return dial.proxy_command(ep)
        try:
            sock = socket.create_connection((ep.hostname, ep.port), timeout=ep.connect_timeout)
        except TimeoutError as exc:
            raise HostError(f"no answer from {ep} within {ep.connect_timeout:g} s "
                            "(ConnectTimeout): is the host up and the port right?") from exc
        except socket.gaierror as exc:
            raise HostError(f"cannot connect to {ep}: the name {ep.hostname!r} cannot be "
                            f"resolved (check HostName in {ep.config_path}, and the VPN or "
                            "DNS if the name is right)") from exc
        except OSError as exc:
            raise HostError(f"cannot connect to {ep} ({exc.strerror or exc}): is an SSH "
                            "server running there, and is the port right?") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    # ---------------------------------------------------------------- commands
    def run(self, argv: Sequence[str], *, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, cwd: str | None = None,
            idempotent: bool = True, secret_env: Mapping[str, str] | None = None) -> Result:
        """Run ``argv`` on the host; every argument is quoted.

        ``cwd`` is applied with a quoted ``cd``. ``env`` and ``secret_env`` (the
        user's ``pj.Host(env=...)``, whose values must not show anywhere) reach the
        command through its stdin, never its argv (``ps`` on the host shows argv to
        every user); logs and errors show their names with ``***``, and the values of
        ``secret_env`` are masked in the stderr an error quotes. Every command runs
        under ``umask 077``: what it creates on the host is private. With ``check``, a
        non-zero exit raises :class:`RemoteCommandError` showing the command, the exit
        code and the last lines of stderr. If the connection drops meanwhile, an
        ``idempotent`` command is run again once reconnected.
        """
        full_env = {**(env or {}), **(secret_env or {})}
        cwd = cwd and self.expand(cwd)
        command = build_command(argv, env=full_env, cwd=cwd)
        if full_env:
            if input is not None:
                raise ValueError("a command given env= reads it from stdin: it cannot "
                                 "take input= too")
            input = env_input(full_env)
        shown = build_command(argv, cwd=cwd, shown_env=full_env, secret=secret_env or ())
        for attempt in (1, 2):
            try:
                result = self._exec(command, input, timeout, shown)
                break
            except ConnectionLost:
                if attempt == 2 or not idempotent:
                    raise
        if secret_env:
            result.stderr = mask(result.stderr, secret_env.values())
        if check and result.returncode != 0:
            raise remote_error(self.endpoint, result)
        return result

    def _exec(self, command: str, input: bytes | None, timeout: float | None,
              shown: str | None = None) -> Result:
        """Run the shell text ``command``; ``shown`` is what logs and errors say of
        it (the same without the values of its environment)."""
        import paramiko

        shown = shown or command
        self.ensure()
        log.debug("ssh %s: %s", self.endpoint.alias,
                  shown if len(shown) < 300 else shown[:300] + " ...")
        try:
            chan = self.transport.open_session(timeout=self.endpoint.connect_timeout)
            exec_nowait(chan, command)  # with its stdin: one round trip, not two
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.endpoint} dropped: {exc}") from exc
        self.commands += 1
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = [], []

        def drain() -> bool:
            got = False
            while chan.recv_ready():
                out.append(chan.recv(1 << 20))
                got = True
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(1 << 20))
                got = True
            return got

        try:
            view = memoryview(input or b"")
            while view:  # feed stdin while reading: the output must not fill its window
                view = view[chan.send(view[:1 << 16]):]
                drain()
            chan.shutdown_write()
            while True:
                got = drain()
                # sshd may send the exit status before the last output: the end is
                # the output's EOF *and* the exit status (or a closed channel)
                if (chan.eof_received and chan.exit_status_ready()) or chan.closed \
                        or not self.transport.is_active():
                    drain()
                    break
                if not got:
                    wait = 1.0 if deadline is None else deadline - time.monotonic()
                    if wait <= 0:
                        raise RemoteCommandError(
                            f"command on {self.endpoint} timed out after {timeout:g} s: "
                            f"{shown}", shown)
                    select.select([chan], [], [], min(wait, 1.0))
            code = chan.recv_exit_status() if chan.exit_status_ready() else -1
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.endpoint} dropped while running "
                                 f"{shown}: {exc}") from exc
        finally:
            chan.close()
        if code == -1:
            self.close()
            raise ConnectionLost(f"connection to {self.endpoint} dropped while running "
                                 f"{shown}")
        return Result(shown, code, b"".join(out), b"".join(err))

    def stream(self, argv: Sequence[str], *, input: bytes | None = None):
        """Start ``argv`` (quoted, under ``umask 077``), send ``input`` and return its
        :class:`.channel.Stream`: stdout is read as it comes, stdin stays open."""
        import paramiko

        from .channel import Stream

        shown = build_command(argv)
        self.ensure()
        log.debug("ssh %s (stream): %s", self.endpoint.alias,
                  shown if len(shown) < 300 else shown[:300] + " ...")
        try:
            chan = self.transport.open_session(timeout=self.endpoint.connect_timeout)
            exec_nowait(chan, shown)
            if input:
                chan.sendall(input)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise ConnectionLost(f"connection to {self.endpoint} dropped: {exc}") from exc
        self.commands += 1
        return Stream(chan)

    def sftp(self):
        """The SFTP session on this connection (opened once, reopened after a drop)."""
        import paramiko

        with self._lock:
            self.ensure()
            if self._sftp is None or self._sftp.get_channel().closed:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            return self._sftp

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        # through a command, not SFTP: under umask 077 the file is private from its
        # creation (an SFTP server creates it under its own umask)
        self.run(["sh", "-c", 'cat > "$1" && chmod "$2" "$1"', "sh", self.expand(path),
                  format(mode, "o")], input=data)

    def get(self, path: str) -> bytes:
        with self.sftp().open(self.expand(path), "rb") as fh:
            return fh.read()

    def home(self) -> str:
        """The remote user's home directory (asked once per connection)."""
        if self._home is None:
            self._home = self.sftp().normalize(".")
        return self._home

    def expand(self, path: str) -> str:
        """``~`` and ``~/...`` as absolute paths on the host (quoting keeps a shell
        from expanding them)."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def close(self) -> None:
        with self._lock:
            for thing in (self._sftp, self.transport):
                if thing is not None:
                    try:
                        thing.close()
                    except Exception:  # noqa: BLE001 - closing a broken connection
                        pass
            self._sftp = self.transport = None
            dial.close_proxy(self.sock)
            self.sock = None


# --------------------------------------------------------------- per process
# The process's connections, a cache: close_all() empties it, a forked child starts
# its own (connect() sees the pid change).
_connections: dict[tuple, Connection] = {}  # (endpoint, accept_new) -> connection
_by_host: dict[Host, Connection] = {}  # the same, by the Host asked for
_registry_lock = threading.Lock()
_owner_pid = os.getpid()


def connect(host: Host | str) -> Connection:
    """The open connection of this process to ``host`` (opened on first use)."""
    global _owner_pid
    host = Host.of(host)
    with _registry_lock:
        if os.getpid() != _owner_pid:  # a forked child must not share the parent's
            _connections.clear()
            _by_host.clear()
            _owner_pid = os.getpid()
        conn = _by_host.get(host)  # every poll of a run asks: no config parse then
        if conn is None:
            endpoint = resolve(host)
            key = (endpoint, host.accept_new_host_key)
            conn = _connections.get(key)
            if conn is None:
                conn = _connections[key] = Connection(host, endpoint)
            _by_host[host] = conn
    return conn.ensure()


def _jump(hop: str, host: Host, via: Connection | None) -> Connection:
    """The connection to a ProxyJump hop: the process's shared one for the first
    hop, a private one through ``via`` for later hops of a chain."""
    jump = Host(hop, ssh_config=host.ssh_config,
                accept_new_host_key=host.accept_new_host_key)
    if via is None:
        return connect(jump)
    return Connection(jump, resolve(jump, check_dns=False), via=via).ensure()


def close_all() -> None:
    """Close every connection of this process: the reset of the connection cache
    (the next :func:`connect` opens a new one)."""
    with _registry_lock:
        for conn in _connections.values():
            conn.close()
        _connections.clear()
        _by_host.clear()


_caches.declare(__name__, "_connections", _connections, reset=close_all)
_caches.declare(__name__, "_by_host", _by_host, reset=close_all)
_caches.declare(__name__, "_owner_pid", _owner_pid,
                reset=lambda: globals().update(_owner_pid=os.getpid()))
