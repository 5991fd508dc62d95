"""Incremental project sync to a host over the process's SSH connection.

The local project is listed (``git ls-files`` where the project is a git work tree, so
``.gitignore`` is honoured exactly; else a walk with the same built-in exclusions and
the plain patterns of the top-level ``.gitignore``) and
described by a manifest: path -> (size, mtime, sha256). The host keeps the manifest of
what it last received beside the files. A sync reads that manifest (one command, or
none when a dispatch's check read it with everything else: :func:`expect`),
then sends the changed files and the list of deleted ones in ONE tar stream to a small
Python program on the host, which unpacks it, removes the deleted files and writes
the new manifest atomically (a second command). A no-op sync is one round trip.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger("pyjoule")

MANIFEST = ".pyjoule-manifest.json"
CONTROL = ".pyjoule-sync.json"  # the tar member that lists deletions and the manifest
EXCLUDED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".pyjoule", ".venv", "venv",
                 ".nox", ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
                 ".ipynb_checkpoints", "node_modules"}
EXCLUDED_FILES = ("*.pyc", "*.pyo", MANIFEST, CONTROL)

# Runs on the host: unpack the tar from stdin into DEST, delete what the client
# deleted, write the new manifest last (atomically), so an interrupted sync is
# simply repeated in full next time. Every member and every deletion must stay
# inside DEST (real paths, no symlink escapes); what it creates is private (0700 /
# 0600, keeping only the owner's execute bit of a file).
_RECEIVER = r"""
import json, os, sys, tarfile
os.umask(0o077)
dest = sys.argv[1]
os.makedirs(dest, mode=0o700, exist_ok=True)
real = os.path.realpath(dest)


def inside(name):
    # the real folder of name (symlinks resolved) must be DEST or under it; the last
    # part itself is not followed: deleting a link removes the link, not its target
    if not name or os.path.isabs(name) or "\0" in name:
        return None
    folder, base = os.path.split(os.path.join(dest, name))
    if base in ("", ".", ".."):
        return None
    parent = os.path.realpath(folder)
    if parent != real and not parent.startswith(real + os.sep):
        return None
    return os.path.join(parent, base)


with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
    if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: no links, devices, escapes
        tar.extraction_filter = tarfile.data_filter
    control = None
    for member in tar:
        if member.name == ".pyjoule-sync.json":
            control = json.load(tar.extractfile(member))
            continue
        path = os.path.realpath(os.path.join(dest, member.name))
        if not path.startswith(real + os.sep) or not (member.isfile() or member.isdir()):
            sys.exit("refusing tar member %r" % member.name)
        member.mode = 0o700 if member.isdir() else 0o600 | (member.mode & 0o100)
        tar.extract(member, dest, set_attrs=True)
bad = [name for name in control["deleted"] if inside(name) is None]
if bad:
    sys.exit("refusing to delete %r: not a path inside %s" % (bad[0], dest))
for name in control["deleted"]:
    try:
        os.unlink(inside(name))
    except FileNotFoundError:
        pass
tmp = os.path.join(dest, ".pyjoule-manifest.json.tmp")
with open(tmp, "w") as fh:
    json.dump(control["manifest"], fh)
os.replace(tmp, os.path.join(dest, ".pyjoule-manifest.json"))
"""


def plain_relative(name: str) -> bool:
    """Whether ``name`` (from a host's manifest) is a relative path with no ``..``,
    empty or absolute part: the only kind a sync ever deletes."""
    if not isinstance(name, str) or not name or "\0" in name or name.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


@dataclass
class SyncStats:
    files: int = 0  # in the project
    sent: int = 0
    deleted: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    commands: int = 0
    changed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------- listing
def list_files(root: Path, exclude: Sequence[str] = ()) -> list[str]:
    """Project files relative to ``root`` (posix paths), without what is excluded."""
    root = Path(root)
    names = _git_files(root) if (root / ".git").exists() else None
    if names is None:  # not a git work tree: the top-level .gitignore's plain patterns
        names = _walk(root)
        exclude = (*exclude, *_gitignore_patterns(root / ".gitignore"))
    return sorted(n for n in names if not _excluded(n, exclude))


def _gitignore_patterns(path: Path) -> list[str]:
    """Patterns of a .gitignore, without comments and negations (which need git)."""
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith(("#", "!"))]


def _git_files(root: Path) -> list[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    proc = subprocess.run([git, "-C", str(root), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True)
    if proc.returncode != 0:
        return None
    names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return [n for n in names if os.path.isfile(root / n)]  # deleted but still indexed


def _walk(root: Path) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS
                   and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))]
        rel = os.path.relpath(folder, root)
        for name in files:
            path = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
            if os.path.isfile(os.path.join(folder, name)):
                out.append(path)
    return out


def _excluded(name: str, patterns: Iterable[str]) -> bool:
    parts = name.split("/")
    if any(p in EXCLUDED_DIRS for p in parts[:-1]):
        return True
    base = parts[-1]
    for pattern in (*EXCLUDED_FILES, *patterns):
        pattern = pattern.rstrip("/")
        if "/" in pattern.strip("/"):  # anchored to the project root, as in .gitignore
            if fnmatch.fnmatch(name, pattern.lstrip("/")) or \
                    name.startswith(pattern.lstrip("/") + "/"):
                return True
        elif fnmatch.fnmatch(base, pattern) or pattern in parts[:-1]:
            return True
    return False


# ------------------------------------------------------------------ manifest
_hashes: dict[str, tuple[int, int, str]] = {}  # abs path -> (size, mtime_ns, sha256)


def manifest(root: Path, names: Sequence[str]) -> dict[str, list]:
    """path -> [size, mtime_ns, sha256]; files unchanged since the last look in this
    process are not read again."""
    out = {}
    for name in names:
        path = os.path.join(root, name)
        st = os.stat(path)
        known = _hashes.get(path)
        if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            digest = known[2]
        else:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest() \
                    if hasattr(hashlib, "file_digest") else \
                    hashlib.sha256(fh.read()).hexdigest()
            _hashes[path] = (st.st_size, st.st_mtime_ns, digest)
        out[name] = [st.st_size, st.st_mtime_ns, digest]
    return out


# ---------------------------------------------------------------------- sync
def project_dir(workdir: str, root: Path) -> str:
    """Where the project at ``root`` of this machine lives under a host's workdir."""
    root = Path(root).resolve()
    digest = hashlib.sha256(f"{socket.gethostname()}:{root}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", root.name) or "project"
    return f"{workdir.rstrip('/')}/projects/{name}-{digest}"


_known: dict = {}  # (connection, dest) -> the host's manifest text, read by a check


def expect(conn, dest: str, text: str | None) -> None:
    """The host's manifest in ``dest`` (its text, None if there is none), read just now
    by a command that asked several things at once: the next :func:`sync` to ``dest``
    uses it instead of reading it again (one round trip less)."""
    _known[(id(conn), dest)] = text


def sync(conn, root: Path, dest: str, exclude: Sequence[str] = ()) -> SyncStats:
    """Make ``dest`` on the host hold exactly the project files of ``root``."""
    from .ssh import remote_error

    t0 = time.perf_counter()
    before = conn.commands
    root = Path(root)
    dest = conn.expand(dest)
    local = manifest(root, list_files(root, exclude))
    known = _known.pop((id(conn), dest), False)
    if known is False:
        res = conn.run(["cat", f"{dest}/{MANIFEST}"], check=False)
        found, text = res.returncode == 0, res.stdout
    else:  # read already, with the other checks of a dispatch (expect())
        found, text = known is not None, known or ""
    try:
        remote = json.loads(text) if found else {}
    except ValueError:
        remote = {}  # damaged: send everything again
    if not isinstance(remote, dict):
        remote = {}
    changed = [n for n, m in local.items() if _digest(remote.get(n)) != m[2]]
    strange = [n for n in remote if not plain_relative(n)]
    if strange:  # the host's manifest names a path outside the project: never delete it
        log.warning("the manifest on %s in %s lists %d path(s) outside the project "
                    "(such as %r); ignoring them", conn.endpoint, dest, len(strange),
                    strange[0])
    deleted = [n for n in remote if n not in local and plain_relative(n)]
    stats = SyncStats(files=len(local), sent=len(changed), deleted=len(deleted),
                      changed=changed)
    if changed or deleted or not found:
        payload = _tar(root, changed, {"deleted": deleted, "manifest": local})
        stats.bytes_sent = len(payload)
        result = conn.run(["python3", "-c", _RECEIVER, dest], input=payload, check=False)
        if result.returncode != 0:
            raise remote_error(conn.endpoint, result, "syncing the project")
    stats.seconds = time.perf_counter() - t0
    stats.commands = conn.commands - before
    log.debug("sync %s -> %s: %d files, sent %d (%d bytes), deleted %d in %.3f s",
              root, dest, stats.files, stats.sent, stats.bytes_sent, stats.deleted,
              stats.seconds)
    return stats


def _digest(entry) -> str | None:
    """The sha256 of a manifest entry [size, mtime, sha256] (None if malformed)."""
    return entry[2] if isinstance(entry, list) and len(entry) == 3 else None


def _tar(root: Path, names: Sequence[str], control: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            tar.add(os.path.join(root, name), arcname=name, recursive=False)
        data = json.dumps(control).encode()
        info = tarfile.TarInfo(CONTROL)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
