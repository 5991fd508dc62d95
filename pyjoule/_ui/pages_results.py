"""``/results``: the cached functions; ``/results/{func_id}``: the plot of one function
version (variable, x, colour and averaged dimension picked in a GET form), its PNG,
and the data as CSV and netCDF. Every page only reads the cache."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .._display import human, when
from .._errors import PyjouleError
from . import data_results as data
from .render import render, store


def index(request: Request) -> Response:
    groups = data.versions(store(request))
    return render(request, "results.html", groups=groups, human=human, when=when)


def function(request: Request) -> Response:
    found = _version(request)
    if isinstance(found, Response):
        return found
    ds = data.dataset(store(request), found)
    try:
        choice, errors = data.choose(ds, request.query_params)
    except PyjouleError as exc:
        return render(request, "results_function.html", status_code=400, ver=found,
                      choice=None, errors=[str(exc)], ds=data.describe(ds), **_links(found))
    problem = None if errors else _check_plot(store(request), found, ds, choice)
    query = urlencode(choice.query() + _token(request))
    dims = [str(d) for d in ds[choice.var].dims]
    return render(
        request, "results_function.html", status_code=400 if errors or problem else 200,
        ver=found, choice=choice, errors=errors + ([problem] if problem else []),
        variables=data.plottable(ds), dims=dims, no_dim=data.NONE, at_prefix=data.AT,
        values={d: data.labels(ds, d) for d in choice.at}, ds=data.describe(ds),
        plot_url=None if errors or problem else
        f"/results/{found['func_id']}/plot.png?{query}", **_links(found))


def plot_png(request: Request) -> Response:
    found = _version(request)
    if isinstance(found, Response):
        return found
    ds = data.dataset(store(request), found)
    try:
        choice, errors = data.choose(ds, request.query_params)
        if errors:
            return PlainTextResponse("; ".join(errors), status_code=400)
        body = data.png_for(store(request), found, ds, choice)
    except PyjouleError as exc:  # pj.plot's refusal: say why
        return PlainTextResponse(str(exc), status_code=400)
    return Response(body, media_type="image/png", headers=_attachment(
        found, "png", inline=True))


def data_csv(request: Request) -> Response:
    found = _version(request)
    if isinstance(found, Response):
        return found
    body = data.csv(store(request), found["func_id"])
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers=_attachment(found, "csv"))


def data_nc(request: Request) -> Response:
    found = _version(request)
    if isinstance(found, Response):
        return found
    try:
        body = data.netcdf(data.dataset(store(request), found))
    except PyjouleError as exc:  # values netCDF cannot hold: pj.save says which
        return PlainTextResponse(str(exc), status_code=400)
    return Response(body, media_type="application/x-netcdf",
                    headers=_attachment(found, "nc"))


def _version(request: Request) -> dict | Response:
    """The version row of the path's ``func_id``, or the 404 page saying so."""
    func_id = request.path_params["func_id"]
    found = data.version(store(request), func_id)
    if found is None:
        return render(request, "results_missing.html", status_code=404, func_id=func_id)
    return found


def _check_plot(st, ver: dict, ds, choice: data.Choice) -> str | None:
    """``pj.plot``'s refusal of ``choice`` as a message, or None (the PNG drawn here
    is kept for the ``<img>``)."""
    try:
        data.png_for(st, ver, ds, choice)
    except PyjouleError as exc:
        return str(exc)
    return None


def _token(request: Request) -> list[tuple[str, str]]:
    """The token, for the ``<img>``'s URL of a page asked for with it in its URL: a
    page framed by another site gets no cookie (see ``render.static_url``)."""
    token = getattr(request.state, "url_token", None)
    return [("token", token)] if token else []


def _links(ver: dict) -> dict:
    base = f"/results/{ver['func_id']}"
    return {"csv_url": f"{base}/data.csv", "nc_url": f"{base}/data.nc"}


def _attachment(ver: dict, suffix: str, inline: bool = False) -> dict[str, str]:
    kind = "inline" if inline else "attachment"
    return {"Content-Disposition": f'{kind}; filename="{data.filename(ver["name"], suffix)}"',
            "Cache-Control": "no-store"}


routes: list[BaseRoute] = [
    Route("/results", index),
    Route("/results/{func_id:str}", function),
    Route("/results/{func_id:str}/plot.png", plot_png),
    Route("/results/{func_id:str}/data.csv", data_csv),
    Route("/results/{func_id:str}/data.nc", data_nc),
]
