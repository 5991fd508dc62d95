"""A real OpenSSH server on 127.0.0.1 for the tests: its own config, host key, an
unprivileged user ``pjhost`` with an authorized key, a client ``ssh_config`` alias and
a ``known_hosts`` file, so the real host-key path is exercised.

    python tests/sshd_server.py start|stop|status

``ensure_server()`` is idempotent: it installs openssh-server with apt when root and
missing, creates what is missing, and (re)starts sshd only when it is not running or
its config changed. See ../shared/design/TEST-INFRA-ssh.md for the facts behind each
step (/run/sshd, the locked account, StrictModes, the uv TLS setting).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

USER = "pjhost"
ALIAS = "pjtest"
DEFAULT_STATE = Path(os.environ.get("PYJOULE_TEST_SSHD_STATE", "/tmp/pyjoule-sshd"))
SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
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

    def pid(self) -> int | None:
        try:
            pid = int((self.state / "sshd.pid").read_text().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: self.pid() is None, 5, "sshd to stop")
        self.drop_connections()

    def start(self) -> None:
        if self.pid() is None:
            _start_sshd(self.state)
        _wait(lambda: self.run("true", check=False).returncode == 0, 15, "sshd to accept",
              log=self.state / "sshd.log")

    def restart(self) -> None:
        """Stop and start again (same keys, port and config): live connections drop."""
        self.stop()
        self.start()

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes of the user; the listener stays."""
        subprocess.run(["pkill", "-KILL", "-f", f"^sshd: {self.user}"], check=False)
        time.sleep(0.05)

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """``command`` through the real OpenSSH client."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), self.alias, command],
                              capture_output=True, text=True, check=check, timeout=30)


def _wait(ok, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


def _sh(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")


def _install() -> None:
    if os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen"):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"{SSHD} is missing: install openssh-server and openssh-client "
                           "(apt-get install openssh-server), or run the tests as root")
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    _sh("apt-get", *lock, "update", "-q")
    _sh("apt-get", "install", "-y", "-q", *lock, "openssh-server", "openssh-client")


def _user_home() -> Path:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        _sh("useradd", "--create-home", "--shell", "/bin/bash", USER)
        entry = pwd.getpwnam(USER)
    _sh("usermod", "-p", "*", USER)  # unlock: with UsePAM no, a locked account is refused
    home = Path(entry.pw_dir)
    home.mkdir(exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o755)
    return home


def _own(path: Path, mode: int) -> None:
    entry = pwd.getpwnam(USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)


def _local_uv() -> str | None:
    try:
        import uv  # the uv package of the project's environment

        return uv.find_uv_bin()
    except Exception:  # noqa: BLE001 - no uv package: look on PATH
        return shutil.which("uv")


def _setup_home(home: Path, client_pub: str) -> None:
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    _own(ssh_dir, 0o700)
    keys = ssh_dir / "authorized_keys"
    if not keys.exists() or client_pub not in keys.read_text():
        with open(keys, "a") as fh:
            fh.write(client_pub + "\n")
    _own(keys, 0o600)
    # uv where its installer puts it, with the machine's CA certificates (ssh sessions
    # do not get SSL_CERT_FILE, and PyPI is reached through a TLS proxy here)
    uv = _local_uv()
    for folder in (home / ".local", home / ".local" / "bin", home / ".config",
                   home / ".config" / "uv"):
        folder.mkdir(exist_ok=True)
        _own(folder, 0o755)
    if uv:
        target = home / ".local" / "bin" / "uv"
        if not target.exists() or target.stat().st_size != os.path.getsize(uv):
            shutil.copyfile(uv, target)
        _own(target, 0o755)
    toml = home / ".config" / "uv" / "uv.toml"
    toml.write_text("system-certs = true\n")
    _own(toml, 0o644)


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
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

SSH_CONFIG = """\
Host {alias}
  HostName 127.0.0.1
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


def _start_sshd(state: Path) -> None:
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    config = str(state / "sshd_config")
    _sh(SSHD, "-t", "-f", config)
    _sh(SSHD, "-f", config, "-E", str(state / "sshd.log"))  # daemonizes, writes PidFile


def _server(state: Path, port: int, home: Path) -> SshServer:
    return SshServer(state=state, host="127.0.0.1", port=port, user=USER, alias=ALIAS,
                     ssh_config=state / "ssh_config", known_hosts=state / "known_hosts",
                     identity=state / "id_ed25519",
                     host_key_pub=state / "ssh_host_ed25519_key.pub", home=home)


def ensure_server(state: Path | None = None) -> SshServer:
    """The running test server, set up and started as needed."""
    state = Path(state or DEFAULT_STATE)
    try:
        _install()
        if os.geteuid() != 0:
            raise RuntimeError("the test sshd needs root (a dedicated user, /run/sshd)")
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        for key in ("ssh_host_ed25519_key", "id_ed25519"):
            if not (state / key).exists():
                _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pyjoule-{key}",
                    "-f", str(state / key))
        home = _user_home()
        _setup_home(home, (state / "id_ed25519.pub").read_text().strip())
        port_file = state / "port"
        server = _server(state, int(port_file.read_text()) if port_file.exists() else 0,
                         home)
        running = server.pid() is not None
        if not running:
            server.port = _free_port(server.port or None)
            port_file.write_text(str(server.port))
        fields = dict(port=server.port, state=state, user=USER, alias=ALIAS)
        sshd_config = SSHD_CONFIG.format(**fields)
        changed = not (state / "sshd_config").exists() or \
            (state / "sshd_config").read_text() != sshd_config
        (state / "sshd_config").write_text(sshd_config)
        (state / "ssh_config").write_text(SSH_CONFIG.format(**fields))
        host_pub = " ".join(server.host_key_pub.read_text().split()[:2])
        server.known_hosts.write_text(f"[127.0.0.1]:{server.port} {host_pub}\n")
        if running and changed:
            server.stop()
        server.start()
        return server
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot start the test sshd: {exc}") from exc


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "status"
    if action == "start":
        server = ensure_server()
        print(f"sshd on 127.0.0.1:{server.port} (pid {server.pid()}); "
              f"ssh -F {server.ssh_config} {server.alias}")
    elif action == "stop":
        _server(DEFAULT_STATE, 0, Path("/")).stop()
        print("stopped")
    elif action == "status":
        pid = _server(DEFAULT_STATE, 0, Path("/")).pid()
        print(f"running (pid {pid})" if pid else "not running")
        return 0 if pid else 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
