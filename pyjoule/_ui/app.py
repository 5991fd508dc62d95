"""The browser view's web application: every request needs the token (from the URL,
then the cookie it sets), every page module's routes, the static files.

Security model (docs/ui.md): the server binds 127.0.0.1 unless told otherwise; a
request without the token or its cookie gets 403, whatever it asks for; a POST also
needs the CSRF value (``render.check_csrf``); the pages run no inline script (the
Content-Security-Policy below) and escape everything from the cache.
"""

from __future__ import annotations

import secrets
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import PyjouleError, RunNotFoundError
from . import pages_cache, pages_results, pages_run, pages_runs
from .render import HERE, render

COOKIE = "pyjoule_ui"
#: no inline script, nothing from elsewhere: a value from the cache cannot run as code
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'")


class TokenAuth:
    """ASGI middleware: a request passes with ``?token=TOKEN`` (and gets the token as
    an HttpOnly, SameSite=Strict cookie) or with that cookie; any other gets 403."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, value: str | None) -> bool:
        return bool(value) and secrets.compare_digest(str(value).encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            return await self.app(scope, receive, send)
        request = HTTPConnection(scope)
        from_url = self._ok(request.query_params.get("token"))
        if not (from_url or self._ok(request.cookies.get(COOKIE))):
            if scope["type"] == "websocket":  # none served; refused all the same
                return await send({"type": "websocket.close", "code": 1008})
            response = PlainTextResponse(
                "403 Forbidden: open the URL with ?token=... that `pyjoule ui` printed\n",
                status_code=403)
            return await response(scope, receive, send)

        if from_url:  # render.static_url: the page's own files carry it too
            scope.setdefault("state", {})["url_token"] = self.token.decode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Cache-Control", "no-store")
                if from_url:
                    cookie: SimpleCookie = SimpleCookie()
                    cookie[COOKIE] = self.token.decode()
                    cookie[COOKIE]["path"] = "/"
                    cookie[COOKIE]["httponly"] = True
                    cookie[COOKIE]["samesite"] = "Strict"
                    headers.append("set-cookie", cookie.output(header="").strip())
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _error(request: Request, exc: Exception) -> Response:
    """A pyjoule error (an unknown run, a cache gone) as a page saying what it is; an
    HTTPException as its status and message."""
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
        kind = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ \
            else "HTTP error"
    else:
        status, message, kind = 500, str(exc), type(exc).__name__
        if isinstance(exc, RunNotFoundError):
            status = 404
    return render(request, "error.html", status_code=status, status=status, kind=kind,
                  message=message)


def make_app(cache: Path, token: str) -> Starlette:
    """The app over the cache at ``cache``, opened to requests carrying ``token``."""
    routes = [*pages_runs.routes, *pages_run.routes, *pages_results.routes,
              *pages_cache.routes,
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, exception_handlers={PyjouleError: _error,
                                                       HTTPException: _error})
    app.state.cache = Path(cache)
    app.state.csrf = secrets.token_urlsafe(32)
    app.state.refresh_lock = threading.Lock()  # one refresh of the runs at a time
    app.add_middleware(TokenAuth, token=token)
    return app
