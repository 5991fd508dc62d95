"""The end of a SLURM run: why each pset no record speaks of did not finish, from
the state of the array task that had claimed its batch, with that task's log (copied
from the host over SSH). A part of :class:`.slurm.SlurmBackend`."""

from __future__ import annotations

import os

from .. import _rundir, _slurm
from .._rundir import RunDir


class SlurmEnd:
    """``orphan_reasons`` of :class:`.slurm.SlurmBackend`."""

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
        if self.transport.local or not tasks:
            return {t: local.log_file(t) for t in tasks}
        _rundir.makedirs_private(local.logs)
        remote = RunDir(self.remote_dir())
        out = {}
        for task in sorted(tasks):  # task ids checked by check_probe: plain names
            path = local.log_file(task)
            try:
                data = self.transport.get(remote.log_file(task))
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                          "wb") as fh:
                    fh.write(data)
                out[task] = path
            except OSError:
                pass
        return out


def _describe_states(states: set) -> str:
    return ", ".join(sorted(s for s in states if s)) or "states unknown"
