"""The browser view's server (``pyjoule ui``, ``pj.ui()``): the token and its cookie,
CSRF, the runs page and its live update, driven in a real chromium (tests/ui_helpers.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
import ui_helpers
from click.testing import CliRunner
from helpers import run_script, start_script
from ui_helpers import get, post, serving

import pyjoule as pj
from pyjoule._store import Store
from pyjoule.cli import cli

# the fixtures (a test's argument of the same name is the fixture)
browser, page, ui_server = ui_helpers.browser, ui_helpers.page, ui_helpers.ui_server



def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


#: a promise of the page's next live update: whether it got the fragment and swapped
#: it in (static/ui.js)
POLLED = ("() => new Promise(done => document.addEventListener("
          "'pyjoule:polled', event => done(event.detail.ok), {once: true}))")

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
    name = cookie.split("=", 1)[0]
    assert get(ui.at("/", token=False), {"Cookie": f"{name}=forged"})[0] == 403


@pytest.mark.slow
def test_two_servers_in_one_browser_keep_their_own_cookies(study, ui_server, page):
    """Cookies ignore ports: the view of a second cache (another notebook's pj.ui())
    opened in the same browser must not lock the first one out."""
    first, second = ui_server(study), ui_server(study)
    page.goto(first.url)
    other = page.context.new_page()
    other.goto(second.url)
    for tab, ui in ((page, first), (other, second)):  # by cookie alone
        status = tab.evaluate("url => fetch(url).then(r => r.status)",
                              ui.at("/runs/rows", token=False))
        assert status == 200, ui.base
    other.close()


@pytest.mark.slow
def test_runs_page_lists_runs_with_their_counts(study, ui_server, page):
    from playwright.sync_api import expect

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
    # a long list shows the newest runs, and a link to all of them
    page.goto(ui.at("/?limit=2"))
    assert page.locator("tbody#runs-rows tr.run").count() == 2
    assert "the newest 2 of 3 runs" in page.locator("tr.more").inner_text()
    page.click("tr.more a")
    assert page.locator("tbody#runs-rows tr.run").count() == 3
    assert page.locator("tr.more").count() == 0
    # a value from the URL comes back as text: no markup, no script (the page fixture
    # fails the test on any dialog), also in the live fragment swapped in each second
    script = "<script>alert(1)</script>"
    page.goto(ui.at("/?" + urllib.parse.urlencode({"function": script})))
    empty = page.locator("tbody#runs-rows tr.empty code")
    assert empty.inner_text() == script
    assert page.evaluate(POLLED)  # the next live swap
    assert page.locator("tbody#runs-rows tr.empty code").inner_text() == script
    assert page.locator("tbody#runs-rows script").count() == 0
    # the server stops: the page keeps its rows and says so
    assert page.locator("#offline").is_hidden()
    ui.stop()
    expect(page.locator("#offline")).to_be_visible(timeout=30_000)
    assert page.locator("tbody#runs-rows tr.empty code").inner_text() == script


SLOW = """
import os, time
from pathlib import Path
import pyjoule as pj

gates = Path(os.environ["PJ_TEST_GATES"])

@pj.experiment(workers=2)
def gated(x):
    while not (gates / f"go{x}").exists():  # each pset waits for the test to let it end
        time.sleep(0.05)
    return {"y": x}

if __name__ == "__main__":
    gated.sweep(x=range(4))
"""


@pytest.mark.slow
def test_a_run_in_flight_updates_without_a_reload(cache_dir, weird_tmp_path, ui_server,
                                                   page):
    from playwright.sync_api import expect

    gates = weird_tmp_path / "gates"
    gates.mkdir()
    proc = start_script(weird_tmp_path, SLOW, env={"PJ_TEST_GATES": str(gates)})
    try:
        wait_for(lambda: (cache_dir / "index.sqlite").exists() and len(pj.runs(cache_dir)))
        ui = ui_server(cache_dir)
        page.goto(ui.url)
        page.evaluate("window.notReloaded = true")
        row = page.locator("tbody#runs-rows tr.run")
        expect(row).to_have_count(1)
        expect(row.locator('[data-count="pending"]')).to_have_text("4 not yet", timeout=60_000)
        (gates / "go0").touch()
        (gates / "go1").touch()
        expect(row.locator('[data-count="done"]')).to_have_text("2 done", timeout=60_000)
        expect(row.locator('[data-count="pending"]')).to_have_text("2 not yet")
        (gates / "go2").touch()
        (gates / "go3").touch()
        expect(row.locator('[data-count="done"]')).to_have_text("4 done", timeout=60_000)
        expect(row.locator(".badge")).to_have_text("done", timeout=60_000)
        assert proc.wait(timeout=60) == 0
    finally:  # a failure above must not leave the psets waiting
        for x in range(4):
            (gates / f"go{x}").touch()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass  # tests/conftest.py kills it
    assert page.evaluate("window.notReloaded") is True
    run = pj.runs(cache_dir).iloc[-1]
    assert (run["done"], run["failed"], run["cached"]) == (4, 0, 0)


@pytest.mark.slow
def test_the_view_works_inline_in_a_page_of_another_site(study, ui_server, page):
    """pj.ui() in Jupyter opened at localhost: the view at 127.0.0.1 is framed by
    another site, whose frames the browser sends no SameSite cookie; the page's polls,
    links and forms carry the token instead."""
    from playwright.sync_api import expect

    ui = ui_server(study)
    notebook = f'<h1>notebook</h1><iframe src="{ui.url}" width="1200" height="600"></iframe>'
    with serving(notebook) as port:
        page.goto(f"http://localhost:{port}/")  # another site than 127.0.0.1
        view = page.frame_locator("iframe")
        rows = view.locator("tbody#runs-rows tr.run")
        expect(rows).to_have_count(3)
        assert page.frames[1].evaluate(POLLED)  # a poll came back and was swapped in
        assert view.locator("#offline").is_hidden()
        view.locator("select[name=state]").select_option("failed")
        view.locator("form.filters button").click()
        expect(view.locator("tbody#runs-rows tr.empty")).to_contain_text("no runs match")
        view.locator("nav a", has_text="Runs").click()
        expect(rows).to_have_count(3)
        assert "token=" in page.frames[1].url
        rows.first.locator("a").first.click()  # a run page: its own script and fragments
        expect(view.locator("#run-psets table.psets tbody tr").first).to_be_visible()
        view.locator("#run-psets thead a").first.click()  # a sort: the fragment again
        expect(view.locator("#run-psets table.psets tbody tr").first).to_be_visible()
        assert view.locator("#offline").is_hidden()
    # the premise: the browser kept no cookie of the view (a third-party frame's)
    assert not [c for c in page.context.cookies() if c["name"].startswith("pyjoule_ui")]


@pytest.mark.slow
def test_another_host_than_loopback_prints_a_warning(study, ui_server):
    ui = ui_server(study, "--host", "0.0.0.0")
    assert any(line.startswith("warning: listening on 0.0.0.0") for line in ui.lines)
    assert get(ui.at("/", token=False))[0] == 403
    ui.stop()
    quiet = ui_server(study)
    assert not any("warning" in line for line in quiet.lines)
    assert "pyjoule ui: stopped" in quiet.stop()  # Ctrl-C stops it cleanly
    assert quiet.proc.returncode == 0


def test_the_command_refuses_a_directory_that_is_no_cache(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    result = CliRunner().invoke(cli, ["ui", "--no-browser", "--cache", str(plain)])
    assert result.exit_code == 2
    assert "is not a pyjoule cache" in result.output
    assert list(plain.iterdir()) == []  # nothing created there
    result = CliRunner().invoke(cli, ["ui", "--no-browser", "--cache", str(tmp_path / "no")])
    assert result.exit_code == 2 and "is not a pyjoule cache" in result.output
    assert not (tmp_path / "no").exists()


def test_the_command_reports_a_port_in_use(cache_dir):
    Store.open(cache_dir).list_runs()  # an empty cache
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["ui", "--no-browser", "--port", str(port),
                                          "--cache", str(cache_dir)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


@pytest.mark.slow
def test_pj_ui_serves_the_runs_page_from_a_thread(study):
    view = pj.ui(study, open_browser=False)
    try:
        status, body, _ = get(view.url)
        assert status == 200 and "square" in body and "shaky" in body
        assert get(view.url.split("?")[0])[0] == 403
        assert pj.ui(study, open_browser=False) is view  # reused, not a second server
        html = view._repr_html_()
        assert "<iframe" in html and view.url.replace("&", "&amp;") in html
        assert view.url in repr(view)
    finally:
        view.stop()
    with pytest.raises(OSError):
        get(view.url)
    assert not view.running
    again = pj.ui(study, open_browser=False)  # a stopped view is not reused
    try:
        assert again is not view and get(again.url)[0] == 200
    finally:
        again.stop()


def test_a_post_without_the_csrf_value_is_refused(cache_dir):
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from pyjoule._ui import start
    from pyjoule._ui.app import make_app
    from pyjoule._ui.render import check_csrf

    async def change(request):
        check_csrf(request, await request.form())
        return PlainTextResponse("changed")

    Store.open(cache_dir).list_runs()  # an empty cache to serve
    app = make_app(cache_dir, "tok")
    app.router.routes.append(Route("/change", change, methods=["GET", "POST"]))
    view = start(cache_dir, token="tok", app=app)
    try:
        csrf = app.state.csrf
        url = view.url.split("/?")[0] + "/change?token=tok"
        assert post(url, {})[0] == 403
        assert post(url, {"csrf": "wrong"})[0] == 403
        assert post(url, {}, {"X-CSRF-Token": csrf[:-1]})[0] == 403
        assert get(url)[0] == 403  # GET never changes anything, even with the value
        assert get(url, {"X-CSRF-Token": csrf})[0] == 403
        assert post(url, {"csrf": csrf}) == (200, "changed")
        assert post(url, {}, {"X-CSRF-Token": csrf}) == (200, "changed")
        # the page hands the value to its scripts in <meta name="csrf">
        assert f'<meta name="csrf" content="{csrf}">' in get(view.url)[1]
    finally:
        view.stop()


def test_import_pyjoule_loads_no_server_package():
    code = ("import sys, json, pyjoule, pyjoule.cli; pyjoule.ui; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert not set(json.loads(out)) & {"starlette", "uvicorn", "jinja2", "multipart",
                                       "playwright"}


@pytest.mark.slow
def test_pj_ui_in_a_notebook_shows_the_link_and_the_page(study, tmp_path, monkeypatch):
    """In a real Jupyter kernel (the cache from PYJOULE_CACHE, as pj.runs() finds it):
    the cell's output is the link and an iframe of the page; a second call reuses it."""
    import nbformat
    from nbclient import NotebookClient

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pyjoule tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "import urllib.request, pyjoule as pj\nview = pj.ui(open_browser=False)\nview",
        "page = urllib.request.urlopen(view.url).read().decode()\n"
        "print('shaky' in page, pj.ui(open_browser=False) is view)\nview.stop()")])
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    (shown,) = [o for o in nb.cells[0].outputs if o.output_type == "execute_result"]
    html = shown["data"]["text/html"]
    assert "<iframe" in html and "?token=" in html
    assert "127.0.0.1" in shown["data"]["text/plain"]
    (printed,) = [o for o in nb.cells[1].outputs if o.output_type == "stream"]
    assert printed.text.split() == ["True", "True"]


def test_without_the_server_packages_both_say_how_to_install_them(cache_dir, monkeypatch):
    Store.open(cache_dir).list_runs()  # an empty cache
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    result = CliRunner().invoke(cli, ["ui", "--no-browser", "--cache", str(cache_dir)])
    assert result.exit_code == 2
    assert "pip install 'pyjoule[ui]'" in result.output and "uvicorn" in result.output
    with pytest.raises(ImportError, match=r"pip install 'pyjoule\[ui\]'"):
        pj.ui(cache_dir, open_browser=False)
