"""One SSH connection per host per process, on paramiko.

:func:`connect` returns the process's :class:`Connection` for a host, opening it on
first use: one TCP socket (``TCP_NODELAY`` set: without it every command waits ~40 ms
for a delayed ACK), one paramiko ``Transport``, every command and the SFTP session
multiplexed as channels on it. Host keys are checked against known_hosts, with the
error saying how to fix an unknown or changed key. A dropped connection is reopened,
with back-off, by the next call.

Every remote command goes through :meth:`Connection.run`, which takes an argument
list and quotes each argument (``shlex.join``): no parameter value or path ever
reaches the remote shell unquoted. Its environment travels on stdin, never in an
argv, and it runs under ``umask 077`` (:mod:`.shell`).
"""

from __future__ import annotations

import getpass
import logging
import os
import select
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from .._errors import AuthenticationError, HostError, HostKeyError, RemoteCommandError
from .hosts import Endpoint, Host, resolve
from .channel import exec_nowait
from .local import Result
from .shell import build_command, env_input, mask  # noqa: F401 - build_command: tests

log = logging.getLogger("pyjoule")
# paramiko logs the errors of its thread with tracebacks; with no logging set up they
# would reach Python's last-resort stderr handler next to our own error. A NullHandler
# stops that; records still propagate to the handlers a user configures.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

KEEPALIVE_S = 30
RECONNECT_DELAYS_S = (0.2, 0.5, 1, 2, 4, 8, 15)  # about 30 s of trying in all
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


class ConnectionLost(HostError):
    """The connection dropped while a command ran (it may or may not have finished)."""


def interactive() -> bool:
    """Whether a person can answer a prompt: a terminal, or a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


class Connection:
    """An open (or reopenable) SSH connection to one host."""

    def __init__(self, host: Host, endpoint: Endpoint, via: "Connection | None" = None):
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

    def __repr__(self) -> str:
        state = "open" if self.is_active() else "closed"
        return f"<pyjoule ssh {self.endpoint} ({state})>"

    # ---------------------------------------------------------------- opening
    def is_active(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    def ensure(self) -> "Connection":
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
        known = _load_known_hosts(ep.known_hosts)
        sock = self._dial()
        transport = paramiko.Transport(sock)
        entry = known.lookup(ep.key_name)
        if entry:  # ask for the key types we can check, as OpenSSH does
            opts = transport.get_security_options()
            preferred = [t for t in opts.key_types if t in entry.keys()]
            if preferred:
                opts.key_types = preferred + [t for t in opts.key_types if t not in preferred]
        # our own timeout below speaks first, not paramiko's banner timeout (15 s)
        transport.banner_timeout = ep.connect_timeout + 1
        try:
            transport.start_client(timeout=ep.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise HostError(f"SSH handshake with {ep} failed: {exc or type(exc).__name__}. "
                            "Is an SSH server listening there?") from exc
        if not transport.completion_event.is_set():  # start_client returned at timeout
            transport.close()
            raise HostError(
                f"no SSH answer from {ep} within {ep.connect_timeout:g} s (ConnectTimeout): "
                "it accepted the connection but sent no SSH greeting. Check that the port "
                "is the SSH server's (not a proxy or another service) and that the host is "
                f"not overloaded; on a slow link raise ConnectTimeout in {ep.config_path}.")
        try:
            self._verify_host_key(transport.get_remote_server_key(), entry)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(KEEPALIVE_S)
        self.transport, self.sock, self._sftp, self._home = transport, sock, None, None
        self.connects += 1
        log.debug("connected to %s", ep)

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
            except Exception as exc:  # noqa: BLE001 - paramiko's channel errors vary
                raise HostError(f"cannot reach {ep} through the jump host "
                                f"{via.endpoint}: {exc}") from exc
        try:
            sock = socket.create_connection((ep.hostname, ep.port), timeout=ep.connect_timeout)
        except socket.timeout as exc:
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

    def _verify_host_key(self, key, entry) -> None:
        ep = self.endpoint
        name = ep.key_name
        files = ", ".join(ep.known_hosts) or "(none)"
        if entry is not None and key.get_name() in entry:
            if entry[key.get_name()] == key:
                return
            # ssh-keygen -R edits ~/.ssh/known_hosts unless told another file with -f
            found = [p for p in ep.known_hosts if os.path.exists(p)
                     and _load_known_hosts([p]).lookup(name)] or list(ep.known_hosts[:1])
            default = os.path.expanduser("~/.ssh/known_hosts")
            fixes = " and ".join(
                f"`ssh-keygen -R {shlex.quote(name)}"
                + ("" if os.path.abspath(p) == default else f" -f {shlex.quote(p)}") + "`"
                for p in found) or f"`ssh-keygen -R {shlex.quote(name)}`"
            raise HostKeyError(
                f"the host key of {name} has CHANGED since it was recorded in "
                f"{', '.join(found) or files} (now {key.get_name()} {key.fingerprint}). "
                f"This may be a reinstalled host or an attack. If you trust the new key, "
                f"remove the old one with {fixes} and connect again.")
        if ep.strict_host_keys == "yes":
            raise HostKeyError(
                f"{name} is not in known_hosts ({files}), so its identity cannot be "
                f"checked. Connect once with `ssh {ep.alias}` and accept the key "
                f"(fingerprint {key.get_name()} {key.fingerprint}), or pass "
                f"pj.Host({self.host.target!r}, accept_new_host_key=True).")
        path = ep.known_hosts[0] if ep.known_hosts else os.path.expanduser(
            "~/.ssh/known_hosts")
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
        log.warning("recorded the new host key of %s (%s %s) in %s", name, key.get_name(),
                    key.fingerprint, path)

    # ------------------------------------------------------------ authenticating
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
                for key in paramiko.Agent().get_keys():
                    yield f"agent key {key.get_name()}", key
            except paramiko.SSHException:
                pass
        files = ep.identity_files or tuple(os.path.expanduser(p) for p in DEFAULT_KEYS)
        for path in files:
            if not os.path.exists(path):
                continue
            try:
                yield path, paramiko.PKey.from_path(path)
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
        shown = build_command(argv, cwd=cwd, shown_env=full_env)
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


def remote_error(endpoint: Endpoint, result: Result, what: str = "command") -> \
        RemoteCommandError:
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


def _allowed_methods(transport, user: str) -> list[str]:
    import paramiko

    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as exc:
        return list(exc.allowed_types)
    except paramiko.SSHException:
        pass
    return []


def _load_known_hosts(files: Sequence[str]):
    import paramiko

    keys = paramiko.HostKeys()
    for path in files:
        if os.path.exists(path):
            try:
                keys.load(path)
            except (OSError, paramiko.SSHException) as exc:
                log.warning("cannot read known_hosts file %s: %s", path, exc)
            except Exception as exc:  # noqa: BLE001 - a corrupt key: UnicodeDecodeError...
                # paramiko skips some bad lines, not these; find the line to name it
                raise HostKeyError(
                    f"cannot read the known_hosts file {_bad_line(path)}: "
                    f"{type(exc).__name__}: {exc}. Fix or remove that line, "
                    "then connect again.") from exc
    return keys


def _bad_line(path: str) -> str:
    """``path, line N`` for the first line paramiko cannot read (else ``path``)."""
    import paramiko

    with open(path, errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
            except paramiko.SSHException:
                continue
            except Exception:  # noqa: BLE001 - what made load() fail
                return f"{path}, line {lineno}"
    return path


# --------------------------------------------------------------- per process
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
    """Close every connection of this process."""
    with _registry_lock:
        for conn in _connections.values():
            conn.close()
        _connections.clear()
        _by_host.clear()


# ------------------------------------------------------------------- check
_CHECK_SCRIPT = r"""
import json, os, shutil, subprocess, sys
workdir = os.path.expanduser(sys.argv[1])
probe = workdir
while not os.path.exists(probe):
    probe = os.path.dirname(probe) or "/"
uv = sys.argv[2] or shutil.which("uv") or os.path.expanduser("~/.local/bin/uv")
uv_version = None
if os.path.exists(uv):
    try:
        uv_version = subprocess.run([uv, "--version"], capture_output=True, text=True,
                                    timeout=20).stdout.strip()
    except Exception:
        uv_version = None
try:
    cpus = len(os.sched_getaffinity(0))
except AttributeError:
    cpus = os.cpu_count()
print(json.dumps({
    "python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable,
    "uv": uv if uv_version else None, "uv_version": uv_version,
    "free_bytes": shutil.disk_usage(probe).free, "workdir": workdir,
    "cpus": cpus, "sbatch": shutil.which("sbatch"),
}))
"""


@dataclass
class HostReport:
    """What :meth:`Host.check` found; ``problems`` each say what to do."""

    host: str
    rtt_ms: float
    facts: dict
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        f = self.facts
        free = f.get("free_bytes")
        lines = [
            f"host        {self.host}",
            f"round trip  {self.rtt_ms:.1f} ms (median of 5 commands on one connection)",
            f"python      {f.get('python') or '-'} ({f.get('executable') or 'not found'})",
            f"uv          {f.get('uv_version') or 'not found'}"
            + (f" ({f['uv']})" if f.get("uv") else ""),
            f"workdir     {f.get('workdir', '-')}"
            + (f", {free / 2**30:.1f} GiB free" if free is not None else ""),
            f"cpus        {f.get('cpus', '-')}",
            f"slurm       {f.get('sbatch') or 'no sbatch on PATH'}",
        ]
        if f.get("slurm_limits"):
            lines.append(f"            {f['slurm_limits']}")
        lines += [f"PROBLEM     {p}" for p in self.problems] or ["ok"]
        return "\n".join(lines)


def check_host(host: Host | str, min_free_bytes: int = 1 << 30) -> HostReport:
    """Connect to ``host`` and report what pyjoule needs of it."""
    host = Host.of(host)
    conn = connect(host)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        conn.run(["true"])
        times.append((time.perf_counter() - t0) * 1000)
    rtt = sorted(times)[2]
    problems: list[str] = []
    want = host.python or "%d.%d" % sys.version_info[:2]
    result = conn.run(["python3", "-c", _CHECK_SCRIPT, host.workdir, host.uv or ""],
                      check=False, timeout=60)
    facts: dict = {}
    if result.returncode == 127:
        problems.append(f"no python3 on the host's PATH: install Python {want} there "
                        "(or load it in pj.Host(setup=[...]))")
    elif result.returncode != 0:
        problems.append(str(remote_error(conn.endpoint, result, "the host check")))
    else:
        import json

        facts = json.loads(result.stdout.decode().strip().splitlines()[-1])
        have = ".".join(facts["python"].split(".")[:2])
        if have != want:
            problems.append(
                f"python3 on the host is {facts['python']}, the client runs {want}: "
                f"cloudpickle needs the same minor version. Install Python {want} "
                f"there; uv can provide it (uv python install {want}).")
        if not facts.get("uv_version"):
            fix = ("pyjoule installs it into ~/.local/bin on first use" if host.install_uv
                   else "install it (pip install --user uv) or pass pj.Host(uv=PATH)")
            problems.append(f"uv not found on the host: {fix}")
        if facts.get("sbatch"):
            facts["slurm_limits"] = _slurm_limits(conn)
        if facts.get("free_bytes", min_free_bytes) < min_free_bytes:
            problems.append(f"only {facts['free_bytes'] / 2**20:.0f} MiB free in "
                            f"{facts['workdir']}: free space or set pj.Host(workdir=...)")
    return HostReport(str(conn.endpoint), rtt, facts, problems)


def _slurm_limits(conn: Connection) -> str:
    """One line on the host's SLURM: version, array and job limits, partitions."""
    from .._slurm import parse_facts

    res = conn.run(["sh", "-c", "sbatch --version; echo @@; scontrol show config; echo @@; "
                    "sinfo -h -o '%P|%C'"], check=False, timeout=60)
    parts = res.text.split("@@\n")
    if res.returncode != 0 or len(parts) != 3:
        return "(scontrol/sinfo did not answer: is the controller up?)"
    facts = parse_facts("", parts[1], parts[2])
    partitions = ", ".join(f"{name}{'*' if name == facts.default_partition else ''} "
                           f"({cpus} CPUs)" for name, cpus in facts.partitions.items())
    return (f"{parts[0].strip()}; MaxArraySize {facts.max_array_size}, MaxJobCount "
            f"{facts.max_job_count}; accounting {'yes' if facts.accounting else 'no'}; "
            f"partitions {partitions or '-'}")
