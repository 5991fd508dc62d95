"""Round trips of remote sweeps, counted by tests/delay_proxy.py (issue #14 §4).

Latency costs one RTT per turn of the conversation, whatever the machine's speed, so
these tests count turns (a client send answered by the server), never seconds: at
most 12 for the first sweep of a process (connect, authenticate, one check of sync,
environment and pyjoule, start, results streamed back) and at most 5 for a warm one;
SLURM over SSH likewise (the cluster's facts, then one command submits the wave and
follows it: the scheduler's states and the results come back on it).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from helpers import uv_project

from conftest import run_script

pytestmark = pytest.mark.slow  # most tests here take seconds

STUDY = """
    import json, os, sys, time
    from delay_proxy import DelayProxy
    from sshd_server import ensure_server

    server = ensure_server()
    proxy = DelayProxy(("127.0.0.1", server.port), delay_s=0.01).start()
    os.environ["PYJOULE_SSH_CONFIG"] = str(proxy.ssh_config(server, os.environ["PROXY"]))
    import pyjoule as pj

    @pj.experiment(host=pj.Host("pjslow", workdir=WORKDIR), workers=2, progress=False,
                   **OPTIONS)
    def triv(i):
        return i * 2

    rows = []
    for k in range(3):
        proxy.reset()
        ds = triv.sweep(i=range(STEP + 100 * k, STEP + 100 * k + 100))
        assert int(ds.result.sum()) == 2 * sum(range(STEP + 100 * k, STEP + 100 * k + 100))
        rows.append(proxy.turns)
    print("TURNS", json.dumps(rows))
"""


@pytest.fixture
def slow_project(tmp_path, sshd, monkeypatch):
    root = uv_project(tmp_path / "rtt", "rtt")
    monkeypatch.setenv("PYJOULE_CACHE", str(root / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    workdir = f"~/rtt-{uuid.uuid4().hex[:8]}"  # its own lib/ and envs/: no other test's
    yield root, workdir
    sshd.run(f"rm -rf {workdir}", check=False)


def _turns(root, workdir, step, options=None) -> list[int]:
    # the same script each time: a changed file would be synced (three turns more)
    source = STUDY.replace("WORKDIR", repr(workdir)).replace("STEP", 'int(os.environ["STEP"])')
    source = source.replace("OPTIONS", repr(options or {}))
    tests = Path(__file__).resolve().parent
    path = os.pathsep.join([str(tests.parent), str(tests), str(root)])
    env = {"PYTHONPATH": path, "STEP": str(step), "PROXY": str(root.parent / "proxy")}
    out = run_script(root, source, timeout=300, env=env).stdout
    return json.loads(out.split("TURNS", 1)[1])


def test_first_and_warm_sweeps_take_few_round_trips(slow_project):
    root, workdir = slow_project
    # the first process ever: syncs, builds the environment, copies pyjoule
    _turns(root, workdir, 0)
    # a new process, everything on the host already: as a user's next session
    first, *warm = _turns(root, workdir, 10_000)
    assert first <= 12, f"first sweep of a process: {first} round trips (warm: {warm})"
    assert max(warm) <= 5, f"warm sweeps: {warm} round trips"


def test_the_proxy_counts_turns_not_bytes(sshd):
    """One command on an open connection is two turns (channel open; exec and its
    output), however much it prints: the count tracks latency, not volume."""
    import pyjoule as pj
    from pyjoule._transport import ssh

    from delay_proxy import DelayProxy

    with DelayProxy(("127.0.0.1", sshd.port), delay_s=0.005) as proxy:
        config = proxy.ssh_config(sshd, f"/tmp/pyjoule-rtt-{uuid.uuid4().hex[:8]}")
        conn = ssh.connect(pj.Host("pjslow", ssh_config=config))
        try:
            counts = []
            for argv in (["true"], ["head", "-c", "300000", "/dev/zero"]):
                proxy.reset()
                conn.run(argv)
                time.sleep(0.05)  # the channel's close, answered
                counts.append(proxy.turns)
        finally:
            ssh.close_all()
    assert counts[0] == 2, counts
    assert counts[1] <= 3, counts  # a window adjust may turn it once more


def test_slurm_over_ssh_first_and_warm_sweeps_take_few_round_trips(slow_project, slurm):
    """A first sweep: connect and log in (4), check (2), the cluster's facts (2), the
    submit that follows the run (3), the tidy word's answer (1). A warm one: check
    and submit; no command per look at the scheduler."""
    root, workdir = slow_project
    options = {"slurm": {"time": "00:05:00"}, "batch": 50}
    _turns(root, workdir, 0, options)
    first, *warm = _turns(root, workdir, 10_000, options)
    assert first <= 12, f"first SLURM sweep of a process: {first} round trips (warm: {warm})"
    assert max(warm) <= 5, f"warm SLURM sweeps: {warm} round trips"


def test_slurm_follower_killed_mid_run_looks_take_over(slurm, sshd, tmp_path, monkeypatch):
    """The submit command follows the run; if it dies (here: killed on the host), the
    client looks at the run instead, from the sizes it has: every pset once."""
    import threading

    import pyjoule as pj
    from pyjoule._transport import ssh

    monkeypatch.setenv("PYJOULE_CACHE", str(tmp_path / ".pyjoule"))
    monkeypatch.chdir(tmp_path)
    tag = f"rttkill-{uuid.uuid4().hex[:8]}"
    killed = []

    def kill_the_follower():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pattern = f"^python3 -c .*--follow.*{tag}"  # not the sh that starts it
            out = sshd.run(f"pkill -KILL -u pjhost -f -- '{pattern}' && echo k",
                           check=False).stdout
            killed.extend(out.split())
            time.sleep(0.1)

    def slow(i):
        import time

        time.sleep(0.3)
        return i

    f = pj.experiment(host=pj.Host(sshd.alias, ssh_config=sshd.ssh_config,
                                      workdir=f"~/{tag}"), workers=2, batch=4,
                      slurm={"time": "00:05:00"}, progress=False)(slow)
    killer = threading.Thread(target=kill_the_follower)
    killer.start()
    try:
        ds = f.sweep(i=range(16))
    finally:
        killer.join()
        ssh.close_all()
        sshd.run(f"rm -rf ~/{tag}", check=False)
    assert killed, "the follower was never seen on the host"
    assert sorted(ds.result.values.tolist()) == list(range(16))
