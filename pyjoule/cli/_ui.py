"""``pyjoule ui``: serve the browser view of a cache until Ctrl-C (``pyjoule._ui``)."""

from __future__ import annotations

import click

from ._args import cache_option, open_store
from ._errors import Failure
from ._format import NO_CACHE, epilog


@click.command("ui", epilog=epilog(f"bad usage, {NO_CACHE}, the port is taken, the "
                                   "server packages\nare not installed",
                                   zero="stopped with Ctrl-C"))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to listen on. Anything but loopback lets other machines "
                   "reach the view (a warning is printed).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@cache_option
@click.pass_context
def ui(ctx, port, host, no_browser):
    """Browse the cache's runs, failures and results in a web browser.

    Serves on 127.0.0.1 and prints a URL with a random token: every request
    needs it (or the cookie the first one sets). On a login node, run it with
    --port 8765 --no-browser and forward the port from your machine:
    ssh -L 8765:127.0.0.1:8765 login-node

    \b
    Examples:
      pyjoule ui
      pyjoule ui --cache /scratch/me/.pyjoule --port 8765 --no-browser
    """
    from .._ui import require, serve

    try:
        require()
    except ImportError as exc:
        raise Failure(str(exc), kind="ImportError") from None
    store = open_store(ctx)
    try:
        serve(store.root, host=host, port=port, open_browser=not no_browser,
              echo=lambda line: click.echo(line, err=line.startswith("warning")))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo("pyjoule ui: stopped")
