"""Columns: many values of one parameter or result, stored so they load without a
Python loop per value.

A column is a small tuple ``(kind, data, mask, extra)``:

=======  =====================================  ==========================
kind     data                                   extra
=======  =====================================  ==========================
``num``  1-d numpy array (int64/float64/bool…)  ``None``
``arr``  numpy array ``(n, *shape)``            ``None``
``cat``  int32 codes into ``extra`` (-1 = none)  list of category values
``obj``  list of Python objects                 ``None``
=======  =====================================  ==========================

``mask`` is ``None`` when every row has a value, else a bool array (True = present).
Columns are built once, when results are ingested, so assembling a Dataset of 100,000
results is a handful of numpy calls.

Parameter columns are built ``exact``: ints and floats mixed in one column stay Python
objects (``1`` and ``1.0`` are different psets, API §5), where a result column becomes
float64 (a function returning ``0`` or ``0.5`` gives one numeric variable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self):
        return "MISSING"


MISSING = _Missing()

_INTS = (int, np.integer)
_FLOATS = (float, np.floating)
_BOOLS = (bool, np.bool_)


def build(values: Sequence[Any], exact: bool = False) -> tuple:
    """The column of ``values`` (which may contain ``MISSING``); ``exact``: never turn
    an int into a float (parameter columns)."""
    types = set(map(type, values))
    mask = None
    if _Missing in types:
        mask = np.fromiter((v is not MISSING for v in values), bool, len(values))
        types.discard(_Missing)
        present = [v for v in values if v is not MISSING]
    else:
        present = values
    kind, data, extra = _encode(present, types, exact)
    if mask is not None:
        data = _spread(kind, data, mask)
    return kind, data, mask, extra


def _encode(values: Sequence[Any], types: set, exact: bool = False) -> tuple[str, Any, Any]:
    if types and all(issubclass(t, _BOOLS) for t in types):
        return "num", np.array(values, dtype=bool), None
    if types and all(issubclass(t, _INTS) and not issubclass(t, _BOOLS) for t in types):
        try:
            return "num", np.array(values, dtype=np.int64), None
        except OverflowError:
            return "obj", list(values), None
    if types and all(issubclass(t, _INTS + _FLOATS) and not issubclass(t, _BOOLS)
                     for t in types) and not (exact and any(issubclass(t, _INTS) for t in types)):
        return "num", np.array(values, dtype=np.float64), None
    if types and all(issubclass(t, str) for t in types):
        lookup: dict[str, int] = {}
        codes = np.fromiter((lookup.setdefault(v, len(lookup)) for v in values),
                            np.int32, len(values))
        return "cat", codes, list(lookup)
    if types == {np.ndarray}:
        shapes = {v.shape for v in values}
        kinds = {v.dtype.kind for v in values}
        one_dtype = not exact or len({v.dtype for v in values}) == 1  # int32 stays int32
        if len(shapes) == 1 and kinds <= set("biuf") and one_dtype:
            return "arr", np.stack(values), None
    return "obj", list(values), None


def _spread(kind: str, data: Any, mask: np.ndarray) -> Any:
    """Put ``data`` (present rows only) back at the rows where ``mask`` is True."""
    n = len(mask)
    if kind == "cat":
        full = np.full(n, -1, np.int32)
        full[mask] = data
        return full
    if kind == "obj":
        full = [MISSING] * n
        for i, v in zip(np.flatnonzero(mask), data):
            full[i] = v
        return full
    full = np.zeros((n,) + data.shape[1:], data.dtype)
    full[mask] = data
    return full


def take(col: tuple, index: np.ndarray) -> tuple:
    kind, data, mask, extra = col
    if kind == "obj":
        data = [data[i] for i in index]
    else:
        data = data[index]
    return kind, data, (mask[index] if mask is not None else None), extra


def present(col: tuple) -> np.ndarray:
    kind, data, mask, _ = col
    if mask is not None:
        return mask
    if kind == "cat":
        return data >= 0
    return np.ones(len(data), bool)


def concat(cols: Sequence[tuple], exact: bool = False) -> tuple:
    """One column from several, unifying their kinds (``exact``: as :func:`build`)."""
    if len(cols) == 1:
        return cols[0]
    kinds = {c[0] for c in cols}
    n = sum(len(c[1]) for c in cols)
    masks = [present(c) for c in cols]
    mask = np.concatenate(masks)
    mask = None if mask.all() else mask
    bools = {c[1].dtype.kind == "b" for c in cols if c[0] == "num"}
    if exact:  # ints and floats do not mix (into floats) either
        bools = {c[1].dtype.kind.replace("u", "i") for c in cols if c[0] == "num"}
    if kinds == {"num"} and len(bools) == 1:  # never let True become 1
        return "num", np.concatenate([c[1] for c in cols]), mask, None
    if kinds == {"arr"} and len({c[1].shape[1:] for c in cols}) == 1 and (
            not exact or len({c[1].dtype for c in cols}) == 1):
        return "arr", np.concatenate([c[1] for c in cols]), mask, None
    if kinds == {"cat"}:
        lookup: dict[Any, int] = {}
        parts = []
        for _, codes, _, cats in cols:
            remap = np.array([lookup.setdefault(c, len(lookup)) for c in cats] + [-1],
                             np.int32)
            parts.append(remap[codes])  # code -1 picks the trailing -1
        return "cat", np.concatenate(parts), None, list(lookup)
    values: list = []
    for c in cols:
        values.extend(to_objects(c))
    assert len(values) == n
    return build(values, exact)


def to_objects(col: tuple) -> list:
    """The column as a list of Python objects (``MISSING`` where absent)."""
    kind, data, mask, extra = col
    if kind == "obj":
        return list(data)
    if kind == "cat":
        cats = list(extra) + [MISSING]
        return [cats[c] for c in data.tolist()]
    out = list(data) if kind == "arr" else data.tolist()
    if mask is not None:
        for i in np.flatnonzero(~mask).tolist():
            out[i] = MISSING
    return out


def to_array(col: tuple, fill: Any = np.nan) -> np.ndarray:
    """Values as a numpy array, ``fill`` where absent (ints become floats if needed)."""
    kind, data, mask, extra = col
    if kind == "cat":
        cats = np.empty(len(extra) + 1, object)
        cats[:-1] = extra
        cats[-1] = fill
        return cats[data]
    if kind == "obj":
        arr = np.empty(len(data), object)
        arr[:] = [fill if v is MISSING else v for v in data]
        return arr
    if mask is None or mask.all():
        return data
    if data.dtype.kind in "biu":
        data = data.astype(np.float64)
    data = data.copy()
    data[~mask] = fill
    return data
