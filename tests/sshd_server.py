"""A real OpenSSH server on 127.0.0.1 for the SSH tests.

It has its own config, host key, port and pid file in a state directory, an
unprivileged user ``pjhost`` that logs in with a key, and a client ``ssh_config`` with
the alias ``pjtest`` and a ``known_hosts`` line, so the tests go through real host-key
checking. Standard library only; needs root (user creation, sshd).

    python tests/sshd_server.py [--state DIR] start|stop|status

``ensure_server()`` is idempotent: it installs the packages with apt when missing,
creates what is missing, and (re)starts sshd only when it is not running or its config
changed. The state directory is ``/tmp/pyjoule-sshd`` (or ``$PYJOULE_TEST_SSHD_STATE``);
keep it short: an ssh ControlPath under it must stay below about 90 characters. The
facts behind each step (/run/sshd, the locked account, StrictModes, the uv TLS
setting) are in /work/shared/design/TEST-INFRA-ssh.md.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine_setup import apt_install, kill_and_wait, locked, missing_packages, processes
from machine_setup import own as _own
from machine_setup import run as _run
from machine_setup import write as _write

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
USER = "pjhost"
ALIAS = "pjtest"
DEFAULT_STATE = Path(os.environ.get("PYJOULE_TEST_SSHD_STATE", "/tmp/pyjoule-sshd"))
READY_TIMEOUT = 15.0
# apt package -> the programs it must provide
PACKAGES = {
    "openssh-server": [SSHD],
    "openssh-client": ["ssh", "ssh-keygen"],
    "rsync": ["rsync"],
}

SSHD_CONFIG = """\
Port {port}
ListenAddress {host}
HostKey {state}/ssh_host_ed25519_key
PidFile {state}/sshd.pid
AllowUsers {user}
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
MaxStartups 200:30:400
MaxSessions 100
ClientAliveInterval 0
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
# MaxStartups: the default 10:30:100 randomly drops parallel unauthenticated connects.
# MaxSessions: the default 10 caps concurrent sessions per (multiplexed) connection.

SSH_CONFIG = """\
Host {alias}
  HostName {host}
  Port {port}
  User {user}
  IdentityFile {state}/id_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile {state}/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
"""


@dataclass
class SshServer:
    """One test server; everything it needs lives in ``state``."""

    state: Path
    host: str
    port: int
    user: str
    alias: str
    ssh_config: Path
    known_hosts: Path
    identity: Path
    host_key_pub: Path
    home: Path
    notes: list[str] = field(default_factory=list)  # setup steps that were skipped

    @property
    def sshd_config(self) -> Path:
        return self.state / "sshd_config"

    @property
    def log(self) -> Path:
        return self.state / "sshd.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "sshd.pid"

    def pid(self) -> int | None:
        """The listener's pid, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is an sshd started with our config."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        # The listener's title is "sshd: /usr/sbin/sshd -f <cfg> -E <log> [listener] ...".
        # A zombie has an empty cmdline (PID 1 here reaps only now and then), and a
        # reused pid another one: neither is our server.
        return f" -f {self.sshd_config} ".encode() in cmdline.replace(b"\0", b" ")

    def start(self) -> None:
        """Start sshd (when not running) and wait until it accepts logins."""
        with locked(self.state / "lock"):
            self._start()

    def stop(self) -> None:
        """Stop the listener; connections already open stay up (see restart)."""
        with locked(self.state / "lock"):
            self._stop()

    def restart(self) -> None:
        """Stop and start with the same config, keys and port; live connections drop."""
        with locked(self.state / "lock"):
            self._stop(drop_connections=True)
            self._start()

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes; the listener stays up."""
        pid = self.pid()
        if pid is not None:
            kill_and_wait(_sshd_descendants(pid), signal.SIGKILL)

    def run(self, command: str, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess:
        """``command`` on the server through the real OpenSSH client."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), self.alias, command],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=check, timeout=timeout)

    def _start(self) -> None:
        if self.pid() is None:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation
            _run(SSHD, "-t", "-f", str(self.sshd_config))
            # Without -D it daemonizes (survives us), then binds and writes PidFile; a
            # failure from then on shows only in the log (-E: there is no syslog here).
            _run(SSHD, "-f", str(self.sshd_config), "-E", str(self.log))
        self._wait_ready()

    def _stop(self, drop_connections: bool = False) -> None:
        pid = self.pid()
        if pid is not None:
            if drop_connections:
                # a stopped listener accepts nothing new, so no connection slips past;
                # its children can only be found while it is their parent
                os.kill(pid, signal.SIGSTOP)
                self.drop_connections()
                kill_and_wait([pid], signal.SIGKILL)
            else:
                kill_and_wait([pid], signal.SIGTERM)
        self.pid_file.unlink(missing_ok=True)

    def _wait_ready(self) -> None:
        """Wait for the ssh banner, then check a real login."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not (self.pid() is not None and _banner(self.host, self.port)):
            # the daemon exists from the moment `sshd` returns until it fails
            if not any(self._is_ours(int(p)) for p in os.listdir("/proc") if p.isdigit()):
                raise RuntimeError(f"sshd exited\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not answer on {self.host}:{self.port} within "
                                   f"{READY_TIMEOUT:.0f} s\n{self._log_tail()}")
            time.sleep(0.1)
        login = self.run("true", check=False, timeout=READY_TIMEOUT)
        if login.returncode != 0:
            raise RuntimeError(f"ssh -F {self.ssh_config} {self.alias} true failed "
                               f"({login.returncode}): {login.stderr.strip()}\n"
                               f"{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = ["(no log)"]
        return f"--- last lines of {self.log}:\n" + "\n".join(tail)


def ensure_server(state: Path | None = None, options: dict[str, str] | None = None
                  ) -> SshServer:
    """The running test server, set up and started as needed; RuntimeError if impossible."""
    state = Path(state or DEFAULT_STATE)
    if os.geteuid() != 0:
        missing = missing_packages(PACKAGES)
        raise RuntimeError(
            f"the test sshd needs root (it creates the user {USER} and runs {SSHD}); "
            "run the SSH tests as root"
            + (f", and install {' '.join(missing)}" if missing else ""))
    if any(c.isspace() or c in "\"'%" for c in str(state)):
        raise RuntimeError(f"state directory {str(state)!r}: no spaces, quotes or % "
                           "(it goes unquoted into the ssh configs)")
    try:
        apt_install(PACKAGES)
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(state / "lock"):
            return _ensure(state, options or {})
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot set up the test sshd: {exc}") from exc


def _ensure(state: Path, options: dict[str, str]) -> SshServer:
    for key in ("ssh_host_ed25519_key", "id_ed25519"):
        if not ((state / key).exists() and (state / f"{key}.pub").exists()):
            for path in (state / key, state / f"{key}.pub"):
                path.unlink(missing_ok=True)
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pyjoule-test-{key}",
                 "-f", str(state / key))
    account = _ensure_user()
    server = _server(state)
    server.notes = _setup_home(account, (state / "id_ed25519.pub").read_text())
    running = server.pid() is not None
    # the port of the running server, else the one from before while it is free
    if not running and not (server.port and _port_free(server.host, server.port)):
        server.port = _free_port(server.host)
    _write(state / "port", f"{server.port}\n", 0o644)
    fields = dict(host=server.host, port=server.port, user=server.user, alias=server.alias,
                  state=state)
    changed = _write(server.sshd_config, _sshd_config(fields, options), 0o644)
    _write(server.ssh_config, SSH_CONFIG.format(**fields), 0o644)
    key_type, key = server.host_key_pub.read_text().split()[:2]
    _write(server.known_hosts, f"[{server.host}]:{server.port} {key_type} {key}\n", 0o644)
    if running and changed:
        server._stop(drop_connections=True)
    server._start()
    return server


def _sshd_config(fields: dict, options: dict[str, str]) -> str:
    """The config, with ``options`` replacing (or adding) keywords: sshd takes the
    first value of a keyword, so they cannot simply be appended."""
    lines, seen = [], set()
    for line in SSHD_CONFIG.format(**fields).splitlines():
        key = line.split(" ", 1)[0]
        if key in options:
            seen.add(key)
            line = f"{key} {options[key]}"
        lines.append(line)
    lines += [f"{k} {v}" for k, v in options.items() if k not in seen]
    return "\n".join(lines) + "\n"


def _server(state: Path) -> SshServer:
    """The server of ``state`` as recorded there (port 0: never started)."""
    try:
        port = int((state / "port").read_text())
    except (OSError, ValueError):
        port = 0
    try:
        home = Path(pwd.getpwnam(USER).pw_dir)
    except KeyError:  # not created yet
        home = Path("/home") / USER
    return SshServer(state=state, host=HOST, port=port, user=USER, alias=ALIAS,
                     ssh_config=state / "ssh_config", known_hosts=state / "known_hosts",
                     identity=state / "id_ed25519",
                     host_key_pub=state / "ssh_host_ed25519_key.pub", home=home)


# ------------------------------------------------------------------ machine setup
def _ensure_user() -> pwd.struct_passwd:
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        _run("useradd", "--create-home", "--shell", "/bin/bash", USER)
        account = pwd.getpwnam(USER)
    # useradd leaves the account locked ("!" in /etc/shadow); with UsePAM no, sshd then
    # refuses even key logins ("account is locked")
    entry = next((line.split(":") for line in Path("/etc/shadow").read_text().splitlines()
                  if line.startswith(f"{USER}:")), [USER, "!"])
    if entry[1].startswith("!"):
        _run("usermod", "-p", "*", USER)
    return account


def _setup_home(account: pwd.struct_passwd, client_pub: str) -> list[str]:
    """Home, authorized key, uv and its config for the remote user; returns notes."""
    home = Path(account.pw_dir)
    # StrictModes refuses a home or ~/.ssh that others can write to
    for folder, mode in [(home, 0o755), (home / ".ssh", 0o700), (home / ".local", 0o755),
                         (home / ".local" / "bin", 0o755), (home / ".config", 0o755),
                         (home / ".config" / "uv", 0o755)]:
        folder.mkdir(exist_ok=True)
        _own(folder, account, mode)
    # add the key instead of replacing the file: servers with other state directories
    # log in as the same user
    keys = home / ".ssh" / "authorized_keys"
    lines = keys.read_text().splitlines() if keys.exists() else []
    if client_pub.strip() not in lines:
        lines.append(client_pub.strip())
    _write(keys, "".join(f"{line}\n" for line in lines), 0o600, account)
    # ssh sessions do not get SSL_CERT_FILE, and PyPI is reached through a TLS proxy here
    _write(home / ".config" / "uv" / "uv.toml", "system-certs = true\n", 0o644, account)
    uv = _local_uv()
    if uv is None:
        return ["no uv binary found here (pip install uv): "
                "~pjhost/.local/bin/uv not installed"]
    # where uv's own installer puts it (not on the PATH of `ssh host cmd`)
    _install_file(uv, home / ".local" / "bin" / "uv", 0o755, account)
    return []


def _local_uv() -> Path | None:
    """A uv executable to copy to the remote user: the ``uv`` package's, or on PATH."""
    candidates = []
    try:
        import uv

        candidates.append(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    # a venv without the uv package: the base interpreter's (pip install uv there)
    candidates += [shutil.which("uv"), Path(sys.base_prefix, "bin", "uv")]
    for candidate in candidates:
        # uv on PATH may be a launcher script (a pyenv shim) that is useless elsewhere
        if candidate and _is_elf(Path(candidate)):
            return Path(candidate).resolve()
    return None


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


# ------------------------------------------------------------------ small helpers
def _install_file(source: Path, dest: Path, mode: int, account: pwd.struct_passwd) -> None:
    """Copy ``source`` to ``dest`` unless size and mtime already match."""
    have = dest.stat() if dest.exists() else None
    want = source.stat()
    if have is None or (have.st_size, have.st_mtime_ns) != (want.st_size, want.st_mtime_ns):
        # copy next to it and rename: a uv running from dest keeps its old file
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copy2(source, tmp)
        _own(tmp, account, mode)
        os.replace(tmp, dest)
    _own(dest, account, mode)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # as sshd binds: a port with connections in TIME_WAIT counts as free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process."""
    return {pid: (ppid, name) for pid, ppid, name, _ in processes()}


def _sshd_descendants(pid: int) -> list[int]:
    """The sshd processes below the listener ``pid``: one privileged monitor per
    connection and its unprivileged child. The user's commands are left alone; they see
    the connection end as they would on a real network failure."""
    table = _proc_table()
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, (ppid, _) in table.items() if ppid == parent]
        todo += children
        found += [p for p in children if table[p][1] == "sshd"]
    return found


# ------------------------------------------------------------------ command line
def _describe(server: SshServer) -> str:
    lines = [f"sshd {server.host}:{server.port} pid {server.pid()}",
             f"state       {server.state}",
             f"ssh_config  {server.ssh_config}",
             f"known_hosts {server.known_hosts}",
             f"identity    {server.identity}",
             f"log         {server.log}",
             f"try:        ssh -F {server.ssh_config} {server.alias}"]
    return "\n".join(lines + [f"note: {note}" for note in server.notes])


# ------------------------------------------------------- a server with a host CA
@dataclass
class CaServer:
    """A second server whose host key is certified by a host CA, and which trusts a
    user CA: ``host_ca.pub`` goes on an ``@cert-authority`` line, keys signed by
    ``user_ca`` log in as ``pjhost`` without being in authorized_keys."""

    server: SshServer
    host_ca_pub: Path
    user_ca: Path

    def sign_user_key(self, pub: Path, validity: str = "-5m:+1d") -> Path:
        """``<key>-cert.pub`` for ``pub``, signed by the user CA for pjhost."""
        _run("ssh-keygen", "-q", "-s", str(self.user_ca), "-I", "pj-test-user", "-n", USER,
             "-V", validity, str(pub))
        return pub.with_name(pub.name[:-len(".pub")] + "-cert.pub")


def ensure_ca_server(state: Path, port: int) -> CaServer:
    """The CA server of ``state`` on ``port`` (when free), set up and started as
    needed. Its host certificate names 127.0.0.1 and ``pjca``."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(state / "ca-lock"):
        host_key = state / "ssh_host_ed25519_key"
        for key in ("host_ca", "user_ca", "ssh_host_ed25519_key"):
            if not (state / key).exists():
                (state / f"{key}.pub").unlink(missing_ok=True)
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pj-test-{key}",
                     "-f", str(state / key))
        cert = state / "ssh_host_ed25519_key-cert.pub"
        if not cert.exists():
            _run("ssh-keygen", "-q", "-s", str(state / "host_ca"), "-h", "-I", "pj-test-host",
                 "-n", f"{HOST},pjca", "-V", "-5m:+520w", f"{host_key}.pub")
        if not (state / "port").exists():
            _write(state / "port", f"{port}\n", 0o644)
    server = ensure_server(state, {"HostCertificate": str(cert),
                                   "TrustedUserCAKeys": str(state / "user_ca.pub")})
    return CaServer(server, state / "host_ca.pub", state / "user_ca")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE,
                        help=f"state directory (default {DEFAULT_STATE})")
    args = parser.parse_args(argv)
    if args.action == "start":
        try:
            print(_describe(ensure_server(args.state)))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    server = _server(args.state)
    if server.pid() is None:
        print(f"not running (state {args.state})")
        return 1 if args.action == "status" else 0
    if args.action == "stop":
        with locked(server.state / "lock"):
            server._stop(drop_connections=True)
        print(f"stopped (state {args.state})")
        return 0
    print(_describe(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
