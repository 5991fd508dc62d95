"""SLURM over SSH: a wave submitted, and then followed, in one command.

Latency costs one round trip per turn of the conversation, so the submit is one
command (three turns: channel, exec with its stdin, answer): its stdin carries the
run's files and the job script (:meth:`SSHBackend._files_input`, received as
``send_run`` does: 0700 directory, 0600 files, pj.Host(env=...) values only there);
it runs the setup lines, the pre-flight (``worker --check --make-queue``), ``sbatch``,
and then, when asked to, stays on as the run's follower (``_slurm_probe.follow``):
the scheduler's states, the claims, the exit files and the result bytes come back
as frames on the same channel whenever they change, with no command per look. One
word on its stdin ends it and says what to tidy.

The submit is never repeated: if the connection drops before sbatch's answer is
read, the error says so and nothing is sent again (one array per wave).
"""

from __future__ import annotations

import json
import logging
import os
import shlex

log = logging.getLogger("pyjoule")

SBATCH_NEXT = "@@pyjoule-sbatch@@"  # the pre-flight passed: sbatch's output follows
FOLLOWING = b"@pyjoule-following"  # sbatch's output ended: frames follow


def script(preflight: list[str], pythonpath: str, sbatch: list[str], follow: bool) -> str:
    """The shell text run after the files arrived and the setup lines ran: the
    pre-flight, sbatch (its output after ``SBATCH_NEXT``) and, with ``follow``, the
    follower (its source and request are the command's ``$5`` and ``$6``)."""
    check = shlex.join(["env", "PYTHONPATH=" + pythonpath, *preflight])
    if not follow:
        return f"{check} </dev/null || exit $?\necho {SBATCH_NEXT}\nexec {shlex.join(sbatch)}"
    return "\n".join([
        f"{check} </dev/null || exit $?", f"echo {SBATCH_NEXT}",
        f"jobs=$({shlex.join(sbatch)} </dev/null) || exit $?",
        "printf '%s\\n' \"$jobs\"", f"echo {FOLLOWING.decode()}",
        'exec python3 -c "$5" --follow "$6" "$jobs"'])


def submit(ssh, run_dir: str, files: list[str], extra, text: str, cwd: str,
           follow: tuple[str, dict] | None = None):
    """Run ``text`` (see :func:`script`) on ``ssh``'s host once the run's ``files``
    and ``extra`` arrived, under host.env and the setup lines, in ``cwd``. Returns
    (its result up to sbatch's answer, stderr masked; the open stream when it went
    on following, else None). ``follow``: the probe's source and request."""
    from .. import _rundir
    from .._transport.base import Result
    from .._transport.shell import mask
    from . import _tidying

    _tidying.settle(run_dir)
    conn, remote, mode = ssh.connection(), ssh.remote_dir(), ssh._env_mode()
    body = "\n".join([
        'python3 -c "$1" "$2" || exit $?',
        f'[ "$3" = none ] || . "$2/{_rundir.HOST_ENV}"', 'cd "$4" || exit $?',
        *ssh.host.setup, text])
    from . import _host_scripts as scripts

    argv = ["sh", "-c", body, "sh", scripts.RECEIVE, remote, mode, cwd]
    if follow is not None:
        argv += [follow[0], json.dumps(follow[1])]
    stream = conn.stream(argv, input=ssh._files_input(run_dir, files, mode, extra))
    lines, mark = stream.until(
        lambda line: line == FOLLOWING, conn,
        f"connection to {conn.endpoint} dropped while submitting run "
        f"{os.path.basename(run_dir)}: it may have been submitted; it is not submitted "
        "again (see `squeue --me` there)")
    if mark is None:
        code, out, err = stream.ended
        res, stream = Result(text, code, b"".join(lines) + out, err), None
    else:
        res = Result(text, 0, b"".join(lines), bytes(stream.err))
    res.stderr = mask(res.stderr, ssh.host.env.values())
    if res.returncode != 0 and scripts.NO_ENV in res.stderr:
        raise ssh._no_env(remote, conn.endpoint)
    return res, stream
