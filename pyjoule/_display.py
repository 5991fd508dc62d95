"""HTML for notebooks: the ``_repr_html_`` of experiments and runs; and sizes and
times as the command line and the browser view print them.

Plain strings, no dependency: what Jupyter shows when a cell ends with an experiment
or a run.
"""

from __future__ import annotations

import html
import time
from datetime import datetime, timezone
from typing import Any

_COLOURS = {"cached": "#9e9e9e", "done": "#43a047", "failed": "#e53935",
            "running": "#1e88e5", "pending": "#e0e0e0"}


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped."""
    return html.escape(str(value), quote=True)


def card(title: str, rows: list[tuple[str, str]]) -> str:
    """A title over a two-column table; ``title`` and the values are HTML already."""
    cells = "".join(f'<tr><th style="text-align:left;padding-right:1em">{esc(k)}</th>'
                    f'<td style="text-align:left">{v}</td></tr>' for k, v in rows)
    return f'<div class="pyjoule"><div>{title}</div><table>{cells}</table></div>'


def counts_bar(counts: dict) -> str:
    """The status counts as a stacked bar over a one-row table."""
    if "total" not in counts:
        return esc(next(iter(counts.values()), ""))
    total = max(1, counts["total"])
    bar = "".join(f'<div title="{k}: {counts[k]}" style="width:{100 * counts[k] / total:.2f}%;'
                  f'background:{c}"></div>' for k, c in _COLOURS.items() if counts.get(k))
    head = "".join(f"<th>{esc(k)}</th>" for k in counts)
    body = "".join(f"<td>{esc(v)}</td>" for v in counts.values())
    return (f'<div style="display:flex;width:20em;height:0.7em;border:1px solid #bbb">{bar}'
            f"</div><table><tr>{head}</tr><tr>{body}</tr></table>")


def iso(t: float | None) -> str | None:
    """A time (seconds since the epoch) in ISO 8601, UTC, to the second."""
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(
        timespec="seconds")


def when(t: float | None) -> str:
    """A time as ``2025-03-01 10:15 UTC`` (``-`` for None)."""
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")


def stamp(t: float | None) -> str:
    """A time to the second as ``2025-03-01 10:15:07 UTC`` (empty for None)."""
    return "" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def duration(start: float | None, end: float | None) -> str:
    """From ``start`` to ``end`` (or now) as ``1h02m03s``, ``2m05s`` or ``7s``."""
    if start is None:
        return ""
    s = int(max(0.0, (end if end is not None else time.time()) - start))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def human(n: float) -> str:
    """A number of bytes as ``512 B``, ``3.0 KiB``, ``1.2 GiB`` (powers of 1024)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
