"""What every page module of the browser view shares: the templates (Jinja2 with
autoescape on: nothing from the cache is ever marked safe), :func:`render`, the cache's
:func:`store` and the CSRF check of every state-changing POST (:func:`check_csrf`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from .._store import Store

HERE = Path(__file__).parent

templates = Jinja2Templates(env=Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    trim_blocks=True, lstrip_blocks=True))


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """The template ``name`` rendered with ``ctx``, ``request``, ``csrf`` (the value
    every POST form must send back in its ``csrf`` field) and ``static`` (the URL of a
    file of static/: ``{{ static("run.js") }}``, see :func:`static_url`)."""
    return templates.TemplateResponse(
        request, name, {**ctx, "csrf": request.app.state.csrf,
                        "static": lambda file: static_url(request, file)},
        status_code=status_code)


def static_url(request: Request, file: str) -> str:
    """``/static/FILE``, with the token when the page was asked for with it in its URL.

    A page framed by another site (``pj.ui()`` inline in Jupyter opened at
    ``localhost``, the view at ``127.0.0.1``) gets no cookie from the browser: its
    stylesheet and scripts then need the token themselves (ui.js adds it to the
    requests, links and forms of such a page)."""
    token = getattr(request.state, "url_token", None)
    return f"/static/{quote(file)}" + (f"?{urlencode({'token': token})}" if token else "")


def store(request: Request) -> Store:
    """The store of the cache the app serves (one per process, a connection per
    thread); a directory that is no longer a cache is a ``CacheError``."""
    from .._api import existing_cache

    return existing_cache(request.app.state.cache)


def check_csrf(request: Request, form: Any = None) -> None:
    """Refuse (403) a state-changing request unless it sends the page's CSRF value, as
    the form field ``csrf`` (``form`` is the awaited ``request.form()``) or the header
    ``X-CSRF-Token``. Only POST changes anything: any other method is refused too."""
    expected = request.app.state.csrf
    sent = request.headers.get("x-csrf-token")
    if not sent and form is not None:
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    if request.method != "POST" or not sent or not secrets.compare_digest(
            sent.encode(), expected.encode()):
        raise HTTPException(403, "missing or wrong CSRF value: reload the page and try again")
