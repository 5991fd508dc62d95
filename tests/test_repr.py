"""What an experiment and a run show in a terminal (``repr``) and in Jupyter
(``_repr_html_``): status counts, host, backend, where the cache is; escaped HTML."""

from __future__ import annotations

import html
import os
import time

import pyjoule as pj

COUNTS = ("total", "cached", "pending", "running", "done", "failed")


def square(x):
    return x * x


def half(x):
    if x == 3:
        raise ValueError("three is odd")
    return x / 2


def wait_for(x, gate):
    while not os.path.exists(gate):
        time.sleep(0.01)
    return x


def _counts_row(*values) -> str:
    return "<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>"


def test_experiment_shows_function_options_and_cache(cache_dir):
    f = pj.experiment(workers=0, timeout=30)(square)
    text, page = repr(f), f._repr_html_()
    assert not cache_dir.exists()  # showing it creates no cache
    assert "test_repr.square" in text and "workers=0" in text and "timeout=30" in text
    assert "nothing yet" in text and "nothing yet" in page
    f.sweep(x=[1, 2, 3])
    func_id = f.cache_info()["func_id"]
    text, page = repr(f), f._repr_html_()
    assert f"func_id={func_id[:12]}" in text and f"cache={str(cache_dir)!r}" in text
    assert "3 results of this version" in text
    assert func_id in page and "3 results of this version" in page
    assert "<th" in page and ">timeout</th>" in page and "<td" in page
    # the cache path has quotes in it: escaped, never raw
    assert html.escape(str(cache_dir)) in page and str(cache_dir) not in page


def test_html_is_escaped(cache_dir):
    f = pj.experiment(host="me@a<b>", workers=0)(lambda x: x)
    page = f._repr_html_()
    assert "&lt;lambda&gt;" in page and "me@a&lt;b&gt;" in page
    assert "<lambda>" not in page and "a<b>" not in page
    g = pj.experiment(workers=0)(lambda x: x)
    run = g.submit([{"x": 1}])
    page = run._repr_html_()
    assert "&lt;lambda&gt;" in page and "<lambda>" not in page


def test_cache_off_shows_so_and_touches_nothing(cache_dir):
    f = pj.experiment(cache=False, workers=0)(square)
    assert "off (cache=False)" in repr(f) and "off (cache=False)" in f._repr_html_()
    assert f(x=3) == 9
    assert "off (cache=False)" in repr(f)
    assert not cache_dir.exists()


def test_an_unreadable_cache_is_reported_not_raised(weird_tmp_path):
    broken = weird_tmp_path / "broken"
    broken.mkdir()
    (broken / "index.sqlite").write_bytes(b"this is not a database" * 100)
    f = pj.experiment(cache=str(broken), workers=0)(square)
    assert "unavailable" in repr(f) and "unavailable" in f._repr_html_()


def test_run_shows_state_counts_host_backend_and_cache(cache_dir):
    f = pj.experiment(workers=0, errors="ignore")(half)
    run = f.submit(pj.grid(x=[1, 2, 3]))
    text, page = repr(run), run._repr_html_()
    assert text.startswith(f"<pyjoule Run {run.id} of test_repr.half: ")
    assert "done=2, failed=1" in text and "host=local backend=inprocess" in text
    assert f"cache={str(cache_dir)!r}" in text
    assert run.id in page and "test_repr.half" in page
    assert "".join(f"<th>{k}</th>" for k in COUNTS) in page
    assert _counts_row(3, 0, 0, 0, 2, 1) in page
    assert 'title="done: 2"' in page and 'title="failed: 1"' in page  # the bar
    assert ">local</td>" in page and ">inprocess</td>" in page
    assert html.escape(str(cache_dir)) in page

    again = f.submit(pj.grid(x=[1, 2]))
    assert isinstance(again.id, str)  # a run of its own, done at once
    assert "all cached" in repr(again) and "cached=2" in repr(again)
    assert _counts_row(2, 2, 0, 0, 0, 0) in again._repr_html_()

    attached = pj.attach(run.id)
    assert "test_repr.half" in repr(attached) and "backend=inprocess" in repr(attached)


def test_a_running_run_shows_running(cache_dir):
    gate = cache_dir.parent / "gate"
    f = pj.experiment(workers=1)(wait_for)
    run = f.submit(pj.grid(x=[1, 2], gate=str(gate)))
    try:
        text, page = repr(run), run._repr_html_()
        assert ": running, total=2, cached=0, pending=1, running=1, done=0" in text
        assert "<b>running</b>" in page and _counts_row(2, 0, 1, 1, 0, 0) in page
        assert "backend=pool" in text
    finally:
        gate.touch()
        run.wait()
    assert ": done, total=2, cached=0, pending=0, running=0, done=2" in repr(run)
