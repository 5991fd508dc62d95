"""What is sent to a worker: the function and the tasks, pickled (by value where the
user's code is concerned) and written into the run directory.
"""

from __future__ import annotations

import inspect
import io
import pickle
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import _callables, _pickling
from .._errors import SerializationError
from .._rundir import RunDir


def _tasks_blob(tasks: list, by_value: Sequence[str] = ()) -> bytes:
    """Tasks whose values include the user's functions or objects, for the worker:
    pickled by value, as the function is."""
    modules = _callables.user_modules(kwargs for _, kwargs in tasks)
    return pickle_function(None, tasks, (*by_value, *modules), what="the psets' values")


def pickle_function(func: Callable | None, payload: Any, by_value: Sequence[str] = (),
                    what: str | None = None) -> bytes:
    """cloudpickle the payload, naming the offending global when that fails.

    The modules ``by_value`` (the user's, as the identity found them) are pickled by
    value: a worker runs the code this process has loaded and identified, not what
    the file holds now (a notebook's helper module edited without a reload would
    otherwise compute new results under the old identity)."""
    import cloudpickle

    registered = []
    try:
        for name in by_value:
            module = sys.modules.get(name)
            if module is None or name in cloudpickle.list_registry_pickle_by_value():
                continue
            cloudpickle.register_pickle_by_value(module)
            registered.append(module)
        return _pickling.dumps(payload, protocol=5)  # code keeps its file names
    except Exception as exc:
        culprit = _unpicklable_global(func) if func is not None else None
        where = f": the global {culprit!r} it uses cannot be pickled" if culprit else ""
        what = what or repr(getattr(func, '__name__', func))
        raise SerializationError(
            f"cannot send {what} to a worker{where} ({exc}). "
            "Create such objects inside the function, or pass what they need as "
            "parameters.") from exc
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def _unpicklable_global(func: Callable) -> str | None:
    import cloudpickle

    code = getattr(func, "__code__", None)
    if code is None:
        return None
    names = set(code.co_names)
    stack = [c for c in code.co_consts if inspect.iscode(c)]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(x for x in c.co_consts if inspect.iscode(x))
    candidates = {n: func.__globals__[n] for n in names if n in func.__globals__}
    for i, cell in enumerate(func.__closure__ or ()):
        candidates[code.co_freevars[i]] = cell.cell_contents
    for name, value in candidates.items():
        try:
            cloudpickle.dumps(value)
        except Exception:  # noqa: BLE001
            return name
    return None


_PLAIN = frozenset({str, int, float, bool, type(None)})


def plain_values(psets: Iterable[dict]) -> bool:
    """Whether every value of every pset is a str, int, float, bool or None (exactly:
    no subclass): nothing in them can be shared, so :func:`_write` may pickle them
    without a memo (``flat``)."""
    plain = _PLAIN.issuperset
    return all(plain(map(type, p.values())) for p in psets)


def _write(rd: RunDir, name: str, data, flat: bool = False) -> str:
    """Write the file ``name`` of ``rd`` (``data``: bytes, or an object to pickle);
    returns ``name``. A full disk is a ``CacheError`` naming the file, as the store's
    own writes are.

    ``flat``: ``data`` holds containers of plain values only (:func:`plain_values`),
    none of them twice, so it is pickled without a memo: the memo of a million psets'
    objects is a hash table of millions of entries, 1.7 s of a 1,000,000-pset call's
    2 s of pickling its tasks (the bytes read back are the same objects)."""
    from .._private import disk_full

    if not isinstance(data, bytes):
        if flat:
            out = io.BytesIO()
            pickler = pickle.Pickler(out, protocol=5)
            pickler.fast = True  # no memo (a cycle would raise, never loop)
            pickler.dump(data)
            data = out.getvalue()
        else:
            data = pickle.dumps(data, protocol=5)
    try:
        rd.write(name, data)
    except OSError as exc:
        raise disk_full(exc, rd.join(name)) from exc
    return name
