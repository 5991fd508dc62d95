"""The worker's process pool on a host over SSH, detached from the connection.

The local run directory stays the run's record (payload, tasks, request). A host is
20-100 ms away, so every step is counted in round trips (issue #14): ``prepare``
asks everything it must know in one command (:mod:`._check`); ``start`` is ONE
command whose stdin carries the payload and task files and ``host.env`` (written
0600 into ``<workdir>/runs/<run id>/``), which loads them once there (``--check``:
a missing module fails at once, with the remote traceback), starts ``python -m
pyjoule.worker`` under ``setsid nohup`` (a dropped connection or a closed laptop does
not stop it), and then streams the bytes appended to the host's result files back
as they are written. ``wait`` appends them to the local copies, so :class:`LiveRun`
ingests remote records exactly as local ones, torn tails included. ``tidy`` is one
word on that command's stdin. A process following a run it did not start (or whose
stream dropped) pulls instead, one command per look. ``cancel`` kills the remote
process group.

The run directory on the host is private (0700, files 0600); the values of
``pj.Host(env=...)`` go into its ``host.env`` through stdin, and the registry here
keeps their names only. The scripts run there are in :mod:`._host_scripts`; what
they answer is checked by :mod:`._names` before it touches a local path.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time

from .._errors import HostError
from .._rundir import HOST_ENV, LOG, PAYLOAD, PID, TASKS, RunDir
from .._transport.setuplines import setup_failure, setup_script
from . import _host_scripts as scripts
from . import _tidying
from ._check import check_host
from .base import Backend, load_failure

log = logging.getLogger("pyjoule")

def append_pulled(folder: str, answer: bytes, where: str) -> dict | None:
    """Append a pull's bytes to the result files in ``folder`` (a run directory's
    ``results``): :meth:`RunDir.append_pulled`, which checks every name first."""
    return RunDir(os.path.dirname(os.path.abspath(folder))).append_pulled(answer, where)


MAX_LOOSE_FILES = 2000  # a folder that is not a project: more means "not this one"


class SSHBackend(Backend):
    name = "ssh"
    cpus = 1

    def __init__(self, host, *, project: str, python: str, lib: str,
                 run_dir: str | None = None, env_names=None):
        from .._transport.hosts import Host

        self.host = Host.of(host)
        self.project, self.python, self.lib = project, python, lib
        self.run_dir = run_dir
        # the names of pj.Host(env=...): a process that follows the run knows only these
        self.env_names = sorted(env_names if env_names is not None else self.host.env)
        self._alive: bool | None = None
        self._stream = None  # the start command, streaming the results back

    # ------------------------------------------------------------- setting up
    @classmethod
    def prepare(cls, *, host=None, slurm=None, identity=None,
                batch: int | None = None, executor=None) -> SSHBackend:
        """The backend for ``host``, with the project of the running code (or, with no
        project, the folder of the script or notebook) synced there, wherever the
        process was started from; ``identity()`` gives the packages the function
        uses, for a folder with no project of its own (see :meth:`for_project`)."""
        from .. import _private, _project
        from .._transport.env import requirements_from

        root = _project.project_of()
        if root is None:  # a script's or notebook's folder: synced only if the user's alone
            root = _project.code_folder()
            why = _private.problem(os.stat(root))
            if why is not None:  # e.g. /tmp: others' files would be imported on the host
                raise HostError(
                    f"pyjoule will not copy {root} to the host: {why}, so files another "
                    "user put there would run there as your code. Work from a folder of "
                    "your own (ideally with a pyproject.toml), not a shared one.")
        return cls.for_project(host, root,
                               lambda: requirements_from(identity().components))

    @classmethod
    def for_project(cls, host, root, requirements=None) -> SSHBackend:
        """Connect, sync the project at ``root``, make sure of its environment and of
        pyjoule on the host; a warm call runs one short command (:func:`check_host`).

        ``root`` without a spec file (:mod:`.._transport.envkinds`; a notebook's
        folder) gets an environment of ``requirements()`` instead (called only then).
        With ``pj.Host(environment="existing")`` no environment is built: the given
        interpreter is used with pyjoule, cloudpickle and threadpoolctl on PYTHONPATH.
        """
        from .._errors import HostError
        from .._transport import env, ssh, sync
        from .._transport.hosts import Host

        host = Host.of(host)
        conn = ssh.connect(host)
        spec = env.has_project_file(root)
        reqs = None
        if not spec:
            if len(sync.list_files(root, host.exclude)) > MAX_LOOSE_FILES:
                raise HostError(
                    f"{root} is not a project (no pyproject.toml or .git above it) and "
                    f"holds more than {MAX_LOOSE_FILES} files: pyjoule will not copy all of "
                    "them to the host. Add a pyproject.toml to the folder of your code.")
            if host.environment != "existing":
                reqs = requirements() if requirements else list(env.WORKER_REQUIREMENTS)
        known = check_host(conn, host, root, reqs)  # one command for all the checks
        project = sync.project_dir(conn.expand(host.workdir), root)
        sync.sync(conn, root, project, exclude=host.exclude)
        if known["ready"]:
            python = known["python"]
        elif host.environment == "existing":
            python = env.ensure_existing(conn, host)
        elif reqs is None:
            python = env.ensure_env(conn, host, root, project)
        else:
            python = env.ensure_env_for(conn, host, reqs)
        lib = env.ensure_pyjoule(conn, host)
        if env.needs_vendor(host, root):  # pyjoule's lib, then the worker's imports
            vendor = (env.vendor_dir(conn, host) if known["ready"]
                      else env.ensure_vendor(conn, host, python))
            lib = f"{lib}:{vendor}"
        backend = cls(host, project=project, python=python, lib=lib)
        backend.cpus = known["cpus"]
        return backend

    def describe(self) -> dict:
        """What a later process needs to follow the run (stored in the registry). Of
        pj.Host(env=...) only the names: the values stay in memory and in the run's
        private ``host.env`` on the host."""
        h = self.host
        from .._transport.hosts import default_ssh_config

        # the config in use now (PYJOULE_SSH_CONFIG, say), for a process without it
        config_path = h.ssh_config or default_ssh_config()
        return {"ssh": {"target": h.target, "ssh_config": str(config_path),
                        "workdir": h.workdir, "setup": list(h.setup), "env_names": self.env_names,
                        "project": self.project, "python": self.python, "lib": self.lib}}

    @classmethod
    def from_record(cls, run_dir: str | None, options: dict) -> SSHBackend:
        return cls.from_description(run_dir, options)

    @classmethod
    def from_description(cls, run_dir: str, description: dict) -> SSHBackend:
        from .._transport.hosts import Host

        d = description["ssh"]
        # "env" (with values) is how runs registered before 0.x kept it
        host = Host(d["target"], workdir=d["workdir"], ssh_config=d["ssh_config"] or None,
                    setup=d.get("setup", ()), env=d.get("env", {}))
        return cls(host, project=d["project"], python=d["python"], lib=d["lib"],
                   run_dir=run_dir, env_names=d.get("env_names", sorted(host.env)))

    def _conn(self):
        from .._transport import ssh

        return ssh.connect(self.host)

    def connection(self):
        """The process's open connection to the host (streams: see :mod:`._slurm_submit`)."""
        return self._conn()

    def transport(self):
        """The host's :class:`~.._transport.base.Transport`, for a backend that runs
        its commands there (SLURM's sbatch over SSH)."""
        from .._transport.host import HostTransport

        return HostTransport(self.host)

    def remote_dir(self) -> str:
        conn = self._conn()
        return f"{conn.expand(self.host.workdir)}/runs/{os.path.basename(self.run_dir)}"

    # ----------------------------------------------------------------- running
    def _env_mode(self) -> str:
        return "send" if self.host.env else "keep" if self.env_names else "none"

    def _files_input(self, run_dir: str, files: list[str], mode: str,
                     extra=()) -> bytes:
        """The stdin of ``scripts.RECEIVE``: host.env (mode "send": the values only
        here) and ``files`` of the local run directory, each made 0600 there."""
        from .. import _rundir
        from .._transport.shell import env_input

        parts = []
        if mode == "send":  # the name as the host's scripts spell it: _rundir's now
            parts.append((_rundir.HOST_ENV, env_input(self.host.env)))
        for name in files:
            with open(os.path.join(run_dir, name), "rb") as fh:
                parts.append((name, fh.read()))
        parts += list(extra)  # (name, bytes) made here, such as a SLURM job script
        head = json.dumps({"env": mode, "files": [[n, len(d)] for n, d in parts]}).encode()
        return b"%012d" % len(head) + head + b"".join(d for _, d in parts)

    def _no_env(self, remote: str, endpoint) -> HostError:
        return HostError(
            f"this process knows only the names of pj.Host(env=...) for this run "
            f"({', '.join(self.env_names)}; the run registry keeps no values), "
            f"and their values are no longer in {remote}/{HOST_ENV} on "
            f"{endpoint}. Call again with the pj.Host that has them.")

    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        """Send the run's files, start the worker and begin streaming its results
        back: one command, whose output then carries the results (see ``wait``)."""
        self._end_stream()  # a previous attempt's
        self.run_dir = run_dir
        _tidying.settle(run_dir)
        conn = self._conn()
        remote = self.remote_dir()
        mode = self._env_mode()
        stdin = self._files_input(run_dir, [PAYLOAD, *(task_files or [TASKS])], mode)
        argv = ["env", f"PYTHONPATH={self.lib}:{self.project}",
                self.python, "-m", "pyjoule.worker", remote, "--workers", str(workers)]
        if task_files:
            argv += ["--tasks", *task_files]
        script = scripts.START.replace("{setup}", setup_script(self.host.setup))
        res = self._start_once(conn, ["sh", "-c", script, "sh", scripts.RECEIVE,
                                      scripts.FOLLOW, json.dumps(RunDir(run_dir).offsets()),
                                      remote, self.project,
                                      "none" if mode == "none" else "keep", *argv],
                               remote, stdin)
        if res is None:  # the connection dropped, but the worker had been started
            self._alive = True
            return
        if res.returncode != 0:
            from .._errors import RemoteCommandError
            from .._transport.shell import mask

            if scripts.NO_ENV in res.stderr:
                raise self._no_env(remote, conn.endpoint)
            # a setup line or an import may have printed a value: errors show ***
            res.stderr = mask(res.stderr, self.host.env.values())
            failed = setup_failure(res, self.host.setup, str(conn.endpoint))
            if failed is not None:
                raise failed
            raise load_failure(res, str(conn.endpoint), "nothing was started there",
                               RemoteCommandError)
        log.debug("run %s: worker started on %s (pid %s)", os.path.basename(run_dir),
                  conn.endpoint, res.text.strip())
        self._alive = True

    def env_file(self) -> str | None:
        """Where the run's host.env is on the host (None: the run has no env)."""
        return None if self._env_mode() == "none" else f"{self.remote_dir()}/{HOST_ENV}"

    def send_run(self, run_dir: str, files: list[str], extra=()) -> str | None:
        """Make the run directory on the host (0700), give it pj.Host(env=...) as its
        host.env (0600, through stdin: a process that knows only the names checks it
        is there) and copy ``files`` (0600), and ``extra`` ((name, bytes) pairs).
        Returns :meth:`env_file`. One command, the files on its stdin."""
        from .._transport.ssh import remote_error

        _tidying.settle(run_dir)
        conn, remote = self._conn(), self.remote_dir()
        mode = self._env_mode()
        res = conn.run(["python3", "-c", scripts.RECEIVE, remote], check=False,
                       input=self._files_input(run_dir, files, mode, extra))
        if res.returncode != 0:
            if scripts.NO_ENV in res.stderr:
                raise self._no_env(remote, conn.endpoint)
            raise remote_error(conn.endpoint, res, "making the run directory")
        return self.env_file()

    def _start_once(self, conn, argv: list[str], remote: str, stdin: bytes):
        """Run the start command until it says it started the worker (its stream then
        stays open: ``self._stream``). If the connection drops meanwhile, start again
        only when no worker came up (its pid file tells), so it never runs twice.
        Returns a Result (returncode 0 and the pid once started), or None when the
        worker had started before the drop."""
        from .._transport.base import Result
        from .._transport.ssh import ConnectionLost

        for attempt in (1, 2):
            try:
                stream = conn.stream(argv, input=stdin)
                _, mark = stream.until(lambda line: line.startswith(b"@pyjoule-started "),
                                       conn, f"connection to {conn.endpoint} dropped "
                                       "while starting the worker")
                if mark is None:
                    code, out, err = stream.ended
                    return Result("start", code or 1, out, err)
                self._stream = stream
                return Result("start", 0, mark.split()[1], b"")
            except ConnectionLost:
                if attempt == 2:
                    raise
                log.info("connection to %s dropped while starting the worker; checking "
                         "whether it started", conn.endpoint)
            deadline = time.monotonic() + 5  # a started worker writes its pid at once
            while time.monotonic() < deadline:
                if conn.run(["cat", f"{remote}/{PID}"], check=False).text.strip():
                    return None
                time.sleep(0.2)
        return None  # not reached

    def _pull(self) -> None:
        """Append what the host's result files gained to the local copies."""
        rd = RunDir(self.run_dir)
        res = self._conn().run(["python3", "-c", scripts.PULL, self.remote_dir(),
                                json.dumps(rd.offsets())])
        meta = rd.append_pulled(res.stdout, self.host.target)
        if meta is not None:
            self._alive = bool(meta["alive"])

    def _read_stream(self, timeout_s: float) -> bool:
        """Apply the frames the start command streams back, for up to ``timeout_s``
        (returning at the first that arrives); False when the stream is gone (then
        polling takes over, from the local copies' sizes: a frame is applied whole or
        not at all). Interrupted (Ctrl-C) mid-frame, the stream is dropped likewise."""
        try:
            return self._read_frames(timeout_s)
        except BaseException:
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.close()
            raise

    def _read_frames(self, timeout_s: float) -> bool:
        stream, rd = self._stream, RunDir(self.run_dir)
        for frame in stream.frames(timeout_s):
            if frame is None:  # the stream is gone
                stream.close()
                self._stream = None
                return False
            meta = rd.append_pulled(frame, self.host.target)
            if meta is not None:
                self._alive = bool(meta["alive"])
            if not self._alive:
                return True
        return True

    def alive(self) -> bool:
        if self._stream is not None and self._read_stream(0):
            return bool(self._alive)
        if self._alive is None or self._alive:
            self._pull()
        return bool(self._alive)

    def wait(self, timeout_s: float) -> bool:
        """Whether the worker ended within ``timeout_s``: its results streamed back
        by the start command as they are written, else (a process following a run it
        did not start, a dropped stream) pulled every 0.25 s."""
        deadline = time.monotonic() + timeout_s
        while self._stream is not None:
            if not self._read_stream(max(0.0, deadline - time.monotonic())):
                break  # the stream is gone: poll
            if not self._alive:
                return True
            if time.monotonic() >= deadline:
                return False
        while True:
            self._pull()
            if not self._alive:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.25))

    def _end_stream(self, word: bytes = b"\n") -> None:
        """Let go of the start command: ``word`` tells it what to tidy (nothing by
        default). Its answer is not waited for here; a later command on the same run
        directory waits for it first (:func:`._tidying.settle`)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.say(word)
            if word.strip() and self.run_dir:
                _tidying.hand_over(self.run_dir, stream)

    def cancel(self) -> None:
        self._conn().run(["python3", "-c", scripts.CANCEL, self.remote_dir()], check=False)
        self._pull()

    def worker_log(self, run_dir: str) -> str | None:
        # kept on the host when a pset failed (see tidy); ~ as in the host's workdir,
        # which needs no connection here and works as given with ssh or scp
        return (f"{self.host.target}:{self.host.workdir.rstrip('/')}/runs/"
                f"{os.path.basename(run_dir)}/{LOG}")

    def tidy(self, keep_log: bool) -> None:
        if self._stream is not None and self._alive is False:
            # the start command waits for this word after its last frame: no new command
            self._end_stream(b"keep-log\n" if keep_log else b"all\n")
            return
        self._end_stream()
        _tidying.settle(self.run_dir)
        remote = self.remote_dir()
        if keep_log:
            argv = ["sh", "-c", 'cd "$1" && find . -mindepth 1 ! -name "$2" -delete',
                    "sh", remote, LOG]
        else:
            argv = ["rm", "-rf", remote]
        self._conn().run(argv, check=False)

    def settle_start(self) -> str:
        """The fate of the run directory on the host (one command; raises when the
        host cannot be asked: then nobody can tell, and the run is waited for)."""
        from .._transport.ssh import remote_error

        conn = self._conn()
        res = conn.run(["env", f"PYTHONPATH={self.lib}:{self.project}", self.python, "-m",
                        "pyjoule.worker", self.remote_dir(), "--abandon"], check=False)
        if res.returncode != 0:
            raise remote_error(conn.endpoint, res, "settling a run whose start was cut short")
        return res.text.strip()

    def __repr__(self) -> str:
        return f"<SSHBackend {shlex.quote(self.host.target)} {self.run_dir}>"
