"""What successful psets print is kept (``capture=True``), as failures' output is.

Shown by ``f.table(output=True)`` and ``pyjoule logs RUN [PSET]``; capped per stream;
private, and gone with its result (``clear``), kept while the result is (``gc``);
nothing is stored for a function that prints nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pyjoule as pj
from pyjoule._store import MAX_OUTPUT_BYTES

from conftest import REPO


def chatty(x):
    if x % 2 == 0:
        print(f"even {x}")
    if x == 3:
        print(f"warning about {x}", file=sys.stderr)
    if x == 5:
        print("about to fail")
        raise RuntimeError("five")
    return x


def quiet(x):
    return x


def flood(x):
    sys.stdout.write("a" * MAX_OUTPUT_BYTES + "the end\n")
    return x


def pyjoule_cli(*args: str, cache) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pyjoule", *args, "--cache", str(cache)],
                          capture_output=True, text=True, env=env, timeout=120)


def _output(table) -> dict:
    return {row["x"]: (row["_stdout"], row["_stderr"])
            for row in table.to_dict("records")}


def test_what_successful_psets_printed_is_in_the_table(cache_dir):
    f = pj.experiment(workers=2, errors="ignore")(chatty)
    f.sweep(x=range(6))
    assert "_stdout" not in f.table().columns  # only when asked for
    got = _output(f.table(output=True))
    assert got == {0: ("even 0\n", ""), 1: ("", ""), 2: ("even 2\n", ""),
                   3: ("", "warning about 3\n"), 4: ("even 4\n", "")}
    assert _output(f.table(pj.grid(x=[2, 3]), output=True)) == {
        2: ("even 2\n", ""), 3: ("", "warning about 3\n")}
    # a run's table has its failures too, with what they printed
    run = pj.experiment(workers=1, errors="ignore")(chatty).submit(pj.grid(x=[4, 5]))
    run.wait(60)
    assert _output(run.table(output=True)) == {4: ("even 4\n", ""),
                                               5: ("about to fail\n", "")}


def test_output_is_capped_and_nothing_is_kept_for_silent_or_uncaptured_psets(cache_dir):
    f = pj.experiment(workers=1)(flood)
    f.sweep(x=[1])
    (out,) = f.table(output=True)["_stdout"]
    assert out.startswith("[pyjoule: the first 8 bytes of this stdout were cut")
    assert out.endswith("the end\n") and len(out) < MAX_OUTPUT_BYTES + 200
    for func, options in ((quiet, {}), (chatty, {"capture": False})):
        g = pj.experiment(workers=1, **options)(func)
        g.sweep(x=[0, 2])
        assert set(g.table(output=True)["_stdout"]) == {""}
        store = g._store()
        found = store.lookup(g._func_id_for(store))
        (seg_id,) = {loc >> 32 for loc in found.values()}
        assert "output" not in store._load_part(seg_id, "b")  # no bytes spent


def test_output_is_private_kept_by_gc_and_removed_with_its_results(cache_dir):
    f = pj.experiment(workers=1)(chatty)
    f.sweep(x=[0, 2])
    segments = list((cache_dir / "data").rglob("*.seg"))
    assert segments and all(p.stat().st_mode & 0o777 == 0o600 for p in segments)
    assert pyjoule_cli("cache", "gc", cache=cache_dir).returncode == 0
    assert _output(f.table(output=True)) == {0: ("even 0\n", ""), 2: ("even 2\n", "")}
    f.clear_cache()
    assert not list((cache_dir / "data").rglob("*.seg"))
    assert len(f.table(output=True)) == 0


@pytest.mark.slow
def test_pyjoule_logs_shows_what_the_psets_of_a_run_printed(cache_dir):
    f = pj.experiment(workers=2, errors="ignore")(chatty)
    f.sweep(x=range(6))
    (run_id,) = pj.runs().id
    keys = dict(zip(f.table().x, f.table()._key))
    done = pyjoule_cli("logs", run_id, cache=cache_dir)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for x in (0, 2, 4):
        assert f"=== pset {keys[x]} {{'x': {x}}}: done\n--- stdout\neven {x}\n" in text
    assert f"=== pset {keys[3]} {{'x': 3}}: done\n--- stderr\nwarning about 3\n" in text
    assert "{'x': 5}: failed (RuntimeError, reason exception)\n--- stdout\nabout to " \
           "fail\n--- traceback\nTraceback" in text
    assert 'raise RuntimeError("five")' in text
    assert "1 other finished psets printed nothing" in text  # x=1
    one = pyjoule_cli("logs", run_id[:12], keys[3][:8], "--json", cache=cache_dir)
    assert one.returncode == 0, one.stderr
    (entry,) = json.loads(one.stdout)["psets"]
    assert entry["key"] == keys[3] and entry["pset"] == {"x": 3}
    assert (entry["stdout"], entry["stderr"]) == ("", "warning about 3\n")
    silent = pyjoule_cli("logs", run_id, keys[1], cache=cache_dir)
    assert silent.returncode == 0 and "{'x': 1}: done, printed nothing" in silent.stdout
    missing = pyjoule_cli("logs", run_id, "nosuchkey", cache=cache_dir)
    assert missing.returncode == 2
    assert missing.stderr.startswith("pyjoule: no pset 'nosuchkey' in run")
