"""The run page of the browser view (``/runs/RUN``): facets that filter the psets table
with the counts of ``f.table()``, failures with their tracebacks and logs, paging and
sorting on the server, values shown as text, and the cancel button, driven in a real
chromium against a real ``pyjoule ui`` server (tests/ui_helpers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import ui_helpers
from helpers import REPO, run_script
from ui_helpers import get, start_ui

# the fixtures (a test's argument of the same name is the fixture)
browser, page, ui_server = ui_helpers.browser, ui_helpers.page, ui_helpers.ui_server

SCRIPT = "<script>alert(1)</script>"

STUDY = f"""
import json
import pyjoule as pj

@pj.experiment(errors="ignore")
def study(method, n, tag="plain"):
    if method == "bad" and n == 3:
        print("computing bad 3, about to fail")
        raise ValueError("n=3 is not allowed\\nsecond line of the message")
    return {{"y": n * 1.5}}

study.map(pj.grid(method=["good", "bad", "ugly"], n=range(1, 81))
          + [{{"method": "good", "n": 500, "tag": {SCRIPT!r}}}])
table = study.table()
bad = table[table["method"] == "bad"]
print(json.dumps({{
    "run": pj.runs()["id"].iloc[-1],
    "method": {{str(k): int(v) for k, v in table["method"].value_counts().items()}},
    "n_of_bad": {{str(k): int(v) for k, v in bad["n"].value_counts().items()}},
    "tag": {{str(k): int(v) for k, v in table["tag"].value_counts().items()}},
}}))
"""

#: the run's psets in its order (the grid, first key slowest, then the extra one)
PSETS = [(m, n) for m in ("good", "bad", "ugly") for n in range(1, 81)] + [("good", 500)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One finished run of 241 psets (one failed) in its own cache, and what
    ``f.table()`` said of it."""
    folder = tmp_path_factory.mktemp("run page")
    cache = folder / "cache"
    proc = run_script(folder, STUDY, env={"PYJOULE_CACHE": str(cache),
                                          "PYJOULE_PROGRESS": "0"})
    return cache, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def served(study):
    """``pyjoule ui`` over the study's cache, for the module's tests."""
    ui = start_ui(study[0])
    yield ui
    ui.stop()


def open_run(page, ui, run_id: str, query: str = "") -> None:
    page.goto(ui.at(f"/runs/{run_id}{query}"))
    page.wait_for_selector("table.psets")


def facet(page, name: str) -> dict[str, int]:
    """The facet ``name`` as {value: count}."""
    items = page.locator(f'.facet[data-param="{name}"] li:has(a)')
    out = {}
    for i in range(items.count()):
        item = items.nth(i)
        out[item.locator("a").inner_text()] = int(item.locator(".n").inner_text())
    return out


def click_and_wait(page, selector: str) -> None:
    """Click a link of the psets view and wait until its fragment has replaced the
    table shown (marked stale first: the response comes before the swap)."""
    page.evaluate("document.querySelector('table.psets').dataset.stale = 'yes'")
    page.click(selector)
    page.wait_for_selector("table.psets:not([data-stale])")


def column(page, param: str) -> list[str]:
    return page.locator(f'table.psets tbody td[data-param="{param}"]').all_inner_texts()


@pytest.mark.slow
def test_facets_filter_the_psets_and_count_as_f_table(study, served, page):
    _cache, told = study
    open_run(page, served, told["run"])
    assert page.locator(".showing").inner_text().startswith("241 of 241 psets")
    # every pset of the run: 81 good (the extra one), 80 bad (one failed), 80 ugly
    assert facet(page, "method") == {"good": 81, "bad": 80, "ugly": 80}
    assert facet(page, "status") == {"done": 240, "failed": 1}

    click_and_wait(page, '.facet[data-param="status"] a[data-value="done"]')
    assert facet(page, "method") == told["method"]  # the cached psets: f.table()'s
    assert facet(page, "tag") == told["tag"]
    click_and_wait(page, '.facet[data-param="method"] a[data-value="bad"]')
    shown = facet(page, "n")
    assert sum(told["n_of_bad"].values()) == 79
    # the facet lists its first 30 values (in value order) and counts the others
    assert shown == {k: v for k, v in told["n_of_bad"].items() if int(k) <= 31}
    assert "and 49 more values" in page.locator('.facet[data-param="n"]').inner_text()
    assert page.locator(".showing").inner_text().startswith("79 of 241 psets")
    assert set(column(page, "method")) == {"bad"}
    assert set(page.locator("table.psets td.status").all_inner_texts()) == {"done"}
    assert "f.method=bad" in page.url and "status=done" in page.url

    # AND: a value of another parameter narrows it further
    click_and_wait(page, '.facet[data-param="n"] a[data-value="7"]')
    assert column(page, "n") == ["7"] and column(page, "method") == ["bad"]
    # the address holds the filters: loaded anew, the page shows the same
    open_run(page, served, told["run"], "?" + page.url.split("?", 1)[1])
    assert column(page, "n") == ["7"]
    click_and_wait(page, "a.clear")
    assert page.locator(".showing").inner_text().startswith("241 of 241 psets")


@pytest.mark.slow
def test_a_failure_shows_its_message_traceback_and_log(study, served, page):
    _cache, told = study
    open_run(page, served, told["run"])
    group = page.locator("details.failure-group")
    assert group.count() == 1
    assert group.locator(".count").inner_text() == "1"
    assert group.locator(".error-type").inner_text() == "ValueError"
    assert group.locator(".reason").inner_text() == "exception"
    assert group.locator(".first-line").inner_text() == "n=3 is not allowed"
    traceback = group.locator("pre.traceback")
    assert not traceback.is_visible()  # folded until asked for
    group.locator("summary").first.click()
    failure = group.locator("details.failure")
    assert "method=bad, n=3" in failure.locator("summary").inner_text()
    failure.locator("summary").click()
    text = traceback.inner_text()
    assert traceback.is_visible()
    assert "Traceback (most recent call last)" in text
    assert 'raise ValueError("n=3 is not allowed' in text
    assert "second line of the message" in failure.locator("pre.message").inner_text()
    assert "computing bad 3, about to fail" in failure.locator("pre.stdout").inner_text()
    log = group.locator("details.log")
    assert log.count() == 1 and "worker.log" in log.locator("summary").inner_text()
    # the table says so too, and sorts by status
    click_and_wait(page, '.facet[data-param="status"] a[data-value="failed"]')
    assert page.locator("table.psets td.status").all_inner_texts() == ["failed (exception)"]


@pytest.mark.slow
def test_a_script_value_is_text(study, served, page):
    _cache, told = study
    open_run(page, served, told["run"])
    tag = facet(page, "tag")
    assert tag == {"plain": 240, SCRIPT: 1}
    click_and_wait(page, f'.facet[data-param="tag"] a >> text="{SCRIPT}"')
    assert column(page, "tag") == [SCRIPT]
    assert column(page, "n") == ["500"]
    assert page.evaluate("Array.from(document.scripts).every((s) => s.src)")
    assert page.locator("table.psets script").count() == 0
    # the page fixture fails the test if a dialog opened


@pytest.mark.slow
def test_pages_follow_the_sorted_order(study, served, page):
    from playwright.sync_api import expect

    _cache, told = study
    open_run(page, served, told["run"])
    assert page.locator(".showing").inner_text() == "241 of 241 psets, page 1 of 3"
    assert column(page, "n")[:3] == ["1", "2", "3"]  # the run's order
    click_and_wait(page, 'th a[data-sort="p:n"]')
    expected = sorted(PSETS, key=lambda p: p[1])  # stable: the run's order among equals
    first = list(zip(column(page, "method"), map(int, column(page, "n"))))
    assert first == expected[:100]
    click_and_wait(page, "a.next")
    assert page.locator(".page-number").inner_text() == "2"
    second = list(zip(column(page, "method"), map(int, column(page, "n"))))
    assert second == expected[100:200]
    assert "sort=p%3An" in page.url and "page=2" in page.url
    click_and_wait(page, 'th a[data-sort="p:n"]')  # again: descending, from page 1
    assert column(page, "n")[:4] == ["500", "80", "80", "80"]
    page.go_back()  # the browser's history keeps the pages
    expect(page.locator(".page-number")).to_have_text("2")


@pytest.mark.slow
def test_an_unknown_run_is_404(served):
    status, body, _ = get(served.at("/runs/20990101-000000-abcdef"))
    assert status == 404 and "No such run" in body
    assert "20990101-000000-abcdef" in body
    assert get(served.at("/runs/20990101-000000-abcdef/psets"))[0] == 404


SLOW_MODULE = """
import os, time
import pyjoule as pj

@pj.experiment(workers=2)
def slow(x):
    time.sleep(float(os.environ.get("SLOW_S", "0.5")))
    return x
"""

OWNER = """
import slowmod
import pyjoule as pj

run = slowmod.slow.submit(pj.grid(x=range(60)))
print(run.id, flush=True)
run.wait()
print("waited", flush=True)
"""

LATER = """
import json
import slowmod
import pyjoule as pj

slowmod.slow.sweep(x=range(60))
rec = pj.runs().iloc[-1]
print(json.dumps({"id": rec["id"], "cached": int(rec["cached"]), "done": int(rec["done"])}))
"""


def post(url: str, data: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(),
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


@pytest.mark.slow
def test_cancel_stops_a_running_run(cache_dir, weird_tmp_path, ui_server, page):
    from playwright.sync_api import expect

    from pyjoule._store import Store

    (weird_tmp_path / "slowmod.py").write_text(SLOW_MODULE)
    (weird_tmp_path / "owner.py").write_text(OWNER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(weird_tmp_path)]))
    owner = subprocess.Popen([sys.executable, str(weird_tmp_path / "owner.py")],
                             cwd=weird_tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    run_id = ""
    try:
        run_id = owner.stdout.readline().strip()
        store = Store.open(cache_dir)

        def done() -> int:
            return (store.get_run(run_id) or {}).get("done", 0)

        deadline = time.monotonic() + 120
        while done() < 2:
            assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read()
            time.sleep(0.1)
        ui = ui_server(cache_dir)
        # without the CSRF value: refused, and the run goes on
        assert post(ui.at(f"/runs/{run_id}/cancel"), {}) == 403
        assert post(ui.at(f"/runs/{run_id}/cancel"), {"csrf": "forged"}) == 403
        before = done()
        while done() == before:
            assert store.get_run(run_id)["state"] == "running"
            assert time.monotonic() < deadline
            time.sleep(0.1)

        with open(os.path.join(store.get_run(run_id)["run_dir"], "worker.pid")) as fh:
            worker_pid = int(fh.read().split()[0])
        page.goto(ui.at(f"/runs/{run_id}"))
        assert page.locator("#run-state").inner_text() == "running"
        # in flight, the counts move without a reload
        shown = page.locator('.run-summary [data-count="done"]')
        expect(shown).not_to_have_text(shown.inner_text(), timeout=60_000)
        with page.expect_navigation():
            page.click("#cancel-run")
        assert page.url.endswith(f"/runs/{run_id}")  # back on the run page (303)
        assert page.locator("#run-state").inner_text() == "cancelled"
        assert not page.locator("#cancel-run").is_visible()
        out, err = owner.communicate(timeout=120)  # its wait() returns
        assert owner.returncode == 0 and "waited" in out, err
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if run_id and (Store.open(cache_dir).get_run(run_id) or {}).get("state") == "running":
            subprocess.run([sys.executable, "-m", "pyjoule", "cancel", run_id], env=env,
                           capture_output=True, timeout=120)  # failed early: no stray

    rec = store.get_run(run_id)
    assert rec["state"] == "cancelled"
    assert 3 <= rec["done"] < 60 and rec["done"] + rec["failed"] == 60
    assert not os.path.exists(f"/proc/{worker_pid}")  # its workers are gone
    # the page counts it as `pyjoule status` does
    page.reload()
    counts = {k: page.locator(f'.run-summary [data-count="{k}"]').inner_text()
              for k in ("done", "failed")}
    assert counts == {"done": f"{rec['done']} done", "failed": f"{rec['failed']} failed"}
    assert "cancelled" in page.locator("details.failure-group .reason").inner_text()

    later = run_script(weird_tmp_path, LATER, env={"SLOW_S": "0"})
    again = json.loads(later.stdout.strip().splitlines()[-1])
    assert again["id"] != run_id
    assert again["cached"] == rec["done"] and again["done"] == 60 - rec["done"]


# -------------------------------------------------------------- the psets' columns
def test_values_equal_as_numbers_keep_their_own_labels():
    from pyjoule._ui.data_psets import _column

    col = _column("x", [1, 1.0, True, None, 1, "1.0", [1, 2]])
    shown = [col.labels[c] for c in col.codes.tolist()]
    assert shown == ["1", "1.0", "True", "None", "1", "1.0", "[1, 2]"]
    numbers = _column("n", [10, 2, 33, 2, 10])  # value order, and sorts as numbers
    assert numbers.labels == ["2", "10", "33"]
    rows = numbers.sort_key.argsort(kind="stable").tolist()
    assert [numbers.labels[numbers.codes[i]] for i in rows] == ["2", "2", "10", "10", "33"]
    words = _column("w", ["b", "a", "c", "a"])  # first seen; sorts as text
    assert words.labels == ["b", "a", "c"]
    assert words.sort_key.tolist() == [1, 0, 2, 0]


def test_the_query_round_trips_through_the_address():
    from pyjoule._ui.data_psets import Query

    q = Query.parse({"f.method": "<b>", "status": "failed", "sort": "p:n", "desc": "1",
                     "page": "3", "token": "secret"})
    assert q.to_params() == {"f.method": "<b>", "status": "failed", "sort": "p:n",
                             "desc": "1", "page": "3"}
    assert Query.parse(q.to_params()) == q
    assert q.to_params(filters={}, status=None, page=1) == {"sort": "p:n", "desc": "1"}
    assert Query.parse({"page": "x", "status": "nonsense"}) == Query({}, None, None, False, 1)
