"""One sweep over several hosts (``host=[...]``): two aliases of the test sshd with
workdirs of their own, one of them slowed down (its psets sleep twice as long)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from helpers import run_script, start_script

import pyjoule as pj
from pyjoule import _records

pytestmark = pytest.mark.slow

STUDY = """
    import json, os, sys, time
    import pyjoule as pj

    config, tag, n, pause = ARGS
    fast = pj.Host("pjfast", workdir="~/.cache/pyjoule-mh-fast", ssh_config=config)
    slow = pj.Host("pjslow", workdir="~/.cache/pyjoule-mh-slow", ssh_config=config,
                   env={"PJ_SLOW": "2"})

    @pj.experiment(host=[fast, slow], workers=2)
    def work(i):
        time.sleep(pause * float(os.environ.get("PJ_SLOW", "1")))
        with open(os.path.expanduser(f"~/mh-calls-{tag}"), "a") as fh:  # on the host
            fh.write(f"{i}\\n")
        return i * 10

    print("ready", flush=True)
    ds = work.sweep(i=range(n))
    table = work.table()
    print(json.dumps({"sum": int(ds.result.sum()), "hosts": table["_host"].tolist(),
                      "runs": len(pj.runs()),
                      "by_host": dict(zip(table["i"].tolist(), table["_host"].tolist()))}))
"""


@pytest.fixture
def two_hosts(sshd, tmp_path):
    """An ssh config naming the test sshd twice (``pjfast``, ``pjslow``), and a tag
    for this test's per-call log on the host; the log is removed after."""
    text = sshd.ssh_config.read_text()
    assert text.startswith(f"Host {sshd.alias}\n")
    config = tmp_path / "ssh_config"
    config.write_text("Host pjfast pjslow\n" + text.split("\n", 1)[1])
    tag = uuid.uuid4().hex[:12]
    yield config, tag
    (sshd.home / f"mh-calls-{tag}").unlink(missing_ok=True)
    from pyjoule._transport import ssh

    ssh.close_all()


def _calls(sshd, tag) -> list[int]:
    path = sshd.home / f"mh-calls-{tag}"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _result(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _study(config, tag, n: int, pause: float) -> str:
    return STUDY.replace("ARGS", f"{str(config)!r}, {tag!r}, {n}, {pause}")


def test_a_sweep_splits_over_two_hosts_by_their_speed(remote_project, sshd, two_hosts):
    config, tag = two_hosts
    n = 40
    proc = run_script(remote_project, _study(config, tag, n, 0.3), timeout=240)
    res = _result(proc.stdout)
    assert res["sum"] == sum(i * 10 for i in range(n))
    assert sorted(_calls(sshd, tag)) == list(range(n))  # every pset exactly once
    counts = {h: res["hosts"].count(h) for h in set(res["hosts"])}
    assert set(counts) == {"pjfast", "pjslow"}, (counts, proc.stderr)
    assert counts["pjfast"] > counts["pjslow"], counts
    assert res["runs"] == 1  # one run, one Dataset
    # a new process: everything cached, nothing runs anywhere
    again = _result(run_script(remote_project, _study(config, tag, n, 0.3),
                               timeout=120).stdout)
    assert again["sum"] == res["sum"] and again["runs"] == 1
    assert sorted(_calls(sshd, tag)) == list(range(n))


def _worker_of(slot) -> int | None:
    """The pid in ``slot``'s worker.pid if that process is the worker of ``slot``."""
    try:
        pid = int((slot / "worker.pid").read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(slot).encode() in argv else None


def _slow_workers(sshd, since: float, timeout: float = 60) -> list[int]:
    """The pids of the slow host's workers (one per run directory it has there: two
    chunks overlap), once it has reported a pset."""
    runs = sshd.home / ".cache" / "pyjoule-mh-slow" / "runs"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        slots = [s for s in runs.glob("*-h1?") if s.stat().st_mtime >= since]
        if any(_records.read_from(f)[0] for s in slots if (s / "results").is_dir()
               for f in (s / "results").iterdir()):
            pids = [pid for s in slots if (pid := _worker_of(s)) is not None]
            if pids:
                return pids
        time.sleep(0.05)
    raise AssertionError("the slow host's worker never reported a pset")


def test_a_host_that_drops_leaves_its_unfinished_psets_to_the_other(
        remote_project, sshd, two_hosts):
    config, tag = two_hosts
    n = 40
    since = time.time() - 1
    proc = start_script(remote_project, _study(config, tag, n, 0.2))
    assert proc.stdout.readline().strip() == "ready"
    for pid in _slow_workers(sshd, since):  # the slow host's workers are gone
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:  # a chunk's worker that had ended
            pass
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    res = _result(out)
    assert res["sum"] == sum(i * 10 for i in range(n))  # every pset, none failed
    assert res["runs"] == 1
    assert "dropped out of run" in err
    calls = _calls(sshd, tag)
    assert set(calls) == set(range(n))
    # what the slow host reported before it dropped was not run again
    by_slow = [int(i) for i, h in res["by_host"].items() if h == "pjslow"]
    assert by_slow and all(calls.count(i) == 1 for i in by_slow)


def test_host_lists_are_checked(tmp_path):
    def f(x):
        return x

    with pytest.raises(pj.OptionError, match="at least one host"):
        pj.experiment(host=[])(f)
    with pytest.raises(pj.OptionError, match="named twice"):
        pj.experiment(host=["ws1", pj.Host("ws1")])(f)
    one = pj.experiment(host=["ws1"], cache=tmp_path)(f)
    assert "host='ws1'" in repr(one)  # one host: as host="ws1"
    both = pj.experiment(host=["ws1", "ws2"], slurm={"time": "0:10:00"}, cache=tmp_path)(f)
    with pytest.raises(pj.OptionError, match="not supported"):
        both.sweep(x=[1])


def test_a_killed_driver_keeps_what_came_back_and_the_rest_runs_once(
        remote_project, sshd, two_hosts):
    """The chunks are handed out by the calling process: killed, the chunks out on the
    hosts finish and are ingested by the next call, what was never handed out is
    ``lost`` there, and the call after runs it: every pset once in all."""
    config, tag = two_hosts
    n = 40
    study = _study(config, tag, n, 0.3)
    proc = start_script(remote_project, study)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while len(_calls(sshd, tag)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    second = run_script(remote_project, study, timeout=180, check=False)
    assert second.returncode == 1 and "lost" in second.stderr, second.stderr
    assert len(_calls(sshd, tag)) < n  # not everything had been handed out
    third = _result(run_script(remote_project, study, timeout=180).stdout)
    assert third["sum"] == sum(i * 10 for i in range(n))
    assert sorted(_calls(sshd, tag)) == list(range(n))  # every pset exactly once


ONE_DOWN = """
    import os, sys
    import pyjoule as pj

    up = pj.Host("pjfast", workdir="~/.cache/pyjoule-mh-fast", ssh_config=sys.argv[1])
    down = pj.Host("pjhost@127.0.0.1:1", connect_timeout=5)  # nothing listens there

    @pj.experiment(host=[up, down], workers=2)
    def work(i):
        return i * 10

    ds = work.sweep(i=range(6))
    print(int(ds.result.sum()), sorted(set(work.table()["_host"])))
"""


def test_a_host_that_cannot_be_prepared_is_left_out(remote_project, two_hosts):
    config, _ = two_hosts
    proc = start_script(remote_project, ONE_DOWN, str(config))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split("\n")[0] == "150 ['pjfast']"
    assert "host pjhost@127.0.0.1:1 left out of this run" in err


CANCEL = """
    import json, os, sys, time
    import pyjoule as pj

    config, tag = ARGS
    fast = pj.Host("pjfast", workdir="~/.cache/pyjoule-mh-fast", ssh_config=config)
    slow = pj.Host("pjslow", workdir="~/.cache/pyjoule-mh-slow", ssh_config=config)

    @pj.experiment(host=[fast, slow], workers=2, progress=False)
    def work(i):
        time.sleep(0.3)
        with open(os.path.expanduser(f"~/mh-calls-{tag}"), "a") as fh:  # on the host
            fh.write(f"{i}\\n")
        return i * 10

    run = work.submit(pj.grid(i=range(40)))
    while run.status()["done"] < 4:
        time.sleep(0.05)
    run.cancel()
    done_first = sorted(work.table()["i"].tolist())
    state = pj.runs()["state"].tolist()
    ds = work.sweep(i=range(40))  # the rest, on both hosts again
    print(json.dumps({"state": state, "done_first": done_first,
                      "sum": int(ds.result.sum())}))
"""


def _run_on_two_hosts(project, script: str, config, tag: str) -> dict:
    """Run ``script`` (its ``ARGS``: the ssh config and the tag) and read its result."""
    source = script.replace("ARGS", f"{str(config)!r}, {tag!r}")
    return _result(run_script(project, source, timeout=240).stdout)


def test_cancel_stops_every_host_and_a_re_call_runs_only_the_rest(
        remote_project, sshd, two_hosts):
    config, tag = two_hosts
    res = _run_on_two_hosts(remote_project, CANCEL, config, tag)
    assert res["state"] == ["cancelled"]
    assert 4 <= len(res["done_first"]) < 40  # cancelled mid-way, what finished kept
    assert res["sum"] == sum(i * 10 for i in range(40))
    calls = _calls(sshd, tag)
    assert set(calls) == set(range(40))
    assert all(calls.count(i) == 1 for i in res["done_first"])  # finished: never again


RETRY = """
    import json, os, time
    import pyjoule as pj

    config, tag = ARGS
    fast = pj.Host("pjfast", workdir="~/.cache/pyjoule-mh-fast", ssh_config=config)
    slow = pj.Host("pjslow", workdir="~/.cache/pyjoule-mh-slow", ssh_config=config)

    @pj.experiment(host=[fast, slow], workers=2, progress=False, timeout=2, retries=1)
    def work(i):
        marker = os.path.expanduser(f"~/mh-slow-once-{tag}-{i}")
        if i % 5 == 0 and not os.path.exists(marker):  # too slow the first time only
            open(marker, "w").close()
            time.sleep(30)
        with open(os.path.expanduser(f"~/mh-calls-{tag}"), "a") as fh:
            fh.write(f"{i}\\n")
        return i * 10

    ds = work.sweep(i=range(20))
    print(json.dumps({"sum": int(ds.result.sum()), "runs": len(pj.runs()),
                      "failed": int(pj.runs()["failed"].sum())}))
"""


def test_retries_run_the_timed_out_psets_again_over_the_hosts(
        remote_project, sshd, two_hosts):
    config, tag = two_hosts
    res = _run_on_two_hosts(remote_project, RETRY, config, tag)
    assert res["sum"] == sum(i * 10 for i in range(20))  # the retry finished them
    assert res["runs"] == 1 and res["failed"] == 0
    calls = _calls(sshd, tag)
    assert sorted(calls) == list(range(20))  # each once: the timed-out ones never wrote
    sshd.run(f"rm -f ~/mh-slow-once-{tag}-*", check=False)
