"""Watching a SLURM run: each look at it (one command, or a frame from the follower
that submitted it) and what the states mean. The looks back off from 2 s to 60 s
while nothing changes (``PYJOULE_POLL_INTERVAL`` fixes the interval); see
:mod:`.slurm` for the whole picture. A part of :class:`.slurm.SlurmBackend`."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .. import _rundir, _slurm
from .._host_answers import check_probe
from .._rundir import RunDir

log = logging.getLogger("pyjoule")

FIRST_INTERVAL_S, MAX_INTERVAL_S, BACKOFF = 2.0, 60.0, 1.5


def _probe_source() -> str:
    """What is sent as ``python3 -c``: the run directory's names, then the probe."""
    return _rundir.names_source() + (Path(__file__).parent / "_slurm_probe.py").read_text()


class SlurmWatch:
    """The looks of :class:`.slurm.SlurmBackend`: ``alive``, ``wait`` and what they
    take in."""

    def _look(self) -> None:
        """One command: task states, claims, exit files and (SSH) new result bytes."""
        pending = [t for t in self._task_ids() if self.states.get(t) not in
                   _slurm.FINAL_STATES | {"LOST"}]
        request = {"run_dir": self.remote_dir(), "job_ids": self.job_ids(),
                   "sacct": self.accounting, "expected": pending}
        rd = RunDir(self.run_dir)
        folder = rd.results
        if not self.transport.local:
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
            for frame in self._stream.frames(timeout_s):
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
        from . import _tidying

        _tidying.hand_over(self.run_dir, stream)

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


def _size_of(folder: str) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(e.stat().st_size for e in entries)
    except FileNotFoundError:
        return 0
