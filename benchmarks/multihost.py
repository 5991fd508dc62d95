"""Several hosts at once (issue #17, item 4): one sweep over two hosts, one of them
at half speed, against the ideal split; prints a markdown section for
docs/benchmarks.md.

    uv run --group bench python benchmarks/multihost.py [--repeats 3] [--psets 600]

Needs root (it starts tests/sshd_server.py's server). The two hosts are two aliases
of that server with workdirs of their own; the slow one has ``PJ_SLOW=2`` in its
``pj.Host(env=...)``, which doubles each pset's sleep there. Psets sleep (no CPU), so
the two "hosts" sharing this machine's cores do not slow each other down. Each repeat
is a fresh interpreter and a fresh cache, after a warm-up call that builds both
hosts' environments; the time is the whole ``f.sweep`` call (both hosts checked,
chunks handed out, every result ingested, the Dataset built). The ideal split is the
total work over the combined throughput: ``psets / (W / d + W / (2 d))`` for ``W``
workers a host and ``d`` seconds a pset on the fast host. For reference, each repeat
also runs the fast host alone on its ideal share (two thirds of the psets), which
ideally takes the same time: what one host's runs cost over their work on this
machine, without several hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

STUDY = """
import json, logging, os, sys, time
import pyjoule as pj

if os.environ.get("BENCH_DEBUG"):
    logging.basicConfig(level=logging.DEBUG, format="%(relativeCreated)d %(message)s")
    logging.getLogger("paramiko").setLevel(logging.WARNING)

config, n, workers, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
alone = sys.argv[5] == "alone"  # the fast host alone, with its share of the psets
fast = pj.Host("pjfast", workdir="~/.cache/pyjoule-bench-fast", ssh_config=config)
slow = pj.Host("pjslow", workdir="~/.cache/pyjoule-bench-slow", ssh_config=config,
               env={"PJ_SLOW": "2"})


@pj.experiment(host=fast if alone else [fast, slow], workers=workers, progress=False)
def work(i):
    time.sleep(pause * float(os.environ.get("PJ_SLOW", "1")))
    return i


work.sweep(i=[-1])  # warm-up: both environments built, outside the measure
t = time.perf_counter()
ds = work.sweep(i=range(n * 2 // 3 if alone else n))
wall = time.perf_counter() - t
assert int(ds.result.sum()) == sum(range(n * 2 // 3 if alone else n))
table = work.table()
hosts = table[table["i"] >= 0]["_host"].tolist()  # the warm-up's pset left out
hosts = ["pjfast"] * len(hosts) if alone else hosts  # one host: named as the machine



def most_at_once(rows):  # the most psets that ran at the same time
    edges = sorted([(t, 1) for t in rows["_started"]] + [(t, -1) for t in rows["_finished"]],
                   key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


rows = table[table["i"] >= 0]
print("RESULT", json.dumps({"wall": wall, "fast": hosts.count("pjfast"),
                            "slow": hosts.count("pjslow"),
                            "peak": {h: most_at_once(rows[rows["_host"] == h])
                                     for h in set(rows["_host"])}}))
"""


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        "[project]\nname = 'bench'\nversion = '0'\nrequires-python = '>=3.10'\n"
        "dependencies = ['cloudpickle>=3', 'threadpoolctl>=3.1']\n")
    uv = subprocess.run([sys.executable, "-c", "import sshd_server as s; "
                         "print(s._local_uv())"], capture_output=True, text=True,
                        cwd=REPO / "tests", check=True).stdout.strip()
    subprocess.run([uv, "lock", "--quiet"], cwd=root, check=True)
    return root


def _config(server, folder: Path) -> Path:
    """The server's ssh config with the two aliases of one ``Host`` block."""
    text = server.ssh_config.read_text()
    path = folder / "ssh_config"
    path.write_text("Host pjfast pjslow\n" + text.split("\n", 1)[1])
    return path


def run_once(folder: Path, config: Path, n: int, workers: int, pause: float,
             mode: str = "both") -> dict:
    script = folder / "study.py"
    script.write_text(textwrap.dedent(STUDY))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYJOULE_PROGRESS="0",
               PYJOULE_CACHE=str(folder / f"cache-{time.time_ns()}"))
    proc = subprocess.run([sys.executable, str(script), str(config), str(n), str(workers),
                           str(pause), mode], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    if os.environ.get("BENCH_DEBUG"):
        print(proc.stderr, file=sys.stderr)
    return json.loads(proc.stdout.split("RESULT", 1)[1])


def main(argv=None) -> int:
    from sshd_server import ensure_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--psets", type=int, default=600)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.1)
    args = parser.parse_args(argv)
    server = ensure_server()
    ideal = args.psets / (args.workers / args.pause + args.workers / (2 * args.pause))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = _project(Path(tmp) / "study")
        config = _config(server, Path(tmp))
        alone = []
        for _ in range(args.repeats):  # interleaved: both see the same machine
            runs.append(run_once(folder, config, args.psets, args.workers, args.pause))
            alone.append(run_once(folder, config, args.psets, args.workers, args.pause,
                                  "alone"))
            print(runs[-1], alone[-1], file=sys.stderr)
    walls = [r["wall"] for r in runs]
    single = statistics.median(r["wall"] for r in alone)
    med = statistics.median(walls)
    peak = max(p for r in runs for p in r["peak"].values())
    fast = statistics.median(r["fast"] for r in runs)
    slow = statistics.median(r["slow"] for r in runs)
    print(f"| {args.psets} psets × {args.pause * 1000:.0f} ms (slow host: "
          f"{2 * args.pause * 1000:.0f} ms), {args.workers} workers a host | "
          f"{med:.2f} s ({min(walls):.2f}–{max(walls):.2f}) | {ideal:.2f} s | "
          f"{med / ideal:.2f}× | {fast:.0f} / {slow:.0f} "
          f"(ideal {args.psets * 2 / 3:.0f} / {args.psets / 3:.0f}) | "
          f"{single:.2f} s ({single / ideal:.2f}×) | {peak} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
