"""Stable text for the constants a function reaches, and the digest of an identity's parts."""

from __future__ import annotations

import hashlib

_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS = (tuple, list, set, frozenset, dict)
_MAX_DEPTH = 32  # deeper (or self-containing) containers are not treated as constants


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")  # ("ab","c") != ("a","bc")
    return h.hexdigest()


def _encode(value, refs: list | None = None, depth: int = 0) -> str | None:
    """Stable text for a constant, or ``None`` when `value` is not one.

    With `refs`, other leaves (functions, instances) become placeholders appended to
    `refs`, so that a dispatch table ``{"euler": euler}`` is covered as well.
    """
    kind = type(value)
    if kind in _SCALARS:
        return f"{kind.__name__}:{value!r}"
    if kind in _CONTAINERS:
        return _encode_container(value, refs, depth) if depth < _MAX_DEPTH else None
    if _is_numpy(value):
        return _encode_numpy(value)
    if refs is None:
        return None
    refs.append(value)
    name = getattr(value, "__qualname__", None)
    return "ref:" + (name if isinstance(name, str) else kind.__qualname__)


def _encode_container(value, refs, depth) -> str | None:
    if type(value) is dict:
        depth += 1
        pairs = [(_encode(k, refs, depth), _encode(v, refs, depth)) for k, v in value.items()]
        if any(None in pair for pair in pairs):
            return None
        return "dict:{" + ",".join(sorted(f"{k}:{v}" for k, v in pairs)) + "}"
    items = [_encode(item, refs, depth + 1) for item in value]
    if None in items:
        return None
    if isinstance(value, (set, frozenset)):
        items.sort()  # set order varies between processes (hash randomisation)
    return f"{type(value).__name__}:[" + ",".join(items) + "]"


def _is_numpy(value) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype")  # no numpy import


def _encode_numpy(value) -> str | None:
    from .._hashing import canonical_bytes  # lazy; it canonicalises byte order and NaNs

    try:
        return "numpy:" + canonical_bytes(value).decode("ascii", "replace")
    except (TypeError, ValueError):  # HashingError: an object array holding anything
        return None

