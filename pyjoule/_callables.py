"""Functions and classes as pset values (API §1): keyed by identity, shown by name.

A user's function or class passed as a value (``method=my_solver``) is keyed like the
experiment function itself (:func:`._identity.identify`: its code and everything of
the user's it reaches), so editing it recomputes what used it. A third-party or
built-in one (``np.sin``, ``math.sqrt``, ``sklearn.linear_model.Ridge``) is keyed by
module, qualified name and its distribution's version. ``functools.partial`` is keyed
by its function, arguments and keywords. The function receives the object itself.
Lambdas are keyed by their bytecode too (two on one line share their source), so a
lambda's key holds within one Python minor version.

In Dataset coordinates and tables a callable is a *label*: its qualified name
(``helpers.drag``; ``drag`` for one of ``__main__`` or a notebook; ``numpy.sin``); for
lambdas and locally defined functions, whose names are not unique, the last part of
the name, ``@`` and 8 hex digits of its key (``<lambda>@1f2e3d4c``, ``inner@..``).

A library's other callable objects count when they are found under their own name in
their module (``np.mean``). Bound methods and other callable instances carry state
that no name describes: they are not valid values.
"""

from __future__ import annotations

import functools
import os
import sys
import types

from . import _caches

__all__ = ["is_value", "label", "token"]

_MEMO_MAX = 256
# id -> (object, token): one pset_ids call hashes the same callable once per pset; the
# object is kept so that its id stays its own while remembered
_memo: dict[int, tuple] = {}
seen = 0  # tokens made in this process: tells a plan that its psets hold callables


def is_value(x) -> bool:
    """Whether ``x`` is a callable that may be a pset value."""
    if isinstance(x, (type, functools.partial)):
        return True
    if isinstance(x, types.BuiltinFunctionType):  # a module's function, not a bound one
        return x.__self__ is None or isinstance(x.__self__, types.ModuleType)
    if isinstance(x, types.FunctionType):
        return True
    return _is_ufunc(x) or _importable(x)


def _importable(x) -> bool:
    """A library's callable found under its own name in its module (``np.mean``, a
    dispatcher object in numpy 2; a jitted function): a global, so its name says it."""
    module, name = getattr(x, "__module__", None), getattr(x, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str) or module not in sys.modules:
        return False
    obj = sys.modules[module]
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj is x


def _is_ufunc(x) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ufunc)


def forget() -> None:
    """Drop what :func:`token` remembers (the user may edit a helper between calls)."""
    _memo.clear()


def token(x, encode) -> str:
    """The canonical text of a callable value (``encode``: the hashing walk, for a
    partial's arguments)."""
    global seen
    seen += 1
    entry = _memo.get(id(x))
    if entry is not None and entry[0] is x:
        return entry[1]
    if isinstance(x, functools.partial):
        text = f"partial({token(x.func, encode)}, {encode(list(x.args))}, " \
               f"{encode(dict(x.keywords))})"
    else:
        text = f"callable({_digest(x)!a})"
    if len(_memo) >= _MEMO_MAX:
        _memo.clear()
    _memo[id(x)] = (x, text)
    return text


def _digest(x) -> str:
    from ._identity import _digest as digest
    from ._identity import _distribution, identify

    module = getattr(x, "__module__", None)
    if not isinstance(module, str):
        module = "numpy" if _is_ufunc(x) else ""
    name = getattr(x, "__qualname__", None) or getattr(x, "__name__", "")
    if _is_user(x, module):
        if getattr(x, "__name__", None) == "<lambda>":
            # two lambdas on one line share their source: their bytecode tells them
            # apart (which ties a lambda's key to the Python minor version)
            from ._identity import _code_digest

            return digest(identify(x).func_id, _code_digest(x.__code__))
        return identify(x).func_id
    top = module.partition(".")[0]
    if not top or top in sys.stdlib_module_names or top == "builtins":
        return digest("library callable", module, name)
    dist, version = _distribution(top)
    return digest("library callable", module, name, dist, version)


def _is_user(x, module: str) -> bool:
    """The user's code (a script, notebook or their own files), not an installed one."""
    from ._identity import _is_library_file

    if isinstance(x, types.FunctionType):
        file = x.__code__.co_filename
    elif isinstance(x, type):
        file = getattr(sys.modules.get(module), "__file__", None)
    else:
        return False
    if module == "__main__":
        return True
    return isinstance(file, str) and os.path.isabs(file) and not _is_library_file(file)


def label(x) -> str:
    """The name a callable value is shown by in coordinates and tables."""
    if isinstance(x, functools.partial):
        return f"partial({label(x.func)})@{_short(token(x, _no_encode))}"
    module = getattr(x, "__module__", None)
    if not isinstance(module, str):
        module = "numpy" if _is_ufunc(x) else ""
    name = getattr(x, "__qualname__", None) or getattr(x, "__name__", None) or repr(x)
    if "<" in name:  # <lambda>, <locals>: names that several objects share
        return name.rpartition(".")[2] + "@" + _short(token(x, _no_encode))
    return name if module in ("", "__main__", "builtins") else f"{module}.{name}"


def _no_encode(value) -> str:
    from ._hashing import canonical_bytes

    return canonical_bytes(value).decode("ascii")


def _short(text: str) -> str:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def recorded(tasks: dict[str, dict], ignore=None) -> dict[str, dict]:
    """The tasks' parameters as the cache records them: without the names in
    ``ignore``, each callable value by its :func:`label` (a string: readable in any
    process, where the object itself might not unpickle)."""
    drop = frozenset(ignore or ())
    out = {}
    for pid, kwargs in tasks.items():
        out[pid] = {k: label(v) if callable(v) and is_value(v) else v
                    for k, v in kwargs.items() if k not in drop}
    return out


def user_modules(kwargs_list) -> tuple[str, ...]:
    """The user's modules (not ``__main__``) that function or class values come from:
    sent by value with the tasks, as a worker elsewhere may not import them."""
    names = set()
    for kwargs in kwargs_list:
        for v in kwargs.values():
            while isinstance(v, functools.partial):
                v = v.func
            if not callable(v) or not is_value(v):
                continue
            module = getattr(v, "__module__", None)
            if isinstance(module, str) and module != "__main__" and module in sys.modules \
                    and _is_user(v, module):
                names.add(module)
    return tuple(sorted(names))


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_memo", _memo)
_caches.declare(__name__, "seen", seen, reset=lambda: globals().update(seen=0))
