"""pyjoule from Jupyter, on real ipykernel kernels: the example notebook executed with
nbclient (cached on the second execution, recomputed after a helper cell changed),
runs followed from two live kernels, and the progress bar on a terminal and in a log.

Every kernel is started from a kernelspec that runs this interpreter (the project's
.venv), and is shut down when its test ends, passed or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient

import pyjoule as pj

from conftest import REPO

EXAMPLES = REPO / "examples"
WIDGET = "application/vnd.jupyter.widget-view+json"

# Appended to the test's copy of nb_helpers.py, so that the example stays clean: one
# line per call of noisy_signal (once per pset), from whichever process calls it.
COUNTER = '''

import os as _os

_noisy_signal = noisy_signal


def noisy_signal(n, outliers, seed):
    with open(_os.environ["STUDY_CALLS_FILE"], "a") as fh:
        fh.write(f"{seed}\\n")
    return _noisy_signal(n, outliers, seed)
'''

# Appended to the test's copy of the notebook: what the test checks, as one JSON line.
PROBE = '''\
import json, sys
print(json.dumps({"executable": sys.executable, "rmse": ds.rmse.values.tolist(),
                  "more": more.rmse.values.tolist(), "status": run.status(),
                  "entries": denoise.cache_info()["entries"]}))'''


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory) -> Path:
    """A ``python3`` kernelspec that starts this interpreter, for JUPYTER_PATH (which
    comes before the user's and the system's kernelspecs)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "Python 3 (pyjoule tests)", "language": "python"}))
    return root


@pytest.fixture
def kernel_env(jupyter_path, weird_tmp_path, monkeypatch) -> Path:
    """The environment kernels inherit: a fresh cache, progress left on (the default)."""
    cache = weird_tmp_path / "cache"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("PYJOULE_CACHE", str(cache))
    monkeypatch.delenv("PYJOULE_PROGRESS", raising=False)
    return cache


# ---------------------------------------------------------------- the notebook
def _execute(path: Path) -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` top to bottom in a fresh kernel (nbclient shuts
    the kernel down afterwards, also when a cell fails)."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def _probe(nb) -> dict:
    (out,) = [o for o in nb.cells[-1].outputs if o.output_type == "stream"]
    return json.loads(out.text.strip().splitlines()[-1])


def _cell(nb, text: str):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and text in c.source]
    return cell


def _has_widget(cell) -> bool:
    return any(WIDGET in o.get("data", {}) for o in cell.outputs)


def _calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_example_notebook_is_clean_and_valid():
    nb = nbformat.read(EXAMPLES / "study.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.nbformat == 4 and code and len(nb.cells) > len(code)
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "from nb_helpers import" in code[0].source
    assert _cell(nb, "def rmse(") is not _cell(nb, "@pj.experiment")


def test_nb_helpers_examples_run():
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("nb_helpers", EXAMPLES / "nb_helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted >= 4 and result.failed == 0


@pytest.mark.slow
def test_notebook_runs_then_takes_everything_from_the_cache_then_recomputes(
        kernel_env, weird_tmp_path, monkeypatch):
    folder = weird_tmp_path / "study"
    folder.mkdir()
    shutil.copy(EXAMPLES / "nb_helpers.py", folder)
    with open(folder / "nb_helpers.py", "a") as fh:
        fh.write(COUNTER)
    nb = nbformat.read(EXAMPLES / "study.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    notebook = folder / "study.ipynb"
    nbformat.write(nb, notebook)
    calls = weird_tmp_path / "calls.txt"
    monkeypatch.setenv("STUDY_CALLS_FILE", str(calls))

    first = _execute(notebook)
    p1 = _probe(first)
    assert Path(p1["executable"]) == Path(sys.executable)  # the project's interpreter
    n_psets = 2 * p1["status"]["total"]  # the sweep and the submit: 40 psets each
    assert _calls(calls) == n_psets == 80 == p1["entries"]
    assert _has_widget(_cell(first, "ds = denoise.sweep("))  # tqdm's widget, not a text bar
    assert _cell(first, "pj.plot(").outputs[-1]["data"]["image/png"]
    runs_after_first = len(pj.runs(kernel_env))
    assert runs_after_first == 2

    def no_run_did_work() -> bool:  # a submit served from the cache is a run done at once
        runs = pj.runs(kernel_env)
        return bool((runs["cached"] == runs["total"]).iloc[runs_after_first:].all())

    second = _execute(notebook)  # a fresh kernel: the same code, all from the cache
    p2 = _probe(second)
    assert _calls(calls) == n_psets  # the function never ran
    assert len(pj.runs(kernel_env)) == runs_after_first + 1 and no_run_did_work()
    assert p2["status"] == {"total": 40, "cached": 40, "pending": 0, "running": 0,
                            "done": 0, "failed": 0}
    assert (p2["rmse"], p2["more"]) == (p1["rmse"], p1["more"])
    assert not _has_widget(_cell(second, "ds = denoise.sweep("))  # nothing to wait for

    # A new docstring and a comment in the helper cell: not a change of the code.
    helper = _cell(nb, "def rmse(")
    original = helper.source
    helper.source = original.replace('"""Root-mean-square', '# how far off\n    """RMS')
    assert helper.source != original
    nbformat.write(nb, notebook)
    assert _probe(_execute(notebook))["rmse"] == p1["rmse"]
    assert _calls(calls) == n_psets and len(pj.runs(kernel_env)) == runs_after_first + 1

    # Edit its formula: mean absolute error instead of RMSE, always smaller.
    helper.source = original.replace("np.sqrt(np.mean((estimate - truth) ** 2))",
                                     "np.mean(np.abs(estimate - truth))")
    assert helper.source != original
    nbformat.write(nb, notebook)
    third = _execute(notebook)
    p3 = _probe(third)
    assert _calls(calls) == 2 * n_psets  # every pset of denoise calls rmse: all again
    assert len(pj.runs(kernel_env)) == runs_after_first + 3  # the sweep and the submit ran again
    for key in ("rmse", "more"):
        new, old = np.array(p3[key]), np.array(p1[key])
        assert new.shape == old.shape == (2, 5, 4) and (new < old).all()  # MAE < RMSE


@pytest.mark.slow
def test_a_plot_shows_once_whether_it_ends_the_cell_or_not(kernel_env, weird_tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (
        "import numpy as np, xarray as xr, pyjoule as pj\n"
        "ds = xr.Dataset({'y': (('x', 'seed'), np.arange(12.0).reshape(3, 4))},\n"
        "                coords={'x': [1, 2, 3], 'seed': range(4)})",
        "pj.plot(ds, 'y', x='x')",  # the cell's value, and a pyplot figure
        "fig = pj.plot(ds, 'y', x='x')",
        "fig",  # again, in a later cell
        "for _ in range(2):\n    pj.plot(ds, 'y', x='x')",
        "fig.savefig('again.png')",
    )]
    path = weird_tmp_path / "plots.ipynb"
    nbformat.write(nb, path)
    done = _execute(path)
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in done.cells[1:]]
    assert images == [1, 1, 1, 2, 0]
    assert (weird_tmp_path / "again.png").stat().st_size > 0


# ------------------------------------------------------------- two live kernels
@contextlib.contextmanager
def _kernel(cwd: Path):
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


def _outputs(kc, code: str) -> tuple[str, list[dict]]:
    """Execute ``code`` in the kernel; return its stream text and its display data."""
    out: list[str] = []
    shown: list[dict] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] in ("display_data", "execute_result"):
            shown.append(msg["content"]["data"])

    reply = kc.execute_interactive(textwrap.dedent(code), timeout=60, output_hook=hook)
    text = "".join(out)
    assert reply["content"]["status"] == "ok", text
    return text, shown


def _run(kc, code: str) -> dict | None:
    """Execute ``code`` in the kernel; return the JSON it printed last, if any."""
    lines = [line for line in _outputs(kc, code)[0].splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


SLOW = '''
import json, os, time
import pyjoule as pj

GATES = {gates!r}


@pj.experiment(workers=2)
def slow(i):
    """Sleeps; from the fifth pset of each hundred on, waits for the hundred's gate."""
    gate = os.path.join(GATES, f"gate-{{i // 100}}")
    while i % 100 >= 4 and not os.path.exists(gate):
        time.sleep(0.05)
    time.sleep(0.3)
    return {{"y": float(i)}}
'''


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def gates(weird_tmp_path):
    """The folder of SLOW's gate files; every gate opens at the end, so that no worker
    is left waiting when a test fails."""
    folder = weird_tmp_path / "gates"
    folder.mkdir()
    yield folder
    for hundred in range(3):
        (folder / f"gate-{hundred}").touch()


@pytest.mark.slow
def test_submit_returns_at_once_and_runs_are_followed_from_another_kernel(
        kernel_env, weird_tmp_path, gates):
    with _kernel(weird_tmp_path) as (km_a, a), _kernel(weird_tmp_path) as (_, b):
        _run(a, SLOW.format(gates=str(gates)))
        _run(b, "import json, time, pyjoule as pj")
        started = _run(a, """
            run = slow.submit(pj.grid(i=range(12)))
            print(json.dumps({"id": run.id, "status": run.status(), "done": run.done()}))""")
        assert started["done"] is False  # psets 4.. wait for their gate: still going
        assert started["status"]["pending"] + started["status"]["running"] >= 8
        run_id = started["id"]

        partial = _run(a, """
            while run.status()["done"] < 4:
                time.sleep(0.05)
            ds = run.dataset()
            print(json.dumps({"count": int(ds.y.count()), "size": ds.y.size}))""")
        assert partial == {"count": 4, "size": 12}  # the other 8 cells are NaN

        seen = _run(b, f"""
            df = pj.runs()
            other = pj.attach({run_id!r})
            print(json.dumps({{"states": df.set_index("id").state.to_dict(),
                               "done": other.done()}}))""")
        assert seen == {"states": {run_id: "running"}, "done": False}

        (gates / "gate-0").touch()
        in_b = _run(b, "print(json.dumps(other.wait().status()))")
        assert (in_b["done"], in_b["failed"], in_b["total"]) == (12, 0, 12)
        in_a = _run(a, """
            ds = run.wait().dataset()
            print(json.dumps({"y": ds.y.values.tolist(), "done": run.done()}))""")
        assert in_a == {"y": [float(i) for i in range(12)], "done": True}

        # A kernel shut down (or restarted) mid-run: its pool works on, in a session
        # of its own, and another kernel collects the results.
        second = _run(a, """
            run = slow.submit(pj.grid(i=range(100, 106)))
            print(json.dumps({"id": run.id, "run_dir": run._own.run_dir}))""")
        pid_file = Path(second["run_dir"]) / "worker.pid"
        pid = int(pid_file.read_text().split()[0])
        km_a.shutdown_kernel()
        assert not km_a.is_alive() and _pid_alive(pid)
        (gates / "gate-1").touch()
        # pj.runs() alone brings the orphaned run up to date (no attach needed)
        listed = _run(b, f"""
            for _ in range(600):
                row = pj.runs().set_index("id").loc[{second["id"]!r}]
                if row.state != "running":
                    break
                time.sleep(0.1)
            print(json.dumps({{"state": row.state, "done": int(row.done)}}))""")
        assert listed == {"state": "done", "done": 6}
        after = _run(b, f"""
            r = pj.attach({second["id"]!r}).wait()
            print(json.dumps({{"status": r.status(), "y": r.dataset().y.values.tolist()}}))""")
        assert (after["status"]["done"], after["status"]["failed"]) == (6, 0)
        assert after["y"] == [float(i) for i in range(100, 106)]

        # A kernel without ipywidgets (the `notebook` extra) gets the text bar, quietly.
        _run(b, SLOW.format(gates=str(gates)))
        text, shown = _outputs(b, """
            import sys
            sys.modules["ipywidgets"] = None  # as if it were not installed
            slow.sweep(i=[200, 201])""")
        assert "slow: 100%|" in text and "| 2/2 [" in text
        assert "IProgress" not in text and "Warning" not in text
        assert not any(WIDGET in data for data in shown)


# ------------------------------------------------------- progress off Jupyter
NAP = """
import time
import pyjoule as pj

@pj.experiment(workers=1)
def nap(x):
    time.sleep(0.05)
    return x

nap.sweep(x=range(6))
"""


def _script_env(cache: Path) -> dict:
    env = dict(os.environ, PYJOULE_CACHE=str(cache), PYJOULE_LOG_LEVEL="INFO",
               PYTHONPATH=str(REPO))
    env.pop("PYJOULE_PROGRESS", None)
    return env


@pytest.mark.slow
def test_a_terminal_gets_a_text_bar(weird_tmp_path):
    (weird_tmp_path / "nap.py").write_text(NAP)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "nap.py"], cwd=weird_tmp_path, stdin=slave,
                            stderr=slave, stdout=subprocess.DEVNULL,
                            env=_script_env(weird_tmp_path / "cache"))
    os.close(slave)
    chunks = []
    try:
        while data := _read(master):
            chunks.append(data)
    finally:
        os.close(master)
        assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode()
    assert "nap: 100%|" in text and "| 6/6 [" in text and "\r" in text
    assert "█" in text
    assert "psets (done" not in text  # the bar, not log lines


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the child closed the terminal
        return b""


@pytest.mark.slow
def test_no_terminal_gets_log_lines_and_no_bar(weird_tmp_path):
    (weird_tmp_path / "nap.py").write_text(NAP)
    proc = subprocess.run([sys.executable, "nap.py"], cwd=weird_tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=_script_env(weird_tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert "nap: 6/6 psets (done 6, failed 0, cached 0) in " in proc.stderr
    assert "\r" not in proc.stderr and "%|" not in proc.stderr
