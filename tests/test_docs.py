"""The documentation site: it builds without a warning, every page is reachable from
the navigation, and the API reference documents every public name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pyjoule
from pyjoule import _config

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, str]:
    """The site built as CI builds it: ``mkdocs build --strict``, from the repo root."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    return out, log


def _nav_files(nav) -> list[str]:
    """Every page named in mkdocs.yml's ``nav``, depth first."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return [f for item in nav for f in _nav_files(item)]


def _config_yml() -> dict:
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def _reference_page(site_dir: Path) -> str:
    return (site_dir / "reference" / "index.html").read_text()


@pytest.mark.slow
def test_site_builds_without_warnings(site):
    _, log = site
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)


@pytest.mark.parametrize("page", ["index.html", "quickstart/index.html",
                                  "local/index.html", "slurm/index.html",
                                  "troubleshooting/index.html", "reference/index.html"])
def test_key_pages_are_built(site, page):
    path = site[0] / page
    assert path.is_file(), f"{page} missing from the built site"
    assert "<h1" in path.read_text()


def test_every_page_is_in_the_nav():
    in_nav = _nav_files(_config_yml()["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    orphans = [p for p in pages if p not in in_nav]
    assert not orphans, f"pages not in mkdocs.yml's nav: {orphans}"
    assert len(in_nav) == len(set(in_nav)), "a page is listed twice in the nav"


PUBLIC = set(pyjoule.__all__) | set(pyjoule._PUBLIC_NOT_STARRED)


def test_reference_lists_every_public_name():
    text = (DOCS / "reference.md").read_text()
    listed = set(re.findall(r"^::: pyjoule\.(\w+)\s*$", text, flags=re.M))
    missing = sorted(PUBLIC - listed)
    assert not missing, f"add '::: pyjoule.NAME' to docs/reference.md for: {missing}"
    unknown = sorted(listed - PUBLIC)
    assert not unknown, f"docs/reference.md documents names pyjoule does not export: {unknown}"


def test_reference_renders_every_public_name(site):
    html = _reference_page(site[0])
    missing = [name for name in sorted(PUBLIC) if f'id="pyjoule.{name}"' not in html]
    assert not missing, f"no rendered entry in the API reference for: {missing}"


def test_reference_renders_methods_and_parameters(site):
    html = _reference_page(site[0])
    for anchor in ("pyjoule.Experiment.map", "pyjoule.Experiment.submit",
                   "pyjoule.Run.status", "pyjoule.Run.failures", "pyjoule.Host.check"):
        assert f'id="{anchor}"' in html, anchor
    # the decorator's options come from its docstring's "Other Parameters"
    section = html.split('id="pyjoule.experiment"', 1)[1].split('id="pyjoule.Experiment"')[0]
    for option in ("workers", "timeout", "retries", "errors", "host", "slurm"):
        assert f"<code>{option}</code>" in section, option


def test_configuration_page_lists_every_variable():
    text = (DOCS / "configuration.md").read_text()
    for name, (variable, _, _) in _config._SETTINGS.items():
        assert variable is None or f"`{variable}`" in text, \
            f"{variable} (pj.config {name}) not in configuration.md"
        assert f"`{name}`" in text, f"pj.config setting {name} not in configuration.md"
    allowed = text.split("## Project settings")[1].split("##")[0]
    for name in _config.PROJECT_KEYS:  # what [tool.pyjoule] may set
        assert f"`{name}`" in allowed, f"[tool.pyjoule] {name} not in configuration.md"


@pytest.mark.slow
@pytest.mark.parametrize("page", ["index.md", "analysis.md"])
def test_the_python_examples_of_a_page_run(page, tmp_path):
    """Pages whose examples are complete programs: their ```python blocks, in order,
    run in a fresh interpreter (with a fresh cache), so the docs stay true."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    assert blocks, f"{page} has no python example"
    script = tmp_path / "example.py"
    script.write_text("import matplotlib\nmatplotlib.use('Agg')\n" + "\n".join(blocks))
    env = {**os.environ, "PYJOULE_CACHE": str(tmp_path / "cache"),
           "PYJOULE_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


MARKER = re.compile(r"<!-- (pending|replaced-by):(§\d) -->|<!-- /(pending|replaced) -->")


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_pending_blocks_are_closed_and_not_nested(page):
    """Text about features still being built sits in ``<!-- pending:§N -->`` ...
    ``<!-- /pending -->``, and text those features make untrue in ``<!--
    replaced-by:§N -->`` ... ``<!-- /replaced -->``, so that whoever merges §N can
    keep or drop each block by its markers alone: each must open, close, not nest."""
    open_kind = None
    for n, line in enumerate((DOCS / page).read_text().splitlines(), 1):
        for m in MARKER.finditer(line):
            opening, closing = m.group(1), m.group(3)
            if opening:
                assert open_kind is None, f"{page}:{n}: {m.group(0)} inside another block"
                open_kind = "pending" if opening == "pending" else "replaced"
            else:
                assert open_kind == closing, f"{page}:{n}: {m.group(0)} closes no block"
                open_kind = None
    assert open_kind is None, f"{page}: a {open_kind} block is never closed"
