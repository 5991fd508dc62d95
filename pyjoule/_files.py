"""Writing files as pyjoule does everywhere: whole or not at all, private, to the end.

The one atomic write (a unique temporary name, mode 0600 whatever the umask, the
temporary removed on any failure, then ``os.replace``), its variant with the modes of
the cache in use (a full disk a ``CacheError``), ``os.write`` until everything is
written, and appending. Standard library and :mod:`._private` only: the worker imports
it through :mod:`._rundir`.
"""

from __future__ import annotations

import os

from . import _private

FILE_MODE = _private.FILE_MODE
TMP_SUFFIX = ".tmp"  # _rundir.TMP_SUFFIX: what a crash may leave, removed by tidying


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing: a file of
    ``mode`` (exactly: the umask may have taken bits off) under a unique temporary
    name (several processes may write one file, e.g. ``exit``), then ``os.replace``.
    On any failure the temporary file is removed and the error raised as it came."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.{os.urandom(6).hex()}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                 mode)
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_private(path: str | os.PathLike, data: bytes) -> None:
    """:func:`atomic_write` with the mode of what pyjoule creates now (a shared cache:
    the group's too, see ``_private.modes``); a full disk raises ``CacheError`` naming
    it (the cache's segments, a SLURM run's files)."""
    try:
        atomic_write(path, data, _private.modes()[1])
    except OSError as exc:
        raise _private.disk_full(exc, os.fspath(path)) from exc


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def open_append(path: str | os.PathLike) -> int:
    """A file descriptor appending to ``path`` (created 0600)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
