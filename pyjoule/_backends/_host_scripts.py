"""The scripts pyjoule runs in a run directory on a host, over SSH (each sent as the
text of one command: nothing of pyjoule's needs to be installed there to start, poll
or stop a run). They spell no name of the run directory: each ``@NAME@`` is filled
in from :mod:`.._rundir` (``_rundir.fill``), the names the worker uses.

Everything here runs under ``umask 077`` (the transport prefixes every command with
it): the run directory and what the worker writes into it are private to the user.
The host is trusted to compute, not to choose names on the client: what these
scripts answer is checked by :mod:`._names` before it touches a local path.
"""

from .._rundir import fill

# Make the run directory (0700: umask 077) and give it pj.Host(env=...): $2 = "send"
# (the values are on stdin: written to host.env, 0600), "keep" (a process that knows
# only the names: host.env must be there already) or "none". A retry's previous exit
# code goes.
PREPARE = fill("""set -e
run_dir=$1; env_mode=$2
mkdir -p "$run_dir/@RESULTS@"
rm -f "$run_dir/@EXIT@"
case $env_mode in
  send) cat > "$run_dir/@HOST_ENV@@TMP_SUFFIX@"
        mv -f "$run_dir/@HOST_ENV@@TMP_SUFFIX@" "$run_dir/@HOST_ENV@" ;;
  keep) [ -f "$run_dir/@HOST_ENV@" ] || { echo "@pyjoule-no-env" >&2; exit 3; } ;;
esac
""")
NO_ENV = b"@pyjoule-no-env"


# Start the worker detached: its own session (setsid), immune to the SSH session's end
# (nohup, stdin from /dev/null). The user's setup lines (their own shell, e.g.
# `module load`) run first; everything else arrives as quoted positional arguments.
# A setup line that fails ends the script (set -e): the EXIT trap then names it.
# pj.Host(env=...) values are read from host.env ($3 = keep; PREPARE wrote it): never
# in an argv. worker.pid gets the pid and the start time (/proc/<pid>/stat field 22,
# else ps's lstart), which tell the worker from a process given its pid later.
START = fill("""set -e
umask 077
run_dir=$1; project=$2; env_mode=$3; shift 3
[ "$env_mode" = none ] || . "$run_dir/@HOST_ENV@"
cd "$project"
{setup}
"$@" --check </dev/null  # pre-flight: the function and its modules load here, or stop
setsid nohup "$@" </dev/null >>"$run_dir/@LOG@" 2>&1 &
pid=$!
start=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)
if [ -z "$start" ]; then
  start=$(ps -o lstart= -p "$pid" 2>/dev/null | tr -s ' ' _ | sed 's/^_//;s/_$//')
  [ -z "$start" ] || start="ps:$start"
fi
# written here too, so that a poll before the worker writes its own sees it alive
printf '%s %s\\n' "$pid" "$start" > "$run_dir/@PID@@TMP_SUFFIX@"
mv -f "$run_dir/@PID@@TMP_SUFFIX@" "$run_dir/@PID@"
echo "$pid"
""")

# The worker of a run directory, if it runs: worker.pid's pid, believed only when its
# start time is the one recorded (a pid reused by another process has another). A
# record without a start time (a host where neither /proc nor ps gave one) falls back
# to the pid alone.
WORKER_PID = fill(r"""
import os, subprocess


def started(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return "Z" if fields[0] == "Z" else fields[19]
    except (OSError, IndexError):
        pass
    try:  # no /proc (macOS, BSD)
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    except OSError:
        return ""
    return "ps:" + "_".join(out.split()) if out.strip() else ""


def worker_pid(run_dir):
    try:
        with open(os.path.join(run_dir, "@PID@")) as fh:
            text, start = (fh.read().split() + [""])[:2]
        pid = int(text)
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    now = started(pid)
    if now == "Z" or (start and now != start):
        return None
    return pid
""")

# Pull what was appended to the result files since the given offsets. Standard library
# only; prints one JSON line, then the new bytes of each file in the order listed.
PULL = WORKER_PID + fill(r"""
import json, sys
run_dir, offsets = sys.argv[1], json.loads(sys.argv[2])
# alive is asked BEFORE the files are read: a worker found ended has written all
# it ever will, so this pull has everything
alive = not os.path.exists(os.path.join(run_dir, "@EXIT@")) and \
    worker_pid(run_dir) is not None
folder = os.path.join(run_dir, "@RESULTS@")
names = sorted(n for n in os.listdir(folder) if n.endswith("@RESULT_SUFFIX@")) \
    if os.path.isdir(folder) else []
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
""")

# Stop the worker's process group: SIGTERM (the supervisor kills its children and
# writes its exit code), then SIGKILL what is left after 2 s. Only the run's own
# worker (pid and start time) is signalled.
CANCEL = WORKER_PID + r"""
import signal, sys, time
pid = worker_pid(sys.argv[1])
if pid is None:
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
