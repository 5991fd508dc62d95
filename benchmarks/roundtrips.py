"""Seconds and round trips of remote sweeps over a slow network (issue #14 §4).

    uv run python benchmarks/roundtrips.py [--rtt-ms 0 50] [--warm 3] [--slurm]

Needs root (it starts tests/sshd_server.py's server). For each RTT, a fresh study
process starts a tests/delay_proxy.py proxy in front of the test sshd (25 ms each way
for 50 ms RTT), reaches it through an ssh config alias, and measures (a) its first
sweep of 100 new psets (connect, authenticate, check sync, environment and pyjoule,
start, stream back, tidy) and (b) warm sweeps of 100 new psets in the same process.
The project, its environment and pyjoule are on the host already (a warm-up process
made them), as for a user's second session. Prints one JSON line per RTT.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

STUDY = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from delay_proxy import DelayProxy
from sshd_server import ensure_server

server = ensure_server()
proxy = DelayProxy(("127.0.0.1", server.port), delay_s=float(sys.argv[2]) / 2000).start()
os.environ["PYJOULE_SSH_CONFIG"] = str(proxy.ssh_config(server, sys.argv[3]))
slurm = sys.argv[5] == "slurm"

import pyjoule as pj


@pj.experiment(host="pjslow", workers=2, progress=False,
               **({"slurm": {"time": "00:05:00"}, "batch": 50} if slurm else {}))
def triv(i, tag="x"):
    return i


out = {"first": None, "warm": []}
base = int(time.time() * 1000) % 10**9 * 1000
for k in range(1 + int(sys.argv[4])):
    proxy.reset()
    t = time.perf_counter()
    ds = triv.sweep(i=range(base + 100 * k, base + 100 * k + 100))
    took = time.perf_counter() - t
    assert int(ds.result.size) == 100
    row = {"seconds": took, "turns": proxy.turns, "connections": proxy.connections}
    if k == 0:
        out["first"] = row
    else:
        out["warm"].append(row)
print("RESULT", json.dumps(out))
"""


def study(folder: Path, rtt_ms: float, warm: int, slurm: bool = False) -> dict:
    script = folder / "study.py"
    script.write_text(textwrap.dedent(STUDY))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYJOULE_CACHE=str(folder / ".pyjoule"))
    proc = subprocess.run([sys.executable, str(script), str(REPO / "tests"), str(rtt_ms),
                           str(folder.parent / f"proxy-{time.time_ns()}"), str(warm),
                           "slurm" if slurm else "ssh"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def project(folder: Path) -> Path:
    from sshd_server import _local_uv

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        "[project]\nname = 'rtt'\nversion = '0'\nrequires-python = '>=3.10'\n"
        "dependencies = ['cloudpickle>=3', 'threadpoolctl>=3.1']\n")
    subprocess.run([str(_local_uv()), "lock", "--quiet"], cwd=folder, check=True)
    return folder


def measure(rtts, warm: int, slurm: bool = False, folder: Path | None = None) -> dict:
    """{rtt_ms: study result}; a warm-up process first builds what the host needs."""
    with tempfile.TemporaryDirectory() as tmp:
        root = project(folder or Path(tmp) / "rtt")
        study(root, 0, 0, slurm)  # warm-up: the project, env and pyjoule on the host
        return {rtt: study(root, rtt, warm, slurm) for rtt in rtts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rtt-ms", type=float, nargs="+", default=[0, 50])
    p.add_argument("--warm", type=int, default=3)
    p.add_argument("--slurm", action="store_true")
    a = p.parse_args(argv)
    for rtt, res in measure(a.rtt_ms, a.warm, a.slurm).items():
        print(json.dumps({"rtt_ms": rtt, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
