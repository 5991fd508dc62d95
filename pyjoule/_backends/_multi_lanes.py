"""The parts of a multi-host run (:mod:`.multi`) a host is made of: its two slots
(run directories, each an :class:`~.ssh.SSHBackend`'s), its measured speed, and the
copying of what each slot's host sends back into the run's ``results/`` under names
of its own.
"""

from __future__ import annotations

import os

from .. import _records
from .._files import open_append, write_all
from .._rundir import RunDir
from .ssh import SSHBackend

LANES = "hosts"  # the slots' folder in the local run directory


def slot_dir(run_dir: str, index: int, slot: int) -> str:
    """The local run directory of slot ``slot`` (0, 1) of host ``index``, named after
    the run (the host's run directory is named after it too)."""
    return os.path.join(run_dir, LANES, f"{os.path.basename(run_dir)}-h{index}{'ab'[slot]}")


def copy_results(src: str, dst: str, prefix: str) -> None:
    """Append what the files of ``src`` (a lane's ``results``) gained to their copies
    ``<prefix><name>`` in ``dst`` (the run's ``results``); the copy's size is how much
    was copied. A lock per copy: a follower copying at the same time appends nothing
    twice."""
    import fcntl  # POSIX (Linux, macOS): the client platforms

    try:
        names = sorted(n for n in os.listdir(src) if not n.startswith("."))
    except FileNotFoundError:
        return
    for name in names:
        fd = open_append(os.path.join(dst, prefix + name))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            done = os.fstat(fd).st_size
            with open(os.path.join(src, name), "rb") as fh:
                fh.seek(done)
                data = fh.read()
            write_all(fd, data)
        finally:
            os.close(fd)  # releases the lock


def read_ids(results: str, offsets: dict[str, int]) -> list[str]:
    """The pset ids of the records in ``results`` after ``offsets``, which move on past
    them (whole records only: a torn tail is read next time)."""
    ids: list[str] = []
    try:
        names = sorted(os.listdir(results))
    except FileNotFoundError:
        return ids
    for name in names:
        recs, offsets[name] = _records.read_from(os.path.join(results, name),
                                                 offsets.get(name, 0))
        ids.extend(r["pset_id"] for r in recs if isinstance(r, dict))
    return ids


class Slot:
    """One of a host's two run directories: while a chunk ends in one, the next starts
    in the other, so the host's workers never wait for a start."""

    def __init__(self, ssh: SSHBackend, prefix: str):
        self.ssh, self.prefix = ssh, prefix  # prefix: of its files in the run's results
        self.dir: str | None = None
        self.chunk: list | None = None   # the tasks out on it
        self.seen: set[str] = set()      # their ids reported so far
        self.offsets: dict[str, int] = {}
        self.error: Exception | None = None
        self.used = False  # a chunk was started in it (by this process)

    def copy(self, run_dir: str | None) -> None:
        if self.dir is not None and run_dir is not None:
            copy_results(RunDir(self.dir).results, RunDir(run_dir).results, self.prefix)


class Lane:
    """One host of the run: its two slots, its measured speed."""

    def __init__(self, index: int, slots: list[SSHBackend], workers: int):
        self.index, self.workers = index, workers
        self.slots = [Slot(ssh, f"h{index}{'ab'[k]}-") for k, ssh in enumerate(slots)]
        self.ssh = slots[0]  # the host's, as prepared
        self.target = self.ssh.host.target
        self.done = 0          # psets reported from its chunks
        self.busy_s = 0.0      # the time chunks were out on it
        self.measured = False  # a round of its workers' psets came back
        self.chunks = 0
        self.busy = False      # a chunk is out on it
        self.dropped = False

    @property
    def rate(self) -> float | None:
        """Psets/s while chunks were out on it (None before a round came back)."""
        return self.done / self.busy_s if self.measured and self.done else None

    def running(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.chunk is not None]

    def copy(self, run_dir: str | None) -> None:
        for slot in self.slots:
            slot.copy(run_dir)


def twin(ssh: SSHBackend) -> SSHBackend:
    """A second backend for the same host and synced project (another run directory)."""
    twin = SSHBackend(ssh.host, project=ssh.project, python=ssh.python, lib=ssh.lib,
                      env_names=ssh.env_names)
    twin.cpus = ssh.cpus
    return twin
