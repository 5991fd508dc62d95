"""Parameter spaces (API §1): a *pset* is a dict of keyword arguments, a *space* a list.

Plain lists of dicts work everywhere; :func:`grid`, :func:`zip`, :func:`star` and
:func:`product` build them, and :class:`Space` adds ``+`` for unions. How axis values
are read, in every builder:

- a list, tuple, range, 1-d numpy array, generator or other iterable is an *axis*
  (a set is iterated in sorted order when its elements can be sorted);
- a str, bytes, dict, numpy scalar, 0-d numpy array or any non-iterable object is a
  *scalar*, i.e. a constant axis of one value: ``grid(method="EnKF", N=[10, 20])``.
  To hold a list constant, wrap it: ``grid(layers=[[64, 64]])``;
- numpy numbers become the equal Python numbers (``array.tolist()``), so psets stay
  plain; the rows of a 2-d array stay arrays.

A ``pandas.DataFrame`` is a space too, wherever a space goes (``f.map(df)``,
``pj.product(df, grid(...))``, ``space + df``): one pset per row, the column names as
keys, numpy scalars as the equal Python values, and a missing cell (``NaN``, ``pd.NA``,
``pd.NaT``, ``None``) as ``None``. pandas is never imported for it: no DataFrame exists
unless the user imported pandas.

Duplicates are allowed in a space (``grid(a=[1, 1])``, overlapping unions); they are
run once, since results are keyed by the pset's canonical hash (``f.map`` warns).
"""

from __future__ import annotations

import builtins
import itertools
import keyword
import sys
from collections.abc import Iterable, Mapping
from typing import Any, SupportsIndex, overload

from ._errors import HashingError, OptionError, SpaceError
from ._hashing import canonical_bytes

__all__ = ["Space", "as_psets", "grid", "product", "star", "zip"]

_zip = builtins.zip  # this module's zip() is the space builder
_PLAIN_KINDS = "biufcSU"  # numpy kinds whose .item()/.tolist() give hashable Python values
_MAX_BYTES = {"f": 8, "c": 16}  # wider floats are long doubles: .item() would round them


class Space(list[dict[str, Any]]):
    """A list of psets (dicts of keyword arguments) that adds up into unions.

    ``Space + Space``, ``Space + list`` and ``list + Space`` give a new Space holding
    both, in order. Duplicates are kept; they run once.

    Examples
    --------
    >>> s = grid(method="EnKF", N=[10, 20]) + grid(method="PF", particles=[100])
    >>> s
    Space([{'method': 'EnKF', 'N': 10}, {'method': 'EnKF', 'N': 20}, \
{'method': 'PF', 'particles': 100}])
    """

    __slots__ = ()
    # ``DataFrame + Space``: pandas defers to operands of higher priority (pandas >= 2.1)
    __pandas_priority__ = 5000

    # a Space plus any list of psets (or a DataFrame) is a Space, where list's own
    # __add__ gives list[dict | T]: the narrower return type is the point
    def __add__(self, other: Any) -> Space:  # type: ignore[override]
        frame = _frame_or_none(other)
        other = other if frame is None else frame
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return Space(list.__add__(self, list(other)))

    def __radd__(self, other: Any) -> Space:
        # Called before list.__add__ for ``list + Space``, as Space subclasses list.
        frame = _frame_or_none(other)
        other = other if frame is None else frame
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return Space(list(other) + list(self))

    @overload
    def __getitem__(self, index: SupportsIndex) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Space: ...
    def __getitem__(self, index: SupportsIndex | slice) -> dict[str, Any] | Space:
        if isinstance(index, slice):
            return Space(list.__getitem__(self, index))
        return list.__getitem__(self, index)

    def copy(self) -> Space:
        """Return a shallow copy, still a Space."""
        return Space(self)

    def __repr__(self) -> str:
        return f"Space({list.__repr__(self)})"


def grid(**axes: Any) -> Space:
    """Cartesian product of the axes, first key slowest.

    Parameters
    ----------
    **axes
        One axis per keyword argument; a scalar is a constant axis.

    Returns
    -------
    Space
        Empty if any axis is empty; ``[{}]`` without axes.

    Examples
    --------
    >>> grid(a=[1, 2], b=["x", "y"])
    Space([{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}])
    >>> grid(method="EnKF", N=range(2))
    Space([{'method': 'EnKF', 'N': 0}, {'method': 'EnKF', 'N': 1}])
    """
    keys = list(axes)
    columns = [_values(value) for value in axes.values()]
    return Space([dict(_zip(keys, combo)) for combo in itertools.product(*columns)])


def zip(**axes: Any) -> Space:  # noqa: A001 -- public name mirrors the builtin on purpose
    """Vary the axes together: the i-th pset takes the i-th value of every axis.

    Parameters
    ----------
    **axes
        Axes of one common length; scalars are repeated to that length.

    Returns
    -------
    Space

    Raises
    ------
    SpaceError
        If two axes have different lengths; the message lists every length.

    Examples
    --------
    >>> zip(a=[1, 2], b=["x", "y"], c=0)
    Space([{'a': 1, 'b': 'x', 'c': 0}, {'a': 2, 'b': 'y', 'c': 0}])
    """
    columns = {key: _axis(value) for key, value in axes.items()}
    lengths = {key: len(col) for key, col in columns.items() if col is not None}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{key}={n}" for key, n in lengths.items())
        raise SpaceError(
            f"pj.zip: axes have unequal lengths ({shown}); give every axis the same "
            "length, pass a scalar to repeat one value, or use pj.grid for all "
            "combinations"
        )
    if not axes:
        return Space([{}])
    n = next(iter(lengths.values()), 1)  # all scalars: one pset
    filled = [
        itertools.repeat(_plain(axes[key]), n) if col is None else col
        for key, col in columns.items()
    ]
    return Space([dict(_zip(axes, values)) for values in _zip(*filled)])


def star(center: Mapping[str, Any], **axes: Any) -> Space:
    """One-at-a-time scan around ``center``.

    The centre comes first, once; then, for each axis in order, one pset per value
    that differs from the centre's (equality as for the cache: ``1`` and ``1.0``
    differ), with every other key at its centre value.

    Parameters
    ----------
    center : Mapping
        The reference pset; it must hold every key of ``axes``.
    **axes
        Values to scan for each key.

    Returns
    -------
    Space

    Raises
    ------
    SpaceError
        If an axis key is not in ``center``.

    Examples
    --------
    >>> star({"a": 1, "b": "x"}, a=[0, 1, 2], b=["y"])
    Space([{'a': 1, 'b': 'x'}, {'a': 0, 'b': 'x'}, {'a': 2, 'b': 'x'}, {'a': 1, 'b': 'y'}])
    """
    if not isinstance(center, Mapping):
        raise OptionError(
            f"pj.star: center must be a dict (the reference pset), got {type(center).__name__}"
        )
    missing = [key for key in axes if key not in center]
    if missing:
        raise SpaceError(
            f"pj.star: {', '.join(map(repr, missing))} not in center (keys: "
            f"{', '.join(map(str, center)) or 'none'}); add the centre value of each "
            "scanned key to center"
        )
    out = Space([dict(center)])
    for key, value in axes.items():
        ref = _same_as(center[key])
        out.extend({**center, key: v} for v in _values(value) if _same_as(v) != ref)
    return out


def product(*spaces: Any) -> Space:
    """Product of spaces, merging their psets; the first space varies slowest.

    Parameters
    ----------
    *spaces : Space, list of dict, dict or pandas.DataFrame
        A dict counts as a space of one pset; a DataFrame as one pset per row.

    Returns
    -------
    Space

    Raises
    ------
    SpaceError
        If a key appears in two of the spaces.

    Examples
    --------
    >>> product(zip(a=[1, 2], b=[3, 4]), {"c": 0}, grid(d=["x", "y"]))[:2]
    Space([{'a': 1, 'b': 3, 'c': 0, 'd': 'x'}, {'a': 1, 'b': 3, 'c': 0, 'd': 'y'}])
    """
    lists = [_as_list(space, f"pj.product: space {i}") for i, space in enumerate(spaces)]
    owner: dict[str, int] = {}
    for i, psets in enumerate(lists):
        for key in dict.fromkeys(k for keys in {tuple(p) for p in psets} for k in keys):
            if key in owner:
                raise SpaceError(
                    f"pj.product: key {key!r} is in space {owner[key]} and in space {i}; "
                    "each key may come from one space only (drop it from one, or use "
                    "pj.star / a union with + for per-case values)"
                )
            owner[key] = i
    return Space([_merge(combo) for combo in itertools.product(*lists)])


def as_psets(space: Any) -> list[dict[str, Any]]:
    """Return ``space`` as a list of plain dicts, checking every key.

    Parameters
    ----------
    space : Space, list or tuple of dict, dict, pandas.DataFrame, or iterable of dict
        A single dict is one pset; a DataFrame one pset per row.

    Returns
    -------
    list of dict
        Plain dicts are passed through uncopied; other mappings become dicts.

    Raises
    ------
    OptionError
        If an item is not a mapping or a key is not a valid Python identifier; the
        message gives the pset's index and the key.

    Examples
    --------
    >>> as_psets({"a": 1})
    [{'a': 1}]
    >>> as_psets([{"a": 1}, {"not valid": 2}])
    Traceback (most recent call last):
    ...
    pyjoule.OptionError: pset 1: key 'not valid' is not a valid Python \
identifier, so it cannot name a keyword argument
    """
    if isinstance(space, Mapping):
        space = [space]
    elif isinstance(space, (str, bytes)) or not isinstance(space, Iterable):
        raise OptionError(
            f"expected a space (a list of dicts, or one dict), got {type(space).__name__}; "
            "build one with pj.grid, pj.zip, pj.star or pj.product"
        )
    frame = _frame_or_none(space)
    if frame is not None:
        space = frame
    out: list[dict[str, Any]] = []
    append = out.append
    checked: set[tuple[Any, ...]] = set()  # psets of one space mostly share one key tuple
    for i, pset in enumerate(space):
        if type(pset) is not dict:
            pset = _plain_dict(pset, i)
        keys = tuple(pset)
        if keys not in checked:
            _check_keys(keys, i)
            checked.add(keys)
        append(pset)
    return out


# ------------------------------------------------------------------- helpers


def _axis(value: Any) -> list[Any] | None:
    """Return the values of an axis, or None if ``value`` is a scalar."""
    if isinstance(value, (str, bytes, bytearray, Mapping)):
        return None
    np = sys.modules.get("numpy")  # no numpy object exists unless numpy was imported
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        return _numpy_axis(value)
    if isinstance(value, (set, frozenset)):
        try:
            value = sorted(value)  # set order varies between processes for strs
        except TypeError:
            pass
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return None


def _values(value: Any) -> list[Any]:
    """The values of an axis; a scalar is an axis of one value."""
    values = _axis(value)
    return [_plain(value)] if values is None else values


def _numpy_axis(value: Any) -> list[Any] | None:
    if value.ndim == 0:
        return None
    if value.ndim == 1 and _plain_dtype(value.dtype):
        values: list[Any] = value.tolist()
        return values
    return [_plain(v) for v in value]  # rows of a 2-d array stay arrays


def _plain_dtype(dtype: Any) -> bool:
    return dtype.kind in _PLAIN_KINDS and dtype.itemsize <= _MAX_BYTES.get(dtype.kind, 1 << 30)


def _plain(value: Any) -> Any:
    """A numpy number or 0-d array as the equal Python value; anything else as is."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 \
            and _plain_dtype(value.dtype):
        return value.item()
    return value


def _same_as(value: Any) -> Any:
    """What decides whether two values are the same pset value: the canonical hash."""
    try:
        return canonical_bytes(value)
    except HashingError:  # unhashable values fail later, naming the parameter
        return id(value)


def _as_list(space: Any, where: str) -> list[Any]:
    if isinstance(space, Mapping):
        return [space]
    frame = _frame_or_none(space)
    if frame is not None:
        return frame
    if isinstance(space, (str, bytes)) or not isinstance(space, Iterable):
        raise OptionError(
            f"{where} is of type {type(space).__name__}; pass a list of dicts or a dict"
        )
    psets = list(space)
    for j, pset in enumerate(psets):
        if not isinstance(pset, Mapping):
            raise OptionError(f"{where}, pset {j} is of type {type(pset).__name__}, not a dict")
    return psets


def _merge(psets: tuple[Mapping[str, Any], ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for pset in psets:
        merged.update(pset)
    return merged


def _plain_dict(pset: Any, index: int) -> dict[str, Any]:
    if not isinstance(pset, Mapping):
        raise OptionError(
            f"pset {index} is of type {type(pset).__name__}, not a dict; a space is a list of "
            "dicts of keyword arguments, e.g. [{'a': 1}, {'a': 2}] or pj.grid(a=[1, 2])"
        )
    return dict(pset)


def _check_keys(keys: tuple[Any, ...], index: int) -> None:
    for key in keys:
        if not isinstance(key, str):
            raise OptionError(
                f"pset {index}: key {key!r} is of type {type(key).__name__}, not str; "
                "pset keys are keyword argument names"
            )
        if keyword.iskeyword(key):
            raise OptionError(
                f"pset {index}: key {key!r} is a Python keyword, so it cannot name a "
                "keyword argument; rename the parameter"
            )
        if not key.isidentifier():
            raise OptionError(
                f"pset {index}: key {key!r} is not a valid Python identifier, so it "
                "cannot name a keyword argument"
            )


# ----------------------------------------------------------------- DataFrames
def _frame_or_none(space: Any) -> list[dict[str, Any]] | None:
    """The psets of a ``pandas.DataFrame`` (one per row), or None for anything else."""
    pd = sys.modules.get("pandas")  # no DataFrame exists unless pandas was imported
    if pd is None or not isinstance(space, pd.DataFrame):
        return None
    keys = list(space.columns)
    if len(set(keys)) != len(keys):
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        raise OptionError(f"the DataFrame has the column(s) {twice} more than once; a "
                          "pset takes each keyword argument once")
    for key in keys:
        _check_keys((key,), 0)
    columns = [_cells(space[key].tolist()) for key in keys]
    return [dict(_zip(keys, row)) for row in _zip(*columns)]


def _cells(values: list[Any]) -> list[Any]:
    """A column's cells as pset values: Python scalars, ``None`` where missing."""
    out = []
    for v in values:
        v = _plain(v)
        if v is None or (type(v) is float and v != v) or (
                type(v).__name__ in ("NAType", "NaTType")
                and type(v).__module__.startswith("pandas")):
            v = None
        out.append(v)
    return out
