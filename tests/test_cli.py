"""The ``pyjoule`` command: runs, status, cancel, cache info/clear/gc, hosts check."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import pyjoule as pj
from pyjoule.cli import _human, cli, main

from conftest import REPO

DAY = 86400


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result, *needles: str) -> str:
    """The command failed with exit 2 and one line ``pyjoule: ...`` on stderr."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyjoule: "), result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def square(x):
    if x == 3:
        raise ValueError("bad x")
    return {"y": x * x}


def cube(x):
    return x ** 3


@pytest.fixture
def study(cache_dir):
    """Two functions with cached results: a run of ``square`` with one failure, and
    a run of ``cube`` with none (newest)."""
    sq = pj.experiment(workers=0, errors="ignore")(square)
    cu = pj.experiment(workers=0)(cube)
    sq.sweep(x=range(6))
    cu.sweep(x=range(4))
    runs = pj.runs()
    return {"square": sq, "cube": cu, "ids": list(runs["id"]), "cache": cache_dir}


# ------------------------------------------------------------------- --help
def _commands(group: click.Group, path=()):
    yield path, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


@pytest.mark.parametrize("path,command", list(_commands(cli)),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help_with_an_example_and_its_options(path, command):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: pyjoule {' '.join(path)}".rstrip())
    assert "Example" in result.output and "Exit codes" in result.output
    for param in command.params:
        for opt in param.opts if isinstance(param, click.Option) else ():
            assert opt in result.output, (opt, result.output)


# --------------------------------------------------------------------- runs
def test_runs_table_and_json(study):
    result = invoke("runs")
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header == f"cache {study['cache']} (set by PYJOULE_CACHE)"  # which cache
    assert lines[0].split()[:5] == ["id", "function", "where", "state", "total"]
    assert all(len(line) <= 120 for line in lines)
    first, second = study["ids"]
    assert first in lines[1] and second in lines[2]  # newest last
    assert lines[1].split()[3:8] == ["done", "6", "0", "5", "1"]

    data = json.loads(invoke("runs", "--json").output)
    assert [r["id"] for r in data] == study["ids"]
    assert data[0]["function"].endswith(".square") and data[0]["failed"] == 1
    submitted = datetime.fromisoformat(data[0]["submitted"])
    assert submitted.tzinfo == timezone.utc
    assert abs(submitted.timestamp() - time.time()) < DAY

    last = json.loads(invoke("runs", "--json", "--last", "1").output)
    assert [r["id"] for r in last] == [second]
    only = json.loads(invoke("runs", "--json", "--function", "square").output)
    assert [r["id"] for r in only] == [first]
    one_error_line(invoke("runs", "--function", "nosuch"), "no function 'nosuch'",
                   study["square"].name)


def test_runs_of_an_empty_cache(cache_dir):
    pj.runs()  # creates the cache
    result = invoke("runs")
    assert result.exit_code == 0 and "no runs" in result.output
    assert json.loads(invoke("runs", "--json").output) == []


# ------------------------------------------------------------------- status
def test_status_shows_counts_failures_and_logs(study):
    first, second = study["ids"]
    result = invoke("status", first)
    assert result.exit_code == 1, result.output  # the run has a failed pset
    out = result.output
    assert first in out and study["square"].name in out
    assert "6 total: 0 cached, 0 pending, 0 running, 5 done, 1 failed" in out
    assert "1 x ValueError" in out and "bad x" in out and "{'x': 3}" in out
    assert os.path.join(study["cache"], "runs", first) in out

    info = json.loads(invoke("status", first, "--json").output)
    assert info["counts"] == {"total": 6, "cached": 0, "pending": 0, "running": 0,
                              "done": 5, "failed": 1}
    assert info["failures"]["by_error_type"] == {"ValueError": 1}
    assert info["failures"]["by_reason"] == {"exception": 1}
    assert info["failures"]["first"]["pset"] == {"x": 3}
    assert "bad x" in info["failures"]["first"]["message"]
    assert Path(info["logs"]["run_dir"]).is_dir()

    clean = invoke("status", second[:-1])  # a unique prefix will do
    assert clean.exit_code == 0, clean.output
    assert second in clean.output and "4 total" in clean.output


def test_status_json_is_one_set_of_counts_for_an_all_cached_run(cache_dir):
    f = pj.experiment(workers=0)(cube)
    f.sweep(x=range(5))
    run = f.submit(pj.grid(x=range(5)))  # everything cached: a run done at once
    assert run.id.startswith("cached-")
    result = invoke("status", run.id, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["counts"] == {"total": 5, "cached": 5, "pending": 0, "running": 0,
                              "done": 0, "failed": 0}
    assert {k: info[k] for k in ("total", "cached", "done", "failed")} == \
        {k: info["counts"][k] for k in ("total", "cached", "done", "failed")}
    listed = json.loads(invoke("runs", "--json").stdout)[-1]
    assert (listed["cached"], listed["done"]) == (5, 0)
    assert pj.attach(run.id).status() == info["counts"]  # the library says the same


def test_unknown_run_id_is_one_line_and_exit_2(study):
    for command in ("status", "cancel"):
        one_error_line(invoke(command, "nosuchrun"), "no run 'nosuchrun'", study["ids"][-1])


def test_ambiguous_run_prefix_is_an_error(study):
    common = os.path.commonprefix(study["ids"])  # noqa: RUF071 - ids, not paths
    one_error_line(invoke("status", common[:4]), "matches 2 runs")


# ------------------------------------------------------------------- cancel
def test_cancelling_a_finished_run_changes_nothing(study):
    first = study["ids"][0]
    result = invoke("cancel", first)
    assert result.exit_code == 0 and "already ended (done)" in result.output
    assert json.loads(invoke("runs", "--json").output)[0]["state"] == "done"


SLOW_SCRIPT = """
import sys, time
import pyjoule as pj

@pj.experiment(workers=2)
def slow(x):
    time.sleep(0.5 if x >= 0 else 0)
    return x

slow.sweep(x=[-1, -2])  # cached when the run is submitted
run = slow.submit(pj.grid(x=[-1, -2, *range(38)]))
print(run.id, flush=True)
run.wait()
print("waited", flush=True)
"""


@pytest.mark.slow
def test_cancel_stops_a_run_started_by_another_process(cache_dir, weird_tmp_path):
    from pyjoule._store import Store

    script = weird_tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(weird_tmp_path)]))
    owner = subprocess.Popen([sys.executable, str(script)], cwd=weird_tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = owner.stdout.readline().strip()
        store = Store.open(cache_dir)
        deadline = time.monotonic() + 120
        while (store.get_run(run_id) or {}).get("done", 0) < 2:
            assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read()
            time.sleep(0.1)
        with open(os.path.join(store.get_run(run_id)["run_dir"], "worker.pid")) as fh:
            worker_pid = int(fh.read().split()[0])

        running = invoke("status", run_id, "--json")
        assert running.exit_code == 0, running.output
        counts = json.loads(running.stdout)["counts"]
        assert counts["total"] == 40 and counts["pending"] + counts["running"] > 0
        assert counts["cached"] == 2
        assert counts["pending"] + counts["running"] + counts["done"] == 38

        cancel = subprocess.run([sys.executable, "-m", "pyjoule", "cancel", run_id],
                                env=env, capture_output=True, text=True, timeout=120)
        assert cancel.returncode == 0, cancel.stderr
        assert f"cancelled run {run_id}" in cancel.stdout
        out, err = owner.communicate(timeout=120)  # its wait() returns
        assert owner.returncode == 0 and "waited" in out, err
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()

    rec = store.get_run(run_id)
    assert rec["state"] == "cancelled" and rec["cached"] == 2
    assert 2 <= rec["done"] < 38 and rec["done"] + rec["failed"] == 38
    assert len(store.lookup(rec["func_id"])) == rec["done"] + 2  # finished results kept
    reasons = {f["reason"] for f in store.failures(run_id=run_id)}
    assert reasons == {"cancelled"}
    assert not os.path.exists(f"/proc/{worker_pid}")  # the supervisor is gone (reaped)
    status = invoke("status", run_id, "--json")
    assert status.exit_code == 1, status.output  # cancelled: as `status --help` says
    info = json.loads(status.stdout)
    assert info["state"] == "cancelled" and info["counts"]["running"] == 0
    listed = [r for r in json.loads(invoke("runs", "--json").stdout) if r["id"] == run_id]
    counts = {k: rec[k] for k in ("total", "cached", "done", "failed")}
    assert {k: listed[0][k] for k in counts} == counts  # `runs` and `status` agree
    assert {k: info[k] for k in counts} == counts == {k: info["counts"][k] for k in counts}
    assert info["failures"]["count"] == rec["failed"]


# -------------------------------------------------------------- not a cache
@pytest.mark.parametrize("kind", ["missing", "empty", "junk index"])
def test_a_directory_that_is_not_a_cache_is_refused_and_left_alone(weird_tmp_path, kind):
    target = weird_tmp_path / "not a cache"
    if kind != "missing":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    if kind == "junk index":
        (target / "index.sqlite").write_bytes(b"not a database at all" * 10)
    before = sorted((p.name, p.read_bytes()) for p in target.iterdir()) \
        if target.exists() else None
    for args in (["runs"], ["status", "x"], ["cancel", "x"], ["cache", "info"],
                 ["cache", "clear", "--yes"], ["cache", "gc", "--older-than", "1d"]):
        line = one_error_line(invoke("--cache", str(target), *args),
                              "is not a pyjoule cache", str(target))
        assert "--cache" in line and "PYJOULE_CACHE" in line
    after = sorted((p.name, p.read_bytes()) for p in target.iterdir()) \
        if target.exists() else None
    assert after == before


def test_the_default_cache_follows_pyjoule_cache(study, weird_tmp_path, monkeypatch):
    monkeypatch.setenv("PYJOULE_CACHE", str(weird_tmp_path / "elsewhere"))
    one_error_line(invoke("runs"), "elsewhere")
    result = invoke("--cache", str(study["cache"]), "runs", "--json")
    assert len(json.loads(result.output)) == 2



# ------------------------------------------------- options before or after
CACHE_COMMANDS = [["runs"], ["status", "x"], ["cancel", "x"], ["cache", "info"],
                  ["cache", "clear", "--yes"], ["cache", "gc", "--older-than", "1d"]]


@pytest.mark.parametrize("args", CACHE_COMMANDS, ids=" ".join)
def test_cache_is_taken_after_the_command_too(weird_tmp_path, args):
    target = str(weird_tmp_path / "not a cache")
    one_error_line(invoke(*args, "--cache", target), "is not a pyjoule cache", target)
    if args[0] == "cache":  # and after the group: `pyjoule cache --cache DIR info`
        one_error_line(invoke("cache", "--cache", target, *args[1:]),
                       "is not a pyjoule cache", target)


def test_cache_after_the_command_wins_and_finds_the_runs(study, weird_tmp_path, monkeypatch):
    monkeypatch.setenv("PYJOULE_CACHE", str(weird_tmp_path / "elsewhere"))
    cache, elsewhere = str(study["cache"]), str(weird_tmp_path / "nothing")
    for argv in (["runs", "--cache", cache, "--json"], ["runs", "--json", "--cache", cache],
                 ["--cache", elsewhere, "runs", "--cache", cache, "--json"]):
        result = invoke(*argv)
        assert result.exit_code == 0, (argv, result.output)
        assert [r["id"] for r in json.loads(result.stdout)] == study["ids"]
    one_error_line(invoke("--cache", cache, "runs", "--cache", elsewhere), elsewhere)
    info = invoke("cache", "info", "--cache", cache, "--json")
    assert json.loads(info.stdout)["cache"] == cache
    assert json.loads(invoke("--cache", elsewhere, "cache", "--cache", cache, "info",
                             "--json").stdout)["cache"] == cache


def test_json_is_taken_before_the_command_too(study):
    first, second = study["ids"]
    for before in (["--json"], ["--json", "--cache", str(study["cache"])]):
        assert [r["id"] for r in json.loads(invoke(*before, "runs").stdout)] == study["ids"]
        status = invoke(*before, "status", first)
        assert status.exit_code == 1 and json.loads(status.stdout)["failures"]["count"] == 1
        cancel = invoke(*before, "cancel", second)
        assert cancel.exit_code == 0, cancel.output
        assert json.loads(cancel.stdout)["cancelled"] is False
        assert json.loads(invoke(*before, "cache", "info").stdout)["total"]["entries"] == 9
        assert json.loads(invoke(*before, "cache", "gc", "--dry-run").stdout)["dry_run"]
    assert json.loads(invoke("cache", "--json", "info").stdout)["total"]["entries"] == 9
    both = invoke("--json", "cancel", second, "--json")
    assert json.loads(both.stdout)["id"] == second
    assert not invoke("runs").stdout.lstrip().startswith("[")  # text unless asked


def test_every_help_example_parses(study, monkeypatch):
    monkeypatch.setenv("PYJOULE_CACHE", str(study["cache"]))
    examples = {tuple(line.split()[1:]) for path, _ in _commands(cli)
                for line in invoke(*path, "--help").output.splitlines()
                if line.strip().startswith("pyjoule ")
                and not {"hosts", "ui"} & set(line.split())}
    # `hosts check` would connect, `ui` serve until Ctrl-C (tests/test_ui_server.py)
    assert len(examples) >= 8
    for argv in sorted(examples):
        result = invoke(*argv)
        if result.exit_code == 2:  # an unknown run, a cache not there: not bad usage
            line = one_error_line(result)
            assert "--help" not in line, (argv, line)
        else:
            assert result.exit_code in (0, 1), (argv, result.output)


# ------------------------------------------------------------ usage errors
@pytest.mark.parametrize("args,needles", [
    (["runs", "--cach", "x"], ["no such option '--cach' for 'pyjoule runs'",
                               "did you mean '--cache'?", "see pyjoule runs --help"]),
    (["--cahce", "x", "runs"], ["no such option '--cahce' for 'pyjoule'", "'--cache'",
                                "see pyjoule --help"]),
    (["cache", "gc", "--older", "1d"], ["no such option '--older'", "'--older-than'",
                                        "see pyjoule cache gc --help"]),
    (["status"], ["missing argument 'RUN' for 'pyjoule status'",
                  "see pyjoule status --help"]),
    (["stauts", "x"], ["no such command 'stauts'", "did you mean 'status'?",
                       "see pyjoule --help"]),
    (["cache", "infoo"], ["no such command 'infoo'", "'info'", "see pyjoule cache --help"]),
    (["runs", "extra"], ["unexpected extra argument", "see pyjoule runs --help"]),
    (["cache", "gc", "--max-size", "ten"], ["'--max-size'", "'ten' is not a size",
                                            "see pyjoule cache gc --help"]),
    (["--cache", "x"], ["missing command", "see pyjoule --help"]),
])
def test_usage_errors_are_one_line_with_a_suggestion_and_exit_2(study, args, needles):
    result = invoke(*args)
    one_error_line(result, *needles)
    assert "Usage:" not in result.output and "Try " not in result.output, result.output


def test_usage_errors_of_the_program_are_one_line(study):
    proc = subprocess.run([sys.executable, "-m", "pyjoule", "runs", "--cach", "x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("pyjoule: no such option '--cach' for 'pyjoule runs' "
                           "(did you mean '--cache'?); see pyjoule runs --help\n")
    for flag in ("--help", "-h"):
        usage = subprocess.run([sys.executable, "-m", "pyjoule", "runs", flag],
                               capture_output=True, text=True, timeout=120)
        assert usage.returncode == 0 and usage.stdout.startswith("Usage: pyjoule runs ")


# --------------------------------------------------------------- cache info
def versions_of_f(version: str, n: int):
    @pj.experiment(workers=0, version=version)
    def f(x):
        return x + 0.5

    f.sweep(x=range(n))
    return f


def test_cache_info_per_function(study):
    versions_of_f("1", 3)
    versions_of_f("2", 2)
    data = json.loads(invoke("cache", "info", "--json").output)
    assert data["cache"] == str(study["cache"])
    funcs = {f["name"].rsplit(".", 1)[-1]: f for f in data["functions"]}
    assert set(funcs) == {"square", "cube", "f"}
    assert (funcs["square"]["entries"], funcs["square"]["versions"]) == (5, 1)
    assert (funcs["f"]["entries"], funcs["f"]["versions"]) == (5, 2)
    on_disk = sum(p.stat().st_size for p in (study["cache"] / "data").rglob("*.seg"))
    assert data["total"]["bytes"] == on_disk == sum(f["bytes"] for f in funcs.values())
    assert data["total"]["entries"] == 14 and data["total"]["functions"] == 3
    assert datetime.fromisoformat(funcs["cube"]["newest"]).tzinfo == timezone.utc

    table = invoke("cache", "info").output
    assert str(study["cache"]) in table and study["cube"].name in table
    total = [line for line in table.splitlines() if line.startswith("total")]
    assert total and total[0].split()[1] == "14"


# -------------------------------------------------------------- cache clear
def test_clear_old_versions_keeps_the_newest(study):
    versions_of_f("1", 3)
    f2 = versions_of_f("2", 2)
    result = invoke("cache", "clear", "f", "--old-versions", "--yes")
    assert result.exit_code == 0, result.output
    assert "removed 3 cached results" in result.output
    funcs = {f["name"]: f for f in json.loads(invoke("cache", "info", "--json").output)
             ["functions"]}
    assert (funcs[f2.name]["entries"], funcs[f2.name]["versions"]) == (2, 1)
    assert funcs[study["square"].name]["entries"] == 5  # other functions untouched
    assert len(f2.table()) == 2
    f1 = versions_of_f("1", 3)  # the cleared version computes again
    assert len(f1.table()) == 3


def test_clear_one_function_or_everything(study):
    sq, cu = study["square"], study["cube"]
    result = invoke("cache", "clear", "cube", "--yes", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {"entries": 4, "bytes": json.loads(result.output)
                                         ["bytes"], "functions": {cu.name: 4}}
    assert len(cu.table()) == 0 and len(sq.table()) == 5
    assert float(cu.sweep(x=range(4)).result.sum()) == 36.0  # recomputed
    result = invoke("cache", "clear", "--yes")
    assert result.exit_code == 0 and "removed 9 cached results" in result.output
    assert len(sq.table()) == 0 and len(cu.table()) == 0
    assert invoke("cache", "clear", "--yes").output.strip() == "nothing to remove"


def test_clear_refuses_unknown_functions_and_asks_first(study):
    one_error_line(invoke("cache", "clear", "nosuch", "--yes"), "no function 'nosuch'",
                   study["square"].name, study["cube"].name)
    # no terminal to ask on and no --yes: refused, nothing deleted
    one_error_line(invoke("cache", "clear"), "pass --yes")
    assert len(study["square"].table()) == 5


# ----------------------------------------------------------------- cache gc
def age(cache: Path, days: float, func_id: str | None = None, run_id: str | None = None):
    """Make a function's results (or a run) look ``days`` old."""
    then = time.time() - days * DAY
    with sqlite3.connect(cache / "index.sqlite") as db:
        if func_id:
            db.execute("UPDATE segments SET created=? WHERE func_id=?", (then, func_id))
            db.execute("UPDATE functions SET last_used=? WHERE func_id=?", (then, func_id))
        if run_id:
            db.execute("UPDATE runs SET submitted=?, finished=? WHERE run_id=?",
                       (then, then, run_id))


def test_gc_removes_what_is_older_than_the_age(study):
    sq, cu = study["square"], study["cube"]
    cache, (sq_run, cu_run) = study["cache"], study["ids"]
    sq_id = json.loads(invoke("runs", "--json").output)[0]["func_id"]
    age(cache, 40, func_id=sq_id, run_id=sq_run)
    files_before = sorted((cache / "data").rglob("*.seg"))

    dry = json.loads(invoke("cache", "gc", "--older-than", "30d", "--dry-run", "--json").output)
    assert (dry["entries"], dry["segments"], dry["runs"]) == (5, 1, 1)
    assert sorted((cache / "data").rglob("*.seg")) == files_before
    assert len(sq.table()) == 5
    # using the function version just now keeps its results
    used = json.loads(invoke("cache", "gc", "--older-than", "30d", "--dry-run",
                             "--json").output)
    assert used["entries"] == 0
    age(cache, 40, func_id=sq_id)

    result = invoke("cache", "gc", "--older-than", "30d")
    assert result.exit_code == 0, result.output
    assert "removed 5 results in 1 segment files" in result.output
    assert "1 finished runs" in result.output
    assert not (cache / "data" / sq_id).exists() or not list((cache / "data" / sq_id).iterdir())
    assert len(sq.table()) == 0 and len(cu.table()) == 4
    assert [r["id"] for r in json.loads(invoke("runs", "--json").output)] == [cu_run]
    assert not (cache / "runs" / sq_run).exists()
    ds = sq.sweep(x=range(6))  # a removed entry is simply recomputed
    assert float(ds.y.sum()) == 0 + 1 + 4 + 16 + 25
    nothing = json.loads(invoke("cache", "gc", "--older-than", "30d", "--json").output)
    assert nothing["entries"] == 0


def test_gc_max_size_removes_the_least_recently_used_first(cache_dir):
    f = pj.experiment(workers=0)(cube)
    for lo in (0, 10, 20):  # three segments, oldest first
        f.sweep(x=range(lo, lo + 10))
    from pyjoule._store import Store

    store = Store.open(cache_dir)
    segs = store.db.execute("SELECT seg_id, nbytes FROM segments ORDER BY seg_id").fetchall()
    with sqlite3.connect(cache_dir / "index.sqlite") as db:  # made at distinct times
        for i, (seg_id, _) in enumerate(segs):
            db.execute("UPDATE segments SET created=? WHERE seg_id=?",
                       (time.time() + i, seg_id))
    limit = segs[1][1] + segs[2][1]
    result = json.loads(invoke("cache", "gc", "--max-size", str(limit), "--json").output)
    assert (result["segments"], result["entries"]) == (1, 10)
    assert result["bytes_left"] <= limit
    assert sorted(f.table()["x"]) == list(range(10, 30))
    again = json.loads(invoke("cache", "gc", "--max-size", "1G", "--json").output)
    assert again["segments"] == 0 and len(f.table()) == 20



def test_gc_dry_run_json_reports_what_would_be_left(cache_dir):
    f = pj.experiment(workers=0)(cube)
    for lo in (0, 10, 20):  # three segments
        f.sweep(x=range(lo, lo + 10))
    total = json.loads(invoke("cache", "info", "--json").output)["total"]["bytes"]
    limit = total * 2 // 3
    args = ["cache", "gc", "--max-size", str(limit), "--dry-run"]
    dry = json.loads(invoke(*args, "--json").output)
    assert dry["dry_run"] and dry["bytes"] > 0
    assert dry["bytes_left"] == total - dry["bytes"] <= limit
    text = invoke(*args).output  # the text of the same dry run says the same
    assert text.strip().endswith(f"results would take {_human(dry['bytes_left'])}"), text
    assert len(f.table()) == 30  # nothing removed
    real = json.loads(invoke("cache", "gc", "--max-size", str(limit), "--json").output)
    assert (real["bytes"], real["bytes_left"]) == (dry["bytes"], dry["bytes_left"])


@pytest.mark.parametrize("args", [["--older-than", "30 days"], ["--older-than", "3"],
                                  ["--max-size", "ten"], ["--max-size", "5X"]])
def test_gc_bad_values_are_usage_errors(study, args):
    result = invoke("cache", "gc", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is not a" in result.output


def test_gc_units():
    from pyjoule.cli import Duration, Size

    assert Duration().convert("30d", None, None) == 30 * DAY
    assert Duration().convert("1.5h", None, None) == 5400
    assert Duration().convert("2w", None, None) == 14 * DAY
    assert Size().convert("10G", None, None) == 10 * 2**30
    assert Size().convert("500MiB", None, None) == 500 * 2**20
    assert Size().convert("4096", None, None) == 4096


# ------------------------------------------------ the program as users run it
@pytest.mark.slow
def test_python_m_pyjoule_and_the_console_script_agree(study):
    script = Path(sys.executable).parent / "pyjoule"
    outputs = []
    for argv in ([sys.executable, "-m", "pyjoule"], [str(script)]):
        proc = subprocess.run([*argv, "runs", "--json"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append(json.loads(proc.stdout))
        bad = subprocess.run([*argv, "status", "nosuchrun"], capture_output=True, text=True,
                             timeout=120)
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("pyjoule: no run")
        usage = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120)
        assert usage.returncode == 0 and usage.stdout.startswith("Usage: pyjoule ")
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2


def test_main_returns_the_exit_code(study, capsys):
    assert main(["status", study["ids"][1]]) == 0
    assert main(["status", study["ids"][0]]) == 1
    assert main(["status", "nosuchrun"]) == 2
    assert main(["runs", "--no-such-option"]) == 2
    assert "pyjoule: no run" in capsys.readouterr().err


# -------------------------------------------------------------------- hosts
@pytest.mark.slow
def test_hosts_check_against_the_test_server(sshd, ssh_host, monkeypatch):
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    result = invoke("hosts", "check", sshd.alias, "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"], report["problems"]
    assert report["host"].endswith(f"127.0.0.1:{sshd.port}")
    assert report["facts"]["python"].startswith("3.") and report["rtt_ms"] > 0
    before = invoke("--json", "hosts", "check", sshd.alias)  # --json before the command
    assert before.exit_code == 0 and json.loads(before.stdout)["host"] == report["host"]
    unknown = invoke("hosts", "check", "nosuchalias-pj")  # a problem found: exit 1
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("pyjoule: unknown host 'nosuchalias-pj'")


# ---------------------------------------------------------------- structure
def test_the_command_uses_no_private_name_of_the_library():
    """The command calls what the library offers by name: it imports no underscore
    name from pyjoule's modules and reads no underscore attribute (``run._failures()``
    was one), so the library can change its internals without breaking it."""
    found = []
    for path in sorted((REPO / "pyjoule" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level >= 2:  # from pyjoule's
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            found += [f"{path.name}:{node.lineno}: {n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
    assert not found, found
