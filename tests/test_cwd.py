"""The cache and the names follow the code, not the working directory; the cache says
which it is, and keeps itself out of git."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyjoule as pj

from conftest import REPO

STUDY = """
    import json, os, sys, uuid
    import pyjoule as pj

    CALLS = sys.argv[1]

    def drag(v):
        return 0.5 * v * v

    @pj.experiment(workers=2)
    def simulate(v, k):
        open(os.path.join(CALLS, uuid.uuid4().hex), "w").close()  # one file per computation
        return drag(v) * k

    ds = simulate.sweep(v=range(6), k=[1, 2, 3])
    runs = pj.runs()
    print(json.dumps({"name": simulate.name, "cache": runs.attrs.get("cache"),
                      "reason": runs.attrs.get("cache_reason"),
                      "func_id": ds.attrs["func_id"], "total": float(ds.result.sum())}))
"""


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOULE_")}
    env["PYTHONPATH"] = str(REPO)
    env["PYJOULE_PROGRESS"] = "0"
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A real project of the user's: pyproject.toml, and a study in scripts/."""
    root = tmp_path / "work" / "proj"
    (root / "scripts").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "proj"\nversion = "0"\n')
    (root / "scripts" / "study.py").write_text(textwrap.dedent(STUDY))
    return root


def _study(project: Path, cwd: Path, calls: Path) -> dict:
    script = os.path.relpath(project / "scripts" / "study.py", cwd)
    proc = subprocess.run([sys.executable, script, str(calls)], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_script_run_from_three_folders_uses_one_cache_and_one_identity(project, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    seen = []
    for cwd in (project, project / "scripts", project.parent):  # root, scripts/, above
        before = len(os.listdir(calls))
        seen.append(_study(project, cwd, calls))
        seen[-1]["computed"] = len(os.listdir(calls)) - before
    assert [s["computed"] for s in seen] == [18, 0, 0], seen  # served from the cache
    assert {s["cache"] for s in seen} == {str(project / ".pyjoule")}, seen
    assert {s["name"] for s in seen} == {"scripts.study.simulate"}, seen
    assert len({s["func_id"] for s in seen}) == 1 and len({s["total"] for s in seen}) == 1
    assert seen[0]["reason"] == f"the project {project}"
    assert not (project.parent / ".pyjoule").exists()
    assert not (project / "scripts" / ".pyjoule").exists()


@pytest.mark.slow
def test_pyjoule_runs_names_the_cache_of_the_cwd(project, tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    _study(project, project, calls)
    cmd = [sys.executable, "-m", "pyjoule", "runs"]
    inside = subprocess.run(cmd, cwd=project / "scripts", env=_clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert inside.returncode == 0, inside.stderr
    first = inside.stdout.splitlines()[0]
    assert first == f"cache {project / '.pyjoule'} (the project {project})", inside.stdout
    assert "scripts.study.simulate" in inside.stdout


def test_the_runs_frame_is_a_dataframe_whose_repr_names_the_cache(cache_dir):
    import pandas as pd

    frame = pj.runs()
    assert isinstance(frame, pd.DataFrame)
    assert frame.attrs["cache"] == str(cache_dir)
    assert frame.attrs["cache_reason"] == "set by PYJOULE_CACHE"
    assert repr(frame).splitlines()[0] == \
        f"runs in the cache {cache_dir} (set by PYJOULE_CACHE)"
    assert "runs in the cache" in frame._repr_html_()
    assert frame[frame.state == "done"].attrs["cache"] == str(cache_dir)  # kept on slices


# ------------------------------------------------------------------ .gitignore
@pytest.mark.slow
def test_a_new_cache_ignores_itself_in_git(project, tmp_path):
    git = subprocess.run(["git", "init", "-q", str(project)], capture_output=True)
    assert git.returncode == 0, git.stderr
    calls = tmp_path / "calls"
    calls.mkdir()
    _study(project, project, calls)
    ignore = project / ".pyjoule" / ".gitignore"
    assert ignore.read_text().splitlines()[-1] == "*"
    assert stat.S_IMODE(ignore.stat().st_mode) == 0o600
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                            cwd=project, capture_output=True, text=True, check=True)
    assert ".pyjoule" not in status.stdout, status.stdout
    assert "scripts/study.py" in status.stdout  # git does see the project's files


def test_a_missing_gitignore_is_written_again_but_a_users_is_never_replaced(tmp_path):
    from pyjoule._store import Store, forget_open

    cache = tmp_path / "cache"
    Store.open(cache)
    ignore = cache / ".gitignore"
    ignore.unlink()
    forget_open()
    Store.open(cache)
    assert ignore.read_text().splitlines()[-1] == "*"  # missing on open: written
    ignore.write_text("index.sqlite\n")  # the user's own choice
    forget_open()
    Store.open(cache)
    assert ignore.read_text() == "index.sqlite\n"


@pytest.mark.slow
def test_a_notebooks_functions_belong_to_the_notebooks_project_whatever_the_cwd(
        project, tmp_path):
    # a kernel's __main__ has no __file__; VS Code names the notebook in the namespace
    notebook = project / "notebooks" / "analysis.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}")
    code = textwrap.dedent(f"""
        import json
        __vsc_ipynb_file__ = {str(notebook)!r}
        import pyjoule as pj

        @pj.experiment(workers=0)
        def area(r):
            return 3 * r * r

        area.sweep(r=[1, 2])
        print(json.dumps({{"name": area.name, "cache": pj.runs().attrs["cache"]}}))
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"name": "notebooks.analysis.area", "cache": str(project / ".pyjoule")}
    assert not (elsewhere / ".pyjoule").exists()
