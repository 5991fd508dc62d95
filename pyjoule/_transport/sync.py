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

Symbolic links (tracked in git or met by the walk) are sent so that they work on the
host: a link to a file or folder inside the project stays a link (its target made
relative, so an absolute one works there too); a link leading out of the project is
sent as the file (or the folder's files) it points to, with a note in the log. The
receiver keeps every link, member and deletion confined to the project's folder.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import _caches

log = logging.getLogger("pyjoule")

MANIFEST = ".pyjoule-manifest.json"
CONTROL = ".pyjoule-sync.json"  # the tar member that lists deletions and the manifest
EXCLUDED_DIRS = {".git", ".hg", ".svn", "__pycache__", ".pyjoule", ".venv", "venv",
                 ".nox", ".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
                 ".ipynb_checkpoints", "node_modules"}
EXCLUDED_FILES = ("*.pyc", "*.pyo", MANIFEST, CONTROL)

# Runs on the host: unpack the tar from stdin into DEST, delete what the client
# deleted (the control member comes first), write the new manifest last (atomically),
# so an interrupted sync is simply repeated in full next time. Every member, link
# target and deletion must stay inside DEST: a member's folder is resolved (links
# followed) and must be DEST or under it; a link's target, resolved from there, too;
# a member never writes through a link that is already there (the link is replaced).
# What it creates is private (0700 / 0600, keeping only the owner's execute bit).
_RECEIVER = r"""
import json, os, shutil, sys, tarfile
os.umask(0o077)
dest = sys.argv[1]
os.makedirs(dest, mode=0o700, exist_ok=True)
real = os.path.realpath(dest)


def within(path):
    return path == real or path.startswith(real + os.sep)


def inside(name, make=False):
    # the path for name whose folder, links resolved, is DEST or under it (None if
    # not); the last part is not followed: deleting a link removes the link. With
    # make, missing folders are made one at a time, each checked before it is made.
    parts = name.split("/") if name and "\0" not in name else [""]
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    folder = dest
    for part in parts[:-1]:
        folder = os.path.join(folder, part)
        if not within(os.path.realpath(folder)):
            return None
        if make and not os.path.lexists(folder):
            os.mkdir(folder, 0o700)
    return os.path.join(os.path.realpath(folder), parts[-1])


def clear(path):
    # what is at path goes (a link: the link itself), so nothing writes through it
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def delete(names):
    bad = [name for name in names if inside(name) is None]
    if bad:
        sys.exit("refusing to delete %r: not a path inside %s" % (bad[0], dest))
    for name in names:
        try:
            os.unlink(inside(name))
        except (FileNotFoundError, IsADirectoryError):
            pass


control = None
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
    for member in tar:
        if member.name == ".pyjoule-sync.json":
            control = json.load(tar.extractfile(member))
            delete(control["deleted"])
            continue
        path = inside(member.name, make=True)
        if path is None:
            sys.exit("refusing tar member %r: not inside %s" % (member.name, dest))
        if member.issym():
            target = os.path.realpath(os.path.join(os.path.dirname(path), member.linkname))
            if os.path.isabs(member.linkname) or not within(target):
                sys.exit("refusing link %r -> %r: it leads out of %s"
                         % (member.name, member.linkname, dest))
            clear(path)
            os.symlink(member.linkname, path)
            continue
        if not member.isfile():
            sys.exit("refusing tar member %r" % member.name)
        clear(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o600 | (member.mode & 0o100))
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(tar.extractfile(member), out)
        os.utime(path, (member.mtime, member.mtime))
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
    out = []
    for name in names:  # deleted but still indexed: left out
        path = os.path.join(root, name)
        if os.path.islink(path) and os.path.isdir(path):
            out += _dir_link(root, name)
        elif os.path.isfile(path):
            out.append(name)
    return out


def _walk(root: Path, links: bool = True) -> list[str]:
    """Files under ``root`` (relative posix paths), links to files included; a link
    to a folder is listed as itself (:func:`_dir_link`), or, with ``links`` False
    (inside such a folder), left out."""
    out = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        kept = []
        for d in dirs:
            if d in EXCLUDED_DIRS or os.path.exists(os.path.join(folder, d, "pyvenv.cfg")):
                continue
            if os.path.islink(os.path.join(folder, d)):  # os.walk does not enter it
                if links:
                    out += _dir_link(root, prefix + d)
                continue
            kept.append(d)
        dirs[:] = kept
        out += [prefix + name for name in files if os.path.isfile(os.path.join(folder, name))]
    return out


def _dir_link(root: Path, name: str) -> list[str]:
    """A link to a folder: itself when it stays a link on the host, else the files of
    the folder it points to, under its name (their own folder links left out)."""
    if link_text(root, name) is not None:
        return [name]
    target = os.path.realpath(os.path.join(root, name))
    if target == os.path.realpath(root) or \
            os.path.realpath(root).startswith(target + os.sep):
        log.warning("%s/%s points to the project itself or above it: not synced",
                    root, name)
        return []
    return [f"{name}/{n}" for n in _walk(Path(target), links=False)]


def link_text(root: Path, name: str) -> str | None:
    """The target to give the link ``name`` on the host (relative to its folder), or
    None when it is not a link to keep: not a link, or leading out of the project or
    into what is excluded (then the file or folder it points to is sent instead)."""
    path = os.path.join(root, name)
    if not os.path.islink(path):
        return None
    base = os.path.realpath(root)
    target = os.path.realpath(path)
    if not target.startswith(base + os.sep) or not os.path.exists(target):
        return None
    rel = os.path.relpath(target, base).replace(os.sep, "/")
    if _excluded(rel + ("/-" if os.path.isdir(target) else ""), ()):
        return None
    folder = os.path.join(base, os.path.dirname(name))  # as the host will have it
    return os.path.relpath(target, folder).replace(os.sep, "/")


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
# abs path -> (size, mtime_ns, sha256): a cache of this process (see reset)
_hashes: dict[str, tuple[int, int, str]] = {}


def reset() -> None:
    """Forget the hashes of local files and the manifests a host check read: the
    next sync reads and asks everything again."""
    _hashes.clear()
    _known.clear()


def manifest(root: Path, names: Sequence[str]) -> dict[str, list]:
    """path -> [size, mtime_ns, sha256]; files unchanged since the last look in this
    process are not read again."""
    out = {}
    for name in names:
        path = os.path.join(root, name)
        text = link_text(root, name)
        if text is not None:  # a link kept as a link: its target is what it holds
            out[name] = [0, 0, f"symlink:{text}"]
            continue
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


# (connection, dest) -> the host's manifest text, read by a check, taken by the next
# sync (a cache of this process: see reset)
_known: dict = {}
_caches.declare(__name__, "_hashes", _hashes, reset=reset)
_caches.declare(__name__, "_known", _known, reset=reset)


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
    """The receiver's input for ``names`` of ``root``: a link kept as a link, any
    other name as the file it is or points to (a note for a link leading out)."""
    files = []
    for name in names:
        path = os.path.join(root, name)
        text = link_text(root, name)
        if text is None and os.path.islink(path):
            log.info("%s is a link out of the project (or into what is not synced): "
                     "sending the file it points to, %s", path, os.path.realpath(path))
        files.append((path, name, text))
    return tar_files(files, control)


def tar_files(files: Sequence[tuple], control: dict) -> bytes:
    """The receiver's input: ``control`` first (deletions happen before anything is
    written), then ``files`` as (path here, name there[, link target to keep])."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        data = json.dumps(control).encode()
        info = tarfile.TarInfo(CONTROL)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for path, name, *link in files:
            if link and link[0] is not None:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, link[0]
                tar.addfile(info)
                continue
            st = os.stat(path)  # through a link: the file it points to
            info = tarfile.TarInfo(name)
            info.size, info.mtime = st.st_size, int(st.st_mtime)
            info.mode = st.st_mode & 0o777
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()
