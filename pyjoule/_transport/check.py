"""``pj.Host(...).check()``: connect and report what pyjoule needs of a host
(round trip, Python, uv, disk, CPUs, SLURM), each problem with what to do."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .._errors import PyjouleError
from .hosts import Host
from .ssh import Connection, close_all, connect, remote_error

# ------------------------------------------------------------------- check
_CHECK_SCRIPT = r"""
import json, os, shutil, subprocess, sys
workdir = os.path.expanduser(sys.argv[1])
probe = workdir
while not os.path.exists(probe):
    probe = os.path.dirname(probe) or "/"
uv = sys.argv[2] or shutil.which("uv") or os.path.expanduser("~/.local/bin/uv")
uv_version = None
if os.path.exists(uv):
    try:
        uv_version = subprocess.run([uv, "--version"], capture_output=True, text=True,
                                    timeout=20).stdout.strip()
    except Exception:
        uv_version = None
try:
    cpus = len(os.sched_getaffinity(0))
except AttributeError:
    cpus = os.cpu_count()
print(json.dumps({
    "python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable,
    "uv": uv if uv_version else None, "uv_version": uv_version,
    "free_bytes": shutil.disk_usage(probe).free, "workdir": workdir,
    "cpus": cpus, "sbatch": shutil.which("sbatch"),
}))
"""


@dataclass
class HostReport:
    """What :meth:`Host.check` found; ``problems`` each say what to do."""

    host: str
    rtt_ms: float
    facts: dict
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        f = self.facts
        free = f.get("free_bytes")
        lines = [
            f"host        {self.host}",
            f"round trip  {self.rtt_ms:.1f} ms (median of 5 commands on one connection)",
            f"python      {f.get('python') or '-'} ({f.get('executable') or 'not found'}"
            + (f"; {f['python_wanted']} wanted)" if f.get("python_wanted") else ")"),
            f"uv          {f.get('uv_version') or 'not found'}"
            + (f" ({f['uv']})" if f.get("uv") else "")
            + (f": {f['uv_note']}" if f.get("uv_note") else ""),
            f"workdir     {f.get('workdir', '-')}"
            + (f", {free / 2**30:.1f} GiB free" if free is not None else ""),
            f"cpus        {f.get('cpus', '-')}",
            f"slurm       {f.get('sbatch') or 'no sbatch on PATH'}",
        ]
        if f.get("slurm_limits"):
            lines.append(f"            {f['slurm_limits']}")
        lines += [f"PROBLEM     {p}" for p in self.problems] or ["ok"]
        return "\n".join(lines)


def check_host(host: Host | str, min_free_bytes: int = 1 << 30) -> HostReport:
    """Connect to ``host`` and report what pyjoule needs of it, found the way a run
    finds it: the Python after the ``setup`` lines, on PATH or by uv (or the
    ``environment="existing"`` interpreter as given); a failing setup line, a missing
    Python or a missing uv that pyjoule may not install are problems."""
    from . import interpreter
    from .env import python_minor

    host = Host.of(host)
    conn = connect(host)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        conn.run(["true"])
        times.append((time.perf_counter() - t0) * 1000)
    rtt = sorted(times)[2]
    problems: list[str] = []
    want = python_minor(host)
    existing = host.environment == "existing"
    python = None
    try:
        if interpreter.is_path(host.python):
            python = conn.expand(host.python)
        else:
            uv = _uv_path(conn, host)
            python = interpreter._search(conn, host, want, uv)
    except PyjouleError as exc:  # a failing setup line: named with its exit code
        problems.append(str(exc))
    runner = python or "python3"
    result = conn.run(interpreter.with_setup(host.setup, [runner, "-c", _CHECK_SCRIPT,
                                                          host.workdir, host.uv or ""]),
                      secret_env=host.env, check=False, timeout=60)
    facts: dict = {"python_wanted": want}
    if result.returncode == 127 and not problems:
        problems.append(str(interpreter.no_python_error(
            conn.endpoint, want, "no python3 runs there either")))
    elif result.returncode != 0 and not problems:
        problems.append(str(remote_error(conn.endpoint, result, "the host check")))
    elif result.returncode == 0:
        import json

        facts.update(json.loads(result.stdout.decode().strip().splitlines()[-1]))
        have = ".".join(facts["python"].split(".")[:2])
        if python is None:
            how = ("pyjoule will try `uv python install` on first use (it needs "
                   "github.com or UV_PYTHON_INSTALL_MIRROR)" if facts.get("uv_version")
                   or host.install_uv else "and uv may not be installed to fetch one")
            problems.append(str(interpreter.no_python_error(
                conn.endpoint, want, f"python3 there is {facts['python']}; {how}")))
        elif have != want:
            problems.append(
                f"{python} on the host is Python {facts['python']}, the client runs "
                f"{want}: cloudpickle needs the same minor version. Give "
                f"pj.Host(python=...) an interpreter of {want}.")
        if not facts.get("uv_version") and not existing:
            if host.install_uv:
                facts["uv_note"] = "pyjoule installs it into ~/.local/bin on first use"
            else:
                problems.append("uv not found on the host and pj.Host(install_uv=False): "
                                "install it (pip install --user uv) or pass pj.Host(uv=PATH)")
        if facts.get("sbatch"):
            facts["slurm_limits"] = _slurm_limits(conn)
        if facts.get("free_bytes", min_free_bytes) < min_free_bytes:
            problems.append(f"only {facts['free_bytes'] / 2**20:.0f} MiB free in "
                            f"{facts['workdir']}: free space or set pj.Host(workdir=...)")
    return HostReport(str(conn.endpoint), rtt, facts, problems)


def close_connections() -> None:
    """Close this process's SSH connections: ``pyjoule hosts check`` does when done,
    so a check run in-process (as the tests run the command) leaves none open."""
    close_all()


def _uv_path(conn, host) -> str | None:
    """uv's path on the host, without installing it (None when missing)."""
    from .env import _FIND_UV

    candidates = [host.uv] if host.uv else ["uv", conn.expand("~/.local/bin/uv")]
    res = conn.run(["sh", "-c", _FIND_UV, "sh", *candidates], check=False)
    return res.text.strip().splitlines()[-1] if res.returncode == 0 and res.text.strip() \
        else None


def _slurm_limits(conn: Connection) -> str:
    """One line on the host's SLURM: version, array and job limits, partitions."""
    from .._slurm import parse_facts

    res = conn.run(["sh", "-c", "sbatch --version; echo @@; scontrol show config; echo @@; "
                    "sinfo -h -o '%P|%C'"], check=False, timeout=60)
    parts = res.text.split("@@\n")
    if res.returncode != 0 or len(parts) != 3:
        return "(scontrol/sinfo did not answer: is the controller up?)"
    facts = parse_facts("", parts[1], parts[2])
    partitions = ", ".join(f"{name}{'*' if name == facts.default_partition else ''} "
                           f"({cpus} CPUs)" for name, cpus in facts.partitions.items())
    return (f"{parts[0].strip()}; MaxArraySize {facts.max_array_size}, MaxJobCount "
            f"{facts.max_job_count}; accounting {'yes' if facts.accounting else 'no'}; "
            f"partitions {partitions or '-'}")
