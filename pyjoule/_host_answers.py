"""What a host may name in its answers: plain file names of the expected forms.

The host computes, but it does not choose paths on this machine. Every name a pull
or a SLURM probe answer carries becomes (part of) a local path, so each is checked
here against the form pyjoule's own scripts produce: no ``/``, no ``..``, not
absolute, no NUL. Anything else is refused before a byte is written, with an error
naming the host.
"""

from __future__ import annotations

import re

from ._errors import HostError
from ._rundir import RESULT_SUFFIX

# result files of the worker: inline-<pid>-<ns>.rec, [<task>-b<n>-]supervisor-<pid>.rec,
# [<task>-b<n>-]w<pid>-<n>.rec (letters, digits, _ - and single dots; .rec)
RESULT_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*" + re.escape(RESULT_SUFFIX))
TASK_ID = re.compile(r"[0-9]+_[0-9]+")  # array job _ task, as squeue -r prints it
CLAIM_NAME = re.compile(r"[0-9]+\.[0-9]+_[0-9]+")  # <batch>.<task id>
WAVE = re.compile(r"w[0-9]+")


def _refuse(where: str, what: str, name) -> HostError:
    return HostError(
        f"{where} answered with {what} {name!r}, which is not a plain name of the form "
        "pyjoule's scripts write: refused, nothing was written. The host computes but "
        "does not choose paths on this machine; if it is yours, check that pyjoule's "
        "files there (its workdir) were not changed by someone else.")


def check_result_files(files, where: str) -> None:
    """``files`` of a pull answer: a list of [result file name, byte count]."""
    if not isinstance(files, list):
        raise _refuse(where, "a file list", files)
    for entry in files:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int) and not isinstance(entry[1], bool)
                and entry[1] >= 0):
            raise _refuse(where, "a file entry", entry)
        if not RESULT_NAME.fullmatch(entry[0]):
            raise _refuse(where, "the result file name", entry[0])


def check_probe(answer: dict, where: str) -> None:
    """The names of a SLURM probe answer that become local paths or task ids: ended
    and logged tasks, waves, claimed batches."""
    for key in ("ends", "logs"):
        for task in answer.get(key) or {}:
            if not TASK_ID.fullmatch(task):
                raise _refuse(where, f"the task id in {key}", task)
    for key in ("claimed", "pending"):
        for wave in answer.get(key) or {}:
            if not WAVE.fullmatch(wave):
                raise _refuse(where, f"the wave name in {key}", wave)
    for names in (answer.get("claimed") or {}).values():
        for name in names:
            if not isinstance(name, str) or not CLAIM_NAME.fullmatch(name):
                raise _refuse(where, "the claimed batch", name)
