"""The browser view's results and cache pages (issue #18), with a real ``pyjoule ui``
server process and a real headless chromium: the plot of a ragged (sparse) study
picked in the form, the CSV and netCDF downloads against ``pj.load``, and the cache
page's sizes and ``gc`` actions behind their confirmation."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import ui_helpers
from click.testing import CliRunner
from ui_helpers import get, serving, start_ui

import pyjoule as pj
from pyjoule.cli import cli

browser, page, ui_server = ui_helpers.browser, ui_helpers.page, ui_helpers.ui_server

SCRIPT = "<script>alert(1)</script>"


def ragged_study(cache: Path):
    """Three seeds of a one-at-a-time (star) scan over five parameters: 33 psets on a
    grid of 576 cells, so ``pj.load`` gives sparse variables; one label is markup."""

    @pj.experiment(cache=cache, workers=0, progress=False)
    def scan(a, b, c, d, e="plain", seed=0):
        return {"err": a * 0.1 + b * 0.01 + c + d * 0.001 + seed * 0.01 + len(e),
                "n": a + b}

    space = pj.product(pj.grid(seed=[0, 1, 2]),
                       pj.star({"a": 1, "b": 1, "c": 1, "d": 1, "e": "plain"},
                               a=[1, 2, 3, 4], b=[1, 2, 3, 4], c=[1, 2, 3], d=[1, 2],
                               e=["plain", SCRIPT]))
    scan.map(space)
    return scan


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The ragged study's cache, ``pj.load`` of it, and a ``pyjoule ui`` over it."""
    cache = tmp_path_factory.mktemp("results") / "cache"
    scan = ragged_study(cache)
    ds = pj.load(scan)
    ui = start_ui(cache)
    try:
        yield scan, ds, ui
    finally:
        ui.stop()


def fetch(url: str, data: dict | None = None) -> tuple[int, bytes, dict]:
    """(status, body bytes, headers); a POST when ``data`` is given; no redirects."""
    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    body = None if data is None else urllib.parse.urlencode(data, doseq=True).encode()
    try:
        with urllib.request.build_opener(Keep).open(url, body, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers)


def cells(da) -> dict[tuple, float]:
    """Every value of ``da`` (dense or ``sparse.COO``) by its labels."""
    data = da.data
    if hasattr(data, "todense"):
        coords, values = data.coords, data.data
    else:
        arr = np.asarray(data, dtype=float)
        coords = np.array(np.nonzero(~np.isnan(arr)))
        values = arr[tuple(coords)]
    labels = [da[d].values for d in da.dims]
    return {tuple(plain(labels[i][coords[i][k]]) for i in range(len(da.dims))):
            float(values[k]) for k in range(len(values))}


def plain(value):
    """A numpy scalar as the Python value (labels of object coordinates already are)."""
    return value.item() if isinstance(value, np.generic) else value


def func_id(scan) -> str:
    return pj.load(scan).attrs["func_id"]


# ------------------------------------------------------------------ choices
def small_ragged():
    """Method "a" at tol None, method "b" at two tols: most cells are holes."""
    import xarray as xr

    err = np.full((2, 3, 2, 3), np.nan)
    err[0, :, :, 2] = [[1.0, 1.1], [2.0, 2.1], [3.0, 3.1]]
    err[1, :2, :, 0] = [[5.0, 5.5], [6.0, 6.5]]
    return xr.Dataset({"err": (("method", "N", "seed", "tol"), err),
                       "label": (("method",), np.array(["x", "y"], dtype=object))},
                      coords={"method": ["a", "b"], "N": [10, 20, 40], "seed": [0, 1],
                              "tol": np.array([0.1, 0.2, None], dtype=object)})


def test_choices_default_to_the_longest_axis_averaged_over_seeds_at_the_fullest_values():
    from pyjoule._ui.data_results import Choice, choose, plottable

    ds = small_ragged()
    assert plottable(ds) == ["err"]  # strings cannot be plotted
    choice, errors = choose(ds, {})
    assert errors == []
    # the shortest other dimension is the colour: the methods compared, a line each
    assert choice == Choice("err", "N", "method", "seed", {"tol": 2})
    choice, errors = choose(ds, {"x": "N", "hue": "method", "over": "seed"})
    assert (choice.hue, choice.at, errors) == ("method", {"tol": 2}, [])
    assert choose(ds, {"hue": "method", "at.tol": "0"})[0].at == {"tol": 0}


@pytest.mark.parametrize("query,message", [
    ({"var": "nope"}, "unknown variable 'nope': choose one of ['err']"),
    ({"var": "label"}, "the variable 'label' is not numeric"),
    ({"x": "zz"}, "unknown dimension 'zz' for x"),
    ({"x": "N", "hue": "N"}, "'N' is already plotted: pick another dimension for hue"),
    ({"at.tol": "7"}, "no value number '7' of 'tol'"),
    ({"at.tol": "-1"}, "no value number '-1' of 'tol'"),
])
def test_a_bad_choice_is_a_message_and_falls_back_to_the_default(query, message):
    from pyjoule._ui.data_results import choose

    choice, errors = choose(small_ragged(), query)
    assert any(e.startswith(message) for e in errors), errors
    assert choice.var == "err" and choice.x == "N" and choice.hue != choice.x


def test_nothing_to_plot_is_said():
    import xarray as xr

    from pyjoule import PyjouleError
    from pyjoule._ui.data_results import choose

    one = xr.Dataset({"err": ((), 1.0)}, coords={"N": 10})  # one pset cached
    with pytest.raises(PyjouleError, match="nothing varies: 'err' has one value"):
        choose(one, {})
    strings = xr.Dataset({"label": (("N",), np.array(["x", "y"], dtype=object))},
                         coords={"N": [1, 2]})
    with pytest.raises(PyjouleError, match=r"no numeric result to plot.*\['label'\]"):
        choose(strings, {})


def test_the_png_is_pj_plot_of_the_choice_and_says_why_it_cannot_draw():
    from pyjoule import SpaceError
    from pyjoule._ui.data_results import choose, png

    ds = small_ragged()
    body = png(ds, choose(ds, {"hue": "method"})[0])
    assert body.startswith(b"\x89PNG")
    with pytest.raises(SpaceError, match="no values"):  # tol 0.2 holds nothing
        png(ds, choose(ds, {"at.tol": "1"})[0])


# ------------------------------------------------------------------ results
@pytest.mark.slow
def test_the_plot_of_a_ragged_study_renders_after_picking_in_the_form(served, page):
    _, ds, ui = served
    assert hasattr(ds["err"].data, "todense")  # the study is sparse, as meant
    page.goto(ui.url)
    page.goto(ui.at("/results", token=False))
    row = page.locator(f"tr[data-func-id='{ds.attrs['func_id']}']")
    assert row.locator("td").nth(3).text_content().strip() == "33"  # psets cached
    row.locator("a").click()
    page.wait_for_url(re.compile(r"/results/[0-9a-f]+$"))
    page.select_option("select[name=var]", "err")
    page.select_option("select[name=x]", "a")
    page.select_option("select[name=hue]", "b")
    page.select_option("select[name=over]", "seed")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"over=seed"))
    page.wait_for_function("() => { const i = document.getElementById('plot');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    assert page.locator(".error").count() == 0
    assert page.eval_on_selector("#plot", "i => i.naturalHeight") > 0
    for name, value in (("var", "err"), ("x", "a"), ("hue", "b"), ("over", "seed")):
        assert page.eval_on_selector(f"select[name={name}]", "s => s.value") == value
    # c, d and e are neither plotted nor averaged: each shows one value, picked here;
    # the markup label is text in its option, and no dialog opened (the page fixture)
    options = page.locator("select[name='at.e'] option").all_text_contents()
    assert options == ["plain", SCRIPT]
    page.select_option("select[name='at.e']", label=SCRIPT)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"at\.e=1"))
    page.wait_for_function("() => { const i = document.getElementById('plot');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    status, body, headers = fetch(ui.at(page.eval_on_selector("#download-png",
                                                              "a => a.getAttribute('href')")))
    assert status == 200 and headers["content-type"] == "image/png"
    assert body.startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_bad_choice_is_a_message_on_the_page_not_a_500(served):
    _, ds, ui = served
    fid = ds.attrs["func_id"]
    status, body, _ = get(ui.at(f"/results/{fid}?var=nope&x=a"))
    assert status == 400 and "unknown variable &#39;nope&#39;" in body
    assert 'id="plot"' not in body and "<select name=\"var\">" in body
    status, body, _ = get(ui.at(f"/results/{fid}?var=err&x=a&hue=a"))
    assert status == 400 and "&#39;a&#39; is already plotted" in body
    status, body, _ = get(ui.at(f"/results/{fid}/plot.png?var=err&x=zz"))
    assert status == 400 and "unknown dimension 'zz'" in body
    status, body, _ = get(ui.at("/results/0123abcd"))
    assert status == 404 and "No cached results" in body


@pytest.mark.slow
def test_the_csv_and_netcdf_downloads_load_back_to_what_pj_load_gives(served, tmp_path):
    import pandas as pd

    _, ds, ui = served
    fid = ds.attrs["func_id"]
    status, body, headers = fetch(ui.at(f"/results/{fid}/data.nc"))
    assert status == 200 and "attachment" in headers["content-disposition"]
    (tmp_path / "data.nc").write_bytes(body)
    back = pj.open(tmp_path / "data.nc")
    assert set(back.data_vars) == {"err", "n"} and back.attrs["func_id"] == fid
    for var in ("err", "n"):
        assert cells(back[var]) == cells(ds[var])
        assert list(back[var].dims) == list(ds[var].dims)

    status, body, headers = fetch(ui.at(f"/results/{fid}/data.csv"))
    assert status == 200 and headers["content-type"].startswith("text/csv")
    (tmp_path / "data.csv").write_bytes(body)
    table = pd.read_csv(tmp_path / "data.csv", keep_default_na=False)
    assert len(table) == 33
    dims = list(ds["err"].dims)
    for var in ("err", "n"):
        got = {tuple(plain(row[d]) for d in dims): float(row[var])
               for _, row in table.iterrows()}
        assert got == cells(ds[var])


@pytest.mark.slow
def test_the_plot_and_gc_work_framed_by_another_site(served, tmp_path, ui_server, page):
    """pj.ui() inline in a notebook at localhost: the frame gets no cookie, so the
    plot's URL, the form and the redirect after a confirmation carry the token."""
    _, ds, ui = served
    fid = ds.attrs["func_id"]
    plotted = ("() => { const i = document.getElementById('plot');"
               " return i && i.complete && i.naturalWidth > 0; }")
    frame = f'<iframe src="{ui.at("/results/" + fid)}" width="1200" height="800"></iframe>'
    with serving(frame) as port:
        page.goto(f"http://localhost:{port}/")
        view = page.frame_locator("iframe")
        view.locator("select[name=hue]").select_option("b")
        view.locator("#plot-form button[type=submit]").click()
        view.locator("select[name=hue] option[value=b][selected]").wait_for(state="attached")
        page.frames[1].wait_for_function(plotted)

    cache = tmp_path / "cache"
    two_versions(cache)
    other = ui_server(cache)
    frame = f'<iframe src="{other.at("/cache")}" width="1200" height="800"></iframe>'
    with serving(frame) as port:
        page.goto(f"http://localhost:{port}/")
        view = page.frame_locator("iframe")
        view.locator("#gc-form input[name=max_size]").fill("0")
        view.locator("#gc-form button[type=submit]").click()
        view.locator("#confirm").click()
        assert view.locator("#cache-message").text_content().startswith("removed 9 results")
    assert info(cache) == {}
    assert not [c for c in page.context.cookies() if c["name"].startswith("pyjoule_ui")]


# ------------------------------------------------------------------ cache
def two_versions(cache: Path):
    for version, n in (("1", 3), ("2", 2)):
        @pj.experiment(cache=cache, workers=0, progress=False, version=version)
        def f(x):
            return x + 0.5

        f.sweep(x=range(n))

    @pj.experiment(cache=cache, workers=0, progress=False)
    def g(y):
        return {"y": y}

    g.sweep(y=range(4))
    return f, g


def info(cache: Path) -> dict:
    result = CliRunner().invoke(cli, ["cache", "info", "--json", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    return {f["name"]: f for f in json.loads(result.output)["functions"]}


def checked(cache: Path) -> str:
    result = CliRunner().invoke(cli, ["cache", "check", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_the_cache_page_shows_sizes_and_clears_old_versions_after_a_confirmation(
        tmp_path, ui_server, page):
    from pyjoule.cli._format import human

    cache = tmp_path / "cache"
    f, g = two_versions(cache)
    before = info(cache)
    ui = ui_server(cache)
    page.goto(ui.url)
    page.goto(ui.at("/cache", token=False))
    for name, row in before.items():
        shown = page.locator(f"tr.function[data-function='{name}'] td.size")
        assert shown.text_content() == human(row["bytes"])
    assert page.locator(f"tr.function[data-function='{f.name}']").text_content().count(
        "2 versions") == 1

    page.locator(f"tr.function[data-function='{f.name}'] button").click()
    page.wait_for_url(re.compile(r"/cache/clear-old$"))
    assert page.locator("#dry-run").text_content().startswith(
        "would remove 3 cached results")
    assert page.locator("table.cache-doomed tbody tr").count() == 1
    assert info(cache) == before  # the first POST removed nothing

    page.click("#confirm")
    page.wait_for_url(re.compile(r"/cache\?done="))
    assert page.locator("#cache-message").text_content().startswith(
        "removed 3 cached results")
    after = info(cache)
    assert (after[f.name]["entries"], after[f.name]["versions"]) == (2, 1)
    assert after[g.name] == before[g.name]
    assert "no damage found" in checked(cache)


@pytest.mark.slow
def test_gc_lists_what_would_go_then_removes_it_only_when_confirmed(tmp_path, ui_server,
                                                                   page):
    cache = tmp_path / "cache"
    two_versions(cache)
    before = info(cache)
    total = sum(f["entries"] for f in before.values())
    ui = ui_server(cache)

    # without the CSRF value: 403, and nothing removed
    status, _, _ = fetch(ui.at("/cache/gc"), {"max_size": "0", "confirm": "1"})
    assert status == 403 and info(cache) == before
    status, _, _ = fetch(ui.at("/cache/clear-old"), {"name": "", "confirm": "1",
                                                     "csrf": "forged"})
    assert status == 403 and info(cache) == before

    page.goto(ui.url)
    page.goto(ui.at("/cache", token=False))
    page.fill("#gc-form input[name=max_size]", "0")
    page.click("#gc-form button[type=submit]")
    page.wait_for_url(re.compile(r"/cache/gc$"))
    assert page.locator("#dry-run").text_content().startswith(
        f"would remove {total} results")
    assert info(cache) == before  # a dry run

    page.click("#confirm")
    page.wait_for_url(re.compile(r"/cache\?done="))
    assert page.locator("#cache-message").text_content().startswith(
        f"removed {total} results")
    assert info(cache) == {}
    assert "no damage found" in checked(cache)
    # the message is shown once: reloading does not repeat it
    page.reload()
    assert page.locator("#cache-message").count() == 0
