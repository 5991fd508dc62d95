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
from pathlib import Path

from .. import _slurm
from .._errors import SlurmError
from .. import _rundir
from .._rundir import ENDS, HOST_ENV, LOGS, PAYLOAD, QUEUE, TASKS, RunDir
from .._store import atomic_write
from ._names import check_probe
from . import _slurm_submit
from .base import Backend, load_failure

log = logging.getLogger("pyjoule")

FIRST_INTERVAL_S, MAX_INTERVAL_S, BACKOFF = 2.0, 60.0, 1.5
CANCEL_WAIT_S = 30.0  # for scancelled tasks to end (KillWait is 30 s by default)
_facts: dict[str, _slurm.ClusterFacts] = {}  # per submit site, asked once per process
_SEP = "@@pyjoule@@"
_FACTS = f"""sbatch --help || exit 127
echo {_SEP}; scontrol show config
echo {_SEP}; sinfo -h -o '%P|%C'
"""


def _probe_source() -> str:
    """What is sent as ``python3 -c``: the run directory's names, then the probe."""
    return _rundir.names_source() + (Path(__file__).parent / "_slurm_probe.py").read_text()


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self, slurm: _slurm.Slurm, *, ssh=None, batch: int | None = None,
                 run_dir: str | None = None, local: dict | None = None):
        self.slurm, self.ssh, self.batch = slurm, ssh, batch
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
        return self.ssh.host.target if self.ssh else "this machine"

    def _run(self, argv: list[str], *, setup: bool = False, cwd: str | None = None,
             env: dict | None = None, timeout: float | None = 300,
             idempotent: bool = False):
        """Run ``argv`` where sbatch is; ``setup`` runs the host's setup lines first.
        Over SSH, an ``idempotent`` command is run again if the connection drops."""
        if self.ssh is None:
            from .._transport import local

            # what sbatch, the pre-flight and (through SLURM_UMASK) the jobs create
            # is private, without changing this process's umask
            return local.run(["sh", "-c", 'umask 077 && exec "$@"', "sh", *argv], cwd=cwd,
                             env=env, timeout=timeout)
        host = self.ssh.host
        if setup and host.setup:
            script = "\n".join([*host.setup, 'exec "$@"'])
            argv = ["sh", "-c", script, "sh", *argv]
        if not host.env and self.ssh.env_names and self.run_dir:
            # a process that knows only the names: the run's host.env has the values
            argv = ["sh", "-c", '[ ! -f "$1" ] || . "$1"; shift; exec "$@"', "sh",
                    f"{self.remote_dir()}/{HOST_ENV}", *argv]
        return self.ssh._conn().run(argv, check=False, cwd=cwd, env=env,
                                    secret_env=host.env or None, timeout=timeout,
                                    idempotent=idempotent)

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
        key = self.ssh._conn().endpoint.alias if self.ssh else "local"
        if key not in _facts:
            res = self._run(["sh", "-c", _FACTS], setup=True, idempotent=True)
            if res.returncode != 0 and _SEP.encode() not in res.stdout:
                fix = ("add it to pj.Host(setup=['module load slurm'])" if self.ssh
                       else "load it before starting Python (or give host= a pj.Host "
                       "with setup=['module load slurm'])")
                raise SlurmError(
                    f"no SLURM on {self.where}: `sbatch --help` failed "
                    f"({res.stderr.decode('utf-8', 'replace').strip()[-300:]}). If SLURM "
                    f"needs a module there, {fix}.",
                    res.command, res.returncode, res.stderr.decode("utf-8", "replace"))
            self.queries += 1
            parts = res.text.split(_SEP)
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
    def from_description(cls, run_dir: str, description: dict) -> "SlurmBackend":
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
            {"waves": self.waves, "accounting": self.accounting}, indent=1).encode())

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
            head, mark, rest = res.stdout.partition(_slurm_submit.SBATCH_NEXT.encode()
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

    # ---------------------------------------------------------------- watch
    def _look(self) -> None:
        """One command: task states, claims, exit files and (SSH) new result bytes."""
        pending = [t for t in self._task_ids() if self.states.get(t) not in
                   _slurm.FINAL_STATES | {"LOST"}]
        request = {"run_dir": self.remote_dir(), "job_ids": self.job_ids(),
                   "sacct": self.accounting, "expected": pending}
        rd = RunDir(self.run_dir)
        folder = rd.results
        if self.ssh is not None:
            request["offsets"] = rd.offsets()
            # under the host's setup lines: squeue may need a `module load`
            res = self._run(["python3", "-c", _probe_source(), json.dumps(request)],
                            setup=True, idempotent=True)  # it only reads
            if res.returncode != 0:
                self._trouble(res.stderr.decode("utf-8", "replace").strip())
                return
            self._apply(res.stdout, pending)
            return
        from ._slurm_probe import probe

        answer, _ = probe(**request)
        check_probe(answer, self.where)
        # results are read in place here; their growth still counts as activity
        grown = _size_of(folder)
        answer["files"] = [["(all)", grown - self._results_size]]
        self._results_size = grown
        self.queries += 1 + bool(answer.get("sacct") is not None)
        self._update(answer, pending)

    def _apply(self, output: bytes, pending: list[str] | None = None) -> None:
        """Take in one answer of the host's probe (a look's output or a follower's
        frame): the result bytes appended to the local copies, then the states."""
        if pending is None:
            pending = [t for t in self._task_ids() if self.states.get(t) not in
                       _slurm.FINAL_STATES | {"LOST"}]
        answer = RunDir(self.run_dir).append_pulled(output, self.where)
        if answer is None:
            return
        check_probe(answer, self.where)
        if answer.get("asked", True):
            self.queries += 1 + bool(answer.get("sacct") is not None)
        self._update(answer, pending)

    def _follow(self, timeout_s: float) -> bool:
        """Take in what the follower sent within ``timeout_s``; False once its stream
        is gone (looks take over, from the local copies' sizes: a frame is taken in
        whole or not at all)."""
        try:
            for frame in _slurm_submit.frames(self._stream, timeout_s):
                if frame is None:
                    self._end_stream(close=True)
                    return False
                self._apply(frame)
        except BaseException:
            self._end_stream(close=True)
            raise
        return True

    def _end_stream(self, word: bytes = b"\n", close: bool = False) -> None:
        """Let go of the follower: ``word`` says what it tidies (nothing by default);
        its answer is waited for by the next command on this run directory."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if close:
            stream.close()
            return
        stream.say(word)
        from .ssh import _tidying

        _tidying[os.path.basename(self.run_dir)] = stream

    def _trouble(self, error: str) -> None:
        """The scheduler could not be asked (controller restarting, network): the run
        is taken as still going, and asked again later."""
        now = time.monotonic()
        if self._error_since is None:
            self._error_since = now
            log.warning("SLURM on %s does not answer (%s); will keep asking", self.where,
                        error.splitlines()[-1] if error else "?")
        self._ended = False

    def _update(self, answer: dict, pending: list[str]) -> None:
        if answer["squeue"] is None:
            self._trouble(answer.get("error", ""))
            return
        if self._error_since is not None:
            log.info("SLURM on %s answers again", self.where)
            self._error_since = None
        before = dict(self.states)
        for task, (state, reason) in answer["squeue"].items():
            self.states[task] = state.split()[0]
            self.reasons[task] = reason
            if state == "PENDING" and reason.split(",")[0] in _slurm.HOPELESS_REASONS \
                    and task.split("_")[0] not in self._warned:
                self._warned.add(task.split("_")[0])
                log.warning("job %s on %s is pending with reason %s: SLURM will not start "
                            "it as requested (more CPUs, memory or time than the partition "
                            "allows?). Cancel it with run.cancel() and change slurm=.",
                            task.split("_")[0], self.where, reason)
        self.ends.update(answer.get("ends") or {})
        for task, (state, _) in (answer.get("sacct") or {}).items():
            if task not in answer["squeue"]:
                self.states[task] = state
        for task in pending:
            if task in answer["squeue"] or task in (answer.get("sacct") or {}):
                continue
            # forgotten by squeue: its exit file, else what slurmstepd wrote in its log
            end = self.ends.get(task)
            tail = (answer.get("logs") or {}).get(task) or ""
            marker = next((s for m, s in _slurm.LOG_MARKERS if m in tail), None)
            if marker:
                self.states[task] = marker
            elif end is not None:
                self.states[task] = "COMPLETED" if end.split()[0] == "0" else "FAILED"
            else:
                self.states[task] = "LOST"
        for wave, names in (answer.get("claimed") or {}).items():
            claims = self.claims.setdefault(wave, {})
            for name in names:
                batch, _, task = name.partition(".")
                claims[int(batch)] = task
        self.pending_batches = answer.get("pending") or {}
        self._ended = all(self.states.get(t) in _slurm.FINAL_STATES | {"LOST"}
                          for t in self._task_ids())
        changed = self.states != before or any(size for _, size in answer.get("files", []))
        from .._config import config

        fixed = config.get("poll_interval_s")
        if fixed:
            self._interval = fixed
        elif changed:  # work is moving: look more often again, down to the first
            self._interval = max(FIRST_INTERVAL_S, self._interval / 2)
        else:
            self._interval = min(MAX_INTERVAL_S, self._interval * BACKOFF)
        self._next_look = time.monotonic() + self._interval

    def alive(self) -> bool:
        if self._stream is not None and self._follow(0):
            return not self._ended
        if self._ended is None:
            self._look()
        return not self._ended

    def wait(self, timeout_s: float) -> bool:
        """Whether every array task ended within ``timeout_s``: told by the follower
        as it happens, else (a process following a run it did not submit, a dropped
        stream) asked by a look, paced as the looks back off."""
        deadline = time.monotonic() + timeout_s
        while self._stream is not None:
            if not self._follow(max(0.0, deadline - time.monotonic())):
                self._next_look = 0.0
                break
            if self._ended:
                return True
            if time.monotonic() >= deadline:
                return False
        while True:
            now = time.monotonic()
            if now >= self._next_look or self._ended is None:
                self._look()
                if self._ended:
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return bool(self._ended)
            time.sleep(max(0.0, min(left, self._next_look - time.monotonic())))

    def running_slots(self) -> int:
        by_wave = {f"{a['job']}": w["workers"] for w in self.waves for a in w["arrays"]}
        return sum(by_wave.get(t.split("_")[0], 1) for t, s in self.states.items()
                   if s == "RUNNING")

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

    # ---------------------------------------------------------------- the end
    def orphan_reasons(self, pset_ids: list[str]) -> dict[str, dict]:
        """Why each of ``pset_ids`` (finished by no record) did not finish: the state
        of the array task that had claimed its batch, with that task's log."""
        if not self.waves:
            self._load()
        wanted = set(pset_ids)
        where: dict[str, tuple[dict, int]] = {}
        rd = RunDir(self.run_dir)
        for wave in self.waves:
            pos = 0
            for name in wave["tasks"]:
                try:
                    tasks = rd.task_list([name])
                except FileNotFoundError:
                    continue
                for pid, _ in tasks:
                    if pid in wanted:
                        where[pid] = (wave, pos // wave["batch"])
                    pos += 1
        logs = self._fetch_logs({self.claims.get(w["wave"], {}).get(b)
                                 for w, b in where.values()} - {None})
        out = {}
        for pid, (wave, batch) in where.items():
            task = self.claims.get(wave["wave"], {}).get(batch)
            if task is None:
                states = {self.states.get(t) for t in self._task_ids(wave)}
                reason = next((_slurm.reason_for(s) for s in ("CANCELLED", "TIMEOUT")
                               if s in states), None)
                if reason is None and any((self.ends.get(t) or "").split()[1:2] == ["time"]
                                          for t in self._task_ids(wave)):
                    reason = "timeout"  # tasks stopped claiming: their time was up
                reason = reason or "lost"
                message = ("no array task started this pset's batch before the run's "
                           f"tasks ended ({_describe_states(states)})")
                if reason == "lost" and not self.claims.get(wave["wave"]):
                    message += (f". None of them claimed any batch: see their logs in "
                                f"{RunDir(self.remote_dir()).logs} on {self.where}. The run "
                                "directory must be visible to the compute nodes: see "
                                "docs/slurm.md (\"Where the run directory lives\") for "
                                "the layouts that work; keep the cache itself (its "
                                "SQLite index) on a local disk")
                out[pid] = {"reason": reason, "message": message, "log_path": None}
                continue
            state = self.states.get(task, "LOST")
            reason = _slurm.reason_for(state)
            message = f"array task {task} ended {state} before this pset finished"
            if reason == "lost":
                message += " (its worker died: see the task's log)"
            out[pid] = {"reason": reason, "message": message, "log_path": logs.get(task)}
        return out

    def _fetch_logs(self, tasks: set[str]) -> dict[str, str]:
        """Local paths of the logs of ``tasks`` (copied from the host over SSH)."""
        local = RunDir(self.run_dir)
        if self.ssh is None or not tasks:
            return {t: local.log_file(t) for t in tasks}
        _rundir.makedirs_private(local.logs)
        remote = RunDir(self.remote_dir())
        out = {}
        sftp = self.ssh._conn().sftp()
        for task in sorted(tasks):  # task ids checked by check_probe: plain names
            path = local.log_file(task)
            try:
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                          "wb") as fh:
                    sftp.getfo(remote.log_file(task), fh)
                out[task] = path
            except OSError:
                pass
        return out

    def tidy(self, keep_log: bool) -> None:
        """Remove the queue, exit files and job scripts (and the logs, unless a pset
        failed: run.failures points at them)."""
        if self._stream is not None and self._ended:
            # the follower waits for this word: no new command
            self._end_stream(b"keep-logs\n" if keep_log else b"all\n")
            return
        self._end_stream()
        remote = self.remote_dir()
        if self.ssh is not None:
            if keep_log:
                argv = ["sh", "-c", 'cd "$1" && find . -mindepth 1 -maxdepth 1 ! -name "$2" '
                        "-exec rm -rf {} +", "sh", remote, LOGS]
            else:
                argv = ["rm", "-rf", remote]
            self.ssh._conn().run(argv, check=False)
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


def _size_of(folder: str) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(e.stat().st_size for e in entries)
    except FileNotFoundError:
        return 0


def _job_name(run_id: str) -> str:
    return f"pyjoule-{run_id}"


def _describe_states(states: set) -> str:
    return ", ".join(sorted(s for s in states if s)) or "states unknown"
