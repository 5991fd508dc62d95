"""Damage and full disks: a damaged entry is recomputed, a damaged index says how to
repair it (``pyjoule cache check --repair``), a full disk names the full file system,
leaves no temporary file, and loses nothing finished; failed psets' output is capped.

Disks fill up for real: a 2 MB tmpfs is the cache. Executions are counted in a side
file outside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule._store import MAX_OUTPUT_BYTES, Store, atomic_write

from conftest import REPO, run_script

COUNTED = """
import os, sys, pyjoule as pj

@pj.experiment(cache=os.environ["CACHE"], workers=2)
def f(x, size=0, fail=False, out=0):
    with open(os.environ["COUNT_FILE"], "a") as fh:
        fh.write(f"{x}\\n")
    if out:
        sys.stdout.write("o" * (out - 4) + "END\\n")
    if fail:
        raise ValueError(f"failed {x}")
    return os.urandom(size) if size else x * 2
"""


def run(folder: Path, cache: Path, count: Path, body: str, check: bool = True):
    (folder / "counted.py").write_text(COUNTED)
    return run_script(folder, "from counted import *\n" + body, check=check,
                      env={"CACHE": str(cache), "COUNT_FILE": str(count),
                           "PYJOULE_PROGRESS": "0"})


def executions(count: Path) -> list[str]:
    return count.read_text().split() if count.exists() else []


def segments(cache: Path) -> list[Path]:
    return sorted((cache / "data").glob("*/*.seg"))


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pyjoule", *args, "--cache", str(cache)],
                          capture_output=True, text=True, env=env, timeout=120)


# ------------------------------------------------------------------ damaged entries
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbled", "truncated"])
def test_a_call_on_a_damaged_entry_recomputes_and_returns_the_value(tmp_path, damage):
    cache, count = tmp_path / "cache", tmp_path / "count"
    assert "VALUE 6" in run(tmp_path, cache, count, "print('VALUE', f(x=3))").stdout
    (seg,) = segments(cache)
    data = seg.read_bytes()
    seg.write_bytes(data[:-8] + b"garbage!" if damage == "garbled" else data[:len(data) // 2])
    proc = run(tmp_path, cache, count, "print('VALUE', f(x=3))")
    assert "VALUE 6" in proc.stdout
    assert "will be recomputed" in proc.stderr
    assert executions(count) == ["3", "3"]
    run(tmp_path, cache, count, "print('VALUE', f(x=3))")  # and now it is cached again
    assert executions(count) == ["3", "3"]


# -------------------------------------------------------------------- damaged index
@pytest.mark.slow
def test_a_damaged_index_names_the_file_and_the_fix_and_check_repair_rebuilds_it(tmp_path):
    cache, count = tmp_path / "cache", tmp_path / "count"
    run(tmp_path, cache, count, "f.map(pj.grid(x=range(6)))")
    assert len(executions(count)) == 6
    index = cache / "index.sqlite"
    index.write_bytes(os.urandom(16384))  # not SQLite any more

    proc = run(tmp_path, cache, count, "f.map(pj.grid(x=range(6)))", check=False)
    assert proc.returncode != 0 and "CacheError" in proc.stderr
    assert str(index) in proc.stderr and "pyjoule cache check --repair" in proc.stderr
    assert len(executions(count)) == 6

    found = cli("cache", "check", "--json", cache=cache)
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert report["index"]["ok"] is False and not report["index"]["rebuilt"]
    assert index.read_bytes()  # nothing changed without --repair

    fixed = cli("cache", "check", "--repair", "--json", cache=cache)
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert report["index"]["rebuilt"] and report["moved_to"]
    moved = Path(report["moved_to"])
    assert (moved / "index.sqlite").stat().st_size == 16384
    assert oct(moved.stat().st_mode & 0o777) == "0o700"
    assert sum(f["entries"] for f in report["functions"]) == 6

    proc = run(tmp_path, cache, count, "print(f.map(pj.grid(x=range(8))).result.values)")
    assert len(executions(count)) == 8  # only the two new psets ran
    assert "[ 0  2  4  6  8 10 12 14]" in proc.stdout
    assert cli("cache", "check", cache=cache).returncode == 0


@pytest.mark.slow
def test_cache_check_reports_per_function_and_repair_drops_damaged_segments(tmp_path):
    cache, count = tmp_path / "cache", tmp_path / "count"
    run(tmp_path, cache, count, """
f.map(pj.grid(x=range(4)))
f.map(pj.grid(x=range(4, 7)))
@pj.experiment(cache=os.environ["CACHE"], workers=0)
def g(y):
    return -y
g.map(pj.grid(y=range(5)))
""")
    assert len(segments(cache)) == 3
    store = Store(cache)  # the first segment of f: 4 entries
    victim_rel, n_victim = store.db.execute(
        "SELECT s.path, COUNT(*) FROM segments s JOIN entries e ON e.loc >> 32 = s.seg_id "
        "GROUP BY s.seg_id ORDER BY s.seg_id LIMIT 1").fetchone()
    store.close()
    assert n_victim == 4
    victim = cache / victim_rel
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))

    found = cli("cache", "check", cache=cache)
    assert found.returncode == 1
    assert "checksum mismatch" in found.stdout and victim_rel in found.stdout
    assert "counted.f" in found.stdout
    report = json.loads(cli("cache", "check", "--json", cache=cache).stdout)
    damaged = {f["name"]: (f["entries"], f["damaged_entries"]) for f in report["functions"]}
    assert damaged["counted.f"] == (7, 4)
    assert sorted(damaged.values()) == [(5, 0), (7, 4)]

    fixed = json.loads(cli("cache", "check", "--repair", "--json", cache=cache).stdout)
    assert fixed["damaged"] == {"segments": 1, "entries": n_victim}
    assert not victim.exists()
    assert list(Path(fixed["moved_to"]).iterdir())
    assert cli("cache", "check", cache=cache).returncode == 0
    before = len(executions(count))
    run(tmp_path, cache, count, "f.map(pj.grid(x=range(7)))")
    assert len(executions(count)) - before == n_victim  # only the dropped ones


def test_cache_check_on_a_folder_that_is_not_a_cache(tmp_path):
    done = cli("cache", "check", cache=tmp_path)
    assert done.returncode == 2 and "not a pyjoule cache" in done.stderr


# ------------------------------------------------------------------- atomic writes
def test_atomic_write_is_private_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "file"
    atomic_write(target, b"data")
    assert oct(target.stat().st_mode & 0o777) == "0o600" and target.read_bytes() == b"data"
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "other", object())  # fails after creating the temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.fixture
def tmpfs(tmp_path):
    """A real 2 MB tmpfs (unmounted afterwards)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(mnt: Path, leave: int) -> Path:
    """Fill ``mnt`` with one file until ``leave`` bytes are free."""
    st = os.statvfs(mnt)
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - leave))
    return filler


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_atomic_write_on_a_full_disk_says_which_and_leaves_no_temporary(tmpfs):
    fill(tmpfs, 64 * 1024)
    with pytest.raises(pj.CacheError) as info:
        atomic_write(tmpfs / "big", os.urandom(256 * 1024))
    assert str(tmpfs / "big") in str(info.value) and "full" in str(info.value)
    assert info.value.errno == 28
    assert not temporaries(tmpfs) and not (tmpfs / "big").exists()


@pytest.mark.slow
def test_a_full_disk_loses_nothing_finished_and_recomputes_nothing(tmpfs, tmp_path):
    """The results fit in the run directory but their segment does not fit in the
    cache: CacheError; once space is freed, the next call stores them, runs nothing."""
    cache, count = tmpfs / "cache", tmp_path / "count"
    run(tmp_path, cache, count, "f(x=-1)")  # the cache and its index exist
    filler = fill(tmpfs, 700 * 1024)
    body = """
try:
    ds = f.map(pj.grid(x=range(10), size=[60_000]))
    print("SIZES", dict(ds.sizes))
except pj.CacheError as exc:
    print("CACHEERROR", exc)
"""
    proc = run(tmp_path, cache, count, body)
    assert "CACHEERROR the file system holding" in proc.stdout, proc.stdout + proc.stderr
    assert str(cache / "data") in proc.stdout and "is full" in proc.stdout
    assert not temporaries(tmpfs)
    assert sorted(executions(count)) == sorted(["-1", *map(str, range(10))])
    filler.unlink()
    for _ in range(2):
        proc = run(tmp_path, cache, count, body)
        assert "SIZES {'x': 10}" in proc.stdout, proc.stdout + proc.stderr
    assert len(executions(count)) == 11  # nothing ran twice
    assert not temporaries(tmpfs)


@pytest.mark.slow
def test_a_full_disk_under_the_index_names_the_index(tmpfs, tmp_path):
    """Failures go to the index only: SQLite's "database or disk is full"."""
    cache, count = tmpfs / "cache", tmp_path / "count"
    run(tmp_path, cache, count, "f(x=-1)")
    filler = fill(tmpfs, 700 * 1024)
    body = """
try:
    f.map(pj.grid(x=range(3), fail=[True], out=[150_000]))
except pj.CacheError as exc:
    print("CACHEERROR", exc)
except pj.ExperimentError as exc:
    print("FAILED", len(exc.failures))
"""
    proc = run(tmp_path, cache, count, body)
    assert f"CACHEERROR the file system holding {cache / 'index.sqlite'} is full" \
        in proc.stdout, proc.stdout + proc.stderr
    assert not temporaries(tmpfs)
    filler.unlink()
    assert "FAILED 3" in run(tmp_path, cache, count, body).stdout


# ------------------------------------------------------------------ output capped
@pytest.mark.slow
def test_output_kept_for_failed_psets_is_capped(tmp_path):
    cache, count = tmp_path / "cache", tmp_path / "count"
    five_mb = 5 * 1024 * 1024
    proc = run(tmp_path, cache, count, f"""
import pickle
try:
    f.map(pj.grid(x=range(2), fail=[True], out=[{five_mb}]))
except pj.ExperimentError:
    pass
from pyjoule._store import Store
for rec in Store(os.environ["CACHE"]).failures(func_id=f._func_id_for(f._store())):
    print("KEPT", len(rec["stdout"].encode()), rec["stdout"].splitlines()[0][:60],
          rec["stdout"].endswith("END\\n"))
""")
    kept = [line.split() for line in proc.stdout.splitlines() if line.startswith("KEPT")]
    assert len(kept) == 2, proc.stdout + proc.stderr
    for line in kept:
        assert MAX_OUTPUT_BYTES < int(line[1]) < MAX_OUTPUT_BYTES + 200
        assert "[pyjoule:" in line[2] and line[-1] == "True"
    index = sum(p.stat().st_size for p in cache.glob("index.sqlite*"))
    assert index < 4 * 1024 * 1024, index  # two 1 MiB tails, not 10 MB
