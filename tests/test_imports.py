"""`import pyjoule` stays light, and the worker's import closure stays small."""

from __future__ import annotations

import json
import subprocess
import sys

import pyjoule

from conftest import REPO

HEAVY = ("xarray", "sparse", "pandas", "paramiko", "fabric", "tqdm", "numba", "invoke",
         "matplotlib", "netCDF4")


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout))


def test_import_pyjoule_loads_no_heavy_library():
    loaded = _modules_after("import pyjoule")
    assert "pyjoule" in loaded
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)


def test_worker_import_closure_is_stdlib_cloudpickle_threadpoolctl():
    loaded = _modules_after("import pyjoule.worker")
    top = {m.split(".")[0] for m in loaded}
    stdlib = set(sys.stdlib_module_names) | {"__main__", "builtins", "_distutils_hack"}
    assert top - stdlib <= {"pyjoule", "cloudpickle", "threadpoolctl"}, top - stdlib
    assert "numpy" not in top


def test_all_is_sorted_and_complete():
    assert pyjoule.__all__ == sorted(pyjoule.__all__)
    public = {n for n in dir(pyjoule) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(pyjoule, n)).__name__ == "module"}
    assert set(pyjoule.__all__) == public - modules - set(pyjoule._PUBLIC_NOT_STARRED)


def test_star_import_keeps_the_builtin_open():
    namespace: dict = {}
    exec("from pyjoule import *", namespace)
    assert "open" not in namespace and "save" in namespace
    assert callable(pyjoule.open)


def test_describing_a_host_loads_no_ssh_library():
    loaded = _modules_after("import pyjoule as pj; pj.Host('box', workdir='/w')")
    assert "paramiko" not in loaded and "pyjoule._transport.ssh" not in loaded
