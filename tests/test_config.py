"""pj.config and the PYJOULE_* variables: one precedence order, clear errors."""

from __future__ import annotations

import logging
import os

import pytest

import pyjoule as pj
from pyjoule._config import _SETTINGS


@pytest.fixture(autouse=True)
def no_pyjoule_env(monkeypatch):
    for env, _, _ in _SETTINGS.values():
        if env:
            monkeypatch.delenv(env, raising=False)


def test_precedence_explicit_over_config_over_environment_over_default(monkeypatch):
    assert pj.config.get("workers") == len(os.sched_getaffinity(0))  # the default in force
    monkeypatch.setenv("PYJOULE_WORKERS", "3")
    assert pj.config.get("workers") == 3
    with pj.config(workers=5):
        assert pj.config.get("workers") == 5
        assert pj.config.get("workers", 7) == 7
    assert pj.config.get("workers") == 3


def test_a_global_setting_stays_until_set_to_none(monkeypatch):
    monkeypatch.setenv("PYJOULE_LIMIT", "9")
    pj.config(limit=2)
    try:
        assert pj.config.get("limit") == 2
        with pj.config(limit=4):
            assert pj.config.get("limit") == 4
        assert pj.config.get("limit") == 2
    finally:
        pj.config(limit=None)
    assert pj.config.get("limit") == 9  # back to the environment


def test_every_setting_reads_its_environment_variable(monkeypatch, tmp_path):
    values = {"PYJOULE_CACHE": (str(tmp_path), "cache", str(tmp_path)),
              "PYJOULE_WORKERS": ("2", "workers", 2),
              "PYJOULE_PROGRESS": ("off", "progress", False),
              "PYJOULE_LOG_LEVEL": ("info", "log_level", "info"),
              "PYJOULE_POLL_INTERVAL": ("0.25", "poll_interval_s", 0.25),
              "PYJOULE_PROGRESS_INTERVAL": ("5", "progress_interval_s", 5.0),
              "PYJOULE_LIMIT": ("10", "limit", 10),
              "PYJOULE_SSH_CONFIG": ("/etc/ssh/x", "ssh_config", "/etc/ssh/x"),
              "PYJOULE_SHARED_CACHE": ("1", "shared_cache", True)}
    assert {env for env, _, _ in _SETTINGS.values() if env} == set(values)
    for env, (text, name, expected) in values.items():
        monkeypatch.setenv(env, text)
        assert pj.config.get(name) == expected, env
    monkeypatch.setenv("PYJOULE_CACHE", "0")
    assert pj.config.get("cache") is False


@pytest.mark.parametrize("env, text", [("PYJOULE_WORKERS", "many"),
                                       ("PYJOULE_WORKERS", "-1"),
                                       ("PYJOULE_POLL_INTERVAL", "0"),
                                       ("PYJOULE_PROGRESS_INTERVAL", "-1"),
                                       ("PYJOULE_LOG_LEVEL", "loud")])
def test_a_bad_environment_variable_is_named_with_what_it_must_be(monkeypatch, env, text):
    monkeypatch.setenv(env, text)
    name = next(n for n, (e, _, _) in _SETTINGS.items() if e == env)
    with pytest.raises(pj.OptionError, match=f"{env}=.*must be"):
        pj.config.get(name)


@pytest.mark.parametrize("options, says", [({"workers": "4"}, "whole number"),
                                           ({"progress": "no"}, "True or False"),
                                           ({"poll_interval_s": -1}, "seconds > 0"),
                                           ({"log_level": "chatty"}, "one of"),
                                           ({"cache": 3}, "directory")])
def test_a_bad_value_is_refused_and_changes_nothing(options, says):
    before = {name: pj.config.get(name) for name in _SETTINGS}
    with pytest.raises(pj.OptionError, match=says):
        pj.config(**options)
    name = next(iter(options))
    assert pj.config.get(name) == _SETTINGS[name][2] or name in ("workers", "cache")
    assert pj.config.get(name) == before[name]


def test_log_level_applies_to_the_pyjoule_logger_and_is_restored():
    logger = logging.getLogger("pyjoule")
    before = logger.level
    with pj.config(log_level="debug"):
        assert logger.level == logging.DEBUG
    assert logger.level == before


def test_limit_from_config_runs_only_the_first_missing_psets(cache_dir, tmp_path):
    calls = tmp_path / "calls"

    @pj.experiment(workers=0)
    def square(x):
        with open(calls, "a") as fh:
            fh.write(f"{x}\n")
        return x * x

    with pj.config(limit=3):
        ds = square.sweep(x=range(10))
    assert calls.read_text().split() == ["0", "1", "2"]
    assert int(ds.result.notnull().sum()) == 3
    ds = square.sweep(x=range(10))  # no limit: the other seven, nothing twice
    assert sorted(map(int, calls.read_text().split())) == list(range(10))
    assert ds.result.values.tolist() == [x * x for x in range(10)]


def test_the_defaults_in_force_are_shown(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert pj.config.get("cache") == tmp_path / ".pyjoule"  # where results would go
    with pj.config(workers=3):
        assert "workers=3" in repr(pj.config) and "cache=" in repr(pj.config)
    with pytest.raises(pj.OptionError, match="[Dd]id you mean 'workers'"):
        pj.config(worker=3)


def test_the_home_folder_is_remembered_until_reset_caches(tmp_path, monkeypatch):
    """The search for a project stops at the home folder, resolved once per ``$HOME``;
    ``reset_caches`` forgets it (a test that retargets a linked home needs that)."""
    from pyjoule import _config

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'outer'\n")
    for name in ("a", "b"):
        (tmp_path / name / "work").mkdir(parents=True)
    link = tmp_path / "home"
    link.symlink_to(tmp_path / "a")
    monkeypatch.setenv("HOME", str(link))
    _config.reset_caches()
    start = tmp_path / "a" / "work"
    assert _config.project_root(start) is None  # home is a: no project above it
    link.unlink()
    link.symlink_to(tmp_path / "b")
    assert _config.project_root(start) is None  # still remembered as a
    _config.reset_caches()
    assert _config.project_root(start) == tmp_path  # a is no home now: the outer project
    _config.reset_caches()  # the next test resolves its own home
