"""``pj.ui()``: the browser view of a cache, served from a thread of this process (a
notebook's kernel); ``pyjoule ui`` is the same view from the command line."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _caches
from .registry import _registry_and_reason

if TYPE_CHECKING:
    from .._ui import UiServer

_lock = threading.Lock()


def _stop_all() -> None:
    with _lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


#: the view of each cache this process serves: a second pj.ui() reuses it (reset:
#: every one stopped)
_servers: dict[Path, UiServer] = _caches.declare(__name__, "_servers", {}, reset=_stop_all)


def ui(cache: str | os.PathLike[str] | None = None, port: int = 0,
       open_browser: bool = True) -> UiServer:
    """Serve the browser view of the cache (runs, failures, results) and return its
    handle: ``.url`` (with the token every request needs), ``.stop()``; in Jupyter it
    shows the link and the page inline.

    The server runs in a daemon thread of this process, on 127.0.0.1 (``port=0``: a
    free port), until ``.stop()`` or the end of the process. Calling ``pj.ui()`` again
    for the same cache returns the running server. ``cache`` is chosen as for
    ``pj.runs()``. Needs ``pip install 'pyjoule[ui]'`` (an ImportError says so).

    In a notebook cell (not run as a doctest: it starts a server)::

        view = pj.ui()   # the link, and the page inline
        view.url         # 'http://127.0.0.1:41237/?token=...'
    """
    import webbrowser

    from .. import _ui

    _ui.require()
    store, _ = _registry_and_reason(cache)
    root = Path(store.root).resolve()
    with _lock:
        running = _servers.get(root)
        if running is not None and running.running and port in (0, running.port):
            if open_browser and _ui.can_open_browser():
                webbrowser.open(running.url)
            return running
        server = _ui.start(root, port=port, open_browser=open_browser)
        _servers[root] = server
        return server
