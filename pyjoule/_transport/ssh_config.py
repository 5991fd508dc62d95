"""The effective ssh configuration of a host, as OpenSSH itself reads it.

Where the OpenSSH client is installed (nearly every laptop and login node), ``ssh -G``
prints the configuration ``ssh`` would use for a host after ``Include``, ``Match``,
canonicalisation, the system-wide ``/etc/ssh/ssh_config`` and the defaults: asking it
is the only way to read a config exactly as the user's ``ssh`` does. Without it,
paramiko's parser is the fallback, and a warning (once per process) names what it
cannot honour.

Options the user set that pyjoule cannot honour (``ControlMaster``,
``GSSAPIAuthentication``, port forwards...) are named once per host in a warning: the
connection goes without them, but not silently. "Set by the user" is told from
"default" by a second ``ssh -G`` without the user's config (``ssh -G`` prints every
option, defaults included). Each host is looked up once per process.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

from .. import _caches
from .._errors import HostError

log = logging.getLogger("pyjoule")

# options pyjoule does not carry out: a value differing from the default is named
UNSUPPORTED = {k.lower(): k for k in (
    "ControlMaster", "ControlPath", "ControlPersist", "GSSAPIAuthentication",
    "GSSAPIDelegateCredentials", "GSSAPIKeyExchange", "ForwardAgent", "ForwardX11",
    "LocalForward", "RemoteForward", "DynamicForward", "PKCS11Provider",
    "SecurityKeyProvider", "PermitLocalCommand", "LocalCommand", "RemoteCommand",
    "RequestTTY", "SessionType", "ForkAfterAuthentication", "Tunnel", "SendEnv", "SetEnv",
    "AddKeysToAgent", "KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms",
    "PubkeyAcceptedAlgorithms", "HostbasedAuthentication", "PreferredAuthentications",
    "VerifyHostKeyDNS", "BindAddress", "BindInterface", "AddressFamily",
    "KnownHostsCommand", "RevokedHostKeys", "ProxyUseFdpass", "ConnectionAttempts",
    "Compression")}
# what the paramiko fallback reads differently from ssh (named in its warning)
FALLBACK_LIMITS = ("Match exec/canonical/final/localnetwork", "CanonicalizeHostname",
                   "the system-wide /etc/ssh/ssh_config", "OpenSSH's defaults")
DEFAULTS = {
    "port": ["22"], "stricthostkeychecking": ["ask"], "connecttimeout": ["none"],
    "userknownhostsfile": ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"],
    "globalknownhostsfile": ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"],
    "serveraliveinterval": ["0"], "identitiesonly": ["no"], "batchmode": ["no"],
    "hashknownhosts": ["no"],
}
MULTI = {"identityfile", "certificatefile", "localforward", "remoteforward",
         "dynamicforward", "sendenv", "setenv"}

# what `ssh -G` (or the fallback parser) said per (alias, config and its mtime, user,
# port, ...): a cache of this process (an edited config is read again), see reset()
_cache: dict[tuple, dict[str, list[str]]] = {}
_lock = threading.Lock()
_warned_fallback = False  # the "no OpenSSH client" warning: once per process


def reset() -> None:
    """Forget every resolved config (the next :func:`effective` asks ``ssh -G``
    again) and warn again about a missing OpenSSH client."""
    global _warned_fallback
    with _lock:
        _cache.clear()
        _warned_fallback = False


_caches.declare(__name__, "_cache", _cache, reset=reset)
_caches.declare(__name__, "_warned_fallback", _warned_fallback, reset=reset)


def effective(alias: str, config: Path, user: str | None, port: int | None,
              default_config: bool) -> dict[str, list[str]]:
    """The options for ``alias`` (lower-case keyword -> its values) as ``ssh`` would
    use them; ``user``/``port`` from the target win, as on ssh's command line.
    ``default_config``: ``config`` is ``~/.ssh/config`` (then ``ssh`` reads the
    system-wide config too, so it is not passed with ``-F``)."""
    ssh = shutil.which("ssh")
    try:
        stamp = os.stat(config).st_mtime_ns
    except OSError:
        stamp = None
    key = (alias, str(config), user, port, default_config, ssh, stamp)
    with _lock:
        if key not in _cache:
            if ssh:
                _cache[key] = _from_ssh(ssh, alias, config, user, port, default_config)
            else:
                _cache[key] = _from_paramiko(alias, config, user, port)
        return _cache[key]


# --------------------------------------------------------------- ssh -G
def _start(ssh: str, alias: str, config: str | None, user, port):
    argv = [ssh, "-G"] + (["-F", config] if config else [])
    argv += (["-l", user] if user else []) + (["-p", str(port)] if port else [])
    argv += ["--", alias]
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        raise HostError(f"cannot read the ssh config with `{' '.join(argv)}`: {exc}") \
            from exc


def _read(proc, alias: str) -> dict[str, list[str]]:
    """The options ``ssh -G`` printed (lower-case keyword -> values)."""
    shown = " ".join(proc.args)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise HostError(f"`{shown}` did not answer within 30 s (a Match exec that "
                        "hangs?)") from exc
    if proc.returncode != 0:
        err = err.decode(errors="replace").strip()
        raise HostError(f"ssh cannot read the config for {alias!r} (`{shown}` failed): "
                        f"{err}. Fix the line it names and try again.")
    options: dict[str, list[str]] = {}
    for line in out.decode(errors="replace").splitlines():
        word, _, value = line.partition(" ")
        if not word:
            continue
        word = word.lower()
        if word in MULTI:
            options.setdefault(word, []).append(value)
        elif word in ("userknownhostsfile", "globalknownhostsfile"):
            options[word] = value.split()
        else:
            options.setdefault(word, [value])
    return options


def _from_ssh(ssh, alias, config: Path, user, port, default_config) -> dict:
    system = "/etc/ssh/ssh_config"
    # the baseline: the same lookup without the user's own config (both run at once)
    base_config = system if default_config and os.path.exists(system) else os.devnull
    procs = [_start(ssh, alias, None if default_config else str(config), user, port),
             _start(ssh, alias, base_config, user, port)]
    try:
        options, baseline = _read(procs[0], alias), _read(procs[1], alias)
    finally:
        for proc in procs:  # the second is never read when the first fails
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    _warn_unsupported(alias, config, {k: v for k, v in options.items()
                                      if k in UNSUPPORTED and baseline.get(k) != v})
    return options


# ---------------------------------------------------------- paramiko fallback
def _from_paramiko(alias, config: Path, user, port) -> dict:
    global _warned_fallback
    import paramiko

    if not _warned_fallback:
        _warned_fallback = True
        log.warning("no OpenSSH client (`ssh`) on PATH: reading %s with paramiko's parser, "
                    "which does not honour %s. Install the OpenSSH client so that pyjoule "
                    "reads the config exactly as ssh does.", config,
                    ", ".join(FALLBACK_LIMITS))
    text = _expand_includes(config, depth=0) if config.exists() else ""
    try:
        found = paramiko.SSHConfig.from_text(text).lookup(alias)
    except Exception as exc:
        raise HostError(f"cannot read the ssh config {config}: {exc}") from exc
    options = {k: list(v) for k, v in DEFAULTS.items()}
    options["hostname"] = [alias]
    for word, value in found.items():
        if word in MULTI and isinstance(value, list):
            options[word] = list(value)
        elif word in ("userknownhostsfile", "globalknownhostsfile"):
            options[word] = str(value).split()
        else:
            options[word] = [str(value)]
    if user:
        options["user"] = [user]
    if port:
        options["port"] = [str(port)]
    _warn_unsupported(alias, config, {k: v for k, v in options.items()
                                      if k in UNSUPPORTED and k not in DEFAULTS
                                      and " ".join(v).lower() not in ("no", "false", "none")})
    return options


def _expand_includes(path: Path, depth: int) -> str:
    """The text of ``path`` with ``Include`` lines expanded in place (paramiko's
    parser does not know ``Include``)."""
    if depth > 16:
        raise HostError(f"ssh config: Include nested too deeply at {path}")
    out = []
    for line in path.read_text().splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].lower() == "include":
            for pattern in words[1].split():
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):  # relative to ~/.ssh, as OpenSSH does
                    pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
                for name in sorted(glob.glob(pattern)):
                    out.append(_expand_includes(Path(name), depth + 1))
        else:
            out.append(line)
    return "\n".join(out)


def _warn_unsupported(alias: str, config: Path, found: dict[str, list[str]]) -> None:
    if found:
        shown = ", ".join(f"{UNSUPPORTED[k]} {' '.join(v)}" for k, v in sorted(found.items()))
        log.warning("ssh config (%s) for %s sets options pyjoule does not support; "
                    "its connections go without them: %s", config, alias, shown)


# ------------------------------------------------------------------ tokens
def expand_tokens(text: str, *, hostname: str, port: int, user: str, alias: str) -> str:
    """OpenSSH's ``%h %p %r %n %u %d %%`` in ``text`` (ProxyCommand, IdentityFile...)."""
    import getpass

    values = {"h": hostname, "p": str(port), "r": user, "n": alias,
              "u": getpass.getuser(), "d": os.path.expanduser("~"), "%": "%"}
    out, i = [], 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text) and text[i + 1] in values:
            out.append(values[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
