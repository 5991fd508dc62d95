"""Experiment options: checked at decoration, per-call ``f.options``, one precedence
order (f.options > decorator > pj.config > environment > pyproject.toml > default),
and ``cache=False`` meaning no cache at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule._config import _SETTINGS

from conftest import calls
from conftest import log_call as _log_call


@pytest.fixture(autouse=True)
def no_pyjoule_env(monkeypatch):
    for env, _, _ in _SETTINGS.values():
        if env:
            monkeypatch.delenv(env, raising=False)




def add(a, b=0):
    _log_call(f"{a}-{b}")
    if a < 0:
        raise ValueError("negative")
    return {"s": a + b}


# ------------------------------------------------------------ validation
@pytest.mark.parametrize("options, says", [
    ({"progress": "yes"}, "True or False"),
    ({"capture": 1}, "True or False"),
    ({"workers": "4"}, "whole number >= 0"),
    ({"workers": True}, "whole number >= 0"),
    ({"threads": 0}, "whole number >= 1"),
    ({"batch": 0}, "whole number >= 1"),
    ({"retries": -1}, "whole number >= 0"),
    ({"timeout": 0}, "seconds > 0"),
    ({"errors": "loud"}, '"raise", "warn", "ignore"'),
    ({"version": 2}, "a string"),
    ({"dims": ["t"]}, "a dict"),
    ({"cache": 3}, "directory"),
    ({"ignore": [1]}, "list of argument names"),
    ({"host": 3}, "host must be a string"),
    ({"slurm": "time=5"}, "dict of sbatch options"),
])
def test_every_bad_value_is_refused_at_decoration_naming_option_and_value(options, says):
    ((name, value),) = options.items()
    with pytest.raises(pj.OptionError, match=re.escape(f"{name}={value!r}")) as e:
        pj.experiment(**options)(add)
    assert says in str(e.value)
    f = pj.experiment(add)
    with pytest.raises(pj.OptionError, match=f"{name}=") as e:
        f.options(**options) if name not in ("version", "ignore") else \
            pj.experiment(add, **options)
    assert says in str(e.value)


def test_an_unknown_option_says_what_was_meant():
    with pytest.raises(pj.OptionError, match="'wrokers'.*Did you mean 'workers'"):
        pj.experiment(wrokers=2)  # type: ignore[call-overload]
    with pytest.raises(pj.OptionError, match="'retry'.*Did you mean 'retries'"):
        pj.experiment(add).options(retry=2)  # type: ignore[call-arg]


@pytest.mark.parametrize("name, value", [("version", "2"), ("ignore", ["b"])])
def test_options_refuses_what_changes_the_identity(name, value):
    f = pj.experiment(add)
    with pytest.raises(pj.OptionError, match=f"cannot change {name}.*Decorate"):
        f.options(**{name: value})


def test_none_means_not_set_except_where_it_is_a_value():
    f = pj.experiment(add, workers=None, timeout=5)
    assert "workers" not in f._options
    assert f.options(timeout=None)._resolved().timeout is None
    assert f._resolved().timeout == 5  # f itself is unchanged


# ------------------------------------------------------------ f.options
@pytest.mark.slow
def test_options_keeps_identity_and_cache_entries(cache_dir, call_log):
    f = pj.experiment(add, workers=2, progress=False)
    g = f.options(workers=1, errors="ignore")
    assert g.func is f.func and g.name == f.name
    assert g._identity().func_id == f._identity().func_id
    f.sweep(a=[1, 2, 3])
    assert len(calls(call_log)) == 3
    ds = g.sweep(a=[1, 2, 3, -1])  # errors="ignore": the failure is a NaN
    assert calls(call_log).count("1-0") == 1 and len(calls(call_log)) == 4
    assert ds.s.sel(a=[1, 2, 3]).values.tolist() == [1, 2, 3]
    assert ds.s.sel(a=-1).isnull()
    g.sweep(a=[4])
    before = len(calls(call_log))
    f.sweep(a=[1, 2, 3, 4])  # what g computed, f finds
    assert len(calls(call_log)) == before
    assert f._resolved().errors == "raise" and f._resolved().workers == 2


def test_per_call_options_never_change_keys(cache_dir, call_log):
    f = pj.experiment(add, progress=False, workers=0)
    f.sweep(a=[1, 2], b=[0, 1])
    variants = [f.options(timeout=30, workers=1, retries=2, errors="warn", progress=False,
                          capture=False, batch=1, threads=2),
                f.options(dims={"s": ()}).options(workers=2, capture=True, batch=3),
                f.options(cache=str(cache_dir))]
    for g in variants:
        g.sweep(a=[1, 2], b=[0, 1])
        assert g(a=1, b=1) == {"s": 2}
    assert len(calls(call_log)) == 4
    assert f.options(workers=1).table().shape[0] == 4


# ------------------------------------------------------------ precedence
def test_precedence_options_decorator_config_environment(monkeypatch):
    f = pj.experiment(add, retries=1)
    assert f._resolved().sources["retries"] == "@pj.experiment(...)"
    with pj.config(retries=3, errors="warn"):
        assert f._resolved().retries == 1
        assert f.options(retries=2)._resolved().retries == 2
        assert f._resolved().errors == "warn"
        assert f._resolved().sources["errors"] == "pj.config(...)"
    assert f._resolved().errors == "raise"
    monkeypatch.setenv("PYJOULE_WORKERS", "3")
    assert f._resolved().workers == 3
    assert f._resolved().sources["workers"] == "environment variable PYJOULE_WORKERS"
    with pj.config(workers=5):
        assert f._resolved().workers == 5
        assert f.options(workers=1)._resolved().workers == 1


def _project(tmp_path: Path, table: str) -> Path:
    project = tmp_path / "proj"
    project.mkdir(mode=0o700)
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\n\n[tool.pyjoule]\n"
                                            + textwrap.dedent(table))
    (project / "pyproject.toml").chmod(0o600)
    return project


def _run(project: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    script = project / "study.py"
    script.write_text(textwrap.dedent(code))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYJOULE_")}
    return subprocess.run([sys.executable, str(script)], cwd="/", capture_output=True,
                          text=True, timeout=120, env={**environ, **env})


def test_pyproject_settings_come_after_environment_and_name_their_file(tmp_path):
    project = _project(tmp_path, """\
        workers = 3
        retries = 2
        errors = "warn"
        cache = "results"
        progress = false
        """)
    out = _run(project, """\
        import pyjoule as pj

        @pj.experiment(retries=1)
        def f(x):
            return x

        r = f._resolved()
        print(r.workers, r.retries, r.errors, r.progress, r.cache)
        print(r.sources["workers"])
        print(pj.config.get("errors", source=True)[1])
        with pj.config(errors="ignore"):
            print(f._resolved().errors)
        """, PYJOULE_WORKERS="2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"2 1 warn False {project / 'results'}"
    assert lines[1] == "environment variable PYJOULE_WORKERS"
    assert lines[2] == f"pyproject.toml [tool.pyjoule] at {project / 'pyproject.toml'}"
    assert lines[3] == "ignore"
    assert pj.config.sources()["retries"] == (0, "default")


@pytest.mark.parametrize("table, says", [("wrokers = 2\n", "Did you mean 'workers'"),
                                         ("progress = 'yes'\n", "True or False"),
                                         ("limit = 3\n", "unknown option")])
def test_pyproject_bad_settings_name_the_file(tmp_path, table, says):
    project = _project(tmp_path, table)
    out = _run(project, """\
        import pyjoule as pj

        @pj.experiment
        def f(x):
            return x

        f._resolved()
        """)
    assert out.returncode == 1
    assert "OptionError" in out.stderr and says in out.stderr
    assert str(project / "pyproject.toml") in out.stderr


def test_pyproject_others_can_write_is_ignored_with_a_warning(tmp_path):
    project = _project(tmp_path, "retries = 4\n")
    (project / ".git").mkdir()  # the project, found by its .git
    (project / "pyproject.toml").chmod(0o602)  # every user may write
    out = _run(project, """\
        import logging
        import pyjoule as pj
        logging.basicConfig()

        @pj.experiment
        def f(x):
            return x

        print(f._resolved().retries)
        """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"]
    assert "ignoring [tool.pyjoule]" in out.stderr and "writable" in out.stderr


# ------------------------------------------------------------ no cache
@pytest.mark.slow
@pytest.mark.parametrize("how", ["config", "environment", "pyproject"])
def test_no_cache_creates_no_cache_directory(tmp_path, how):
    project = _project(tmp_path, "cache = false\n" if how == "pyproject" else "")
    setting = "pj.config(cache=False)" if how == "config" else ""
    env = {"PYJOULE_CACHE": "0"} if how == "environment" else {}
    out = _run(project, f"""\
        import pyjoule as pj
        {setting}

        @pj.experiment(progress=False, workers=1)
        def f(x):
            return x * 2

        print(f(x=2), int(f.sweep(x=[1, 2]).result.sum()), int(f.map([{{"x": 3}}]).result))
        print(f.cache_info()["entries"], f.clear_cache())
        for name, call in [("table", f.table), ("load", lambda: pj.load(f)),
                           ("submit", lambda: f.submit([{{"x": 1}}]))]:
            try:
                call()
            except pj.OptionError as e:
                print(name, "no cache" in str(e) or "needs a cache" in str(e))
        """, **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "6", "6", "0", "0", "table", "True", "load", "True",
                                  "submit", "True"]
    assert sorted(p.name for p in project.iterdir()) == ["pyproject.toml", "study.py"]
