"""Building a Dataset imports no duck-array library the process has not imported (#15).

Nearly every scientific environment has dask installed (so has this one: the dev group
has ``dask[array]``). There, xarray's first Dataset of a process would import
dask.array (and through it sparse and numba) to ask whether the data is a dask array
(xarray 2026.9; 2025.6, locked for Python 3.10, only does so for the netCDF reader).
Each test runs a fresh interpreter, since imports are per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # most tests here take seconds

DUCK = ("dask", "sparse", "numba", "cupy", "jax", "pint", "cubed")

STUDY = """
import json, sys
{first}
import pyjoule as pj

@pj.experiment(workers=1, progress=False)
def f(a, b):
    return {{"y": a * b}}

SPACE = pj.grid(a=range(4), b=[0.5, 1.5])
"""


def _run(script: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _loaded() -> str:
    return f"sorted({{m.split('.')[0] for m in sys.modules}} & set({DUCK!r}))"


def test_cached_map_and_load_import_no_duck_array_library(cache_dir):
    _run(STUDY.format(first="") + "f.map(SPACE)\nprint('{}')")
    got = _run(STUDY.format(first="") + f"""
import importlib.util
ds = f.map(SPACE)
cached = [{_loaded()}]
loaded = pj.load(f)
print(json.dumps({{"installed": importlib.util.find_spec("dask") is not None,
                   "after_map": cached[0], "after_load": {_loaded()},
                   "y": ds.y.values.tolist(), "load_y": loaded.y.values.tolist()}}))
""")
    assert got["installed"], "dask must be installed for this test (uv's dev group)"
    assert got["after_map"] == [] and got["after_load"] == [], got
    assert got["y"] == [[a * b for b in (0.5, 1.5)] for a in range(4)]
    assert got["load_y"] == got["y"]


@pytest.mark.parametrize("when", ["before", "after"])
def test_dask_imported_by_the_user_still_works(cache_dir, when):
    """dask imported before the first Dataset, or after it: chunking works, and dask
    arrays given to xarray are recognised as such."""
    before = "import dask.array as da" if when == "before" else ""
    got = _run(STUDY.format(first=before) + f"""
ds = f.map(SPACE)
{"import dask.array as da" if when == "after" else ""}
import xarray as xr
chunked = ds.chunk({{"a": 2}})
mine = xr.Dataset({{"z": ("q", da.arange(6, chunks=3))}})
print(json.dumps({{"type": type(chunked.y.data).__module__, "chunks": chunked.y.chunks,
                   "sum": float(chunked.y.sum().compute()), "dense": float(ds.y.sum()),
                   "mine": type(mine.z.data).__module__, "mine_chunks": mine.z.chunks,
                   "load": type(pj.load(f).chunk().y.data).__module__}}))
""")
    assert got["type"].startswith("dask.array") and got["load"].startswith("dask.array")
    assert got["chunks"] == [[2, 2], [2]]
    assert got["sum"] == got["dense"] == sum(a * b for a in range(4) for b in (0.5, 1.5))
    assert got["mine"].startswith("dask.array") and got["mine_chunks"] == [[3, 3]]


def test_sparse_results_still_sparse(cache_dir):
    got = _run(STUDY.format(first="") + """
ds = f.map(SPACE, sparse=True)
print(json.dumps({"type": type(ds.y.data).__module__, "dask": "dask" in sys.modules}))
""")
    assert got["type"].startswith("sparse") and not got["dask"]


def test_open_of_a_saved_dataset_imports_no_duck_array_library(cache_dir, tmp_path):
    path = tmp_path / "study.nc"
    _run(STUDY.format(first="") + f"pj.save(f.map(SPACE), {str(path)!r})\nprint('{{}}')")
    got = _run(f"""
        import json, sys
        import pyjoule as pj
        ds = pj.open({str(path)!r})
        print(json.dumps({{"loaded": {_loaded()}, "y": ds.y.values.tolist()}}))
    """)
    assert got["loaded"] == [], got
    assert got["y"] == [[a * b for b in (0.5, 1.5)] for a in range(4)]
