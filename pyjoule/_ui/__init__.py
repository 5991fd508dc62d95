"""The browser view of a cache (``pyjoule ui``, ``pj.ui()``): a small Starlette app,
served by uvicorn on 127.0.0.1 with a random token (see docs/ui.md).

Imported only by ``pyjoule ui`` and ``pj.ui()``: ``import pyjoule`` loads none of the
server stack (the ``pyjoule[ui]`` extra). :func:`serve` blocks (the command);
:func:`start` serves from a daemon thread and returns a :class:`UiServer`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import webbrowser
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MISSING = "the browser view needs its server packages: pip install 'pyjoule[ui]'"


def require() -> None:
    """ImportError saying how to install them when the ``pyjoule[ui]`` packages are
    missing (this module imports none of them itself)."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "jinja2", "multipart")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{MISSING} (missing: {', '.join(missing)})")


def _socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port), bound before the
    server starts, so the URL printed is the one that answers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def _server(cache: Path, token: str, app=None):
    import uvicorn

    from .app import make_app

    config = uvicorn.Config(app if app is not None else make_app(cache, token),
                            log_config=None, access_log=False, log_level="warning",
                            lifespan="off", ws="none", http="h11",
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


def can_open_browser() -> bool:
    """Whether a graphical browser may open: not on a Linux machine without a display
    (a login node), where ``webbrowser`` would start a text browser in the terminal."""
    import sys

    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def host_warning(host: str) -> str | None:
    """The warning printed when the server listens on another address than loopback."""
    if host in LOOPBACK:
        return None
    return (f"warning: listening on {host}, not 127.0.0.1: anyone who can reach this "
            "machine and learns the token can read this cache and cancel its runs; "
            "prefer the default and `ssh -L` (docs/ui.md)")


def serve(cache: Path, host: str = "127.0.0.1", port: int = 0, open_browser: bool = True,
          token: str | None = None, echo=print) -> None:
    """Serve the cache until Ctrl-C (uvicorn stops on SIGINT/SIGTERM), printing the
    URL with its token first."""
    token = token or secrets.token_urlsafe(32)
    sock = _socket(host, port)
    url = _url(host, sock.getsockname()[1], token)
    warning = host_warning(host)
    if warning:
        echo(warning)
    echo(f"pyjoule ui: serving the cache at {cache}")
    echo(f"open {url}")
    echo("Ctrl-C stops the server")
    server = _server(cache, token)
    if open_browser and can_open_browser():
        opener = threading.Timer(0.3, webbrowser.open, (url,))
        opener.daemon = True  # a browser command that hangs must not keep us running
        opener.start()
    elif open_browser:
        echo("no display here: open the URL in a browser on your machine (docs/ui.md: "
             "ssh -L for a remote machine)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


class UiServer:
    """A browser view served from a daemon thread of this process (``pj.ui()``)."""

    def __init__(self, cache: Path, host: str, port: int, token: str, app=None) -> None:
        self.cache = Path(cache)
        self.token = token
        self._sock = _socket(host, port)
        self.port = self._sock.getsockname()[1]
        self.url = _url(host, self.port, token)
        self._server = _server(self.cache, token, app)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]},
                                        name=f"pyjoule-ui-{self.port}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._server.should_exit

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Whether the server is accepting requests (waiting up to ``timeout`` s)."""
        import time

        end = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() \
                and time.monotonic() < end:
            time.sleep(0.01)
        return bool(self._server.started)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; the port is free when this returns."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __repr__(self) -> str:
        state = "serving" if self.running else "stopped"
        return f"<pyjoule ui {state} the cache at {self.cache}: {self.url}>"

    def _repr_html_(self) -> str:
        from html import escape

        url = escape(self.url, quote=True)
        cache = escape(str(self.cache))
        return (f'<div><a href="{url}" target="_blank" rel="noopener">Open the pyjoule '
                f'view of {cache}</a> ({url})</div>'
                f'<iframe src="{url}" width="100%" height="560" '
                'style="border: 1px solid #d0d7de"></iframe>')


def start(cache: Path, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False,
          token: str | None = None, app=None) -> UiServer:
    """Serve the cache from a daemon thread; returns once the server answers. ``app``:
    another app than ``make_app(cache, token)`` (tests add routes to one)."""
    ui = UiServer(cache, host, port, token or secrets.token_urlsafe(32), app)
    if not ui.wait_started():
        ui.stop()
        raise RuntimeError(f"the browser view did not start on port {ui.port}")
    if open_browser and can_open_browser():
        webbrowser.open(ui.url)
    return ui
