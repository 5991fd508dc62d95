"""Fixtures and helpers for the browser view's tests (tests/test_ui_*.py).

- :func:`start_ui` / the ``ui_server`` fixture: ``pyjoule ui --no-browser --port 0
  --cache DIR`` as a real subprocess; the URL it prints, with its token.
- ``browser`` (one headless chromium per test module, through Playwright) and ``page``
  (a fresh context per test: no cookie carried over).

Test files take the fixtures as module names: ``browser, page, ui_server =
ui_helpers.browser, ui_helpers.page, ui_helpers.ui_server`` (an import would be a
ruff F811 at each test's argument).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browser import ARGS, ensure_chromium

START_TIMEOUT = 60.0


@dataclass
class UiProcess:
    """A running ``pyjoule ui`` subprocess."""

    proc: subprocess.Popen
    url: str
    lines: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.url.split("?token=", 1)[1]

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (no path, no token)."""
        return self.url.split("/?token=", 1)[0]

    def at(self, path: str, token: bool = True) -> str:
        """The URL of ``path`` (``/runs/rows?state=done``), with the token or without."""
        url = self.base + path
        if token:
            url += ("&" if "?" in path else "?") + f"token={self.token}"
        return url

    def stop(self) -> str:
        """Ctrl-C, as a user would; the rest of what it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                out, _ = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            self.lines.extend((out or "").splitlines())
        return "\n".join(self.lines)


def ui_command(cache: Path | None, *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "pyjoule", "ui", "--no-browser", "--port", "0"]
    return cmd + (["--cache", str(cache)] if cache is not None else []) + list(args)


def start_ui(cache: Path, *args: str, env: dict[str, str] | None = None) -> UiProcess:
    """Start ``pyjoule ui`` on ``cache`` and wait for the URL it prints."""
    proc = subprocess.Popen(ui_command(cache, *args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    found: queue.Queue[str | None] = queue.Queue()
    lines: list[str] = []

    def read() -> None:  # until the URL: a thread, as a pipe's readline blocks
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("open http"):
                found.put(line.split()[1])
                return
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = found.get(timeout=START_TIMEOUT)
    except queue.Empty:
        url = None
    if url is None:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("pyjoule ui printed no URL:\n" + "\n".join(lines) + (out or ""))
    ui = UiProcess(proc, url, lines)
    _wait_answers(ui)
    return ui


def _wait_answers(ui: UiProcess) -> None:
    """Until the server answers (it prints the URL just before it starts serving)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            urllib.request.urlopen(ui.at("/static/ui.css"), timeout=5).close()
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline or ui.proc.poll() is not None:
                raise


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    """(status, body, headers) of a GET, errors included (urllib raises on them)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(), dict(exc.headers)


def post(url: str, data: dict[str, str], headers: dict[str, str] | None = None
         ) -> tuple[int, str]:
    """(status, body) of a form POST."""
    body = urllib.parse.urlencode(data).encode()
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def ui_server() -> Iterator:
    """``ui_server(cache, *args) -> UiProcess``: servers stopped after the test."""
    started: list[UiProcess] = []

    def start(cache: Path, *args: str, **kwargs) -> UiProcess:
        ui = start_ui(cache, *args, **kwargs)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.stop()


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the test module (Playwright, Debian's chromium). A
    missing browser skips the module, except in CI (``CI=true``) where it fails."""
    try:
        executable = ensure_chromium()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs chromium for the UI tests: {exc}", pytrace=False)
        pytest.skip(f"no chromium: {exc}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A page in a fresh browser context (no cookies from another test). A dialog
    (``alert``) fails the test: nothing from the cache may run as script."""
    context = browser.new_context()
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.set_default_timeout(20_000)
    try:
        yield pg
    finally:
        context.close()
    assert not dialogs, f"a dialog opened: {dialogs}"


@contextmanager
def serving(html: str) -> Iterator[int]:
    """A plain web server on 127.0.0.1 answering ``html`` to every GET; its port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
