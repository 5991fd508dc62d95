"""Backends by name (pyjoule._backends.registry): the built-in ones imported only
when asked for, a plugin's registered one, and the error for a name nobody knows."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pyjoule as pj
from pyjoule._backends import registry
from pyjoule._backends.base import Backend
from pyjoule._backends.inprocess import InProcessBackend
from pyjoule._backends.pool import PoolBackend


class Recorded(Backend):
    name = "recorded"

    def __init__(self, run_dir=None, how=None):
        self.run_dir, self.how = run_dir, how

    @classmethod
    def prepare(cls, *, host=None, slurm=None, identity=None, batch=None):
        return cls(how=("new", host, batch, identity()))

    @classmethod
    def from_record(cls, run_dir, options):
        return cls(run_dir, ("record", options["where"]))


@pytest.fixture
def plugin():
    registry.register("recorded", Recorded)
    yield
    registry.unregister("recorded")


def test_the_builtin_names():
    assert registry.names() == ["executor", "inprocess", "local", "multi", "pool", "slurm",
                                "ssh"]
    assert registry.get("local") is registry.get("pool") is PoolBackend


def test_an_unknown_name_says_which_there_are():
    with pytest.raises(pj.OptionError, match=r"no backend named 'pbs'; the backends are: "
                                             r"executor, inprocess, local, multi, pool, "
                                             r"slurm, ssh"):
        registry.get("pbs")


def test_a_registered_backend_is_built_both_ways(plugin):
    assert "recorded" in registry.names()
    new = registry.create("recorded", host="box", batch=4, identity=lambda: "id")
    assert isinstance(new, Recorded) and new.how == ("new", "box", 4, "id")
    again = registry.from_record("recorded", "/runs/r1", {"where": "there"})
    assert again.run_dir == "/runs/r1" and again.how == ("record", "there")


def test_only_backends_can_be_registered():
    with pytest.raises(pj.OptionError, match="not a Backend subclass"):
        registry.register("thing", object)
    assert "thing" not in registry.names()


def test_the_local_backends_from_a_record(tmp_path):
    pool = registry.from_record("pool", str(tmp_path), {})
    assert isinstance(pool, PoolBackend) and pool.run_dir == str(tmp_path)
    driver = {"host": "h", "pid": 1, "start": "0"}
    inproc = registry.from_record("inprocess", str(tmp_path), {"driver": driver})
    assert isinstance(inproc, InProcessBackend) and inproc.driver == driver
    assert isinstance(registry.create("local"), PoolBackend)


def test_asking_the_registry_imports_no_remote_backend():
    code = ("import sys; from pyjoule._backends import registry; registry.names(); "
            "registry.get('pool'); "
            "print(sorted(m for m in sys.modules if m in ('paramiko', "
            "'pyjoule._backends.ssh', 'pyjoule._backends.slurm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
