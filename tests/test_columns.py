"""Columns (pyjoule._columns): building, taking, concatenating and reading back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyjoule import _columns as C
from pyjoule._columns import MISSING


def same(a, b) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def same_list(a, b) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def equivalent(a, b) -> bool:
    """Like ``same``, but an int may come back as the equal float (numeric columns
    widen ints mixed with floats); a bool must stay a bool."""
    numbers = (int, float, np.integer, np.floating)
    floats = (float, np.floating)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, (bool, np.bool_)) and not isinstance(b, (bool, np.bool_))
            and (isinstance(a, floats) or isinstance(b, floats))):
        return (math.isnan(a) and math.isnan(b)) or float(a) == float(b)
    return same(a, b)


@pytest.mark.parametrize("values, kind", [
    ([1, 2, 3], "num"),
    ([1.5, float("nan"), -0.0], "num"),
    ([True, False], "num"),
    (["a", "b", "a"], "cat"),
    ([np.zeros(3), np.ones(3)], "arr"),
    ([np.zeros(3), np.ones(2)], "obj"),
    ([1, "a", None], "obj"),
    ([True, 1], "obj"),
    ([2**70, 1], "obj"),
])
def test_build_kind_and_round_trip(values, kind):
    col = C.build(values)
    assert col[0] == kind
    back = C.to_objects(col)
    assert len(back) == len(values)
    for got, want in zip(back, values):
        if isinstance(want, np.ndarray):
            assert np.array_equal(got, want)
        elif isinstance(want, float) and math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want and type(got) is type(want)


@pytest.mark.parametrize("values", [
    [1, MISSING, 3], ["a", MISSING, "b"], [np.ones(2), MISSING], [MISSING, None],
    [MISSING, MISSING],
])
def test_missing_rows_stay_missing(values):
    col = C.build(values)
    present = C.present(col)
    assert present.tolist() == [v is not MISSING for v in values]
    back = C.to_objects(col)
    assert [v is MISSING for v in back] == [v is MISSING for v in values]


def test_to_array_fills_missing_with_nan():
    arr = C.to_array(C.build([1, MISSING, 3]))
    assert arr.dtype == np.float64
    assert arr[0] == 1 and math.isnan(arr[1]) and arr[2] == 3
    assert C.to_array(C.build([1, 2])).dtype == np.int64
    cat = C.to_array(C.build(["x", MISSING]), fill=None)
    assert cat.tolist() == ["x", None]


def test_take_picks_rows():
    col = C.build(["a", "b", MISSING, "c"])
    got = C.take(col, np.array([3, 2, 0]))
    assert C.to_objects(got) == ["c", MISSING, "a"]
    obj = C.build([1, "x", None])
    assert C.to_objects(C.take(obj, np.array([2, 0]))) == [None, 1]


_scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
    st.just(MISSING),
    st.builds(lambda n: np.arange(2, dtype=np.float64) * n, st.integers(-5, 5)),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_scalars, min_size=1, max_size=5), min_size=1, max_size=4))
def test_concat_of_parts_equals_build_of_all(parts):
    """What a read gives must not depend on how results were split into segments."""
    whole = [v for part in parts for v in part]
    joined = C.to_objects(C.concat([C.build(p) for p in parts]))
    built = C.to_objects(C.build(whole))
    assert len(joined) == len(built) == len(whole)
    assert all(equivalent(x, y) for x, y in zip(joined, built)), (joined, built)
    assert all(equivalent(x, y) for x, y in zip(joined, whole)), (joined, whole)


def test_concat_of_int_and_bool_segments_keeps_bools():
    joined = C.concat([C.build([1, 2]), C.build([True, False])])
    assert same_list(C.to_objects(joined), [1, 2, True, False])
