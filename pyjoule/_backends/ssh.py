"""The worker's process pool on a host over SSH, detached from the connection.

The local run directory stays the run's record (payload, tasks, request). ``start``
copies the payload and task files to ``<workdir>/runs/<run id>/`` on the host (SFTP),
loads them once there (``--check``: a missing module fails at once, with the remote
traceback) and starts ``python -m pyjoule.worker`` under ``setsid nohup``, so a dropped
connection or a closed laptop does not stop it. While the run is watched, each
``wait`` pulls the bytes appended to the host's result files since the last pull
(one command) and appends them to the local copies, so :class:`LiveRun` ingests
remote records exactly as local ones, torn tails included. ``cancel`` kills the
remote process group; ``tidy`` removes the remote run directory once everything is
ingested (keeping the log when something failed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import time

from .base import Backend, load_failure

log = logging.getLogger("pyjoule")

# Start the worker detached: its own session (setsid), immune to the SSH session's end
# (nohup, stdin from /dev/null). The user's setup lines (their own shell, e.g.
# `module load`) run first; everything else arrives as quoted positional arguments.
# A setup line that fails ends the script (set -e): the EXIT trap then names it.
_START = """set -e
run_dir=$1; project=$2; shift 2
cd "$project"
{setup}
"$@" --check  # pre-flight: the function and its modules load here, or we stop now
setsid nohup "$@" </dev/null >>"$run_dir/worker.log" 2>&1 &
# written here too, so that a poll before the worker writes its own sees it alive
echo "$!" > "$run_dir/worker.pid"
echo $!
"""

# Pull what was appended to the result files since the given offsets. Standard library
# only; prints one JSON line, then the new bytes of each file in the order listed.
_PULL = r"""
import json, os, sys
run_dir, offsets = sys.argv[1], json.loads(sys.argv[2])
# alive is asked BEFORE the files are read: a worker found ended has written all
# it ever will, so this pull has everything
alive = False
if not os.path.exists(os.path.join(run_dir, "exit")):
    try:
        pid = int(open(os.path.join(run_dir, "worker.pid")).read().split()[0])
        os.kill(pid, 0)
        alive = True
    except (OSError, ValueError, IndexError):
        alive = False
folder = os.path.join(run_dir, "results")
names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
chunks, sizes = [], {}
for name in names:
    with open(os.path.join(folder, name), "rb") as fh:
        fh.seek(offsets.get(name, 0))
        data = fh.read()
    chunks.append(data)
    sizes[name] = len(data)
out = sys.stdout.buffer
out.write(json.dumps({"files": [[n, sizes[n]] for n in names], "alive": alive}).encode()
          + b"\n")
for data in chunks:
    out.write(data)
"""

# Stop the worker's process group: SIGTERM (the supervisor kills its children and
# writes its exit code), then SIGKILL what is left after 2 s.
_CANCEL = r"""
import os, signal, sys, time
try:
    pid = int(open(os.path.join(sys.argv[1], "worker.pid")).read().split()[0])
except (OSError, ValueError, IndexError):
    sys.exit(0)
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        sys.exit(0)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            sys.exit(0)
        time.sleep(0.05)
"""


_SETUP_FAILED = re.compile(r"^@pyjoule-setup-failed (\d+) (\d+)$", re.M)


def setup_script(lines) -> str:
    """The setup lines for ``_START``, each preceded by its number, so that the EXIT
    trap can tell which one failed (the lines themselves are left untouched)."""
    if not lines:
        return ""
    out = ["trap 'c=$?; [ $c = 0 ] || echo \"@pyjoule-setup-failed $pj_setup $c\" >&2' EXIT"]
    for i, line in enumerate(lines, 1):
        out += [f"pj_setup={i}", line]
    return "\n".join([*out, "trap - EXIT"])


def setup_failure(result, lines, where: str):
    """The error for a start that a setup line failed (None if none did): the line,
    its exit code and the end of stderr."""
    from .._errors import RemoteCommandError

    stderr = result.stderr.decode("utf-8", "replace")
    m = _SETUP_FAILED.search(stderr)
    if m is None:
        return None
    n, code = int(m[1]), int(m[2])
    stderr = _SETUP_FAILED.sub("", stderr).strip()
    tail = "\n".join(stderr.splitlines()[-12:])
    hint = ("; a command not found there, such as `module`, may need the profile "
            "first: `. /etc/profile`" if code == 127 else "")
    return RemoteCommandError(
        f"setup line {n} of {len(lines)} failed on {where} with exit code {code}, so "
        f"nothing was started there: {lines[n - 1]}\nFix it in pj.Host(setup=[...]); "
        f"setup lines run in `sh -c`, not a login shell{hint}."
        + (f"\n--- last lines of stderr ---\n{tail}" if tail else ""),
        result.command, code, stderr)


def append_pulled(folder: str, answer: bytes, where: str) -> dict | None:
    """Append the bytes of a pull (a JSON line listing ``files`` as [name, size], then
    their new bytes) to the local copies in ``folder``; return the JSON, or None when
    the answer came back incomplete (the next pull asks again from the same offsets)."""
    head, _, body = answer.partition(b"\n")
    meta = json.loads(head)
    if len(body) != sum(size for _, size in meta["files"]):
        log.warning("incomplete pull from %s; trying again at the next poll", where)
        return None
    pos = 0
    for name, size in meta["files"]:
        if size:
            with open(os.path.join(folder, name), "ab") as fh:
                fh.write(body[pos:pos + size])
        pos += size
    return meta


_cpus: dict = {}  # endpoint -> CPUs of the host (asked once per process)
MAX_LOOSE_FILES = 2000  # a folder that is not a project: more means "not this one"


class SSHBackend(Backend):
    name = "ssh"
    cpus = 1

    def __init__(self, host, *, project: str, python: str, lib: str,
                 run_dir: str | None = None):
        from .._transport.hosts import Host

        self.host = Host.of(host)
        self.project, self.python, self.lib = project, python, lib
        self.run_dir = run_dir
        self._alive: bool | None = None

    # ------------------------------------------------------------- setting up
    @classmethod
    def prepare(cls, host, root, requirements=None) -> "SSHBackend":
        """Connect, sync the project at ``root``, make sure of its environment and of
        pyjoule on the host; a warm call runs three short commands.

        ``root`` without ``uv.lock`` or ``pyproject.toml`` (a notebook's folder) gets
        an environment of ``requirements()`` instead (called only then).
        """
        from .._errors import HostError
        from .._transport import env, ssh, sync
        from .._transport.hosts import Host

        host = Host.of(host)
        conn = ssh.connect(host)
        project = sync.project_dir(conn.expand(host.workdir), root)
        if env.has_project_file(root):
            sync.sync(conn, root, project, exclude=host.exclude)
            python = env.ensure_env(conn, host, root, project)
        else:
            if len(sync.list_files(root, host.exclude)) > MAX_LOOSE_FILES:
                raise HostError(
                    f"{root} is not a project (no pyproject.toml or .git above it) and "
                    f"holds more than {MAX_LOOSE_FILES} files: pyjoule will not copy all of "
                    "them to the host. Add a pyproject.toml to the folder of your code.")
            sync.sync(conn, root, project, exclude=host.exclude)
            python = env.ensure_env_for(conn, host, requirements() if requirements
                                        else list(env.WORKER_REQUIREMENTS))
        lib = env.ensure_pyjoule(conn, host)
        backend = cls(host, project=project, python=python, lib=lib)
        if conn.endpoint not in _cpus:
            _cpus[conn.endpoint] = int(conn.run(["nproc"]).text.strip() or 1)
        backend.cpus = _cpus[conn.endpoint]
        return backend

    def describe(self) -> dict:
        """What a later process needs to follow the run (stored in the registry)."""
        h = self.host
        from .._transport.hosts import default_ssh_config

        # the config in use now (PYJOULE_SSH_CONFIG, say), for a process without it
        config_path = h.ssh_config or default_ssh_config()
        return {"ssh": {"target": h.target, "ssh_config": str(config_path),
                        "workdir": h.workdir, "setup": list(h.setup), "env": h.env,
                        "project": self.project, "python": self.python, "lib": self.lib}}

    @classmethod
    def from_description(cls, run_dir: str, description: dict) -> "SSHBackend":
        from .._transport.hosts import Host

        d = description["ssh"]
        host = Host(d["target"], workdir=d["workdir"], ssh_config=d["ssh_config"] or None,
                    setup=d.get("setup", ()), env=d.get("env", {}))
        return cls(host, project=d["project"], python=d["python"], lib=d["lib"],
                   run_dir=run_dir)

    def _conn(self):
        from .._transport import ssh

        return ssh.connect(self.host)

    def remote_dir(self) -> str:
        conn = self._conn()
        return f"{conn.expand(self.host.workdir)}/runs/{os.path.basename(self.run_dir)}"

    # ----------------------------------------------------------------- running
    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        self.run_dir = run_dir
        conn = self._conn()
        remote = self.remote_dir()
        conn.run(["mkdir", "-p", f"{remote}/results"])
        conn.run(["rm", "-f", f"{remote}/exit"])  # a retry's previous exit code
        sftp = conn.sftp()
        for name in ["payload.pkl", *(task_files or ["tasks.pkl"])]:
            sftp.put(os.path.join(run_dir, name), f"{remote}/{name}")
        argv = ["env", f"PYTHONPATH={self.lib}:{self.project}",
                *(f"{k}={v}" for k, v in self.host.env.items()),
                self.python, "-m", "pyjoule.worker", remote, "--workers", str(workers)]
        if task_files:
            argv += ["--tasks", *task_files]
        script = _START.format(setup=setup_script(self.host.setup))
        res = self._start_once(conn, ["sh", "-c", script, "sh", remote, self.project, *argv],
                               remote)
        if res is None:  # the connection dropped, but the worker had been started
            self._alive = True
            return
        if res.returncode != 0:
            from .._errors import RemoteCommandError

            failed = setup_failure(res, self.host.setup, str(conn.endpoint))
            if failed is not None:
                raise failed
            raise load_failure(res, str(conn.endpoint), "nothing was started there",
                               RemoteCommandError)
        pid = res.text.strip()
        log.debug("run %s: worker started on %s (pid %s)", os.path.basename(run_dir),
                  conn.endpoint, pid)
        self._alive = True

    def _start_once(self, conn, argv: list[str], remote: str):
        """Run the start command. If the connection drops meanwhile, start again only
        when no worker came up (its pid file tells), so it never runs twice. Returns
        the command's result, or None when the worker had started before the drop."""
        from .._transport.ssh import ConnectionLost

        try:
            return conn.run(argv, idempotent=False, check=False)
        except ConnectionLost:
            log.info("connection to %s dropped while starting the worker; checking "
                     "whether it started", conn.endpoint)
        deadline = time.monotonic() + 5  # a started worker writes its pid at once
        while time.monotonic() < deadline:
            if conn.run(["cat", f"{remote}/worker.pid"], check=False).text.strip():
                return None
            time.sleep(0.2)
        return conn.run(argv, idempotent=False, check=False)

    def _pull(self) -> None:
        """Append what the host's result files gained to the local copies."""
        folder = os.path.join(self.run_dir, "results")
        os.makedirs(folder, exist_ok=True)
        offsets = {n: os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)}
        res = self._conn().run(["python3", "-c", _PULL, self.remote_dir(),
                                json.dumps(offsets)])
        meta = append_pulled(folder, res.stdout, self.host.target)
        if meta is not None:
            self._alive = bool(meta["alive"])

    def alive(self) -> bool:
        if self._alive is None or self._alive:
            self._pull()
        return bool(self._alive)

    def wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            self._pull()
            if not self._alive:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.25))

    def cancel(self) -> None:
        self._conn().run(["python3", "-c", _CANCEL, self.remote_dir()], check=False)
        self._pull()

    def worker_log(self, run_dir: str) -> str | None:
        # kept on the host when a pset failed (see tidy); ~ as in the host's workdir,
        # which needs no connection here and works as given with ssh or scp
        return (f"{self.host.target}:{self.host.workdir.rstrip('/')}/runs/"
                f"{os.path.basename(run_dir)}/worker.log")

    def tidy(self, keep_log: bool) -> None:
        remote = self.remote_dir()
        if keep_log:
            argv = ["sh", "-c", 'cd "$1" && find . -mindepth 1 ! -name worker.log -delete',
                    "sh", remote]
        else:
            argv = ["rm", "-rf", remote]
        self._conn().run(argv, check=False)

    def __repr__(self) -> str:
        return f"<SSHBackend {shlex.quote(self.host.target)} {self.run_dir}>"
