"""The run directory: the contract between the driver, the worker, a host and the
scheduler, owned here and nowhere else.

Every name in a run directory is a constant of this module, every path a method of
:class:`RunDir`; the scripts run on hosts get their names from here too (formatted
in, see :func:`fill` and :func:`names_source`), so no copy can drift. A run
directory holds (``docs/layout.md`` says more)::

    payload.pkl        cloudpickle of {"func", "threads", "timeout_s", "capture", "batch"}
    tasks.pkl          pickle of [(pset_id, kwargs), ...]; retry-<n>.pkl per retry
    request.pkl        pickle of (pset ids, psets) as asked, for Run.dataset()
    results/*.rec      framed records, one append-only file per process
    worker.pid         "<pid> <start time>" of the supervisor
    exit               its exit code, once every task has its record
    fate               "started" or "abandoned": the first writer wins (decide_fate)
    cancel             executor=: written by another process to cancel the run
    worker.log         the supervisor's and its children's output
    children.pids      "<pid> <start time>" of each child forked (leader of its group)
    host.env           on a host: the pj.Host(env=...) export lines
    slurm.json         SLURM: the waves and their job ids (client side)
    <wave>.sh          SLURM: a wave's job script
    queue/<wave>/      SLURM: meta.json, pending/<batch>, claimed/<batch>.<task>
    ends/<task>        SLURM: "<exit code> <why> <batches>" of an array task
    logs/<task>.out    SLURM: an array task's output

Also here (the writes themselves are :mod:`._files`'): the ownership check before anything
is unpickled (once per RunDir), liveness with start times (a reused pid is not the
worker) and appending the bytes a host's answer carries (its names checked first).
Standard library and pyjoule's small modules only: the worker imports it.
"""

from __future__ import annotations

import os
import pickle
import signal
import time

from . import _platform, _private
from ._files import TMP_SUFFIX, atomic_write, open_append, write_all

# ------------------------------------------------------------------- names
PAYLOAD = "payload.pkl"
TASKS = "tasks.pkl"
RETRY = "retry-{}.pkl"      # RETRY.format(attempt)
REQUEST = "request.pkl"
RESULTS = "results"
RESULT_SUFFIX = ".rec"
PID = "worker.pid"
EXIT = "exit"
LOG = "worker.log"
CHILDREN = "children.pids"
HOST_ENV = "host.env"
SLURM_STATE = "slurm.json"
SCRIPT_SUFFIX = ".sh"       # <wave>.sh: a SLURM wave's job script
QUEUE = "queue"
META = "meta.json"
PENDING = "pending"
CLAIMED = "claimed"
ENDS = "ends"
LOGS = "logs"
LOG_SUFFIX = ".out"         # logs/<task>.out (sbatch --output)
FATE = "fate"               # "started" or "abandoned": the first word written stands
CANCEL = "cancel"           # executor=: another process asks the owning one to stop
STARTED, ABANDONED = "started", "abandoned"
TASK_PREFIXES = ("tasks", "retry-")  # the task files: tasks.pkl, retry-<n>.pkl

#: the names the remote scripts are given (:func:`fill`, :func:`names_source`)
NAMES = ("PAYLOAD", "TASKS", "REQUEST", "RESULTS", "RESULT_SUFFIX", "PID", "EXIT", "LOG",
         "CHILDREN", "HOST_ENV", "QUEUE", "META", "PENDING", "CLAIMED", "ENDS", "LOGS",
         "LOG_SUFFIX", "TMP_SUFFIX")

FILE_MODE, DIR_MODE = _private.FILE_MODE, _private.DIR_MODE


def fill(text: str) -> str:
    """``text`` (a shell or Python script run on a host) with every ``@NAME@`` replaced
    by this module's ``NAME``: the scripts spell no run directory name themselves."""
    import re

    for name in NAMES:
        text = text.replace(f"@{name}@", globals()[name])
    unknown = re.findall(r"@[A-Z_]+@", text)
    if unknown:
        raise ValueError(f"a script names {unknown[0]}, not a run directory constant")
    return text


def names_source() -> str:
    """Python assignments of the names, to put before a script sent as ``python3 -c``
    (which cannot import this module on a host)."""
    return "".join(f"{name} = {globals()[name]!r}\n" for name in NAMES)


makedirs_private = _private.private_dir  # one copy: 0700 (2770 shared), whatever the umask


# ------------------------------------------------------------------- the class
class RunDir:
    """One run directory: its paths, its pickles (checked before they are loaded),
    its liveness files. Cheap to make; the ownership check runs once per instance."""

    __slots__ = ("_checked", "path")

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._checked = False

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def join(self, *names: str) -> str:
        return os.path.join(self.path, *names)

    # paths
    @property
    def payload(self) -> str:
        return self.join(PAYLOAD)

    @property
    def request(self) -> str:
        return self.join(REQUEST)

    @property
    def results(self) -> str:
        return self.join(RESULTS)

    @property
    def pid_file(self) -> str:
        return self.join(PID)

    @property
    def exit_file(self) -> str:
        return self.join(EXIT)

    @property
    def log(self) -> str:
        return self.join(LOG)

    @property
    def children(self) -> str:
        return self.join(CHILDREN)

    @property
    def host_env(self) -> str:
        return self.join(HOST_ENV)

    @property
    def slurm_state(self) -> str:
        return self.join(SLURM_STATE)

    @property
    def ends(self) -> str:
        return self.join(ENDS)

    @property
    def logs(self) -> str:
        return self.join(LOGS)

    def result_file(self, stem: str) -> str:
        return self.join(RESULTS, stem + RESULT_SUFFIX)

    def queue(self, wave: str, *sub: str) -> str:
        return self.join(QUEUE, wave, *sub)

    def end_file(self, task: str) -> str:
        return self.join(ENDS, task)

    def log_file(self, task: str) -> str:
        return self.join(LOGS, task + LOG_SUFFIX)

    def script(self, wave: str) -> str:
        return self.join(wave + SCRIPT_SUFFIX)

    # creating
    def make(self, results: bool = True) -> RunDir:
        """The directory (and its ``results/``), private."""
        makedirs_private(self.results if results else self.path)
        return self

    def write(self, name: str, data: bytes) -> str:
        """Write the file ``name`` atomically, private (group's too with a shared cache)."""
        path = self.join(name)
        atomic_write(path, data, _private.modes()[1])
        return path

    # reading the pickles: code, so checked first
    def check(self) -> None:
        """Refuse (``CacheError``) a run directory another user owns or can write: what
        is unpickled from it is code. One ``stat``, once per RunDir."""
        if not self._checked:
            _private.check_private(self.path, "run directory")
            self._checked = True

    def _load(self, name: str):
        self.check()
        with open(self.join(name), "rb") as fh:
            return pickle.load(fh)  # cloudpickle output loads with plain pickle

    def task_files(self) -> list[str]:
        """The run's task files, in the order their psets are read."""
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return []
        return [n for n in names if n.startswith(TASK_PREFIXES) and n.endswith(".pkl")]

    def has_tasks(self) -> bool:
        return os.path.exists(self.join(TASKS))

    def task_list(self, names: list[str] | None = None) -> list:
        """``[(pset_id, kwargs), ...]`` of ``names`` (default: tasks.pkl), in order."""
        tasks: list = []
        for name in names or [TASKS]:
            tasks.extend(self._load(name))
        return tasks

    def read_tasks(self, names: list[str] | None = None) -> dict[str, dict]:
        """``{pset_id: kwargs}`` of the task files (missing files are skipped: another
        process finished the run and tidied)."""
        out: dict[str, dict] = {}
        for name in self.task_files() if names is None else names:
            try:
                out.update(self._load(name))
            except FileNotFoundError:
                pass
        return out

    def load(self, names: list[str] | None = None) -> tuple[dict, list]:
        """The payload and the tasks of ``names``: what the worker runs."""
        return self._load(PAYLOAD), self.task_list(names)

    def read_request(self) -> tuple[list, list]:
        """``(pset ids, psets)`` as the run was asked for."""
        return self._load(REQUEST)

    def has_request(self) -> bool:
        return os.path.exists(self.request)

    # liveness
    def write_pid(self, pid: int, start: str | None = None) -> None:
        """``worker.pid``: the supervisor's pid with its start time."""
        if start is None:
            start = _platform.process_start_time(pid)
        atomic_write(self.pid_file, f"{pid} {start}\n".encode())

    def decide_fate(self, word: str) -> str:
        """The run's fate: ``word`` (``STARTED`` from a worker about to compute,
        ``ABANDONED`` from whoever settles a run whose driver died while starting it)
        if no fate was written before, else the earlier one: the first writer wins.

        This is what keeps a run that was killed while it started from running
        twice: a worker that finds it abandoned computes nothing (its psets were
        freed for another run), and a settler that finds it started follows it. The
        word is written whole to a private file and hard-linked into place (one
        atomic step, refused if the name exists): nobody ever reads half a fate."""
        if not os.path.isdir(self.path):  # a settler may come before the run's files
            self.make(results=False)
        self.check()  # another's or a shared directory: no fate written there, refused
        path = self.join(FATE)
        tmp = f"{path}.{os.getpid()}.{time.time_ns()}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            write_all(fd, word.encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            return word
        except FileExistsError:
            with open(path) as fh:
                return fh.read().strip()
        finally:
            os.unlink(tmp)

    def has_pid(self) -> bool:
        return os.path.exists(self.pid_file)

    def read_pid(self) -> tuple[int, str] | None:
        """The supervisor's ``(pid, start time)``; None if unreadable."""
        try:
            with open(self.pid_file) as fh:
                pid_text, start = (fh.read().split() + [""])[:2]
            return int(pid_text), start
        except (OSError, ValueError):
            return None

    def write_exit(self, code: int) -> None:
        atomic_write(self.exit_file, f"{code}\n".encode())

    def exited(self) -> bool:
        """Whether the supervisor wrote ``exit`` (every task accounted for)."""
        return os.path.exists(self.exit_file)

    def clear_exit(self) -> None:
        """Before a retry: the last attempt's code would say it has ended."""
        try:
            os.unlink(self.exit_file)
        except FileNotFoundError:
            pass

    def is_alive(self) -> bool:
        """Whether the supervisor still runs and has not written ``exit``: its pid,
        with the start time recorded next to it (a reused pid is not it)."""
        if self.exited():
            return False
        recorded = self.read_pid()
        return recorded is not None and _platform.is_running(*recorded)

    def leader(self) -> tuple[int, str] | None:
        """The live supervisor's ``(pid, start time)``, or None."""
        return self.read_pid() if self.is_alive() else None

    def note_child(self, fd: int | None, pid: int) -> int:
        """Append a child's pid and start time to ``children.pids`` (``fd``: opened by an
        earlier call, or None); returns the descriptor to pass next time."""
        if fd is None:
            fd = open_append(self.children)
        os.write(fd, f"{pid} {_platform.process_start_time(pid)}\n".encode())
        return fd

    def kill_orphans(self) -> int:
        """SIGKILL the process groups of the children in ``children.pids`` that outlived
        their supervisor (what they forked: a ``multiprocessing.Pool``). A recorded pid
        naming a process with another start time is someone else's and is left alone;
        a group whose leader is gone keeps its id until it is empty. Returns how many
        groups were signalled."""
        try:
            with open(self.children) as fh:
                lines = fh.read().splitlines()
        except OSError:
            return 0
        signalled = 0
        for line in lines:
            try:
                pid_text, start = (line.split() + [""])[:2]
                pid = int(pid_text)
            except ValueError:
                continue
            now = _platform.process_start_time(pid)
            if pid <= 1 or (now and start and now != start):
                continue
            try:
                os.killpg(pid, signal.SIGKILL)
                signalled += 1
            except (ProcessLookupError, PermissionError):
                pass
        return signalled

    def forget_children(self) -> None:
        try:
            os.unlink(self.children)
        except OSError:
            pass

    # results, and what a host sends of them
    def result_names(self) -> list[str] | None:
        """The files in ``results/``, sorted; None when there is no such folder."""
        try:
            return sorted(os.listdir(self.results))
        except FileNotFoundError:
            return None

    def offsets(self) -> dict[str, int]:
        """``{result file: size}`` of the local copies (what a pull asks from)."""
        makedirs_private(self.results)
        return {n: os.path.getsize(self.join(RESULTS, n)) for n in os.listdir(self.results)}

    def append_pulled(self, answer: bytes, where: str) -> dict | None:
        """Append the bytes of a host's answer (a JSON line listing ``files`` as [name,
        size], then their new bytes) to the local copies in ``results/``; return the
        JSON, or None when the answer came back incomplete (the next pull asks again
        from the same offsets). Every name is checked first: the host does not choose
        paths here."""
        import json
        import logging

        from ._errors import HostError
        from ._host_answers import check_result_files

        head, _, body = answer.partition(b"\n")
        try:
            meta = json.loads(head)
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise HostError(f"{where} answered a pull with {head[:200]!r}, not the JSON "
                            "line pyjoule's script prints: nothing was written")
        check_result_files(meta.get("files"), where)
        if len(body) != sum(size for _, size in meta["files"]):
            logging.getLogger("pyjoule").warning(
                "incomplete pull from %s; trying again at the next poll", where)
            return None
        pos = 0
        for name, size in meta["files"]:
            if size:
                fd = open_append(self.join(RESULTS, name))
                try:
                    write_all(fd, body[pos:pos + size])
                finally:
                    os.close(fd)
            pos += size
        return meta

    # the end
    def tidy(self, keep_log: bool, keep_tasks: bool = False) -> None:
        """Remove what is ingested; keep the request (for ``dataset()``), a log that
        has something in it if ``keep_log`` and, if asked, the task files (a cancelled
        run's one failure row says which of their psets it stands for)."""
        import shutil

        try:
            names = [] if keep_tasks else [n for n in os.listdir(self.path)
                                           if n.startswith(TASK_PREFIXES)]
        except FileNotFoundError:
            return
        for name in [PAYLOAD, RESULTS, *names]:
            path = self.join(name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        if not keep_log and os.path.exists(self.log) and os.path.getsize(self.log) == 0:
            os.unlink(self.log)
