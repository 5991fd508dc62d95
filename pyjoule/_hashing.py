"""Canonical hashing of psets: the ``pset_id`` half of a cache key (API §5).

The canonical encoding is ASCII text in a small, self-delimiting literal grammar.
Every token type starts differently, so no two distinct values share an encoding and a
user's strings (always quoted) can never pose as a tag:

=====================================  ===============================================
value                                  encoding
=====================================  ===============================================
``None``, ``True``, ``False``          ``None``, ``True``, ``False``
``int`` (and numpy integers)           decimal, e.g. ``-12`` (any size)
``float`` (numpy floats by value)      ``repr``: ``0.5``, ``1e+100``, ``nan``, ``-inf``
``str`` (and ``numpy.str_``)           ``ascii(s)``: a quoted literal, non-ASCII escaped
``bytes``, ``bytearray``               ``ascii(bytes(b))``: ``b'..'``
``complex``                            ``complex(re, im)``
list, tuple                            ``[a, b]`` (a tuple equals the list)
dict with str keys                     ``D('k1', 'k2')(v1, v2)``, keys sorted
dict with other keys                   ``M[(k, v), ...]``, sorted by encoding
set, frozenset                         ``S[a, b]``, sorted by encoding, deduplicated
``pathlib.PurePath``                   ``path('a/b')`` (its POSIX form)
``numpy.ndarray``                      ``ndarray('<f8', [2, 3], '<blake2b-256 hex>')``
``pd.NA``, ``pd.NaT``                  ``None`` (the missing value)
function, class, ufunc                 ``callable('<identity hex>')`` (:mod:`._callables`)
``functools.partial``                  ``partial(<callable>, [args], D(..)(..))``
=====================================  ===============================================

Arrays are hashed by canonical (little-endian) dtype, shape and C-order content, with
every NaN rewritten to the same bit pattern; object arrays list their elements instead
of a digest. Everything here is defined by ``repr``/``ascii`` of ints, floats, strs and
bytes, which have not changed since Python 3.1, so ids agree across processes, machines
and Python versions.

Dicts of plain scalars, the overwhelming majority of psets, take a fast path: the
header of a key set is computed once and the values are encoded by the C ``repr`` of a
tuple. The general walk produces the same text for them (tests pin this).
"""

from __future__ import annotations

import hashlib
import sys
import types
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

from . import _caches, _callables
from ._errors import HashingError
from ._hashing_errors import _Elem, _Key, _type_name, _unsupported, _where

__all__ = ["canonical_bytes", "clear_caches", "pset_id", "pset_ids"]

_SIMPLE = frozenset({str, int, float, bool, type(None)})
_DIGITS = 500  # chunk for ints over sys.get_int_max_str_digits() (640 at the least)
_CHUNK = 10**_DIGITS
_KEYS_CACHE_MAX = 4096
_MAX_BYTES = {"f": 8, "c": 16}  # wider floats are long doubles

# key tuple (in the pset's order) -> (getter of values in sorted key order, header),
# or None when the keys are not all exact str and the general walk must run.
_key_cache: dict[tuple, tuple | None] = {}
_PANDAS_MISSING = frozenset({"NAType", "NaTType"})
# plain scalars with functions or classes: still (nearly) the fast path
_VALUE_TYPES = _SIMPLE | {types.FunctionType, types.BuiltinFunctionType, type}
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)


def canonical_bytes(obj: Any) -> bytes:
    """Return the canonical encoding of a value.

    Parameters
    ----------
    obj : object
        A str, int, float, bool, None, bytes, complex, list, tuple, dict, set,
        ``pathlib.PurePath``, numpy scalar or numpy array, nested as deep as needed.

    Returns
    -------
    bytes
        ASCII text, equal for values the cache treats as equal (see module docs).

    Raises
    ------
    HashingError
        For any other type; the message names where in ``obj`` it sits.

    Examples
    --------
    >>> canonical_bytes({"b": 1.0, "a": [1, "x"]})
    b"D('a', 'b')([1, 'x'], 1.0)"
    """
    _callables.forget()  # a helper may have been edited since the last call
    return _enc(obj, None, set()).encode("ascii")


def pset_id(pset: Mapping[str, Any]) -> str:
    """Return the 32-hex-character id of a pset (blake2b, 16 bytes).

    Parameters
    ----------
    pset : Mapping
        The keyword arguments of one call.

    Returns
    -------
    str
        ``blake2b(canonical_bytes(pset), digest_size=16).hexdigest()``.

    Raises
    ------
    HashingError
        If a value cannot be hashed; the message names the parameter.

    Examples
    --------
    >>> pset_id({"a": 1, "b": "x"}) == pset_id({"b": "x", "a": 1})
    True
    """
    return pset_ids((pset,))[0]


def pset_ids(psets: Iterable[Mapping[str, Any]]) -> list[str]:
    """Return :func:`pset_id` of every pset, in order, fast.

    Parameters
    ----------
    psets : iterable of Mapping
        The psets to hash; any iterable works.

    Returns
    -------
    list of str

    Examples
    --------
    >>> ids = pset_ids([{"a": 1}, {"a": 1.0}, {"a": True}])
    >>> len(set(ids))
    3
    """
    _callables.forget()  # a helper may have been edited since the last call
    out: list[str] = []
    append = out.append
    fresh = _BLAKE2B_16.copy  # copying a template beats parsing digest_size each time
    simple = _SIMPLE.issuperset
    cached = _key_cache.get
    for pset in psets:
        text = None
        if type(pset) is dict:
            keys = tuple(pset)
            entry = cached(keys, False)
            if entry is False:
                entry = _key_entry(keys)
            if entry is not None:
                values = entry[0](pset)
                if simple(map(type, values)):
                    text = _fast_text(entry[1], values)
                elif _VALUE_TYPES.issuperset(map(type, values)):
                    text = _callables_text(entry[1], values)
        if text is None:
            text = _pset_text(pset)
        hasher = fresh()
        hasher.update(text)
        append(hasher.hexdigest())
    return out


def clear_caches() -> None:
    """Forget the fast path's entries per key tuple (bounded at ``_KEYS_CACHE_MAX``;
    they depend on the keys alone, so this is for tests that start from nothing)."""
    _key_cache.clear()


def _key_entry(keys: tuple) -> tuple | None:
    """Build and cache the fast-path entry for one key tuple."""
    if len(_key_cache) >= _KEYS_CACHE_MAX:  # bound memory for ragged spaces
        _key_cache.clear()
    entry = None
    if all(type(k) is str for k in keys):
        order = tuple(sorted(keys))
        if len(order) >= 2:
            getter = itemgetter(*order)
        elif order:
            only = order[0]
            getter = lambda d: (d[only],)  # noqa: E731 -- itemgetter(k) returns no tuple
        else:
            getter = lambda d: ()  # noqa: E731
        entry = (getter, "D" + ascii(order))
    _key_cache[keys] = entry
    return entry


def _fast_text(header: str, values: tuple) -> bytes | None:
    """Encode a tuple of plain scalars, or None to fall back on the general walk."""
    try:
        # repr is faster than ascii and identical whenever it is pure ASCII: both
        # escape the same characters the same way; ascii also escapes the rest.
        return (header + repr(values)).encode("ascii")
    except UnicodeEncodeError:
        return (header + ascii(values)).encode("ascii")
    except ValueError:  # an int longer than sys.get_int_max_str_digits()
        return None


class _Text(str):
    """Canonical text that ``repr`` leaves as it is (a callable's token in a tuple)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__str__(self)


def _callables_text(header: str, values: tuple) -> bytes | None:
    """Plain scalars and functions or classes (``act=relu``): the fast path's text with
    each callable's token, which the general walk would give; None to fall back."""
    parts = []
    for v in values:
        if type(v) in _SIMPLE:
            parts.append(v)
        elif _callables.is_value(v):  # not a bound builtin method
            parts.append(_Text(_callables.token(v, None)))
        else:
            return None
    return _fast_text(header, tuple(parts))


def _pset_text(pset: Any) -> bytes:
    """General walk for one pset, with errors naming the parameter."""
    if not isinstance(pset, Mapping):
        raise HashingError(
            f"cannot hash a pset of type {_type_name(pset)}: a pset is a dict of "
            "keyword arguments, e.g. {'a': 1}"
        )
    return _enc(pset, (), set()).encode("ascii")


# --------------------------------------------------------------------- the walk
# ``path`` is None for a bare value, () for the pset itself, else a linked tuple
# (parent, step); it is only turned into text when an error is raised.


def _enc(x: Any, path: Any, active: set) -> str:
    t = type(x)
    if t is str:
        return ascii(x)
    if t is float:
        return repr(x)
    if t is bool or x is None:
        return repr(x)
    if t is int:
        return _int_text(x)
    if t is list or t is tuple:
        return _enc_list(x, path, active)
    if t is dict:
        return _enc_dict(x, path, active)
    return _enc_other(x, path, active)


def _int_text(n: int) -> str:
    try:
        return int.__repr__(n)
    except ValueError:
        # Over the interpreter's digit limit: build the very same decimal text in
        # chunks small enough for any limit, so ids do not depend on the setting.
        sign, n = ("-", -n) if n < 0 else ("", n)
        chunks = []
        while n >= _CHUNK:
            n, low = divmod(n, _CHUNK)
            chunks.append(format(low, f"0{_DIGITS}d"))
        return sign + int.__repr__(n) + "".join(reversed(chunks))


def _enc_list(x: Any, path: Any, active: set) -> str:
    _enter(x, path, active)
    parts = [_enc(v, (path, i), active) for i, v in enumerate(x)]
    active.discard(id(x))
    return "[" + ", ".join(parts) + "]"


def _enc_dict(x: Mapping, path: Any, active: set) -> str:
    _enter(x, path, active)
    items = [(_plain_key(k), v) for k, v in x.items()]
    if all(type(k) is str for k, _ in items):
        items.sort(key=lambda kv: kv[0])
        parts = [_enc(v, (path, k), active) for k, v in items]
        tail = "," if len(parts) == 1 else ""  # same text as repr of a 1-tuple
        text = "D" + ascii(tuple(k for k, _ in items)) + "(" + ", ".join(parts) + tail + ")"
    else:
        pairs = sorted(
            (_enc(k, (path, _Key(k)), active), _enc(v, (path, k), active)) for k, v in items
        )
        text = "M[" + ", ".join(f"({k}, {v})" for k, v in pairs) + "]"
    active.discard(id(x))
    return text


def _plain_key(k: Any) -> Any:
    """``numpy.str_`` keys are str keys; other str subclasses (enums) are not."""
    if type(k) is not str and isinstance(k, str) and type(k).__module__ == "numpy":
        return str(k)
    return k


def _enc_set(x: Any, path: Any, active: set) -> str:
    _enter(x, path, active)
    parts = sorted({_enc(v, (path, _Elem()), active) for v in x})
    active.discard(id(x))
    return "S[" + ", ".join(parts) + "]"


def _enter(x: Any, path: Any, active: set) -> None:
    if id(x) in active:
        raise HashingError(f"cannot hash {_where(path)}: it contains itself")
    active.add(id(x))


def _enc_other(x: Any, path: Any, active: set) -> str:
    np = sys.modules.get("numpy")  # no numpy object can exist unless it was imported
    if np is not None and isinstance(x, (np.ndarray, np.generic)):
        return _enc_numpy(x, np, path, active)
    if isinstance(x, Mapping):
        return _enc_dict(x, path, active)
    if isinstance(x, (set, frozenset)):
        return _enc_set(x, path, active)
    t = type(x)
    if t is bytes or t is bytearray:
        return ascii(bytes(x))
    if t is complex:
        return f"complex({x.real!r}, {x.imag!r})"
    pathlib = sys.modules.get("pathlib")
    if pathlib is not None and isinstance(x, pathlib.PurePath):
        return f"path({x.as_posix()!a})"
    if callable(x) and _callables.is_value(x):
        return _callables.token(x, lambda v: _enc(v, path, active))
    if t.__name__ in _PANDAS_MISSING and t.__module__.startswith("pandas"):
        return "None"  # pd.NA, pd.NaT: the missing value, as None
    raise _unsupported(x, path)


def _enc_numpy(x: Any, np: Any, path: Any, active: set) -> str:
    if isinstance(x, np.ndarray):
        return _enc_array(x, np, path, active)
    if isinstance(x, np.bool_):
        return repr(bool(x))
    if isinstance(x, np.integer):
        return _int_text(int(x))
    if isinstance(x, (np.floating, np.complexfloating)):
        value = complex(x) if isinstance(x, np.complexfloating) else float(x)
        # A long double may hold more precision than a float: refuse rather than
        # let two different values share an id.
        lossy = value == value and value != x
        if x.dtype.itemsize > _MAX_BYTES[x.dtype.kind] and lossy:
            raise _unsupported(x, path, "convert it with float() first")
        return _enc(value, path, active)
    if isinstance(x, np.str_):
        return ascii(str(x))
    if isinstance(x, np.bytes_):
        return ascii(bytes(x))
    if x.dtype.kind in "mM":  # datetime64/timedelta64: same as a 0-d array
        return _enc_array(np.asarray(x), np, path, active)
    raise _unsupported(x, path)


def _enc_array(a: Any, np: Any, path: Any, active: set) -> str:
    if type(a) is not np.ndarray and type(a) is not np.memmap:
        raise _unsupported(a, path, "convert it with numpy.asarray() first")
    dtype = a.dtype
    shape = "[" + ", ".join(map(str, a.shape)) + "]"
    if dtype.kind == "O":
        _enter(a, path, active)
        parts = [_enc(v, (path, i), active) for i, v in enumerate(a.ravel().tolist())]
        active.discard(id(a))
        return f"ndarray('|O', {shape}, [{', '.join(parts)}])"
    if dtype.kind == "V" or dtype.itemsize > _MAX_BYTES.get(dtype.kind, dtype.itemsize):
        # Structured records have no canonical dtype string, and long doubles carry
        # undefined padding bytes: neither hashes reproducibly.
        raise _unsupported(a, path, f"arrays of dtype {dtype} are not supported")
    if dtype.str.startswith(">"):
        a = a.astype(dtype.newbyteorder("<"))
    flat = np.ascontiguousarray(a).reshape(-1)
    digest = hashlib.blake2b(_nan_free(flat, np).view(np.uint8), digest_size=32).hexdigest()
    return f"ndarray({flat.dtype.str!a}, {shape}, {digest!a})"


def _nan_free(flat: Any, np: Any) -> Any:
    """Rewrite every NaN to numpy's own NaN: computed NaNs differ in sign and payload."""
    if flat.dtype.kind not in "fc":
        return flat
    floats = flat.view(flat.real.dtype) if flat.dtype.kind == "c" else flat
    mask = np.isnan(floats)
    if not mask.any():
        return flat
    floats = floats.copy()  # never write into the user's array
    floats[mask] = np.nan
    return floats


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_key_cache", _key_cache)
