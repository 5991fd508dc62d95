"""Canonical pset hashing (API §5): pinned digests, rules, errors and properties."""

from __future__ import annotations

import copy
import enum
import hashlib
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyjoule import _hashing
from pyjoule._errors import HashingError, PyjouleError
from pyjoule._hashing import canonical_bytes, pset_id, pset_ids

# The same source builds the psets here and in a second interpreter.
PSETS_SOURCE = textwrap.dedent(
    """
    import numpy as np
    from pathlib import PurePosixPath
    PSETS = [
        {"a": 1, "b": 0.5, "method": "EnKF", "flag": True, "c": None},
        {},
        {"x": 1.0},
        {"s": "h\\u00e9llo \\u2713 \\U0001d11e", "n": -10**30},
        {"opts": {"solver": ["lu", 3, (1.5, None)], "tol": 1e-8}, "seed": 0},
        {"nan": float("nan"), "inf": float("-inf"), "z": -0.0},
        {"m": {1: "a", "1": "b"}, "s": {"pear", "apple", "fig"}, "b": b"\\x00\\xff"},
        {"arr": np.arange(6, dtype=np.float64).reshape(2, 3), "i": np.int32(7),
         "f": np.float32(0.1)},
        {"c": 1 + 2j, "p": PurePosixPath("data/x.csv"),
         "t": np.datetime64("2020-01-01T00:00", "s")},
    ]
    """
)

# Computed once and pinned: a change here invalidates every user's cache.
KNOWN_IDS = [
    "b6468757f808b0cd1cd7c997b57017e9",
    "06ad5c999a1081a09b75f45d538ce742",
    "3c7d64e22e651d1a65f63dc518c3e765",
    "fd0c1475c566556233f204f68651959d",
    "d8b17ea80dd8b83e24b81c67021b1534",
    "5645812e8bb454831bb8110e95116bcd",
    "0a3616256a314d72f085932a6332818a",
    "c159018e103b4c42c23fca2e80977e42",
    "f3702757f127880acea6b8e949ab3cd6",
]


def known_psets() -> list[dict]:
    namespace: dict = {}
    exec(PSETS_SOURCE, namespace)
    return namespace["PSETS"]


def slow_id(pset) -> str:
    """The id by the general walk alone (canonical_bytes never takes the fast path)."""
    return hashlib.blake2b(canonical_bytes(pset), digest_size=16).hexdigest()


# ----------------------------------------------------------------- known answers


def test_known_answer_digests():
    assert pset_ids(known_psets()) == KNOWN_IDS
    assert [pset_id(p) for p in known_psets()] == KNOWN_IDS
    assert [slow_id(p) for p in known_psets()] == KNOWN_IDS


def test_canonical_text_is_readable_and_pinned():
    assert canonical_bytes({"b": 1.0, "a": [1, "x"]}) == b"D('a', 'b')([1, 'x'], 1.0)"
    assert canonical_bytes({"x": 1}) == b"D('x',)(1,)"
    assert canonical_bytes({1: "a"}) == b"M[(1, 'a')]"
    assert canonical_bytes({3, 1}) == b"S[1, 3]"
    assert canonical_bytes("\u00e9") == b"'\\xe9'"


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_second_interpreter_agrees(seed):
    code = PSETS_SOURCE + textwrap.dedent(
        """
        from pyjoule._hashing import pset_ids
        print("\\n".join(pset_ids(PSETS)))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == KNOWN_IDS


def test_pickle_round_trip_keeps_ids():
    psets = known_psets()
    assert pset_ids(pickle.loads(pickle.dumps(psets))) == KNOWN_IDS
    assert pset_ids(copy.deepcopy(psets)) == KNOWN_IDS


# ------------------------------------------------------------------------ rules


def same(a, b) -> bool:
    return pset_id({"v": a}) == pset_id({"v": b})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.int64(1), 1),
        (np.uint8(200), 200),
        (np.float64(0.5), 0.5),
        (np.float32(0.1), float(np.float32(0.1))),
        (np.float16(0.25), 0.25),
        (np.bool_(True), True),
        (np.str_("abc"), "abc"),
        (np.bytes_(b"ab"), b"ab"),
        (np.complex128(1 + 2j), 1 + 2j),
        ((1, 2), [1, 2]),
        ([(1, (2,))], ((1, [2]),)),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({np.str_("a"): 1}, {"a": 1}),
        (float("nan"), float("nan")),
        (float("nan"), -float("nan")),
        (np.float64("nan"), float("nan")),
        ({1, 2}, frozenset({2, 1})),
        (bytearray(b"x"), b"x"),
        (PurePosixPath("a/b"), PureWindowsPath("a\\b")),
        (np.array([1.0, 2.0], dtype=">f8"), np.array([1.0, 2.0], dtype="<f8")),
        (np.arange(6).reshape(2, 3).T, np.ascontiguousarray(np.arange(6).reshape(2, 3).T)),
        (np.array([np.nan]), np.array([np.copysign(np.nan, -1)])),
        (np.array([np.nan]), np.array([0x7FF8_0000_0000_0001], dtype=np.uint64).view("f8")),
        (np.array([complex(0.0, np.nan)]), np.array([complex(0.0, np.copysign(np.nan, -1))])),
        (10**40, 10**40),
    ],
)
def test_equal_values_hash_equal(a, b):
    assert same(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (True, 1),
        (False, 0),
        (True, 1.0),
        (0.0, -0.0),
        (None, "None"),
        ("1", 1),
        (b"a", "a"),
        ({1: "a"}, {"1": "a"}),
        ({"1": "a"}, {1: "a", "1": "a"}),
        ([1, 2], {1, 2}),
        ([], {}),
        ({"a": 1}, [("a", 1)]),
        ([[1], 2], [1, [2]]),
        (np.float32(0.1), 0.1),
        (np.array(1.0), 1.0),
        (np.array([1, 2]), [1, 2]),
        (np.array([1, 2], dtype=np.int64), np.array([1, 2], dtype=np.int32)),
        (np.array([1.0, 2.0]), np.array([[1.0, 2.0]])),
        (np.array([1.0, 2.0]), np.array([1.0, 3.0])),
        (np.array(["a"]), np.array(["a"], dtype="U2")),
        (1 + 0j, 1.0),
        (PurePosixPath("a"), "a"),
        (10**40, 10**40 + 1),
        ("$nd", {"$nd": 1}),
        ({"D('a',)": 1}, {"a": 1}),
    ],
)
def test_different_values_hash_different(a, b):
    assert not same(a, b)


def test_key_order_and_nesting_are_ignored_or_kept_as_they_should():
    assert pset_id({"a": 1, "b": {"x": [1, 2], "y": 2}}) == pset_id(
        {"b": {"y": 2, "x": (1, 2)}, "a": 1}
    )
    assert pset_id({"a": 1}) != pset_id({"b": 1})
    assert pset_id({"a": 1, "b": 2}) != pset_id({"a": 2, "b": 1})


def test_object_arrays_hash_their_elements():
    a = np.array([1, "x", None], dtype=object)
    assert same(a, np.array([np.int64(1), "x", None], dtype=object))
    assert not same(a, np.array([1.0, "x", None], dtype=object))


def test_array_hashing_leaves_the_array_untouched():
    a = np.array([np.copysign(np.nan, -1), 1.0])
    before = a.tobytes()
    canonical_bytes(a)
    assert a.tobytes() == before


def test_datetime_scalars_equal_zero_d_arrays():
    t = np.datetime64("2020-01-01", "D")
    assert same(t, np.array(t))
    assert not same(t, np.datetime64("2020-01-01", "s"))


def test_sets_of_strings_do_not_depend_on_iteration_order():
    words = [f"w{i}" for i in range(50)]
    assert same(set(words), set(reversed(words)))  # noqa: C414 - the other insertion order


def test_set_duplicates_after_canonicalisation_count_once():
    assert same({float("nan"), -float("nan")}, {float("nan")})


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="Python < 3.11")
def test_huge_ints_do_not_depend_on_the_digit_limit():
    n = -(7**20000)  # ~16,900 digits, over the default limit of 4,300
    old = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(0)
        text, ident = str(n).encode(), pset_id({"n": n})
        sys.set_int_max_str_digits(640)
        assert canonical_bytes(n) == text
        assert pset_id({"n": n}) == ident
        assert pset_ids([{"n": n}]) == [ident]
    finally:
        sys.set_int_max_str_digits(old)


def test_bulk_accepts_any_iterable_and_any_mapping():
    from types import MappingProxyType

    psets = [{"a": i} for i in range(3)]
    assert pset_ids(iter(psets)) == pset_ids(psets)
    assert pset_ids([]) == []
    assert pset_id(MappingProxyType({"a": 1})) == pset_id({"a": 1})
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in pset_ids(psets))


def test_ragged_key_sets_beyond_the_key_cache():
    psets = [{f"k{i}": i} for i in range(_hashing._KEYS_CACHE_MAX + 10)]
    assert pset_ids(psets) == [slow_id(p) for p in psets]


def test_clear_caches_keeps_ids():
    psets = [{"a": 1, "b": "x"}, {"b": 2.5, "a": None}]
    before = pset_ids(psets)
    _hashing.clear_caches()
    assert pset_ids(psets) == before == [slow_id(p) for p in psets]


# ------------------------------------------------------------ fast / slow path


FAST_CASES = [
    {"a": 1, "b": 0.1, "c": "x", "d": True, "e": None},
    {"only": "\u00e9\u2713\U0001d11e\x00\n'\""},
    {"q": "it's", "r": 'say "hi"', "s": "both ' and \""},
    {},
    {"big": 2**200, "neg": -(2**70), "f": 1e300, "g": 5e-324, "h": float("inf")},
    {"nan": float("nan"), "z": -0.0, "t": False},
    {"b": 1, "a": 2, "_": 3, "A": 4},
]


@pytest.mark.parametrize("pset", FAST_CASES)
def test_fast_path_matches_general_walk(pset):
    assert pset_ids([pset]) == [slow_id(pset)]


def test_fast_path_is_taken_for_plain_psets(monkeypatch):
    def boom(pset):
        raise AssertionError(f"general walk used for {pset}")

    monkeypatch.setattr(_hashing, "_pset_text", boom)
    pset_ids(FAST_CASES)


# ------------------------------------------------------------------- errors


class Foo:
    pass


def test_unsupported_type_names_path_type_and_remedy():
    with pytest.raises(HashingError) as info:
        pset_id({"opts": {"solver": [1, 2, Foo()]}})
    message = str(info.value)
    assert "'opts[\"solver\"][2]'" in message
    assert "of type test_hashing.Foo" in message
    assert "use str, int, float, bool, None" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, PyjouleError)


@pytest.mark.parametrize(
    ("pset", "where", "hint"),
    [
        ({"f": [].append}, "parameter 'f'", "bound method"),  # functions are values
        ({"e": enum.Enum("E", "A").A}, "parameter 'e'", "member.value"),
        ({"d": [__import__("datetime").date(2020, 1, 1)]}, "'d[0]'", "isoformat"),
        ({"m": {Foo(): 1}}, "'m[key ", ""),
        ({"m": {1: [Foo()]}}, "'m[1][0]'", ""),
        ({"s": {Foo()}}, "'s{element}'", ""),
        ({"x": np.array([(1, 2.0)], dtype="i4,f8")}, "'x'", "dtype"),
        ({"x": np.longdouble(1) / 3}, "'x'", "float()"),
        ({"x": np.ma.masked_array([1])}, "'x'", "numpy.asarray"),
        ({"x": Path("a").open}, "'x'", ""),
    ],
)
def test_error_messages(pset, where, hint):
    with pytest.raises(HashingError) as info:
        pset_id(pset)
    assert where in str(info.value)
    assert hint in str(info.value)


def test_errors_outside_a_pset():
    with pytest.raises(HashingError, match="cannot hash value of type test_hashing.Foo"):
        canonical_bytes(Foo())
    with pytest.raises(HashingError, match=r"value at '\[1\]\[0\]'"):
        canonical_bytes([1, [Foo()]])
    with pytest.raises(HashingError, match="a pset is a dict"):
        pset_ids([[("a", 1)]])


def test_self_containing_values_raise():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(HashingError, match="contains itself"):
        pset_id({"loop": loop})


# --------------------------------------------------------------- properties


def normal_form(v):
    """Reference equality of the rules of API §5, written independently of the code."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool):
        return ("atom", repr(v))
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("float", "nan" if math.isnan(v) else v.hex())
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, bytes):
        return ("bytes", v)
    if isinstance(v, (list, tuple)):
        return ("list", tuple(normal_form(x) for x in v))
    if isinstance(v, dict):
        return ("dict", frozenset((normal_form(k), normal_form(x)) for k, x in v.items()))
    if isinstance(v, (set, frozenset)):
        return ("set", frozenset(normal_form(x) for x in v))
    raise AssertionError(type(v))


# A small domain, so that equal-but-differently-built values turn up often.
atoms = st.sampled_from(
    [0, 1, -1, 2**64, 0.0, -0.0, 1.0, 0.5, float("nan"), float("inf"), True, False, None,
     "", "1", "a", "\u00e9", b"", b"1",
     np.int64(1), np.int8(-1), np.float64(1.0), np.float32(0.5), np.bool_(False), np.str_("a")]
)
hashable = st.recursive(
    atoms, lambda c: st.tuples(c, c) | st.frozensets(c, max_size=2), max_leaves=4
)
values = st.recursive(
    atoms | hashable,
    lambda c: st.lists(c, max_size=3)
    | st.tuples(c)
    | st.dictionaries(st.sampled_from(["a", "b", "1"]), c, max_size=2)
    | st.dictionaries(hashable, c, max_size=2)
    | st.frozensets(hashable, max_size=3),
    max_leaves=8,
)
psets = st.dictionaries(st.sampled_from(["a", "b", "x_1"]), values, max_size=3)
tiny_psets = st.dictionaries(st.just("a"), atoms | st.lists(atoms, max_size=1), max_size=1)


def equivalent(v, rnd):
    """An equal value built differently: numpy scalars, tuples, other key orders."""
    t = type(v)
    if t is int and -(2**63) <= v < 2**63 and rnd.random() < 0.5:
        return np.int64(v)
    if t is float and rnd.random() < 0.5:
        return np.float64(v)
    if t is str and rnd.random() < 0.5:
        return np.str_(v)
    if t in (list, tuple):
        items = [equivalent(x, rnd) for x in v]
        return tuple(items) if rnd.random() < 0.5 else items
    if t is dict:
        keys = list(v)
        rnd.shuffle(keys)
        return {k: equivalent(v[k], rnd) for k in keys}
    if t in (set, frozenset):
        return set(v) if rnd.random() < 0.5 else frozenset(v)
    return v


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(psets | tiny_psets, min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_equal_psets_iff_equal_ids(batch, rnd):
    batch = batch + [equivalent(p, rnd) for p in batch[:2]]
    ids = pset_ids(batch)
    forms = [normal_form(p) for p in batch]
    for i in range(len(batch)):
        for j in range(i):
            assert (ids[i] == ids[j]) == (forms[i] == forms[j]), (batch[i], batch[j])


@settings(max_examples=200, deadline=None)
@given(psets, st.randoms(use_true_random=False))
def test_ids_are_stable(pset, rnd):
    first = pset_id(pset)
    assert pset_id(pset) == first
    assert pset_id(copy.deepcopy(pset)) == first
    assert pset_id(pickle.loads(pickle.dumps(pset))) == first
    keys = list(pset)
    rnd.shuffle(keys)
    assert pset_id({k: pset[k] for k in keys}) == first
    assert pset_id(equivalent(pset, rnd)) == first
    assert slow_id(pset) == first


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text()
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=4), scalars, max_size=6))
def test_fast_path_agrees_on_arbitrary_scalars(pset):
    assert pset_ids([pset]) == [slow_id(pset)]
