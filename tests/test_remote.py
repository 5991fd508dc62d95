"""Experiments on a host over SSH, end to end, against the real test sshd and real uv."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import host_workers, start_script, wait_for_launched

from conftest import run_script

pytestmark = pytest.mark.slow  # most tests here take seconds


STUDY = """
    import os, socket, sys
    import pyjoule as pj
    from physics import energy

    @pj.experiment(host="pjtest", workers=2)
    def simulate(m, v, seed=0):
        import os
        return {"e": energy(m, v) + seed, "home": os.path.expanduser("~")}

    ds = simulate.sweep(m=[1.0, 2.0], v=[1.0, 3.0, 5.0], seed=range(3))
    print(float(ds.e.sum()), sorted(set(ds.home.values.ravel().tolist())))
    print(len(pj.runs()))
"""


def _remote_runs(sshd) -> set[str]:
    return set(sshd.run("ls ~/.cache/pyjoule/runs 2>/dev/null || true").stdout.split())


def test_sweep_runs_on_the_host_and_comes_back_into_the_local_cache(remote_project, sshd):
    before = _remote_runs(sshd)
    out = run_script(remote_project, STUDY, timeout=300).stdout.split("\n")
    expected = sum(0.5 * m * v * v + s for m in (1.0, 2.0) for v in (1.0, 3.0, 5.0)
                   for s in range(3))
    assert float(out[0].split()[0]) == pytest.approx(expected)
    assert str(sshd.home) in out[0]  # computed on the host, as its user
    assert out[1] == "1"
    # a new process: everything cached, nothing runs, no new run
    out = run_script(remote_project, STUDY, timeout=120).stdout.split("\n")
    assert float(out[0].split()[0]) == pytest.approx(expected) and out[1] == "1"
    # nothing is left in the host's run folder
    assert _remote_runs(sshd) == before


SLOW = """
    import sys, time
    import pyjoule as pj

    @pj.experiment(host="pjtest", workers=2, errors=sys.argv[1] if len(sys.argv) > 1 else "raise")
    def slow(i):
        time.sleep(0.4)
        return i * 10

    print("ready", flush=True)
    try:
        ds = slow.sweep(i=range(16))
        print("finished", int(ds.result.sum()), len(pj.runs()), flush=True)
    except pj.ExperimentError as exc:
        print("log", exc.failures.log.iloc[0], flush=True)
        print("failed", sorted(set(exc.failures.reason)), int(exc.dataset.result.notnull().sum()),
              flush=True)
"""


def _start(folder, source, *args):
    return start_script(folder, source, *args, name="slow.py")


def _wait_for_remote_worker(sshd, project, timeout=60):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host_workers(sshd, project / ".pyjoule"):
            return
        time.sleep(0.1)
    raise AssertionError("the remote worker never started")


def test_killed_client_loses_nothing_and_a_recall_attaches(remote_project, sshd):
    proc = _start(remote_project, SLOW)
    assert proc.stdout.readline().strip() == "ready"
    _wait_for_remote_worker(sshd, remote_project)
    wait_for_launched(remote_project / ".pyjoule")
    proc.kill()  # the laptop lid closes: the work goes on on the host
    proc.wait(10)
    again = _start(remote_project, SLOW)
    out, err = again.communicate(timeout=120)
    assert "finished 1200 1" in out, err  # every result, and still the one run


def test_worker_killed_on_the_host_fails_only_what_was_in_flight(remote_project, sshd):
    import time

    proc = _start(remote_project, SLOW)
    assert proc.stdout.readline().strip() == "ready"
    _wait_for_remote_worker(sshd, remote_project)
    time.sleep(1.5)
    sshd.run("pkill -KILL -u pjhost -f 'pyjoule[.]worker' || true")
    out, err = proc.communicate(timeout=120)
    words = out.split()
    assert words[words.index("failed") + 1:][:1] == ["['lost']"], (out, err)
    kept = int(words[-1])
    assert 0 < kept < 16
    # the lost psets point at the worker's log, kept on the host
    log = re.search(r"\(worker log: pjtest:~/(\S+)\)", out)
    assert log, out
    assert (sshd.home / log.group(1)).is_file()
    # the next call runs only the failed psets again
    out, err = _start(remote_project, SLOW).communicate(timeout=120)
    assert "finished 1200 2" in out, err


# 40 psets of 0.4 s on the host; the script goes on once two have finished
SUBMIT_SLOW = """
        import time
        import pyjoule as pj

        @pj.experiment(host="pjtest", workers=2)
        def slow(i):
            time.sleep(0.4)
            return i * 10

        run = slow.submit(pj.grid(i=range(40)))
        deadline = time.monotonic() + 60
        while run.status()["done"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
"""


def test_cancel_kills_the_remote_workers_and_keeps_what_finished(remote_project, sshd):
    out = run_script(remote_project, SUBMIT_SLOW + """
        run.cancel()
        s = run.status()
        print(s["done"], s["failed"], run.done())
    """, timeout=120).stdout.split()
    done, failed, finished = int(out[0]), int(out[1]), out[2]
    assert 2 <= done < 40 and done + failed == 40 and finished == "True"
    assert host_workers(sshd, remote_project / ".pyjoule") == []


def test_pyjoule_cancel_from_another_process_stops_a_remote_run(remote_project, sshd):
    """The client that submitted has gone; `pyjoule cancel` in a shell stops the work
    on the host and keeps what finished."""
    import sys

    out = run_script(remote_project, SUBMIT_SLOW + """
        print(run.id)
    """, timeout=120).stdout.split()
    run_id = out[-1]
    assert host_workers(sshd, remote_project / ".pyjoule")
    proc = subprocess.run([sys.executable, "-m", "pyjoule", "cancel", run_id],
                          cwd=remote_project, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert host_workers(sshd, remote_project / ".pyjoule") == []
    status = subprocess.run([sys.executable, "-m", "pyjoule", "status", run_id, "--json"],
                            cwd=remote_project, capture_output=True, text=True, timeout=120)
    report = json.loads(status.stdout)
    assert report["state"] == "cancelled", report
    counts = report["counts"]
    assert 2 <= counts["done"] < 40 and counts["done"] + counts["failed"] == 40


def test_a_module_missing_on_the_host_fails_before_anything_starts(remote_project, sshd):
    import time

    outside = remote_project.parent / "elsewhere"  # on the client's path, not in the project
    outside.mkdir()
    (outside / "localonly.py").write_text("def f(x):\n    return x\n")
    before = _remote_runs(sshd)
    t0 = time.monotonic()
    proc = run_script(remote_project, f"""
        import sys
        sys.path.insert(0, {str(outside)!r})
        import pyjoule as pj
        import localonly

        @pj.experiment(host="pjtest", workers=1)
        def uses(x):
            return localonly.f(x)

        try:
            uses.sweep(x=[1, 2])
        except pj.RemoteCommandError as exc:
            print("REFUSED", exc)
        print("runs", len(pj.runs()))
    """, timeout=120)
    assert "REFUSED" in proc.stdout and "cannot be loaded on" in proc.stdout
    assert "localonly" in proc.stdout  # the remote traceback names the module
    assert "runs 0" in proc.stdout
    assert time.monotonic() - t0 < 30
    assert _remote_runs(sshd) == before  # nothing half-written there either


def test_sshd_restart_mid_run_loses_nothing(remote_project, sshd):
    proc = _start(remote_project, SLOW)
    assert proc.stdout.readline().strip() == "ready"
    _wait_for_remote_worker(sshd, remote_project)
    sshd.restart()  # every connection drops; the detached worker goes on
    out, err = proc.communicate(timeout=120)
    assert "finished 1200 1" in out, err


def test_full_disk_on_the_host_is_a_clear_error(remote_project, sshd, weird_tmp_path):
    import time

    small = Path("/tmp/pyjoule-tiny-workdir")
    small.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", str(small)],
                   check=True)
    try:
        (remote_project / "data.bin").write_bytes(os.urandom(400_000))
        t0 = time.monotonic()
        proc = run_script(remote_project, f"""
            import pyjoule as pj

            @pj.experiment(host=pj.Host("pjtest", workdir={str(small)!r}), workers=1)
            def f(x):
                return x

            try:
                f.sweep(x=[1, 2])
            except pj.PyjouleError as exc:
                print("REFUSED", type(exc).__name__, exc)
            print("runs", len(pj.runs()))
        """, timeout=120)
        assert "REFUSED" in proc.stdout and "disk (or quota) is full" in proc.stdout
        assert "runs 0" in proc.stdout and time.monotonic() - t0 < 30
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_awkward_parameter_values_make_the_round_trip_unchanged(remote_project):
    out = run_script(remote_project, """
        import json
        import pyjoule as pj

        NASTY = ["a b", "it's", 'say "hi"', "x;y", "$(touch /tmp/pj-pwned)", "`id`",
                 "new\\nline", "*", "~"]

        @pj.experiment(host="pjtest", workers=2)
        def echo(s):
            return {"same": s, "n": len(s)}

        ds = echo.sweep(s=NASTY)
        print(json.dumps([ds.same.sel(s=v).item() == v for v in NASTY]))
    """, timeout=120).stdout
    assert out.strip() == json.dumps([True] * 9)


def test_a_folder_with_no_project_gets_the_packages_the_function_uses(sshd, tmp_path,
                                                                       monkeypatch):
    import tqdm

    folder = tmp_path / "notebook folder"  # no pyproject.toml, no .git above it
    folder.mkdir()
    (folder / "helpers.py").write_text("def label(x):\n    return f'<{x}>'\n")
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    monkeypatch.setenv("PYJOULE_CACHE", str(folder / "cache"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    out = run_script(folder, """
        import pyjoule as pj
        from helpers import label

        @pj.experiment(host="pjtest", workers=1)
        def where(x):
            import tqdm
            return {"tqdm": tqdm.__version__, "label": label(x)}

        ds = where.sweep(x=[1, 2])
        print(sorted(set(ds.tqdm.values.tolist())), ds.label.values.tolist())
    """, timeout=300).stdout.strip()
    assert out == f"['{tqdm.__version__}'] ['<1>', '<2>']"


def test_setup_lines_and_env_reach_the_worker(remote_project):
    out = run_script(remote_project, """
        import pyjoule as pj

        host = pj.Host("pjtest", setup=["export PJ_FROM_SETUP='set up; ok'"],
                       env={"PJ_FROM_ENV": "x y;$(id)"})

        @pj.experiment(host=host, workers=1)
        def seen(i):
            import os
            return {"setup": os.environ.get("PJ_FROM_SETUP", ""),
                    "env": os.environ.get("PJ_FROM_ENV", "")}

        ds = seen.sweep(i=[1, 2])
        print(set(ds.setup.values.tolist()), set(ds.env.values.tolist()))
    """, timeout=120).stdout.strip()
    assert out == "{'set up; ok'} {'x y;$(id)'}"


def test_ctrl_c_stops_the_remote_work_and_keeps_what_finished(remote_project, sshd):
    import signal
    import time

    proc = _start(remote_project, SLOW)
    assert proc.stdout.readline().strip() == "ready"
    _wait_for_remote_worker(sshd, remote_project)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert host_workers(sshd, remote_project / ".pyjoule") == []
    # the next call keeps what had finished and runs only the rest
    out, err = _start(remote_project, SLOW).communicate(timeout=120)
    assert "finished 1200 2" in out, err


def test_connection_dropped_while_the_worker_starts(remote_project, sshd):
    import threading
    import time

    # the setup line holds the start command open long enough to cut it
    def cut():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sshd.run("pgrep -u pjhost -f 'sleep 1[.]5' || true").stdout.strip():
                sshd.drop_connections()
                return
            time.sleep(0.05)

    cutter = threading.Thread(target=cut)
    cutter.start()
    out = run_script(remote_project, """
        import pyjoule as pj

        @pj.experiment(host=pj.Host("pjtest", setup=["sleep 1.5"]), workers=2)
        def f(i):
            return i * 10

        ds = f.sweep(i=range(16))
        print("finished", int(ds.result.sum()), len(pj.runs()))
    """, timeout=120).stdout
    cutter.join()
    assert "finished 1200 1" in out


def test_a_single_call_raises_what_the_function_raised_on_the_host(remote_project):
    out = run_script(remote_project, """
        import pyjoule as pj

        class Diverged(Exception):
            pass

        @pj.experiment(host="pjtest", workers=1)
        def step(x):
            print(f"step {x}")
            if x == 2:
                raise Diverged(f"diverged at {x}")
            return x

        print(step(x=1))
        try:
            step(x=2)
        except Diverged as exc:  # the script's own class, back from the host
            print("CAUGHT", exc, "|", type(exc.__cause__).__name__)
            print("FRAME", ", line 11, in step" in str(exc.__cause__))
        print(step.table(output=True)["_stdout"].tolist())
    """, timeout=300).stdout.splitlines()
    assert out == ["1", "CAUGHT diverged at 2 | WorkerTraceback", "FRAME True",
                   "['step 1\\n']"]


def test_function_values_and_ignored_arguments_travel_to_the_host(remote_project):
    (remote_project / "shapes.py").write_text("def square(x):\n    return x * x\n")
    out = run_script(remote_project, """
        import json
        import pyjoule as pj
        from shapes import square

        @pj.experiment(host="pjtest", workers=2, ignore=["log"])
        def apply(act, x, log=None):
            log and print(log)
            return act(x)

        ds = apply.map(pj.grid(act=[square, lambda x: -x], x=[2, 3], log="note"))
        print(json.dumps([ds.act.values.tolist()[0], ds.result.values.tolist(),
                          list(ds.dims)]))
    """, timeout=120).stdout
    assert json.loads(out) == ["shapes.square", [[4, 9], [-2, -3]], ["act", "x"]]
