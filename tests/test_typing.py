"""The package type-checks (mypy over all of pyjoule/, strict on every module a user's
code calls into: see ``[tool.mypy]`` in pyproject.toml; CI also runs it by itself before
the tests), ships ``py.typed``, and a user's type checker sees
the options of ``@pj.experiment`` and ``f.options`` as typed parameters, the types of
what the API returns (``f(...)`` returns what the function returns, ``f.map`` a
``xarray.Dataset``, ``pj.plot`` a ``Figure``, ...), and flags wrong calls."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # mypy over the package and a script

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache),
                           "--no-color-output", "--show-error-codes", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_package_type_checks():
    # the checkout's own cache (mypy's default, which `.ci/run` fills just before the
    # tests): mypy re-checks every module whose source or options changed since, so the
    # answer is the same as from a cold cache, in seconds instead of a minute
    out = _mypy(cwd=ROOT, cache=ROOT / ".mypy_cache")  # files and strictness: pyproject
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout
    assert (ROOT / "pyjoule" / "py.typed").exists()


USER_SCRIPT = '''\
from typing import Any

import xarray as xr
from matplotlib.figure import Figure, SubFigure
from typing_extensions import assert_type

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

# what a study does, with the types an IDE shows for each step
space = pj.grid(N=[10, 20], seed=range(3)) + pj.zip(N=[30, 40], seed=0)
assert_type(space, pj.Space)
assert_type(space[0], dict[str, Any])
assert_type(space[1:], pj.Space)
assert_type(pj.product(pj.star({"N": 10}, N=[20]), {"seed": 1}), pj.Space)
ds = simulate.sweep(N=[10, 20], seed=range(3))
assert_type(ds, xr.Dataset)
assert_type(ds.mean("seed"), xr.Dataset)
assert_type(simulate.map(space, sparse=True), xr.Dataset)
assert_type(simulate(N=10), float)
assert_type(fast(20, seed=1), float)
assert_type(bare.func(1), int)
run = simulate.submit(space)
assert_type(run, pj.Run)
assert_type(run.status()["done"], int)
assert_type(run.wait(timeout=60).result(), xr.Dataset)
assert_type(pj.attach("run-id"), pj.Run)
assert_type(pj.load(simulate, sparse="auto"), xr.Dataset)
assert_type(pj.stats(ds, over="seed"), xr.Dataset)
assert_type(pj.best(pj.stats(ds, over=["seed"]), "rmse_mean", over="N"), xr.Dataset)
assert_type(pj.plot(ds, "rmse", x="N", hue="seed", xscale="log"), Figure)
assert_type(pj.plot(ds, "rmse", x="N", ax=Figure().add_subplot()), Figure | SubFigure)
pj.save(ds, "study.nc")
assert_type(pj.open("study.nc"), xr.Dataset)
simulate.table(space).describe()
pj.runs().tail()

# mistakes the types catch before anything runs
simulate(N="10")  # E: arg-type
bare(1, 2)  # E: call-arg
simulate.map(space, sparse="yes")  # E: arg-type
pj.plot(ds, "rmse", x="N", xscale=3)  # E: call-overload
pj.stats(ds, over=3)  # E: arg-type
pj.save(ds, 3)  # E: arg-type
assert_type(simulate(N=10), int)  # E: assert-type
'''


def test_a_user_script_is_checked_against_the_typed_api(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(USER_SCRIPT)
    out = _mypy(str(script), cwd=tmp_path, cache=tmp_path / "cache")
    errors = set(re.findall(r"study\.py:(\d+): error: .*\[([a-z-]+)\]$", out.stdout,
                            re.MULTILINE))
    expected = {(str(n), line.split("# E: ")[1].strip())
                for n, line in enumerate(USER_SCRIPT.splitlines(), 1) if "# E:" in line}
    assert errors == expected, out.stdout + out.stderr
    assert "missing library stubs or py.typed" not in out.stdout
