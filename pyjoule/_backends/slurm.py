"""SLURM array jobs, submitted with ``sbatch`` here (a login node, JupyterHub on the
cluster) or on a host over its SSH connection.

The worker and its files are the ones every backend uses; what SLURM adds:

* ``start`` writes one *wave*: the psets cut into batches, one empty file per batch in
  ``queue/<wave>/pending``. A pre-flight on the submit side (``worker --check
  --make-queue``) loads the function and writes that queue, so an import error shows
  in seconds, not after the queue wait. Then one ``sbatch`` per array of at most
  ``MaxArraySize`` tasks; every task claims batches (atomic rename) until none are
  left, running each with ``workers`` processes.
* Each look at the run (``_look``) is one command: the scheduler's state of every
  array task (one ``squeue``; ``sacct`` only for tasks squeue has forgotten, when the
  cluster has accounting), the claims and exit files, and over SSH the bytes the result
  files gained. Looks back off from 2 s to 60 s (``PYJOULE_POLL_INTERVAL`` fixes it).
  Over SSH the command that submitted a wave stays on and makes these looks on the
  host, sending what changed (:mod:`._slurm_submit`): a sweep then costs no command
  per look; a process following a run it did not submit, or whose stream dropped,
  looks with a command each time.
* When every task has ended, the psets no record speaks of get a reason from the
  state of the task that had claimed them (``timeout``, ``cancelled``,
  ``out_of_memory``, ``node_failure``, ``preempted``, else ``lost``); LiveRun's
  ``retries`` then resubmits those as a new, smaller wave.

The local run directory keeps ``slurm.json`` (the waves and their job ids), so any
process can follow the run again.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time

from .. import _caches, _private, _slurm
from .._errors import SlurmError
from .._rundir import ENDS, HOST_ENV, LOGS, PAYLOAD, QUEUE, TASKS, RunDir, atomic_write
from .._transport.base import Transport
from .._transport.local import LocalTransport
from . import _slurm_submit
from ._slurm_end import SlurmEnd
from ._slurm_watch import BACKOFF, FIRST_INTERVAL_S, MAX_INTERVAL_S, SlurmWatch, _probe_source  # noqa: F401 - known here
from .base import Backend, load_failure

log = logging.getLogger("pyjoule")

CANCEL_WAIT_S = 30.0  # for scancelled tasks to end (KillWait is 30 s by default)
# per submit site (a transport's key), asked once per process: a cache, emptied by
# reset_facts (tests that change a cluster's configuration call it)
_facts: dict[str, _slurm.ClusterFacts] = {}
FACTS_SEP = "@@pyjoule@@"  # between the outputs of the facts command
_FACTS = f"""sbatch --help || exit 127
echo {FACTS_SEP}; scontrol show config
echo {FACTS_SEP}; sinfo -h -o '%P|%C'
"""


def reset_facts() -> None:
    """Forget every cluster's facts: the next backend asks ``sbatch --help`` again."""
    _facts.clear()


_caches.declare(__name__, "_facts", _facts, reset=reset_facts)


class SlurmBackend(SlurmWatch, SlurmEnd, Backend):
    name = "slurm"

    def __init__(self, slurm: _slurm.Slurm, *, ssh=None, batch: int | None = None,
                 run_dir: str | None = None, local: dict | None = None,
                 transport: Transport | None = None):
        """``ssh``: the host's project, interpreter and env (an :class:`SSHBackend`
        prepared for it), None for this machine's sbatch; ``transport``: where
        sbatch, squeue, sacct and scancel run (default: that host's, else this
        machine's)."""
        self.slurm, self.ssh, self.batch = slurm, ssh, batch
        if transport is None:
            transport = ssh.transport() if ssh is not None else LocalTransport()
        self.transport = transport
        self.run_dir = run_dir
        self.local = local or {"python": sys.executable, "project": os.getcwd(),
                               "pythonpath": os.pathsep.join(p or os.getcwd()
                                                             for p in sys.path)}
        self.waves: list[dict] = []
        self.states: dict[str, str] = {}  # array task id -> last known state
        self.reasons: dict[str, str] = {}  # array task id -> pending reason
        self.claims: dict[str, dict[int, str]] = {}  # wave -> batch -> task id
        self.ends: dict[str, str] = {}
        self.pending_batches: dict[str, int] = {}  # wave -> batches no task claimed yet
        self.queries = 0
        self._results_size = 0  # bytes in the local result files at the last look
        self.accounting = False
        self._ended: bool | None = None
        self._next_look = 0.0
        self._interval = FIRST_INTERVAL_S
        self._warned: set[str] = set()
        self._error_since: float | None = None
        self._stream = None  # over SSH: the submit command, following the run

    # ------------------------------------------------------------ where it runs
    @property
    def where(self) -> str:
        return self.transport.where

    def _run(self, argv: list[str], *, setup: bool = False, cwd: str | None = None,
             env: dict | None = None, timeout: float | None = 300,
             idempotent: bool = False):
        """Run ``argv`` where sbatch is; ``setup`` runs the host's setup lines first.
        Over SSH, an ``idempotent`` command is run again if the connection drops.
        Every command runs under ``umask 077`` (the transport's): what sbatch, the
        pre-flight and (through SLURM_UMASK) the jobs create is private."""
        host = self.ssh.host if self.ssh is not None else None
        if setup and host is not None and host.setup:
            script = "\n".join([*host.setup, 'exec "$@"'])
            argv = ["sh", "-c", script, "sh", *argv]
        if host is not None and not host.env and self.ssh.env_names and self.run_dir:
            # a process that knows only the names: the run's host.env has the values
            argv = ["sh", "-c", '[ ! -f "$1" ] || . "$1"; shift; exec "$@"', "sh",
                    f"{self.remote_dir()}/{HOST_ENV}", *argv]
        return self.transport.run(argv, check=False, cwd=cwd, env=env,
                                  secret_env=(host.env or None) if host else None,
                                  timeout=timeout, idempotent=idempotent)

    def remote_dir(self) -> str:
        return self.ssh.remote_dir() if self.ssh else self.run_dir

    def _site(self) -> dict:
        if self.ssh is None:
            return dict(self.local, setup=[], env={})
        s = self.ssh
        # the job script reads pj.Host(env=...) from the run's host.env (0600), which
        # start() writes; the values are never in the script
        return {"python": s.python, "project": s.project,
                "pythonpath": f"{s.lib}:{s.project}", "setup": list(s.host.setup),
                "env": {}}

    def facts(self) -> _slurm.ClusterFacts:
        """sbatch's options and the cluster's limits, asked once per process."""
        key = self.transport.key
        if key not in _facts:
            res = self._run(["sh", "-c", _FACTS], setup=True, idempotent=True)
            if res.returncode != 0 and FACTS_SEP.encode() not in res.stdout:
                fix = ("load it before starting Python (or give host= a pj.Host with "
                       "setup=['module load slurm'])" if self.transport.local
                       else "add it to pj.Host(setup=['module load slurm'])")
                raise SlurmError(
                    f"no SLURM on {self.where}: `sbatch --help` failed "
                    f"({res.stderr.decode('utf-8', 'replace').strip()[-300:]}). If SLURM "
                    f"needs a module there, {fix}.",
                    res.command, res.returncode, res.stderr.decode("utf-8", "replace"))
            self.queries += 1
            parts = res.text.split(FACTS_SEP)
            parts += [""] * (3 - len(parts))
            _facts[key] = _slurm.parse_facts(parts[0], parts[1], parts[2])
        return _facts[key]

    def check(self) -> None:
        """Validate the sbatch options against the cluster's own ``sbatch --help``."""
        _slurm.check_options(self.slurm, self.facts().options, self.where)

    # ---------------------------------------------------------------- state
    def describe(self) -> dict:
        d = {"slurm": self.slurm.describe(), "batch": self.batch, "local": self.local}
        if self.ssh is not None:
            d.update(self.ssh.describe())
        return d

    @classmethod
    def prepare(cls, *, host=None, slurm=None, identity=None,
                batch: int | None = None, executor=None) -> SlurmBackend:
        """sbatch on ``host`` over SSH (its project synced as for
        :meth:`SSHBackend.prepare`), or this machine's sbatch when ``host`` is None;
        a misspelt sbatch option fails now, before anything is written."""
        ssh = None
        if host is not None:
            from .ssh import SSHBackend

            ssh = SSHBackend.prepare(host=host, identity=identity)
        backend = cls(slurm, ssh=ssh, batch=batch)
        backend.check()
        return backend

    @classmethod
    def from_record(cls, run_dir: str | None, options: dict) -> SlurmBackend:
        return cls.from_description(run_dir, options)

    @classmethod
    def from_description(cls, run_dir: str, description: dict) -> SlurmBackend:
        ssh = None
        if description.get("ssh"):
            from .ssh import SSHBackend

            ssh = SSHBackend.from_description(run_dir, description)
        backend = cls(_slurm.Slurm.from_description(description.get("slurm") or {}),
                      ssh=ssh, batch=description.get("batch"), run_dir=run_dir,
                      local=description.get("local"))
        backend._load()
        return backend

    def _state_path(self) -> str:
        return RunDir(self.run_dir).slurm_state

    def _load(self) -> None:
        try:
            with open(self._state_path()) as fh:
                state = json.load(fh)
        except FileNotFoundError:
            return
        self.waves, self.accounting = state["waves"], state.get("accounting", False)

    def _save(self) -> None:
        atomic_write(self._state_path(), json.dumps(
            {"waves": self.waves, "accounting": self.accounting}, indent=1).encode(),
            _private.modes()[1])

    def job_ids(self) -> list[str]:
        return [a["job"] for w in self.waves for a in w["arrays"]]

    def _task_ids(self, wave: dict | None = None) -> list[str]:
        waves = [wave] if wave else self.waves
        return [f"{a['job']}_{i}" for w in waves for a in w["arrays"]
                for i in range(a["count"])]

    # ---------------------------------------------------------------- submit
    def start(self, run_dir: str, workers: int, task_files: list[str] | None = None) -> None:
        self._end_stream()  # a previous wave's follower: no tidying yet
        self.run_dir = run_dir
        if self.ssh is not None:
            self.ssh.run_dir = run_dir
        if not self.waves:
            self._load()
        files = list(task_files or [TASKS])
        n = len(RunDir(run_dir).task_list(files))
        facts = self.facts()
        self.check()
        self.accounting = facts.accounting
        packing = _slurm.pack(n, workers=workers, batch=self.batch, facts=facts,
                              partition=self.slurm.options.get("partition"),
                              parallelism=self.slurm.array_parallelism)
        wave = f"w{len(self.waves)}"
        site = self._site()
        remote = self.remote_dir()
        run_id = os.path.basename(run_dir)
        env_file = self.ssh.env_file() if self.ssh is not None else None
        script = _slurm.render_script(run_id=run_id, wave=wave, run_dir=remote,
                                      project=site["project"], python=site["python"],
                                      pythonpath=site["pythonpath"], workers=workers,
                                      setup=site["setup"], env=site["env"],
                                      env_file=env_file)
        script_path = RunDir(remote).script(wave)
        sending = None
        if self.ssh is not None:
            # the job script (0600) travels with the run's files, on the stdin of the
            # pre-flight's command
            sending = ([PAYLOAD, *files], [(os.path.basename(script_path), script.encode())])
        else:
            atomic_write(script_path, script.encode())
            os.chmod(script_path, 0o600)
        record = {"wave": wave, "tasks": files, "batch": packing.batch,
                  "n_batches": packing.n_batches, "workers": workers, "arrays": []}
        sbatches = [(offset, count, _slurm.sbatch_argv(
            self.slurm, array_spec=packing.array_spec(count, self.slurm.array_parallelism),
            log_dir=RunDir(remote).logs, job_name=_job_name(run_id), script=script_path))
            for offset, count in packing.arrays]
        # over SSH the first sbatch runs in the pre-flight's command (one round trip),
        # which then follows the run when the wave is one array
        follow = None
        if self.ssh is not None and len(sbatches) == 1:
            follow = {"run_dir": remote, "job_ids": self.job_ids(), "count": sbatches[0][1],
                      "sacct": self.accounting, "offsets": RunDir(run_dir).offsets(),
                      "expected": [t for t in self._task_ids() if self.states.get(t)
                                   not in _slurm.FINAL_STATES | {"LOST"}]}
        first = self._preflight(remote, wave, files, packing.batch, site,
                                then=sbatches[0][2] if self.ssh is not None else None,
                                sending=sending, follow=follow)
        self.waves.append(record)
        try:
            for offset, count, argv in sbatches:
                job = self._sbatch(argv, site, done=first)
                first = None
                record["arrays"].append({"job": job, "offset": offset, "count": count})
                # kept at once: a driver killed now leaves the ids to whoever settles
                self._save()
        except BaseException:
            self.waves.remove(record)
            self._end_stream(close=True)
            submitted = [a["job"] for a in record["arrays"]]
            if submitted:  # all of it or nothing: an array alone would be a stray
                self._run(["scancel", *submitted], setup=True)
            self._save()
            raise
        self._ended, self._next_look, self._interval = False, 0.0, FIRST_INTERVAL_S
        log.info("run %s: %d psets in %d array task(s) of %d worker(s) (%d batches of %d), "
                 "job(s) %s on %s", run_id, n, packing.n_tasks, workers, packing.n_batches,
                 packing.batch, ", ".join(a["job"] for a in record["arrays"]), self.where)

    def _preflight(self, remote: str, wave: str, files: list[str], batch: int,
                   site: dict, then: list[str] | None = None, sending=None,
                   follow: dict | None = None):
        """Load the function where the jobs will (an import error shows now, not after
        the queue wait) and write the wave's queue of batches. With ``then`` (an
        sbatch argv), run it in the same command once the pre-flight passed, and
        return its result; over SSH, that command first receives the run's files
        (``sending``: names and (name, bytes) pairs) and, given a ``follow`` request,
        then follows the run (see :mod:`._slurm_submit`)."""
        argv = [site["python"], "-m", "pyjoule.worker", remote, "--check", "--tasks", *files,
                "--make-queue", wave, "--batch", str(batch)]
        if then is None:
            res = self._run(argv, setup=True, cwd=site["project"],
                            env={"PYTHONPATH": site["pythonpath"]})
        else:  # every word quoted by shlex.join; PYTHONPATH is no secret
            script = _slurm_submit.script(argv, site["pythonpath"], then,
                                          follow is not None)
            if sending is not None:
                res, self._stream = _slurm_submit.submit(
                    self.ssh, self.run_dir, *sending, script, site["project"],
                    follow=follow and (_probe_source(), follow))
            else:
                res = self._run(["sh", "-c", script], setup=True, cwd=site["project"])
            _head, mark, rest = res.stdout.partition(_slurm_submit.SBATCH_NEXT.encode()
                                                    + b"\n")
            if mark:
                res.stdout = rest
                return res
        if res.returncode != 0 or then is not None:
            raise load_failure(res, self.where, "nothing was submitted", SlurmError)
        return None

    def _sbatch(self, argv: list[str], site: dict, done=None) -> str:
        """Submit ``argv``; ``done``: its result already (run with the pre-flight)."""
        res = done if done is not None else self._run(argv, setup=True, cwd=site["project"])
        self.queries += 1
        stderr = res.stderr.decode("utf-8", "replace").strip()
        if res.returncode != 0:
            raise SlurmError(f"sbatch on {self.where} refused the job: {stderr or res.text}"
                             f"\n(command: {shlex.join(argv)})", res.command, res.returncode,
                             stderr)
        try:
            return _slurm.parse_job_id(res.text)
        except ValueError as exc:
            raise SlurmError(f"sbatch on {self.where}: {exc}", res.command, res.returncode,
                             stderr) from exc

    def cancel(self) -> None:
        self._end_stream()
        jobs = self.job_ids()
        if jobs:
            self._run(["scancel", *jobs], setup=True)
            self.queries += 1
        deadline = time.monotonic() + CANCEL_WAIT_S
        self._look()
        while not self._ended and time.monotonic() < deadline:
            time.sleep(1)
            self._look()

    def tidy(self, keep_log: bool) -> None:
        """Remove the queue, exit files and job scripts (and the logs, unless a pset
        failed: run.failures points at them)."""
        if self._stream is not None and self._ended:
            # the follower waits for this word: no new command
            self._end_stream(b"keep-logs\n" if keep_log else b"all\n")
            return
        self._end_stream()
        remote = self.remote_dir()
        if not self.transport.local:
            if keep_log:
                argv = ["sh", "-c", 'cd "$1" && find . -mindepth 1 -maxdepth 1 ! -name "$2" '
                        "-exec rm -rf {} +", "sh", remote, LOGS]
            else:
                argv = ["rm", "-rf", remote]
            self.transport.run(argv, check=False)
            return
        import shutil

        for name in (QUEUE, ENDS, *([] if keep_log else [LOGS])):
            shutil.rmtree(os.path.join(remote, name), ignore_errors=True)
        for w in self.waves:
            try:
                os.unlink(RunDir(remote).script(w["wave"]))
            except FileNotFoundError:
                pass

    def settle_start(self) -> str:
        """The fate of the run directory where the jobs run. Jobs submitted whose ids
        never reached the driver cannot be followed: they are cancelled (by the run's
        job name) before the fate is decided, so that none starts after it."""
        from .._rundir import ABANDONED, STARTED, RunDir

        if not self.job_ids():
            self._run(["sh", "-c", 'scancel --name "$1" --user "$(id -un)"', "sh",
                       _job_name(os.path.basename(self.run_dir))], setup=True)
        if self.ssh is not None:
            fate = self.ssh.settle_start()
        else:
            fate = RunDir(self.remote_dir()).decide_fate(ABANDONED)
        if fate != STARTED and self.job_ids():  # they would start only to do nothing
            self._run(["scancel", *self.job_ids()], setup=True)
        return fate

    def __repr__(self) -> str:
        return f"<SlurmBackend on {self.where}: jobs {self.job_ids()}>"


def _job_name(run_id: str) -> str:
    return f"pyjoule-{run_id}"

