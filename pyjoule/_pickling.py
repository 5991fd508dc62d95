"""Pickling the function for a worker so that its tracebacks name the user's files.

cloudpickle 3.1.3 writes every code object it pickles by value with the file name
``<dynamic-code>`` (to make its output the same wherever a function is defined), so a
failure in a worker showed ``File "<dynamic-code>"`` with no path, line or source.
pyjoule's own pickler sends code objects with :mod:`marshal` instead: the code
object as compiled, file name and line table included. Worker and caller run the
same Python minor (cloudpickle needs that anyway), so marshal's format agrees; the
function's globals, closure and defaults are still pickled by cloudpickle, which
reads them from the function, not from its code object.
"""

from __future__ import annotations

import copyreg
import io
import marshal
import types
from collections import ChainMap

from . import _caches


def _reduce_code(code: types.CodeType):
    return marshal.loads, (marshal.dumps(code),)


_PICKLER = None


def _pickler():
    """cloudpickle's Pickler with code objects sent by marshal (made once)."""
    global _PICKLER
    if _PICKLER is None:
        import cloudpickle

        class _Pickler(cloudpickle.Pickler):
            dispatch_table = ChainMap({types.CodeType: _reduce_code},  # noqa: RUF012 - pickle's hook
                                      getattr(cloudpickle.Pickler, "dispatch_table",
                                              copyreg.dispatch_table))

        _PICKLER = _Pickler
    return _PICKLER


def dumps(obj, protocol: int = 5) -> bytes:
    """``cloudpickle.dumps(obj)``, keeping code objects' file names and lines."""
    with io.BytesIO() as buf:
        _pickler()(buf, protocol=protocol).dump(obj)
        return buf.getvalue()


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_PICKLER", _PICKLER, reset=lambda: globals().update(_PICKLER=None))
