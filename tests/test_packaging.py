"""What a user installs works: the wheel and sdist that ``uv build`` makes (issue #15,
item 16). pyjoule is not on the package index, so the documented way in is a clone or
a built wheel; this test builds both, installs the wheel into a fresh venv (with the
locked versions of its dependencies, from uv's cache) and runs the quick start there,
away from the source tree, so that nothing is imported from the clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from bytecode_caches import compile_missing, stale_packages
from conftest import REPO

# what the sdist must hold: enough to run the test suite and build the docs
SDIST_HOLDS = ("pyproject.toml", "uv.lock", "README.md", "mkdocs.yml", "pyjoule/__init__.py",
               "tests/conftest.py", "tests/test_packaging.py", "docs/index.md",
               "docs/quickstart.md", "examples/quickstart.py")


def _uv() -> list[str]:
    exe = os.environ.get("UV") or shutil.which("uv")  # $UV: set by `uv run`
    if exe:
        return [exe]
    if os.environ.get("CI") == "true":
        pytest.fail("CI needs uv to build and install the wheel")
    pytest.skip("uv not found (run the suite with `python -m uv run --frozen pytest`)")


def _run(cmd, *, cwd, env=None, timeout=120) -> str:
    base = {k: v for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("PYJOULE_")}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``uv build``: the sdist, and the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    _run([*_uv(), "build", "--out-dir", out, "--quiet"], cwd=REPO)
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_the_wheel_holds_the_package_its_script_and_py_typed(dist):
    wheel = _one(dist, "pyjoule-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pyjoule/__init__.py" in names and "pyjoule/worker.py" in names
    assert not {n for n in names if n.startswith(("tests/", "benchmarks/", "docs/"))}
    if (REPO / "pyjoule" / "py.typed").exists():
        assert "pyjoule/py.typed" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "pyjoule = pyjoule.cli:main" in text


@pytest.mark.slow
def test_the_sdist_holds_the_tests_docs_and_lock(dist):
    sdist = _one(dist, "pyjoule-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [n for n in SDIST_HOLDS if n not in names]
    assert not missing, f"the sdist lacks {missing}"
    assert not {n for n in names if n.startswith((".venv/", "site/", "benchmarks/_out/"))}


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_the_quickstart_and_the_cli(dist, tmp_path):
    uv = _uv()
    wheel = _one(dist, "pyjoule-*.whl")
    reqs = tmp_path / "requirements.txt"  # the locked versions: all in uv's cache
    _run([*uv, "export", "--frozen", "--no-default-groups", "--no-emit-project",
          "--no-hashes", "--quiet", "--output-file", reqs], cwd=REPO)
    venv = tmp_path / "venv"
    _run([*uv, "venv", "--quiet", "--python", sys.executable, venv], cwd=tmp_path)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    _run([*uv, "pip", "install", "--quiet", "--python", python, "-r", reqs, wheel],
         cwd=tmp_path, timeout=300)

    work = tmp_path / "study"  # away from the clone: `import pyjoule` finds the wheel
    work.mkdir()
    shutil.copy(REPO / "examples" / "quickstart.py", work)
    where = _run([python, "-c", "import pyjoule; print(pyjoule.__file__)"], cwd=work)
    assert Path(where.strip()).is_relative_to(venv), where
    cache, env = tmp_path / "cache", {"PYJOULE_CACHE": str(tmp_path / "cache")}
    first = _run([python, "quickstart.py"], cwd=work, env=env)
    second = _run([python, "quickstart.py"], cwd=work, env=env)
    assert "96 computed" in first and "0 computed, 96 from the cache" in second, second

    # the console script; a fully cached call starts no run: one run in the registry
    runs = json.loads(_run([bindir / "pyjoule", "--json", "runs", "--cache", cache], cwd=work))
    assert [(r["total"], r["done"], r["state"]) for r in runs] == [(96, 96, "done")]


def test_the_session_compiles_what_python_may_not(tmp_path):
    """Where PYTHONDONTWRITEBYTECODE is set the suite compiles missing or stale caches
    (tests/bytecode_caches.py), since pyproject.toml no longer asks uv to."""
    site = tmp_path / "site-packages"
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("X = 1\n")
    (site / "pkg" / "sub" / "mod.py").write_text("Y = 2\n")
    (site / "single.py").write_text("Z = 3\n")
    (site / "data").mkdir()  # not a package: ignored
    assert sorted(p.name for p in stale_packages([site])) == ["pkg", "single.py"]

    assert sorted(p.name for p in compile_missing([site])) == ["pkg", "single.py"]
    assert list((site / "pkg" / "sub" / "__pycache__").glob("mod.*.pyc"))
    assert stale_packages([site]) == []

    os.utime(site / "pkg" / "__init__.py", (1, 1))  # a reinstalled package: stale again
    assert [p.name for p in stale_packages([site])] == ["pkg"]
