"""The DataFrame ``pj.runs()`` returns: a plain DataFrame that says which cache it shows.

The project, and so the cache, is found from the script or notebook being run, else
from the cwd; a listing of another cache than the user expected must not look like
"no runs". The cache is in ``df.attrs["cache"]`` (and why that one in
``df.attrs["cache_reason"]``), and the first line of the repr, as text and in a
notebook, names it.
"""

from __future__ import annotations

import html

import pandas as pd


class RunsFrame(pd.DataFrame):
    """A DataFrame whose repr starts with the cache it lists."""

    _metadata: list[str] = []  # noqa: RUF012 - everything lives in ``attrs``, which pandas carries along

    @property
    def _constructor(self):
        return RunsFrame

    def _header(self) -> str:
        cache = self.attrs.get("cache")
        if not cache:
            return ""
        why = self.attrs.get("cache_reason")
        return f"runs in the cache {cache}" + (f" ({why})" if why else "")

    def __repr__(self) -> str:
        header = self._header()
        body = super().__repr__()
        return f"{header}\n{body}" if header else body

    def _repr_html_(self):
        body = super()._repr_html_()
        header = self._header()
        if body is None or not header:
            return body
        return f"<p>{html.escape(header)}</p>\n{body}"


def runs_frame(rows: list[dict], columns: list[str], cache: str, reason: str) -> RunsFrame:
    frame = RunsFrame(rows, columns=columns)
    frame.attrs["cache"] = cache
    frame.attrs["cache_reason"] = reason
    return frame
