"""What a pset's key leaves out, and what a call collapses (API §1, §2 ``ignore``).

``ignore=[names]`` names arguments that are passed to the function but are not part of
its key, of the Dataset's dimensions or of the table's parameter columns (as
``joblib.Memory(ignore=...)``). Psets equal once those are left out, like any
duplicates in one call, run once: :func:`warn_duplicates` says so, once, at the
user's line.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

from . import _callables, _hashing
from ._errors import HashingError, OptionError


def ignored_names(ignore: Any, sig) -> frozenset:
    """Check ``ignore=`` at decoration: names of the function's parameters."""
    if isinstance(ignore, str):
        ignore = [ignore]
    if not isinstance(ignore, (list, tuple, set, frozenset)) or not all(
            isinstance(n, str) for n in ignore):
        raise OptionError(f"option ignore={ignore!r} is not valid: expected a list of "
                          f"argument names of {sig.func_name}(), e.g. ignore=['verbose']")
    for name in ignore:
        if name not in sig.names and not sig.var_kw:
            close = difflib.get_close_matches(name, sig.names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise OptionError(f"ignore={list(ignore)!r}: {sig.func_name}() has no argument "
                              f"{name!r} (it takes {sig.names}){hint}")
    return frozenset(ignore)


def warn_duplicates(n: int, n_unique: int, calls: list[dict], signature) -> None:
    """One warning for the psets a call collapsed (API §1), at the user's line."""
    from ._identity import user_stacklevel

    what = ""
    if signature.ignore:  # how many differ only in what ``ignore=`` leaves out
        names = sorted(signature.ignore)
        try:
            n_full = len(set(_hashing.pset_ids(calls)))
        except HashingError:  # ignored values need not be hashable: cannot count
            what = f" (some may differ only in the ignored argument(s) {names}"
        else:
            if n_full > n_unique:
                what = (f" ({n_full - n_unique} of them differ only in the ignored "
                        f"argument(s) {names}")
        what += ": each ran with the first one's values)" if what else ""
    warnings.warn(
        f"{n - n_unique} of the {n} psets repeat an earlier pset of this call and were "
        f"collapsed{what}: each distinct pset runs once (results are cached by pset). "
        "To repeat a computation, put the repetitions on an axis of their own, e.g. "
        "pj.grid(..., seed=range(10)) or rep=range(10)",
        UserWarning, stacklevel=user_stacklevel())


def request(plan_) -> tuple[list, list]:
    """What ``pj.attach`` builds a run's Dataset from: ids and psets, callables by label."""
    if not plan_.by_value:
        return plan_.ids, plan_.psets
    recorded = _callables.recorded(dict(enumerate(plan_.psets)))
    return plan_.ids, list(recorded.values())
