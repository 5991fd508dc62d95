"""How two identities differ, in one short phrase (``f.status()``, the INFO at a call)."""

from __future__ import annotations

from collections.abc import Mapping


def _phrase(label: str, old: str | None, new: str | None, is_top: bool) -> str:
    kind, _, what = label.partition(" ")
    verb = "added" if old is None else "removed" if new is None else "changed"
    if kind in ("package", "python"):
        return f"{label} {old} -> {new}" if verb == "changed" else f"{label} {verb}"
    if is_top:
        return f"`{what}` {verb}"
    return f"{'helper' if kind == 'function' else kind} `{what}` {verb}"


def describe_change(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """One short phrase saying how two identities' components differ.

    Parameters
    ----------
    old, new : mapping of str to str
        `Identity.components` of the older and the newer identity. The first entry
        of each is taken as the function itself: keep their order when storing them.

    Returns
    -------
    str
        Up to three items, then "and N more"; "nothing changed" when equal.

    Examples
    --------
    >>> describe_change({"function f": "1", "function drag": "2"},
    ...                 {"function f": "1", "function drag": "3", "constant G": "4"})
    'helper `drag` changed; constant `G` added'
    >>> describe_change({"package numpy": "2.3.0"}, {"package numpy": "2.4.6"})
    'package numpy 2.3.0 -> 2.4.6'
    """
    if "version" in old or "version" in new:
        before, after = old.get("version"), new.get("version")
        if before == after:
            return "nothing changed"
        if before is None:
            return f"version pinned to {after!r}"
        if after is None:
            return f"version pin {before!r} removed"
        return f"version {before!r} -> {after!r}"
    tops = {next(iter(old), None), next(iter(new), None)}
    labels = [*new, *(label for label in old if label not in new)]
    changed = [label for label in labels if old.get(label) != new.get(label)]
    items = [_phrase(k, old.get(k), new.get(k), k in tops) for k in changed]
    if not items:
        return "nothing changed"
    return "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
