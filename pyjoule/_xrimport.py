"""Build Datasets without importing duck-array libraries the process has not imported.

For every array it wraps, xarray asks whether it is a dask, sparse, cupy, pint or cubed
array (``isinstance(data, array_type("dask"))``), and the first such question imports
that library to learn its array class: with dask installed, the first Dataset of a
process imports ``dask.array`` (≈0.5 s, and dask.array imports sparse, hence numba).
An array of a library's class cannot exist before the library is imported, so while
its module is not in ``sys.modules`` the answer "no such class" is exact and costs
nothing. Once the process imports it (the user, or pyjoule for ``sparse=True``),
xarray gets the real answer, and keeps it.

xarray also asks ``dask.base.is_dask_collection`` about every numpy array it wraps
(``is_duck_dask_array``), which imports dask (≈0.08 s) wherever dask is installed; a
dask collection needs dask imported too, so until then the answer is ``False``.

Both deferrals reach into xarray's internals (its cache of duck-array modules, the
function in ``xarray.namedarray.utils``). Where xarray's layout differs (another
version), nothing is deferred: the import is paid, as before.
"""

from __future__ import annotations

import sys

# xarray's name of the library -> the module its array class lives in
DUCK_ARRAY_MODULES = {
    "dask": "dask.array",
    "sparse": "sparse",
    "cupy": "cupy",
    "pint": "pint",
    "cubed": "cubed",
}


class _Deferred:
    """Stands in xarray's duck-array cache for one library until it is imported.

    Only ``type`` is answered without the library: ``()`` while its module is not
    imported. Anything else (its version, its module) loads the real information.
    """

    def __init__(self, name: str, factory):
        self._name, self._factory, self._real = name, factory, None

    def __getattr__(self, attr: str):
        if self._real is None:
            if attr == "type" and DUCK_ARRAY_MODULES[self._name] not in sys.modules:
                return ()
            self._real = self._factory(self._name)
        return getattr(self._real, attr)


def defer_duck_array_imports() -> None:
    """Put a stand-in in xarray's cache for every duck-array library not imported yet,
    and make xarray's dask-collection check import nothing while dask is not imported.

    Cheap (a few dict look-ups), so it is called before building every Dataset.
    """
    try:
        from xarray.namedarray import pycompat, utils
    except ImportError:  # pragma: no cover - another xarray layout: pay the import
        return
    _defer_dask_collection_check(utils)
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    factory = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(cache, dict) or factory is None:  # pragma: no cover
        return
    for name, module in DUCK_ARRAY_MODULES.items():
        if name not in cache and module not in sys.modules:
            cache[name] = _Deferred(name, factory)


def _defer_dask_collection_check(utils) -> None:
    real = getattr(utils, "is_dask_collection", None)
    if not callable(real) or getattr(real, "_pyjoule_deferred", False):
        return

    def is_dask_collection(x: object) -> bool:
        return "dask" in sys.modules and real(x)

    is_dask_collection._pyjoule_deferred = True  # type: ignore[attr-defined]
    is_dask_collection.__doc__ = real.__doc__
    utils.is_dask_collection = is_dask_collection
