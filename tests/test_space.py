"""Parameter spaces (API §1): grid, zip, star, product, unions and as_psets."""

from __future__ import annotations

import builtins
from collections import OrderedDict
from types import MappingProxyType

import numpy as np
import pytest

from pyjoule import _space
from pyjoule._errors import OptionError, PyjouleError, SpaceError
from pyjoule._space import Space, as_psets, grid, product, star
from pyjoule._space import zip as pzip

# ----------------------------------------------------------------------- grid


def test_grid_is_a_cartesian_product_first_key_slowest():
    assert grid(a=[1, 2], b=["x", "y"]) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert isinstance(grid(a=[1]), Space)


def test_grid_scalars_are_constant_axes():
    assert grid(method="EnKF", N=[10, 20]) == [
        {"method": "EnKF", "N": 10},
        {"method": "EnKF", "N": 20},
    ]


@pytest.mark.parametrize("scalar", ["abc", b"abc", {"k": 1}, 3, 2.5, None, True, np.float64(1.5)])
def test_grid_does_not_iterate_scalars(scalar):
    (pset,) = grid(x=scalar)
    assert pset["x"] == scalar


def test_grid_axis_kinds():
    assert grid(x=range(3)) == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert grid(x=(1, 2)) == [{"x": 1}, {"x": 2}]
    assert grid(x=(i * i for i in range(3))) == [{"x": 0}, {"x": 1}, {"x": 4}]
    assert grid(x={"b", "a", "c"}) == [{"x": "a"}, {"x": "b"}, {"x": "c"}]
    assert grid(x=[[64, 64]]) == [{"x": [64, 64]}]  # wrap a list to hold it constant


def test_grid_numpy_axes_become_plain_python():
    space = grid(x=np.linspace(0, 1, 3), n=np.arange(2), s=np.array(["a"]))
    assert space[0] == {"x": 0.0, "n": 0, "s": "a"}
    assert {type(v) for p in space for v in p.values()} == {float, int, str}
    space = grid(x=[np.int64(3), np.float32(0.5), np.bool_(True)])
    assert [type(p["x"]) for p in space] == [int, float, bool]


def test_grid_numpy_scalars_and_zero_d_arrays_are_scalars():
    assert grid(x=np.float64(2.0)) == [{"x": 2.0}]
    assert type(grid(x=np.array(3))[0]["x"]) is int


def test_grid_two_d_arrays_give_rows():
    space = grid(v=np.eye(2))
    assert len(space) == 2
    assert isinstance(space[0]["v"], np.ndarray)
    np.testing.assert_array_equal(space[1]["v"], [0.0, 1.0])


def test_grid_keeps_values_it_cannot_make_plain():
    (pset,) = grid(t=np.array(["2020-01-01"], dtype="datetime64[D]"))
    assert isinstance(pset["t"], np.datetime64)


def test_grid_empty_axis_gives_empty_space():
    assert grid(a=[1, 2], b=[]) == []
    assert grid(a=np.array([])) == []


def test_grid_without_axes_is_one_empty_pset():
    assert grid() == [{}]


# ------------------------------------------------------------------------ zip


def test_zip_varies_axes_together():
    assert pzip(a=[1, 2], b=["x", "y"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert isinstance(pzip(a=[1]), Space)


def test_zip_broadcasts_scalars():
    assert pzip(a=[1, 2], method="PF") == [
        {"a": 1, "method": "PF"},
        {"a": 2, "method": "PF"},
    ]
    assert pzip(a=1, b="x") == [{"a": 1, "b": "x"}]


def test_zip_unequal_lengths_name_each_length():
    with pytest.raises(SpaceError) as info:
        pzip(a=[1, 2], b=[1, 2, 3], c="const")
    message = str(info.value)
    assert "a=2" in message and "b=3" in message and "c=" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, PyjouleError)


def test_zip_empty_axes():
    assert pzip(a=[], b=[]) == []
    assert pzip() == [{}]


def test_zip_numpy_axes():
    assert pzip(a=np.arange(2), b=np.array([0.5, 1.5])) == [
        {"a": 0, "b": 0.5},
        {"a": 1, "b": 1.5},
    ]


def test_module_zip_does_not_shadow_builtin_inside_module():
    assert _space._zip is builtins.zip
    assert builtins.zip is not pzip


# ----------------------------------------------------------------------- star


def test_star_centre_once_then_one_key_at_a_time():
    center = {"a": 1, "b": "x", "c": 0.5}
    assert star(center, a=[0, 1, 2], b=["x", "y"]) == [
        {"a": 1, "b": "x", "c": 0.5},
        {"a": 0, "b": "x", "c": 0.5},
        {"a": 2, "b": "x", "c": 0.5},
        {"a": 1, "b": "y", "c": 0.5},
    ]


def test_star_compares_like_the_cache():
    # 1.0 is a different pset value from 1; np.int64(1) is the same.
    assert star({"a": 1}, a=[np.int64(1), 1.0]) == [{"a": 1}, {"a": 1.0}]


def test_star_without_axes_and_with_scalar_axis():
    assert star({"a": 1}) == [{"a": 1}]
    assert star({"a": 1}, a=2) == [{"a": 1}, {"a": 2}]


def test_star_does_not_modify_center():
    center = {"a": 1}
    star(center, a=[2])
    assert center == {"a": 1}


def test_star_key_missing_from_center():
    with pytest.raises(SpaceError, match="'b' not in center"):
        star({"a": 1}, b=[1, 2])


def test_star_center_must_be_a_dict():
    with pytest.raises(OptionError, match="center must be a dict"):
        star([("a", 1)], a=[2])


def test_star_with_unhashable_values_still_builds():
    marker = object()
    assert len(star({"a": marker}, a=[marker, object()])) == 2


# -------------------------------------------------------------------- product


def test_product_merges_first_space_slowest():
    space = product(pzip(a=[1, 2], b=[3, 4]), grid(c=["x", "y"]))
    assert space == [
        {"a": 1, "b": 3, "c": "x"},
        {"a": 1, "b": 3, "c": "y"},
        {"a": 2, "b": 4, "c": "x"},
        {"a": 2, "b": 4, "c": "y"},
    ]
    assert isinstance(space, Space)


def test_product_accepts_dicts_lists_and_generators():
    space = product({"seed": 0}, [{"a": 1}, {"a": 2}], ({"b": b} for b in "xy"))
    assert space == [
        {"seed": 0, "a": 1, "b": "x"},
        {"seed": 0, "a": 1, "b": "y"},
        {"seed": 0, "a": 2, "b": "x"},
        {"seed": 0, "a": 2, "b": "y"},
    ]


def test_product_key_overlap_names_the_key():
    with pytest.raises(SpaceError, match="'b' is in space 0 and in space 2"):
        product(grid(a=[1], b=[2]), {"c": 3}, [{"d": 1}, {"b": 5}])


def test_product_edge_cases():
    assert product() == [{}]
    assert product(grid(a=[1, 2]), []) == []
    assert product(grid(a=[1, 2])) == [{"a": 1}, {"a": 2}]


def test_product_rejects_non_spaces():
    with pytest.raises(OptionError, match="space 1"):
        product(grid(a=[1]), "b")
    with pytest.raises(OptionError, match="pset 0 is of type int"):
        product([1])


# ---------------------------------------------------------------------- union


def test_union_of_spaces_in_order():
    enkf = grid(method="EnKF", infl=[1.0, 1.1])
    pf = grid(method="PF", particles=[100])
    union = enkf + pf
    assert isinstance(union, Space)
    assert union == [
        {"method": "EnKF", "infl": 1.0},
        {"method": "EnKF", "infl": 1.1},
        {"method": "PF", "particles": 100},
    ]
    assert len(enkf) == 2  # operands are untouched


def test_union_with_plain_lists_either_side():
    s = grid(a=[1])
    assert isinstance(s + [{"a": 2}], Space)
    assert isinstance([{"a": 0}] + s, Space)
    assert [{"a": 0}] + s == [{"a": 0}, {"a": 1}]
    assert isinstance(({"a": 0},) + s, Space)


def test_union_keeps_duplicates_and_refuses_non_lists():
    s = grid(a=[1])
    assert s + s == [{"a": 1}, {"a": 1}]
    with pytest.raises(TypeError):
        s + {"a": 2}


def test_space_slicing_and_repr():
    s = grid(a=[1, 2, 3])
    assert isinstance(s[:2], Space) and s[0] == {"a": 1}
    assert isinstance(s.copy(), Space)
    assert repr(Space([{"a": 1}])) == "Space([{'a': 1}])"


# ------------------------------------------------------------------- as_psets


def test_as_psets_accepts_every_kind_of_space():
    psets = [{"a": 1}, {"a": 2}]
    assert as_psets(Space(psets)) == psets
    assert as_psets(psets) == psets
    assert as_psets(tuple(psets)) == psets
    assert as_psets(p for p in psets) == psets
    assert as_psets({"a": 1}) == [{"a": 1}]
    assert as_psets([]) == []


def test_as_psets_returns_plain_dicts_without_copying_them():
    d = {"a": 1}
    out = as_psets([d, OrderedDict(b=2), MappingProxyType({"c": 3})])
    assert out[0] is d
    assert [type(p) for p in out] == [dict, dict, dict]
    assert type(out) is list


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ([{"a": 1}, {"not valid": 2}], "pset 1: key 'not valid' is not a valid Python identifier"),
        ([{"lambda": 1}], "pset 0: key 'lambda' is a Python keyword"),
        ([{"a": 1}, {1: 2}], "pset 1: key 1 is of type int, not str"),
        ([{"a": 1}, {"a": 1}, [("a", 1)]], "pset 2 is of type list, not a dict"),
        ("abc", "expected a space"),
        (None, "expected a space"),
        (5, "expected a space"),
    ],
)
def test_as_psets_errors(space, match):
    with pytest.raises(OptionError, match=match) as info:
        as_psets(space)
    assert isinstance(info.value, TypeError)


def test_as_psets_checks_each_distinct_key_tuple():
    # Same keys in another order are another tuple, and still checked.
    with pytest.raises(OptionError, match="pset 1"):
        as_psets([{"a": 1, "b": 2}, {"b": 2, "a": 1, "c d": 3}])
    assert as_psets([{"match": 1, "_": 2, "type": 3}]) == [{"match": 1, "_": 2, "type": 3}]
