"""One look at a SLURM run, where its files are (the cluster): the state of every
array task, the batches claimed and left, the tasks' exit files, and (for a client
over SSH) the bytes the result files gained since the given offsets.

Standard library only, and self-contained: over SSH its source is sent as
``python3 -c`` (one command per poll), preceded by the run directory's names
(``_rundir.names_source``); locally :func:`probe` is called in-process and imports
them. It spells no name of the run directory itself.
The scheduler is asked *before* the files are read, so a look that finds every task
ended has every record they wrote.

The answer is one JSON line, followed (when offsets were given) by the new bytes of
each result file in the order the JSON lists them.

Over SSH the submit command ends in :func:`follow` (``--follow``): the same looks,
made on the host, each answer sent as a frame when something changed, so a sweep
needs no command per look. The files are looked at often (20 ms while results come,
up to 250 ms); the scheduler right after the submit, then backing off from 0.5 s to
30 s, and again at once when a task's exit file appears. One line on stdin ends it
and says what to tidy.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import time

if __package__:  # imported; sent as `python3 -c`, the names come first in the source
    from .._rundir import (
        CLAIMED,
        ENDS,
        LOG_SUFFIX,
        LOGS,
        PENDING,
        QUEUE,
        RESULT_SUFFIX,
        RESULTS,
        TMP_SUFFIX,
    )

LOG_TAIL = 4096  # bytes of a task's log read to find how slurmstepd ended it


def _run(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, "", str(exc)
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


def _squeue(job_ids):
    """{task id: [state, reason]} and an error text ('' when the answer is good)."""
    code, out, err = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids),
                           "-o", "%i|%T|%r"])
    if code != 0:
        if "Invalid job id" in err:  # every one of them purged: nothing is running
            return {}, ""
        return None, (err or out).strip() or f"squeue exited with {code}"
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = [parts[1], parts[2]]
    return states, ""


def _sacct(job_ids):
    code, out, _ = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids),
                         "-o", "JobID,State,ExitCode"])
    states = {}
    if code == 0:
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and "[" not in parts[0]:
                states[parts[0]] = [parts[1].split()[0], "sacct"]
    return states


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _log_tail(path):
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - LOG_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def probe(run_dir, job_ids, offsets=None, sacct=False, expected=(), known=None):
    """The run's state as a dict (and the new result bytes, when ``offsets`` is a dict).

    ``expected`` lists the task ids (``job_task``) the caller knows of; for those the
    scheduler no longer shows, the exit file, ``sacct`` (when there is accounting) and
    the end of the task's log are consulted. ``known``: a previous answer whose
    scheduler part is repeated instead of asking again (only the files are read).
    """
    if known is not None:
        states, error = known["squeue"], known["error"]
    else:
        states, error = _squeue(job_ids) if job_ids else ({}, "")
    answer = {"squeue": states, "error": error, "claimed": {}, "pending": {}, "ends": {},
              "logs": {}, "files": []}
    ends_dir = os.path.join(run_dir, ENDS)
    for name in _listdir(ends_dir):
        if name.endswith(TMP_SUFFIX):  # being written (atomically): not an end yet
            continue
        try:
            with open(os.path.join(ends_dir, name)) as fh:
                answer["ends"][name] = fh.read().strip()
        except OSError:
            pass
    queue = os.path.join(run_dir, QUEUE)
    for wave in _listdir(queue):
        answer["pending"][wave] = len(_listdir(os.path.join(queue, wave, PENDING)))
        answer["claimed"][wave] = _listdir(os.path.join(queue, wave, CLAIMED))
    if known is not None:
        answer["logs"] = known["logs"]
        if "sacct" in known:
            answer["sacct"] = known["sacct"]
    elif states is not None:
        # forgotten by squeue: a good exit file settles it; else sacct, else the log
        missing = [t for t in expected if t not in states
                   and (answer["ends"].get(t) or "1").split()[0] != "0"]
        if missing and sacct:
            found = _sacct(sorted({t.split("_")[0] for t in missing}))
            answer["sacct"] = {t: found[t] for t in missing if t in found}
            missing = [t for t in missing if t not in found]
        for task in missing:
            answer["logs"][task] = _log_tail(os.path.join(run_dir, LOGS, task + LOG_SUFFIX))
    chunks = []
    if offsets is not None:
        folder = os.path.join(run_dir, RESULTS)
        for name in [n for n in _listdir(folder) if n.endswith(RESULT_SUFFIX)]:
            try:
                with open(os.path.join(folder, name), "rb") as fh:
                    fh.seek(offsets.get(name, 0))
                    data = fh.read()
            except OSError:
                continue
            chunks.append(data)
            answer["files"].append([name, len(data)])
    return answer, chunks


FIRST_S, MAX_S, BACKOFF = 0.5, 30.0, 1.5  # between scheduler looks while following


def _frame(answer, chunks):
    body = json.dumps(answer).encode() + b"\n" + b"".join(chunks)
    return b"@pyjoule-frame %d\n" % len(body) + body


def _tidy(run_dir, word):
    """``all``: the run directory goes; ``keep-logs``: all of it but the tasks' logs;
    anything else (the client went away, or sent a new wave): nothing."""
    if word == "all":
        shutil.rmtree(run_dir, ignore_errors=True)
    elif word == "keep-logs":
        for name in os.listdir(run_dir):
            if name != LOGS:
                path = os.path.join(run_dir, name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) \
                    else os.unlink(path)


def follow(request, submitted):
    """Look at the run until a line arrives on stdin, sending each answer that says
    something new (states, claims, ends, result bytes) as a frame; the first look is
    right after the submit. ``submitted``: what ``sbatch --parsable`` printed."""
    run_dir, offsets = request["run_dir"], dict(request.get("offsets") or {})
    job = submitted.strip().splitlines()[-1].split(";")[0].strip()
    job_ids = [*request["job_ids"], job]
    expected = [*request["expected"], *(f"{job}_{i}" for i in range(request["count"]))]
    out, known, shown, gap, next_ask, ends = sys.stdout.buffer, None, None, FIRST_S, 0.0, {}
    pause = 0.02
    while True:
        now = time.monotonic()
        ask = known is None or now >= next_ask
        answer, chunks = probe(run_dir, job_ids, offsets, request.get("sacct", False),
                               expected, None if ask else known)
        if ask:
            known = answer
        grown = any(size for _, size in answer["files"])
        state = json.dumps({k: v for k, v in answer.items() if k != "files"},
                           sort_keys=True)
        if grown or state != shown:
            answer["asked"] = ask
            out.write(_frame(answer, chunks))
            out.flush()
            for name, size in answer["files"]:
                offsets[name] = offsets.get(name, 0) + size
            if state != shown and shown is not None:
                gap = FIRST_S  # work is moving: look at the scheduler often again
            shown = state
        if answer["ends"] != ends:  # a task ended: the scheduler will say so soon
            ends, next_ask = answer["ends"], now
        elif ask:
            next_ask, gap = now + gap, min(MAX_S, gap * BACKOFF)
        pause = 0.02 if grown else min(0.25, pause * 1.5)
        if select.select([sys.stdin], [], [], pause)[0]:
            _tidy(run_dir, sys.stdin.readline().strip())
            return


def main(argv):
    if argv[1] == "--follow":
        follow(json.loads(argv[2]), argv[3])
        return
    request = json.loads(argv[1])
    answer, chunks = probe(request["run_dir"], request["job_ids"], request.get("offsets"),
                           request.get("sacct", False), request.get("expected", ()))
    out = sys.stdout.buffer
    out.write(json.dumps(answer).encode() + b"\n")
    for data in chunks:
        out.write(data)
    out.flush()


if __name__ == "__main__":
    main(sys.argv)
