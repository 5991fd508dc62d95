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
"""

import json
import os
import subprocess
import sys

if __package__:  # imported; sent as `python3 -c`, the names come first in the source
    from .._rundir import CLAIMED, ENDS, LOG_SUFFIX, LOGS, PENDING, QUEUE, RESULT_SUFFIX, \
        RESULTS, TMP_SUFFIX

LOG_TAIL = 4096  # bytes of a task's log read to find how slurmstepd ended it


def _run(argv):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=60)
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


def probe(run_dir, job_ids, offsets=None, sacct=False, expected=()):
    """The run's state as a dict (and the new result bytes, when ``offsets`` is a dict).

    ``expected`` lists the task ids (``job_task``) the caller knows of; for those the
    scheduler no longer shows, the exit file, ``sacct`` (when there is accounting) and
    the end of the task's log are consulted.
    """
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
    if states is not None:
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


def main(argv):
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
