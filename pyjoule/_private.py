"""Who may feed pyjoule what it unpickles: ownership and mode checks, private modes.

Everything pyjoule loads with pickle (segments, failure rows, run directories' task
and request files) is code. So a file or directory it reads must be the user's own
and writable by nobody else, and everything it creates is private (directories
0700, files 0600) whatever the umask: results, tracebacks and captured output are
private data too.

A deliberately shared group cache is an opt-in (``pj.config(shared_cache=True)`` /
``PYJOULE_SHARED_CACHE=1``): then paths may belong to another user of the group and
be group-writable (never world-writable), and what pyjoule creates is group-readable
and writable. Anyone in that group can then run code in the user's process.

Checks use ``st_uid`` and ``st_mode``, never ``os.access``: root passes every access
test, and root is the user most worth protecting.

Also here: the error for a full disk (or quota) under anything pyjoule writes.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from . import _caches
from ._errors import CacheError

log = logging.getLogger("pyjoule")

DIR_MODE = 0o700          # what pyjoule creates, private (the default)
FILE_MODE = 0o600
SHARED_DIR_MODE = 0o2770  # with shared_cache: the group shares; setgid keeps the group
SHARED_FILE_MODE = 0o660

# file system types on which SQLite's WAL (shared memory between processes) does not
# work across hosts (names as Linux's mount table and macOS's mount give them)
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "lustre", "gpfs", "fuse.sshfs",
    "sshfs", "ceph", "fuse.ceph", "glusterfs", "fuse.glusterfs", "beegfs", "afs",
    "panfs", "9p", "fuse.s3fs", "fuse.rclone", "davfs", "fuse.davfs2", "ncpfs",
    "coda", "ocfs2", "gfs2", "pvfs2", "orangefs", "fuse.juicefs", "fuse.gcsfuse",
    "afpfs", "webdav", "macfuse", "osxfuse"})


def shared() -> bool:
    """Whether the user opted in to a shared group cache."""
    from ._config import config

    return bool(config.get("shared_cache"))


def modes() -> tuple[int, int]:
    """(directory mode, file mode) for what pyjoule creates now."""
    return (SHARED_DIR_MODE, SHARED_FILE_MODE) if shared() else (DIR_MODE, FILE_MODE)


def user_name(uid: int) -> str:
    """The login name of ``uid`` (the number when it has none)."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _own_private_group(gid: int) -> bool:
    """Whether ``gid`` is the current user's personal group (a "user private group",
    as Debian and Fedora give every account: same name, no other member). Such a
    group's write bit gives nobody else access; umask 002 sets it on every folder."""
    try:
        import grp

        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    me = user_name(os.getuid())
    return gid == os.getgid() and group.gr_name == me and set(group.gr_mem) <= {me}


def problem(st: os.stat_result, allow_shared: bool = False) -> str | None:
    """Why a path with ``st`` is not trusted (None if it is): not the user's own, or
    writable by others. ``allow_shared`` tolerates another owner and group write."""
    mode = st.st_mode
    if mode & stat.S_IWOTH:
        return "it is writable by every user"
    if allow_shared:
        return None
    if st.st_uid != os.getuid():
        return f"it belongs to {user_name(st.st_uid)}, not to you"
    if mode & stat.S_IWGRP and not _own_private_group(st.st_gid):
        return "it is writable by its group"
    return None


def check_private(path: str | os.PathLike, what: str, allow_shared: bool | None = None
                  ) -> None:
    """Raise ``CacheError`` if ``path`` (when it exists) may have been written by
    another user: it belongs to someone else or is writable by group or others. The
    message names the path, its owner, its mode and the fix. One ``stat``."""
    try:
        st = os.stat(path)  # a symbolic link is judged by what it names
    except (FileNotFoundError, NotADirectoryError):  # creating it will say more
        return
    why = problem(st, shared() if allow_shared is None else allow_shared)
    if why is None:
        return
    mode = oct(stat.S_IMODE(st.st_mode))
    owner = user_name(st.st_uid)
    if st.st_uid == os.getuid():
        fix = f"if it is yours alone, run: chmod go-w {path}"
    else:
        fix = (f"someone else could have put code there; do not use it: use your own "
               f"cache (cache='/your/dir' or PYJOULE_CACHE), or, if {owner} shares it "
               "with your group on purpose, pj.config(shared_cache=True) / "
               "PYJOULE_SHARED_CACHE=1 (see docs/cache.md)")
    raise CacheError(f"refusing to use the {what} {path}: {why} (owner {owner}, mode "
                     f"{mode}), and pyjoule runs what it loads from there as code; {fix}")


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and missing parents) with the private mode, whatever the
    umask (mkdir's mode loses the umask's bits, so chmod after); an existing one of
    the user's own that others can read is made private (only ever tightened).
    Returns ``path``. Check it with ``check_private`` first: this does not judge."""
    path = Path(path)
    dir_mode = modes()[0]
    created = _mkdir(path, dir_mode)
    try:
        st = os.stat(path)
    except OSError:
        return path
    mode = stat.S_IMODE(st.st_mode)
    # a new one gets exactly its mode; an existing one is only ever tightened
    target = dir_mode if created else (mode & dir_mode) | 0o700
    if st.st_uid == os.getuid() and target != mode:
        try:
            os.chmod(path, target)
        except OSError:  # e.g. a read-only file system: the check is what matters
            pass
    return path


def _mkdir(path: Path, mode: int) -> bool:
    """mkdir ``path`` (and missing parents, privately); True if this call made it."""
    try:
        os.mkdir(path, mode)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        private_dir(path.parent)
    try:
        os.mkdir(path, mode)
        return True
    except FileExistsError:
        return False


IGNORE_ALL = "# written by pyjoule: a cache is not for version control\n*\n"


def write_ignore_file(folder: str | os.PathLike) -> None:
    """Write ``.gitignore`` containing ``*`` into the cache ``folder``, so that
    ``git add .`` in a project never commits its ``.pyjoule/`` cache. Only when there
    is none: a user's own file (or a deliberate empty one) is never overwritten."""
    try:
        fd = os.open(os.path.join(folder, ".gitignore"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, modes()[1])
    except FileExistsError:
        return
    try:
        os.fchmod(fd, modes()[1])
        os.write(fd, IGNORE_ALL.encode())
    finally:
        os.close(fd)


def create_private_file(path: str | os.PathLike) -> None:
    """Create ``path`` empty with the private file mode if it does not exist (so that
    a program creating it later, like SQLite, gets it with that mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, modes()[1])
    except FileExistsError:
        return
    try:
        os.fchmod(fd, modes()[1])  # the umask may have taken bits off
    finally:
        os.close(fd)


# ------------------------------------------------------------ network file systems
def filesystem_type(path: str | os.PathLike,
                    mountinfo: str | os.PathLike | None = None) -> str | None:
    """The type of the file system ``path`` is on ("ext4", "nfs4", ...), None when
    unknown; ``mountinfo`` reads another Linux mount table (tests). See ``_platform``."""
    from . import _platform

    return _platform.filesystem_type(path, mountinfo)


def network_filesystem(path: str | os.PathLike, **kw) -> str | None:
    """The network file system type ``path`` is on, or None (local, or unknown)."""
    kind = filesystem_type(path, **kw)
    if kind is None:
        return None
    return kind if kind in NETWORK_FS or kind.startswith("nfs") else None


_warned: set[str] = set()


def warn_if_network(path: str | os.PathLike, **kw) -> None:
    """Log one WARNING per cache per process when the cache is on a network file
    system: SQLite's WAL needs shared memory, which does not work across hosts.
    ``kw`` goes to ``filesystem_type`` (another mountinfo file, for tests)."""
    key = os.fspath(path)
    if key in _warned:
        return
    _warned.add(key)
    try:
        kind = network_filesystem(path, **kw)
    except Exception:  # noqa: BLE001 - detection is best effort, never a failure
        kind = None
    if kind:
        log.warning(
            "the cache %s is on a network file system (%s): SQLite's write-ahead log "
            "does not work across hosts, so processes on two machines using it at once "
            "can corrupt the index. Use a cache on a local disk of each machine (e.g. "
            "the default ~/.cache/pyjoule or a node-local scratch directory); results "
            "computed on a cluster come back to your local cache anyway.", path, kind)


# ------------------------------------------------------------------ full disk
#: the errnos of a full file system (EDQUOT: over the user's quota, where it exists)
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def disk_full(exc: OSError, path: str | os.PathLike) -> OSError:
    """``CacheError`` naming the full file system for ENOSPC/EDQUOT, else ``exc``."""
    code = exc.errno
    if code is None or code not in DISK_FULL or isinstance(exc, CacheError):
        return exc
    what = "is full" if code == errno.ENOSPC else "is over your disk quota"
    err = CacheError(f"the file system holding {path} {what} "
                      f"({os.strerror(code)}): free some space (e.g. `pyjoule cache "
                      "gc --max-size 10G`) or use a cache elsewhere (cache= or "
                      "PYJOULE_CACHE), then run again: finished results kept in the "
                      "run directories are stored then, nothing else is recomputed")
    err.errno = code  # (no filename: it would replace the message in str())
    return err


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_warned", _warned)
