"""The package type-checks (mypy, strict on the modules users touch first: see
``[tool.mypy]`` in pyproject.toml), ships ``py.typed``, and a user's type checker
sees the options of ``@pj.experiment`` and ``f.options`` as typed parameters."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache),
                           "--no-color-output", "--show-error-codes", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_package_type_checks(tmp_path):
    out = _mypy(cwd=ROOT, cache=tmp_path / "cache")  # files and strictness: pyproject
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout
    assert (ROOT / "pyjoule" / "py.typed").exists()


USER_SCRIPT = '''\
import pyjoule as pj


@pj.experiment(workers=4, errors="ignore", timeout=None, ignore=["verbose"])
def simulate(N: int, seed: int = 0, verbose: bool = False) -> float:
    return N * 0.1 + seed


@pj.experiment
def bare(x: int) -> int:
    return x


fast = simulate.options(workers=2, host=None, retries=1, progress=False)
fast.options(timeout=30.0, capture=False).map([{"N": 1}])
bare.options(cache=False)
pj.experiment(cache="results", slurm={"time": "5"})(bare.func)
simulate.options(workers="x")  # E: arg-type
pj.experiment(progress="yes")  # E: call-overload
simulate.options(version="2")  # E: arg-type
pj.experiment(wrokers=2)  # E: call-overload
bare.options(retry=1)  # E: arg-type
pj.experiment(errors="explode")  # E: call-overload
'''


def test_a_user_script_is_checked_against_the_typed_options(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(USER_SCRIPT)
    out = _mypy(str(script), cwd=tmp_path, cache=tmp_path / "cache")
    errors = {int(m.group(1)) for m in re.finditer(r"study\.py:(\d+): error", out.stdout)}
    expected = {n for n, line in enumerate(USER_SCRIPT.splitlines(), 1) if "# E:" in line}
    assert errors == expected, out.stdout + out.stderr
    assert "missing library stubs or py.typed" not in out.stdout
