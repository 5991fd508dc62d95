"""The Python environments the benchmarks run in (issue #15).

Nearly every scientific environment has dask installed, and what a library pays there
(xarray importing dask.array for its first Dataset, say) does not show in a bare one.
So the workloads run in two environments built from the lock, side by side:

- ``bare``: the project and the ``bench`` group (joblib, psweep, ...), nothing else;
- ``dask``: the same plus pyjoule's ``dask`` and ``ray`` extras (distributed, ray) and
  the ``dask`` group (``dask[array]``, dask-jobqueue, loky): issue #17 asks every
  benchmark to be run in both, since ``import pyjoule`` and building a Dataset must not
  import either.

Peers run in ``bare``; W1 and W3 also run joblib in ``dask``. Each is a uv project environment under
``benchmarks/_out/env-<name>``, synced (``uv sync --frozen``) at the start of a run;
a second sync with nothing to change takes a fraction of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "_out"

ENVS = {
    "bare": ["--group", "bench"],
    "dask": ["--group", "bench", "--group", "dask", "--extra", "dask", "--extra", "ray"],
}
LABELS = {"bare": "bare environment", "dask": "with dask and ray installed"}


def uv_command() -> list[str]:
    """uv itself: ``$UV`` under ``uv run``, else the one on PATH, else ``python -m uv``."""
    exe = os.environ.get("UV") or shutil.which("uv")
    return [exe] if exe else [sys.executable, "-m", "uv"]


def env_dir(name: str) -> Path:
    return OUT / f"env-{name}"


def python_of(name: str) -> Path:
    bindir = "Scripts" if os.name == "nt" else "bin"
    return env_dir(name) / bindir / ("python.exe" if os.name == "nt" else "python")


def sync(name: str, log=print) -> Path:
    """Build or update the environment ``name`` from uv.lock; return its interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_PROJECT_ENVIRONMENT"] = str(env_dir(name))
    cmd = [*uv_command(), "sync", "--frozen", "--no-default-groups", *ENVS[name],
           "--python", sys.executable, "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building the {name!r} benchmark environment failed:\n"
                           f"$ {' '.join(cmd)}\n{done.stderr.strip()}")
    log(f"  environment {name}: {python_of(name)}")
    return python_of(name)


def has_module(python: Path, module: str) -> bool:
    code = f"import importlib.util as u; print(u.find_spec({module!r}) is not None)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() == "True"


def versions(python, names) -> dict:
    """``{distribution: version}`` of those of ``names`` installed for ``python``."""
    code = ("import json, sys\nfrom importlib import metadata\nout = {}\n"
            "for n in sys.argv[1:]:\n    try:\n        out[n] = metadata.version(n)\n"
            "    except metadata.PackageNotFoundError:\n        pass\nprint(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {}
