"""What a value that cannot be hashed is, and where in the pset it sits: the text of
:class:`~pyjoule._errors.HashingError` for :mod:`._hashing` (``parameter 'opts["solver"][2]'
of type Foo: use ...; hint``)."""

from __future__ import annotations

from typing import Any

from ._errors import HashingError

_USE = (
    "use str, int, float, bool, None, lists, tuples, dicts, sets, bytes, "
    "numpy scalars or arrays, functions or classes"
)


class _Key:
    """Path step for a dict key that itself failed to hash."""

    def __init__(self, key: Any):
        self.key = key


class _Elem:
    """Path step for a set element."""


_HINTS = {
    "enum": "pass member.value or member.name instead",
    "datetime": "pass an ISO string from .isoformat() instead",
    "decimal": "pass str(x) or float(x) instead",
    "fractions": "pass str(x) or float(x) instead",
}


def _unsupported(x: Any, path: Any, hint: str = "") -> HashingError:
    for cls in type(x).__mro__:
        hint = hint or _HINTS.get(cls.__module__, "")
    if callable(x) and not hint:
        hint = ("a bound method or callable object carries state no name describes: "
                "pass the function or class itself, or a name (str) to look up inside "
                "your function")
    tail = f"; {hint}" if hint else ""
    return HashingError(f"cannot hash {_where(path)} of type {_type_name(x)}: {_USE}{tail}")


def _type_name(x: Any) -> str:
    t = type(x)
    if t.__module__ in ("builtins", "__main__"):
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def _where(path: Any) -> str:
    """Render a linked path: ``parameter 'opts["solver"][2]'`` or ``value at '[1]'``."""
    steps = []
    while path:
        path, step = path
        steps.append(step)
    steps.reverse()
    in_pset = path == ()
    if not steps:
        return "pset" if in_pset else "value"
    if in_pset and type(steps[0]) is str:  # the parameter's own name goes bare
        text = steps[0] + "".join(map(_step_text, steps[1:]))
    else:
        text = "".join(map(_step_text, steps))
    return f"parameter '{text}'" if in_pset else f"value at '{text}'"


def _step_text(step: Any) -> str:
    if isinstance(step, _Key):
        return f"[key {step.key!r}]"
    if isinstance(step, _Elem):
        return "{element}"
    if isinstance(step, str):
        return '["' + step.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return f"[{step!r}]"
