"""``pj.Host``: where and how to run on another machine, and resolving it against
``~/.ssh/config`` into the endpoint a connection dials.

Nothing here opens a connection; :mod:`._transport.ssh` does. Importing this module
loads no paramiko (``import pyjoule`` stays light); the ssh config is read as ``ssh``
reads it by :mod:`.ssh_config`, when a host is first resolved.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import HostError, OptionError
from .._options import UNSET

DEFAULT_CONNECT_TIMEOUT_S = 10.0  # no pj.Host(connect_timeout=), no ConnectTimeout


def default_ssh_config() -> Path:
    """``$PYJOULE_SSH_CONFIG``, else ``~/.ssh/config`` (which may not exist)."""
    from .._config import config

    return Path(config.get("ssh_config") or "~/.ssh/config").expanduser()


@dataclass(frozen=True)
class Host:
    """A machine to run on over SSH.

    Parameters
    ----------
    target : str
        An alias of ``~/.ssh/config``, or ``[user@]name[:port]``. Values given here
        take precedence over the config's, as on the ``ssh`` command line.
    workdir : str
        Where pyjoule keeps projects, environments and runs on the host.
    python : str, optional
        The Python there: a version (``"3.11"``; default: the client's
        ``major.minor``, which cloudpickle needs on both sides) or the path of an
        interpreter on the host (``"/opt/envs/sim/bin/python"``). For a version, the
        first interpreter of it found after the ``setup`` lines, on ``PATH`` as
        ``python3.X``, or among uv's Pythons is used; failing those, uv installs one
        (``uv python install``: set ``UV_PYTHON_INSTALL_MIRROR`` in ``env`` where
        GitHub is blocked).
    environment : {"auto", "existing"}
        ``"auto"``: pyjoule builds an environment from the project's ``uv.lock`` /
        ``pyproject.toml``, ``requirements.txt`` or ``environment.yml`` (with the
        host's conda, mamba or micromamba), keyed by that file and the Python minor,
        once. ``"existing"``: use the interpreter ``python`` names as it is, with no
        uv at all (pyjoule, cloudpickle and threadpoolctl are added on
        ``PYTHONPATH``); a package the function needs that it lacks is reported
        before any work is queued.
    setup : sequence of str
        Shell lines run before the worker starts (``module load ...``), and before
        pyjoule looks for a Python or conda there. These are the user's own shell;
        everything pyjoule adds to a command is quoted.
    env : mapping
        Environment variables for the worker. The values are kept off disk on this
        machine (the run registry keeps the names) and out of every command line on
        the host: they reach it through stdin, into a private (0600) file in the run's
        directory there, which the worker (and a retry) reads.
    uv : str, optional
        Path of uv on the host (default: found on ``PATH`` or in ``~/.local/bin``).
    install_uv : bool
        Install uv into the user's space on the host when it is missing.
    exclude : sequence of str
        Extra gitignore-style patterns kept out of the project sync.
    accept_new_host_key : bool
        Trust and record a host key not yet in known_hosts (never a changed one).
    ssh_config : str or Path, optional
        The ssh config to read (default ``$PYJOULE_SSH_CONFIG`` or ``~/.ssh/config``).
    connect_timeout : float, optional
        Seconds to wait for the TCP connection and the SSH handshake. Given here, it
        beats the ssh config's ``ConnectTimeout`` (as ``ssh -o`` would); not given,
        the config's applies, else 10 s.
    """

    target: str
    workdir: str = "~/.cache/pyjoule"
    python: str | None = None
    setup: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    uv: str | None = None
    install_uv: bool = True
    exclude: Sequence[str] = ()
    accept_new_host_key: bool = False
    ssh_config: str | os.PathLike[str] | None = None
    connect_timeout: float = UNSET  # UNSET: the ssh config's, else DEFAULT_CONNECT_TIMEOUT_S
    environment: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise OptionError(f"pj.Host needs an ssh config alias or 'user@name:port', "
                              f"got {self.target!r}")
        parse_target(self.target)  # a malformed one fails here, at decoration
        if isinstance(self.setup, str):  # one line given as a string: keep it whole
            object.__setattr__(self, "setup", (self.setup,))
        object.__setattr__(self, "setup", tuple(self.setup))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "env", dict(self.env))
        for key in self.env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise OptionError(f"pj.Host env: {key!r} is not a valid variable name")
        _check_python(self.python, self.environment)

    def __repr__(self) -> str:
        """Every field, but the env's values as ``***``: a repr ends up in logs,
        tracebacks and notebooks, and those values are often tokens."""
        shown = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "env":
                value = dict.fromkeys(value, "***")
            shown.append(f"{name}={value!r}")
        return f"Host({', '.join(shown)})"

    def __hash__(self) -> int:
        return hash((self.target, self.workdir, self.python, self.environment, self.setup,
                     tuple(sorted(self.env.items())), self.uv, self.ssh_config))

    @classmethod
    def of(cls, host: Host | str) -> Host:
        """``host`` as a ``pj.Host`` (a string is a target with default options)."""
        if isinstance(host, Host):
            return host
        if isinstance(host, str):
            return cls(host)
        raise OptionError(f"host must be a string (ssh alias or 'user@name:port') or "
                          f"pj.Host(...) (or a list of them: several hosts), got "
                          f"{type(host).__name__}")

    def check(self) -> Any:
        """Connect and report round-trip time, Python, uv, disk, CPUs and SLURM."""
        from .check import check_host

        return check_host(self)


class Hosts(tuple["Host", ...]):
    """Several hosts for one sweep (``host=["ws1", "ws2"]``): a tuple of distinct
    ``pj.Host``; ``target`` names them all, as the run registry shows a run's host."""

    __slots__ = ()

    @classmethod
    def of(cls, hosts: Any) -> Host | Hosts:
        """``hosts`` (a list or tuple of host specs) as one ``pj.Host`` when it names
        one, else as ``Hosts``; an empty list or a host named twice is refused."""
        items = [Host.of(h) for h in hosts]
        if not items:
            raise OptionError("expected at least one host; host=None runs on this machine")
        seen: set[tuple[str, str]] = set()
        for h in items:
            key = (h.target, h.workdir)
            if key in seen:
                raise OptionError(f"expected distinct hosts, but {h.target!r} (workdir "
                                  f"{h.workdir!r}) is named twice")
            seen.add(key)
        return items[0] if len(items) == 1 else cls(items)

    @property
    def target(self) -> str:
        return ", ".join(h.target for h in self)

    def __repr__(self) -> str:
        return f"Hosts({list(self)!r})"


ENVIRONMENTS = ("auto", "existing")


def _check_python(python: Any, environment: Any) -> None:
    """``python`` is a version ``3.X`` or an interpreter's path; ``environment`` one of
    :data:`ENVIRONMENTS`, ``"existing"`` only with a path."""
    if environment not in ENVIRONMENTS:
        raise OptionError(f"pj.Host(environment={environment!r}): expected 'auto' (pyjoule "
                          "builds the project's environment) or 'existing' (with "
                          "python='/path/on/host/bin/python': use that one as it is)")
    is_path = isinstance(python, str) and ("/" in python or python.startswith("~"))
    if python is not None and not is_path and not (
            isinstance(python, str) and re.fullmatch(r"\d+\.\d+", python)):
        raise OptionError(f"pj.Host(python={python!r}): expected a version such as '3.11' "
                          "or the path of an interpreter on the host")
    if environment == "existing" and not is_path:
        raise OptionError(
            "pj.Host(environment='existing') uses an interpreter already on the host as "
            "it is: name it with python='/path/on/host/bin/python' (e.g. the bin/python "
            "of your venv or conda environment there)")


@dataclass(frozen=True)
class Endpoint:
    """What to dial, as resolved from a ``pj.Host`` and the ssh config."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    use_agent: bool
    known_hosts: tuple[str, ...]
    host_key_alias: str | None
    strict_host_keys: str  # "yes", "accept-new" or "no"
    proxy_jump: tuple[str, ...]
    connect_timeout: float
    batch_mode: bool
    config_path: str
    proxy_command: str | None = None
    certificate_files: tuple[str, ...] = ()
    identity_agent: str | None = None  # a socket path; None: $SSH_AUTH_SOCK
    server_alive_interval: int = 0
    hash_known_hosts: bool = False
    record_to: str | None = None  # where a newly accepted key goes (UserKnownHostsFile)

    @property
    def key_name(self) -> str:
        """The name the host's key is recorded under in known_hosts."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


_TARGET = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


def parse_target(target: str) -> tuple[str | None, str, int | None]:
    """``[user@]name[:port]`` (``[::1]:22`` for IPv6) -> (user, name, port)."""
    m = _TARGET.match(target.strip())
    if not m:
        raise OptionError(f"cannot read host {target!r}: expected an ssh config alias or "
                          "'user@name:port'")
    port = int(m["port"]) if m["port"] else None
    return m["user"], m["host"].strip("[]"), port


def _connect_timeout(host: Host, configured: str) -> float:
    """The explicit ``pj.Host(connect_timeout=)`` first (as ``ssh -o`` beats the
    config), then the config's ``ConnectTimeout``, then the default."""
    if host.connect_timeout is not UNSET:
        return float(host.connect_timeout)
    if configured.lower() != "none":
        return float(configured)
    return DEFAULT_CONNECT_TIMEOUT_S


def resolve(host: Host, check_dns: bool = True) -> Endpoint:
    """The endpoint for ``host``: its target read against the ssh config as ``ssh``
    reads it (:mod:`.ssh_config`)."""
    from . import ssh_config

    config_path = Path(host.ssh_config).expanduser() if host.ssh_config \
        else default_ssh_config()
    user, name, port = parse_target(host.target)
    default = config_path == Path("~/.ssh/config").expanduser()
    opts = ssh_config.effective(name, config_path, user, port, default)

    def one(key: str, fallback: str = "") -> str:
        return (opts.get(key) or [fallback])[0]

    hostname = one("hostname", name)
    port = int(one("port", "22"))
    user = one("user") or _local_user()

    def path(text: str) -> str:
        return os.path.expanduser(ssh_config.expand_tokens(
            text, hostname=hostname, port=port, user=user, alias=name))

    user_files = [path(f) for f in opts.get("userknownhostsfile", [])
                  if f.lower() not in ("/dev/null", "none")]
    files = user_files + [path(f) for f in opts.get("globalknownhostsfile", [])
                          if f.lower() not in ("/dev/null", "none")]
    strict = one("stricthostkeychecking", "ask").lower()
    strict = {"no": "no", "off": "no", "false": "no",
              "accept-new": "accept-new"}.get(strict, "yes")
    if host.accept_new_host_key and strict == "yes":
        strict = "accept-new"
    jump = one("proxyjump")
    proxy = one("proxycommand")
    agent = one("identityagent")
    timeout = one("connecttimeout", "none")
    alias_key = one("hostkeyalias")
    endpoint = Endpoint(
        alias=name, hostname=hostname, port=port, user=user,
        identity_files=tuple(path(f) for f in opts.get("identityfile", [])),
        identities_only=one("identitiesonly", "no").lower() in ("yes", "true"),
        use_agent=agent.lower() != "none",
        known_hosts=tuple(files),
        host_key_alias=alias_key if alias_key.lower() not in ("", "none") else None,
        strict_host_keys=strict,
        proxy_jump=tuple(j for j in jump.split(",") if j and jump.lower() != "none"),
        connect_timeout=_connect_timeout(host, timeout),
        batch_mode=one("batchmode", "no").lower() in ("yes", "true"),
        config_path=str(config_path),
        proxy_command=ssh_config.expand_tokens(proxy, hostname=hostname, port=port,
                                               user=user, alias=name)
        if proxy and proxy.lower() != "none" else None,
        certificate_files=tuple(path(f) for f in opts.get("certificatefile", [])),
        record_to=user_files[0] if user_files else None,
        identity_agent=os.path.expandvars(path(agent)) if agent and agent.lower() not in
        ("none", "ssh_auth_sock", "$ssh_auth_sock") else None,
        server_alive_interval=int(one("serveraliveinterval", "0") or 0),
        hash_known_hosts=one("hashknownhosts", "no").lower() in ("yes", "true"),
    )
    if check_dns and hostname == name and not endpoint.proxy_jump \
            and not endpoint.proxy_command and not _resolvable(hostname):
        raise HostError(
            f"unknown host {name!r}: no 'Host {name}' entry in {config_path} and no "
            f"such DNS name. Add it to the ssh config (HostName, User, Port, "
            f"IdentityFile) or give 'user@name:port'.")
    return endpoint


def _resolvable(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def _local_user() -> str:
    import getpass

    return getpass.getuser()
