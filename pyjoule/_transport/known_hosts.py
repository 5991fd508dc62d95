"""known_hosts as OpenSSH reads it: plain and hashed entries, ``@cert-authority``
and ``@revoked`` lines, host certificates.

paramiko's own ``HostKeys`` knows neither marker (a line with one makes it fail or be
misread), and paramiko checks no host certificate: it can take one in the key exchange
(its key classes load OpenSSH certificates) but does not ask for one and never checks
who signed it. So this module reads the files itself and checks a certificate as
``ssh`` does: signed by a key of a matching ``@cert-authority`` line, a host
certificate, naming the host among its principals, inside its validity window, with
no unknown critical option, and neither it nor its CA revoked.

A line it cannot read is skipped with a warning naming the file and the line: a
broken line about one host must not stop connections to every other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import shlex
import time
from dataclasses import dataclass

from .. import _caches
from .._errors import HostKeyError

log = logging.getLogger("pyjoule")
_warned: set[tuple[str, int]] = set()  # (file, line) warned about in this process


def reset() -> None:
    """Warn again about the known_hosts lines warned about already."""
    _warned.clear()


_caches.declare(__name__, "_warned", _warned, reset=reset)


@dataclass(frozen=True)
class Entry:
    """One usable known_hosts line."""

    marker: str | None  # None, "cert-authority" or "revoked"
    patterns: str
    key: object  # a paramiko PKey
    path: str
    lineno: int

    def matches(self, name: str) -> bool:
        return host_matches(self.patterns, name)


def host_matches(patterns: str, name: str) -> bool:
    """Whether ``name`` (``host`` or ``[host]:port``) is matched by a known_hosts
    host field: comma-separated globs, ``!`` negations, or one hashed ``|1|`` name."""
    name = name.lower()
    if patterns.startswith("|1|"):
        try:
            _, _, salt, digest = patterns.split("|")
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(digest))
        except (ValueError, binascii.Error):
            return False
    matched = False
    for pattern in patterns.lower().split(","):
        negated = pattern.startswith("!")
        if _glob(pattern.lstrip("!"), name):
            if negated:
                return False
            matched = True
    return matched


def _glob(pattern: str, name: str) -> bool:
    """OpenSSH's patterns: only ``*`` and ``?`` are special (``[`` is literal)."""
    if "*" not in pattern and "?" not in pattern:  # most lines: no regex to build
        return pattern == name
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name) is not None


def load(files, name: str | None = None) -> list[Entry]:
    """The usable entries of ``files`` in order (only those for ``name`` when given:
    a cluster's global file may hold thousands of lines, and only the matching
    ones' keys are decoded); missing files are skipped."""
    entries: list[Entry] = []
    for path in files:
        try:
            with open(path, "rb") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read known_hosts file %s: %s", path, exc)
            continue
        for lineno, raw in enumerate(lines, 1):
            entry = _parse(raw, path, lineno, name)
            if entry is not None:
                entries.append(entry)
    return entries


def _parse(raw: bytes, path: str, lineno: int, name: str | None) -> Entry | None:
    import paramiko

    line = raw.decode("utf-8", "replace").strip()
    if not line or line.startswith("#"):
        return None
    fields = line.split()
    marker = None
    if fields[0].startswith("@"):
        marker = fields.pop(0)[1:]
    try:
        if marker not in (None, "cert-authority", "revoked"):
            raise ValueError(f"unknown marker @{marker}")
        if len(fields) < 3:
            raise ValueError("expected: [marker] hosts key-type base64-key [comment]")
        patterns, key_type, blob = fields[:3]
        if name is not None and not host_matches(patterns, name):
            return None
        data = base64.b64decode(blob, validate=True)
        key = paramiko.PKey.from_type_string(key_type, data)
    except paramiko.UnknownKeyType:  # a valid key paramiko cannot use (sk-..., dss)
        log.debug("known_hosts %s, line %d: key type %s not usable here", path, lineno,
                  fields[1] if len(fields) > 1 else "?")
        return None
    except Exception as exc:  # noqa: BLE001 - bad base64, truncated key...
        if (path, lineno) not in _warned:
            _warned.add((path, lineno))
            log.warning("known_hosts %s, line %d cannot be read and is skipped (%s: %s); "
                        "fix or remove that line", path, lineno, type(exc).__name__, exc)
        return None
    return Entry(marker, patterns, key, path, lineno)


def for_host(entries: list[Entry], name: str) -> tuple[list[Entry], list[Entry]]:
    """(plain keys, CA keys) recorded for ``name``."""
    found = [e for e in entries if e.marker != "revoked" and e.matches(name)]
    return ([e for e in found if e.marker is None],
            [e for e in found if e.marker == "cert-authority"])


def check_revoked(entries: list[Entry], name: str, key, what: str = "host key") -> None:
    """HostKeyError when ``key`` is on a matching ``@revoked`` line."""
    blob = key.asbytes()
    for e in entries:
        if e.marker == "revoked" and e.matches(name) and e.key.asbytes() == blob:
            raise HostKeyError(
                f"the {what} of {name} ({key.get_name()} {key.fingerprint}) is REVOKED "
                f"in {e.path}, line {e.lineno}: it must not be trusted. Ask the host's "
                "administrators for its current key; do not remove the @revoked line.")


def verify(ep, target: str, key, entries, plain, cas) -> None:
    """Accept ``key`` as OpenSSH would: a host certificate signed by a matching
    @cert-authority key, or a plain key recorded for the host; never a revoked
    or changed one; a new one only when StrictHostKeyChecking allows."""
    name = ep.key_name
    check_revoked(entries, name, key)
    if is_certificate(key) and cas:
        how = check_certificate(
            key, name, ep.host_key_alias or ep.hostname, entries, cas)
        if how:
            log.debug("host key of %s: %s", name, how)
            return
        # signed by a CA not on a line for it: the key itself may still be known
    same_type = [e for e in plain if e.key.get_name() == key.get_name()]
    if any(e.key.asbytes() == key.asbytes() for e in plain):
        return
    files = ", ".join(ep.known_hosts) or "(none)"
    if same_type:
        _changed(ep, key, same_type)
    if ep.strict_host_keys == "yes":
        ca = ""
        if cas and is_certificate(key):
            ca = ("; its host certificate is signed by a CA that is not on an "
                  f"@cert-authority line for it ({', '.join(e.path for e in cas)})")
        elif cas:
            ca = (f"; the @cert-authority line(s) for it ({', '.join(e.path for e in cas)})"
                  " did not help: the host presented no certificate")
        raise HostKeyError(
            f"{name} is not in known_hosts ({files}){ca}, so its identity cannot be "
            f"checked. Connect once with `ssh {ep.alias}` and accept the key "
            f"(fingerprint {key.get_name()} {key.fingerprint}), or pass "
            f"pj.Host({target!r}, accept_new_host_key=True).")
    path = ep.record_to
    if path is None:  # UserKnownHostsFile /dev/null: accepted, recorded nowhere
        log.warning("accepted the host key of %s (%s %s) for this connection only: "
                    "UserKnownHostsFile is /dev/null", name, key.get_name(), key.fingerprint)
        return
    record(path, name, key, ep.hash_known_hosts)
    log.warning("recorded the new host key of %s (%s %s) in %s", name, key.get_name(),
                key.fingerprint, path)

def _changed(ep, key, recorded) -> None:
    name = ep.key_name
    found = sorted({e.path for e in recorded})
    # ssh-keygen -R edits ~/.ssh/known_hosts unless told another file with -f
    default = os.path.expanduser("~/.ssh/known_hosts")
    fixes = " and ".join(
        f"`ssh-keygen -R {shlex.quote(name)}"
        + ("" if os.path.abspath(p) == default else f" -f {shlex.quote(p)}") + "`"
        for p in found)
    lines = ", ".join(f"{e.path}, line {e.lineno}" for e in recorded)
    raise HostKeyError(
        f"the host key of {name} has CHANGED since it was recorded in {lines} "
        f"(now {key.get_name()} {key.fingerprint}). This may be a reinstalled host or "
        f"an attack. If you trust the new key, remove the old one with {fixes} and "
        "connect again.")


# ------------------------------------------------------------ certificates
@dataclass
class Certificate:
    """The fields of an OpenSSH certificate that a host check needs."""

    cert_type: int  # 1 user, 2 host
    key_id: str
    principals: list[str]
    valid_after: int
    valid_before: int
    critical: bytes
    ca_blob: bytes
    signed: bytes  # the bytes the CA signed
    signature: bytes


def parse_certificate(blob: bytes) -> Certificate:
    """Read an OpenSSH ``*-cert-v01@openssh.com`` blob (PROTOCOL.certkeys)."""
    import paramiko

    msg = paramiko.Message(blob)
    kind = msg.get_text()
    msg.get_string()  # nonce
    if kind.startswith("ssh-ed25519"):
        msg.get_string()
    elif kind.startswith("ecdsa-"):
        msg.get_string(), msg.get_string()
    elif "rsa" in kind:
        msg.get_mpint(), msg.get_mpint()
    else:
        raise HostKeyError(f"host certificate of an unsupported type {kind}")
    msg.get_int64()  # serial
    cert_type = msg.get_int()
    key_id = msg.get_text()
    names = paramiko.Message(msg.get_string())
    principals = []
    while names.get_remainder():
        principals.append(names.get_text())
    valid_after, valid_before = msg.get_int64(), msg.get_int64()
    critical = msg.get_string()
    msg.get_string(), msg.get_string()  # extensions, reserved
    ca_blob = msg.get_string()
    signed = blob[:msg.packet.tell()]
    return Certificate(cert_type, key_id, principals, valid_after, valid_before,
                       critical, ca_blob, signed, msg.get_string())


def check_certificate(key, name: str, principal: str, entries: list[Entry],
                      cas: list[Entry]) -> str | None:
    """Check the host certificate ``key`` presented by ``name`` against the CA
    lines ``cas``: a description of the CA when it is good, None when it is signed
    by none of them (OpenSSH then tries the plain key), HostKeyError when bad."""
    import paramiko

    cert = parse_certificate(key.public_blob.key_blob)
    ca_type = paramiko.Message(cert.ca_blob).get_text()
    ca = paramiko.PKey.from_type_string(ca_type, cert.ca_blob)
    line = next((e for e in cas if e.key.asbytes() == ca.asbytes()), None)
    if line is None:
        log.info("%s presented a host certificate signed by a CA (%s %s) on none of its "
                 "@cert-authority lines; checking its plain key", name, ca.get_name(),
                 ca.fingerprint)
        return None
    check_revoked(entries, name, ca, "certificate authority")
    problem = None
    now = time.time()
    if not ca.verify_ssh_sig(cert.signed, paramiko.Message(cert.signature)):
        problem = "its signature does not verify against the CA key"
    elif cert.cert_type != 2:
        problem = "it is a user certificate, not a host certificate"
    elif principal.lower() not in (p.lower() for p in cert.principals):
        problem = (f"it names {', '.join(cert.principals) or 'no host'}, not {principal} "
                   "(set HostKeyAlias to a name it lists, or have it re-signed)")
    elif not cert.valid_after <= now < cert.valid_before:
        problem = (f"it is valid from {_when(cert.valid_after)} to "
                   f"{_when(cert.valid_before)} only (check the clock, or have it renewed)")
    elif cert.critical:
        problem = "it has critical options, which host certificates must not carry"
    if problem:
        raise HostKeyError(f"the host certificate of {name} (id {cert.key_id!r}) is not "
                           f"accepted: {problem}. CA: {line.path}, line {line.lineno}.")
    return f"certificate {cert.key_id!r} signed by the CA of {line.path}:{line.lineno}"


def _when(stamp: int) -> str:
    if stamp >= 2**63:
        return "forever"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def is_certificate(key) -> bool:
    blob = getattr(key, "public_blob", None)
    return blob is not None and blob.key_type.endswith("-cert-v01@openssh.com")


def record(path: str, name: str, key, hashed: bool) -> None:
    """Append ``key`` for ``name`` to the known_hosts file ``path`` (created 0600 in
    a 0700 folder when new), hashed when the config says HashKnownHosts."""
    import paramiko

    shown = paramiko.HostKeys.hash_host(name) if hashed else name
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(f"{shown} {key.get_name()} {key.get_base64()}\n")
