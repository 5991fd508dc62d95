"""The browser view's server (``pyjoule ui``, ``pj.ui()``): the token and its cookie,
CSRF, the runs page and its live update, driven in a real chromium (tests/ui_helpers.py)."""

from __future__ import annotations

import pytest
import ui_helpers
from helpers import run_script
from ui_helpers import get

import pyjoule as pj

# the fixtures (a test's argument of the same name is the fixture)
browser, page, ui_server = ui_helpers.browser, ui_helpers.page, ui_helpers.ui_server

TWO_FUNCTIONS = """
import pyjoule as pj

@pj.experiment
def square(x):
    return {"y": x * x}

@pj.experiment
def shaky(x, tag="<script>alert(1)</script>"):
    if x == 2:
        raise ValueError("no 2")
    return {"y": x}

square.sweep(x=range(5))
square.sweep(x=range(8))   # 5 cached, 3 new
try:
    shaky.sweep(x=range(4))
except pj.ExperimentError:
    pass
"""


@pytest.fixture
def study(cache_dir, weird_tmp_path):
    """A cache with three runs of two functions, one with a failed pset."""
    run_script(weird_tmp_path, TWO_FUNCTIONS)
    return cache_dir


@pytest.mark.slow
def test_no_token_no_access(study, ui_server):
    ui = ui_server(study)
    for path in ("/", "/runs/rows", "/static/ui.css", "/static/ui.js", "/results",
                 "/nope"):
        status, body, _ = get(ui.at(path, token=False))
        assert status == 403, path
        assert "token" in body
        assert get(ui.at(path, token=False) + "?token=wrong" + ui.token[5:])[0] == 403
    status, body, headers = get(ui.at("/"))
    assert status == 200 and "square" in body
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # the cookie alone opens every page, static files and fragments included
    jar = {"Cookie": cookie.split(";")[0]}
    for path in ("/", "/runs/rows", "/static/ui.js"):
        assert get(ui.at(path, token=False), jar)[0] == 200, path
    assert get(ui.at("/", token=False), {"Cookie": "pyjoule_ui=forged"})[0] == 403


@pytest.mark.slow
def test_runs_page_lists_runs_with_their_counts(study, ui_server, page):
    runs = pj.runs(study)
    assert len(runs) == 3
    ui = ui_server(study)
    page.goto(ui.url)
    rows = page.locator("tbody#runs-rows tr.run")
    assert rows.count() == 3
    ids = [rows.nth(i).get_attribute("data-run") for i in range(3)]
    assert ids == list(runs["id"])[::-1]  # newest first
    for _, run in runs.iterrows():
        row = page.locator(f'tr[data-run="{run["id"]}"]')
        assert run["function"].split(".")[-1] in row.locator("td.function").inner_text()
        for part in ("done", "failed", "cached"):
            count = row.locator(f'[data-count="{part}"]').inner_text()
            assert count == f"{run[part]} {part}", (run["id"], part, count)
        assert row.locator('[data-count="pending"]').inner_text() == "0 not yet"
    # the parameter's default <script> value is in the cache; nothing ran (no dialog)
    page.select_option("select[name=function]", label=runs["function"].iloc[0])
    page.click("form.filters button")
    assert page.locator("tbody#runs-rows tr.run").count() == 2
    page.select_option("select[name=state]", "failed")
    page.click("form.filters button")
    assert page.locator("tbody#runs-rows tr.run").count() == 0
    assert "match these filters" in page.locator("tbody#runs-rows").inner_text()
