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

# Everything a dispatch needs to know of the host, in one command: its home and CPUs,
# the sync manifests at the given paths (their text, or null) and whether the given
# ready markers exist. A path starting with "~/" is under the home.
CHECK = r"""
import json, os, sys
home, ask = os.path.expanduser("~"), json.loads(sys.argv[1])


def path(p):
    return home + p[1:] if p.startswith("~/") else p


def text(p):
    try:
        with open(path(p)) as fh:
            return fh.read()
    except (OSError, ValueError):
        return None


try:
    cpus = len(os.sched_getaffinity(0))
except AttributeError:  # macOS, BSD
    cpus = os.cpu_count() or 1
print(json.dumps({"home": home, "cpus": cpus,
                  "manifests": [text(p) for p in ask["manifests"]],
                  "markers": [os.path.isfile(path(p)) for p in ask["markers"]]}))
"""

# Receive a run's files on stdin, in the one command that starts the run: a 12-digit
# length, a JSON header {"env": mode, "files": [[name, size], ...]}, then the bytes
# of each file. Makes the run directory (0700), writes each file 0600 (atomically,
# host.env first: pj.Host(env=...) arrives only this way, never in an argv), and
# checks, for env "keep" (a process that knows only the names), that host.env is
# there already. A retry's previous exit code goes. Reads exactly what was sent
# (os.read): the rest of stdin is left to the command. Names are the client's
# constants: one with a "/" or a leading "." is refused.
RECEIVE = fill(r"""
import json, os, sys
os.umask(0o077)
run_dir = sys.argv[1]


def read(n):
    out = bytearray()
    while len(out) < n:
        got = os.read(0, n - len(out))
        if not got:
            sys.exit("pyjoule: the run's files arrived incomplete")
        out += got
    return bytes(out)


head = json.loads(read(int(read(12))))
os.makedirs(os.path.join(run_dir, "@RESULTS@"), mode=0o700, exist_ok=True)
try:
    os.unlink(os.path.join(run_dir, "@EXIT@"))
except FileNotFoundError:
    pass
for name, size in head["files"]:
    if "/" in name or name.startswith(".") or not name:
        sys.exit("pyjoule: refusing the file name %r" % name)
    path = os.path.join(run_dir, name)
    data = read(size)
    fd = os.open(path + "@TMP_SUFFIX@", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(path + "@TMP_SUFFIX@", path)
if head["env"] == "keep" and not os.path.isfile(os.path.join(run_dir, "@HOST_ENV@")):
    sys.stderr.write("@pyjoule-no-env\n")
    sys.exit(3)
""")
NO_ENV = b"@pyjoule-no-env"

# Receive the files (RECEIVE, $1) and start the worker detached: its own session
# (setsid), immune to the SSH session's end (nohup, stdin from /dev/null). The user's
# setup lines (their own shell, e.g. `module load`) run first; everything else arrives
# as quoted positional arguments. A setup line that fails ends the script (set -e):
# the EXIT trap then names it. pj.Host(env=...) values are read from host.env (never
# in an argv). worker.pid gets the pid and the start time (/proc/<pid>/stat field
# 22, else ps's lstart), which tell the worker from a process given its pid later.
# Then "@pyjoule-started <pid>" and, in the same command, FOLLOW ($2, from the offsets
# $3): the run's results streamed back as they are written, and the tidying asked for at the end.
START = fill("""set -e
umask 077
receive=$1; follow=$2; offsets=$3; run_dir=$4; project=$5; env_mode=$6; shift 6
python3 -c "$receive" "$run_dir"
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
echo "@pyjoule-started $pid"
exec python3 -c "$follow" "$run_dir" "$offsets"
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

# What was appended to the result files since the given offsets: one JSON line, then
# the new bytes of each file in the order listed. Standard library only.
_PULL_FUNC = fill(r"""
import json, sys


def pull(run_dir, offsets):
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
        offsets[name] = offsets.get(name, 0) + len(data)
    head = json.dumps({"files": [[n, sizes[n]] for n in names], "alive": alive})
    return alive, head.encode() + b"\n" + b"".join(chunks)
""")

# One pull (a process following a run it did not start, or after a dropped stream).
PULL = WORKER_PID + _PULL_FUNC + r"""
sys.stdout.buffer.write(pull(sys.argv[1], json.loads(sys.argv[2]))[1])
"""

# Stream a run's results back as they are written: a frame ("@pyjoule-frame <n>", then
# a pull's n bytes) whenever the result files grew or the worker ended, looking every
# 20 ms while results come, less often while none do; the last frame says the worker
# ended. Then one line on stdin says what to tidy: "all" removes the run directory,
# "keep-log" all of it but the log; anything else (the client went away) nothing.
FOLLOW = WORKER_PID + _PULL_FUNC + fill(r"""
import shutil, time
run_dir, offsets, pause, out = sys.argv[1], json.loads(sys.argv[2]), 0.02, sys.stdout.buffer
while True:
    alive, frame = pull(run_dir, offsets)
    if not alive or len(frame) > frame.index(b"\n") + 1:
        out.write(b"@pyjoule-frame %d\n" % len(frame) + frame)
        out.flush()
        pause = 0.02
    if not alive:
        break
    time.sleep(pause)
    pause = min(pause * 1.5, 0.25)
word = sys.stdin.readline().strip()
if word == "all":
    shutil.rmtree(run_dir, ignore_errors=True)
elif word == "keep-log":
    for name in os.listdir(run_dir):
        if name != "@LOG@":
            path = os.path.join(run_dir, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) \
                else os.unlink(path)
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
