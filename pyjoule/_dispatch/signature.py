"""What a function accepts (:class:`Signature`): every pset is checked against it
and completed with the defaults before it is hashed.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from .. import _keying
from .._errors import OptionError


class Signature:
    """What the function accepts: names in order, defaults, whether it has ``**kw``,
    and the arguments named by ``ignore=``: passed to the function, left out of the key."""

    def __init__(self, func: Callable, ignore: Any = ()):
        sig = inspect.signature(func)
        params = sig.parameters.values()
        kinds = inspect.Parameter
        self.names = [p.name for p in params
                      if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
        self.defaults = {p.name: p.default for p in params
                         if p.default is not p.empty and p.name in self.names}
        self.required = [n for n in self.names if n not in self.defaults]
        self.var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params)
        self.func_name = getattr(func, "__name__", "function")
        self.ignore = _keying.ignored_names(ignore, self)
        self._plans: dict[tuple, dict] = {}

    def keyed(self, psets: list[dict]) -> list[dict]:
        """The psets as they are keyed and recorded: without the ignored arguments."""
        if not self.ignore:
            return psets
        drop = self.ignore
        return [{k: v for k, v in p.items() if k not in drop} for p in psets]

    def normalise(self, psets: Sequence[dict]) -> list[dict]:
        """Psets with defaults filled in; unknown or missing arguments raise."""
        out = []
        plans = self._plans
        for i, p in enumerate(psets):
            keys = tuple(p)
            fill = plans.get(keys)
            if fill is None:
                fill = plans[keys] = self._plan(keys, i)
            out.append(p | fill if fill else p)
        return out

    def _plan(self, keys: tuple, index: int) -> dict:
        if not self.var_kw:
            for key in keys:
                if key not in self.names:
                    raise OptionError(self._unknown(key, index))
        missing = [n for n in self.required if n not in keys]
        if missing:
            raise OptionError(
                f"pset {index} lacks required argument(s) {missing} of "
                f"{self.func_name}(); add them to the space or give them defaults")
        return {n: v for n, v in self.defaults.items() if n not in keys}

    def _unknown(self, key: str, index: int) -> str:
        close = difflib.get_close_matches(key, self.names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"pset {index} has key {key!r}, which {self.func_name}() does not accept "
                f"(it takes {self.names}){hint}")
