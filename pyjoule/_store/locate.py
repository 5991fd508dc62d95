"""Where many psets are in the cache, without a Python object per entry
(:func:`locate`): the function's entries come out of SQLite as two strings built in
C (``group_concat``), become sorted numpy arrays, and the wanted ids are found in
them with one ``searchsorted``. At 1,000,000 psets that is 0.3 s where a dict of
the entries (a Python string and int per row, probed at random) took 1.5-2 s, and
grew faster than the number of psets (cache misses).

Pset ids are 32 hexadecimal characters; a set of ids that is not (or an index
holding other ids) is answered by the caller's exact path (``None`` here).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, MutableMapping, Sequence
from itertools import compress

import numpy as np

#: the length of a pset id (``_hashing.pset_id``: blake2b, 16 bytes, in hex)
ID_LEN = 32

#: from this many wanted ids, :func:`locate` scans the function's entries; fewer
#: are looked up one by one (``Entries.lookup``)
MANY = 500


def id_array(ids: Sequence[str]) -> np.ndarray | None:
    """``ids`` as a numpy array of 32-byte strings, or None unless every id is 32
    ASCII characters."""
    joined = "".join(ids)
    if len(joined) != ID_LEN * len(ids) or not joined.isascii():
        return None
    return np.frombuffer(joined.encode("ascii"), f"S{ID_LEN}")


def entries_of(db: sqlite3.Connection, func_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(pset ids, locs)`` of every entry of ``func_id``, ids sorted (32-byte strings),
    or None when an entry's id is not a pset id."""
    count, ids, locs = db.execute(
        "SELECT COUNT(*), group_concat(pset_id, ''), group_concat(loc) FROM entries "
        "WHERE func_id=?", (func_id,)).fetchone()
    if not count:
        return np.empty(0, f"S{ID_LEN}"), np.empty(0, np.int64)
    if len(ids) != ID_LEN * count or not ids.isascii():
        return None
    keys = np.frombuffer(ids.encode("ascii"), f"S{ID_LEN}")
    del ids
    values = np.fromstring(locs, dtype=np.int64, sep=",")
    if len(values) != count:
        return None
    # the primary key's order (SQLite's BINARY collation compares bytes, as numpy
    # does); sorted here should a future schema hand them back otherwise
    if count > 1 and not (keys[1:] > keys[:-1]).all():
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
    return keys, values


class Ids:
    """Pset ids as arrays, made once for all that a plan asks of them (its
    duplicates, then its lookup): the ids, their first 8 bytes as integers, and the
    order that sorts those (a sort of a million numbers, done once, not twice)."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr
        self.prefix = _prefix(arr)
        self._order: np.ndarray | None = None

    @classmethod
    def of(cls, ids: Sequence[str]) -> Ids | None:
        """None unless every id is a pset id (32 ASCII characters)."""
        arr = id_array(ids)
        return None if arr is None else cls(arr)

    @property
    def order(self) -> np.ndarray:
        if self._order is None:
            self._order = np.argsort(self.prefix)
        return self._order


def locate(db: sqlite3.Connection, func_id: str, ids: Sequence[str] | Ids
           ) -> np.ndarray | None:
    """The ``loc`` of each of ``ids`` (see ``Entries.lookup``), -1 where it is not
    cached; None when ``ids`` or the entries are not all pset ids (ask
    ``Entries.lookup``)."""
    wanted = ids if isinstance(ids, Ids) else Ids.of(ids)
    if wanted is None:
        return None
    entries = entries_of(db, func_id)
    if entries is None:
        return None
    keys, values = entries
    if not len(keys):
        return np.full(len(wanted.arr), -1, np.int64)
    # searched by their first 8 bytes as numbers (the ids' order, 10x faster than
    # comparing strings), the needles in order so that each search starts where
    # the last one ended
    prefix, needles, order = _prefix(keys), wanted.prefix, wanted.order
    at = np.empty(len(needles), np.int64)
    at[order] = np.searchsorted(prefix, needles[order])
    at[at == len(keys)] = 0
    hit = keys[at] == wanted.arr
    # an 8-byte prefix several entries share: the id may be further on
    tie = np.flatnonzero(~hit & (prefix[at] == needles))
    if len(tie):
        again = np.searchsorted(keys, wanted.arr[tie])
        again[again == len(keys)] = 0
        at[tie], hit[tie] = again, keys[again] == wanted.arr[tie]
    return np.where(hit, values[at], -1)


def _prefix(ids: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each id as an unsigned integer: ordered as the ids are."""
    head = ids.view(np.uint8).reshape(len(ids), ID_LEN)[:, :8].copy()
    return head.view(">u8").ravel().astype(np.uint64)


def id_order(ids: Sequence[str]) -> list[int]:
    """Positions that put ``ids`` in sorted order (by their first 8 characters when
    they are pset ids: numpy's sort of integers, not Python's of strings)."""
    arr = id_array(ids)
    if arr is None:
        return sorted(range(len(ids)), key=ids.__getitem__)
    return np.argsort(_prefix(arr), kind="stable").tolist()


def has_duplicates(ids: Sequence[str] | Ids) -> bool | None:
    """Whether an id occurs twice in ``ids``, by sorting (no set of a million
    strings); None unless they are all pset ids."""
    prepared = ids if isinstance(ids, Ids) else Ids.of(ids)
    if prepared is None:
        return None
    prefix, order = prepared.prefix, prepared.order
    tied = np.flatnonzero(prefix[order[1:]] == prefix[order[:-1]])
    if not len(tied):
        return False
    # equal first 8 bytes: the whole ids decide (a few, at a million random ids)
    members = np.unique(np.concatenate([order[tied], order[tied + 1]]))
    return len(set(prepared.arr[members].tolist())) < len(members)


class Found(MutableMapping[str, int]):
    """``{pset_id: loc}`` of the cached ones among ``ids`` (``locs >= 0``), the dict
    built only once a key is asked for: a re-call of 1,000,000 cached psets needs
    their number, not a dict of them (0.5 s)."""

    def __init__(self, ids: Sequence[str], locs: np.ndarray):
        self._ids: Sequence[str] | None = ids
        self._locs: np.ndarray | None = locs
        self._n = int(np.count_nonzero(locs >= 0))
        self._dict: dict[str, int] | None = None

    def _d(self) -> dict[str, int]:
        if self._dict is None:
            assert self._ids is not None and self._locs is not None
            self._dict = found_dict(self._ids, self._locs)
            self._ids = self._locs = None
        return self._dict

    def __len__(self) -> int:
        return self._n if self._dict is None else len(self._dict)

    def __getitem__(self, key: str) -> int:
        return self._d()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d()

    def __iter__(self) -> Iterator[str]:
        return iter(self._d())

    def __setitem__(self, key: str, value: int) -> None:
        self._d()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._d()[key]

    def values(self):  # type: ignore[override]  # the dict's: C speed
        return self._d().values()

    def items(self):  # type: ignore[override]
        return self._d().items()

    def __repr__(self) -> str:
        return f"Found({len(self)} cached)"


def found_dict(ids: Sequence[str], locs: np.ndarray) -> dict[str, int]:
    """``{pset_id: loc}`` of the cached ones (``locs >= 0``), in the order of ``ids``."""
    hit = locs >= 0
    if hit.all():
        return dict(zip(ids, locs.tolist()))
    return dict(zip(compress(ids, hit.tolist()), locs[hit].tolist()))
