"""The walk over everything of the user's a function reaches: :func:`identify`."""

from __future__ import annotations

import functools
import os
import sys
import types
from dataclasses import dataclass, field

from .._project import identity_root
from .code import (
    _class_digest,
    _class_memo,
    _code_info,
    _CodeInfo,
    _file_digest,
    _function_locals,
    _member_functions,
    _memo,
)
from .constants import _CONTAINERS, _SCALARS, _digest, _encode, _is_numpy
from .places import (
    _distribution,
    _in_library,
    _is_library_file,
    _is_project_file,
    _module_file,
    module_label,
)

# pyjoule's own version must not invalidate results; the others are not distributions.
_NOT_PACKAGES = frozenset({"", "builtins", "__main__", "pyjoule"})


@dataclass(frozen=True)
class Identity:
    """The identity of a function.

    Attributes
    ----------
    func_id : str
        32 lowercase hex characters; equal ids mean interchangeable results.
    name : str
        Qualified name of the function, e.g. ``"simulate"``.
    modules : tuple of str
        The user's modules (not ``__main__``) whose code `func_id` covers.
    components : dict of str to str
        What went into `func_id`, label -> digest or version, e.g. ``{"function
        simulate": "ab12..", "constant G": "..", "package numpy": "2.4.6"}``. The
        first entry is the function itself. With ``version=``: ``{"version": "v1"}``.
    """

    func_id: str
    name: str
    components: dict[str, str] = field(default_factory=dict)
    #: the user's modules (other than ``__main__``) whose code the identity covers:
    #: they travel to the workers by value, so workers run the code identified here
    modules: tuple[str, ...] = field(default=(), compare=False)

    def __hash__(self) -> int:  # the generated hash would fail on the dict
        return hash(self.func_id)


class _Walker:
    """Collects the components of one identity; `seen` makes cycles terminate."""

    def __init__(self, top_module, root: str):
        self.top_module, self.root = top_module, root
        self.components: dict[str, str] = {}
        self.seen: set = set()
        self.alive: list = []  # keeps walked objects alive so that ids stay unique
        self.modules: set[str] = set()  # user modules whose loaded code is covered
        self.fallback = False

    def first_visit(self, obj, key=None) -> bool:
        key = id(obj) if key is None else key
        if key in self.seen:
            return False
        self.seen.add(key)
        self.alive.append(obj)
        return True

    def add(self, kind: str, module, name: str, digest: str) -> None:
        label = f"{kind} {name}" if module in (None, self.top_module) else f"{kind} {module}.{name}"
        base, n = label, 1
        while self.components.get(label, digest) != digest:  # two things, one name
            n += 1
            label = f"{base} ({n})"
        self.components[label] = digest

    def _user_module(self, name) -> None:
        if isinstance(name, str) and name != "__main__" and name in sys.modules:
            self.modules.add(name)

    def is_user(self, module_name, path=None) -> bool:
        """Whether a module holds the user's code (see `identify`)."""
        if module_name == "__main__" or (module_name is None and self.top_module is None):
            return True  # a script, a notebook, or code exec'd beside the function
        if isinstance(module_name, str):
            path = getattr(sys.modules.get(module_name), "__file__", None) or path
        if not isinstance(path, str) or not os.path.isabs(path):
            return False
        if module_name == self.top_module:  # the function's own module, wherever it is
            return not _is_library_file(path)
        return _is_project_file(path, self.root)

    def package(self, module_name) -> None:
        top = module_name.partition(".")[0] if isinstance(module_name, str) else ""
        if top in _NOT_PACKAGES or top in sys.stdlib_module_names or self.is_user(module_name):
            return
        dist, version = _distribution(top)
        self.components[f"package {dist}"] = version

    def value(self, name: str, value, module, names) -> None:
        """Cover `value`, found under `name` in `module`'s globals (``""``: a local)."""
        if isinstance(value, types.ModuleType):
            self.module(value, names)
        elif isinstance(value, type):
            self.klass(value)
        elif isinstance(value, types.FunctionType):
            user = self.is_user(value.__module__, value.__code__.co_filename)
            if user and not _in_library(value):
                self.function(value)
            else:
                self.package(value.__module__)
        elif isinstance(value, types.MethodType):
            self.value(name, value.__func__, module, names)
            self.value(name and f"{name}.__self__", value.__self__, module, names)
        elif isinstance(value, functools.partial):
            self.value(name, (value.args, value.keywords), module, names)
            self.value(name, value.func, module, names)
        elif type(value) in _SCALARS or type(value) in _CONTAINERS or _is_numpy(value):
            self.constant(name, value, module, names)
        else:
            self.instance(name, value, module, names)

    def constant(self, name: str, value, module, names) -> None:
        refs: list = []
        text = _encode(value, refs)
        if text is None:  # too deep, or an object array: cover its type only
            return self.instance("", value, module, names)
        if name:  # a local's value is folded into its function's digest instead
            self.add("constant", module, name, _digest(text))
        for ref in refs:
            self.value("", ref, None, names)

    def instance(self, name: str, value, module, names) -> None:
        """A callable wrapper (lru_cache, numba, pyjoule's own) or any other object."""
        for attr in ("__wrapped__", "py_func", "func"):
            try:
                inner = getattr(value, attr, None)
            except Exception:  # noqa: BLE001 - properties of arbitrary objects may raise anything
                continue
            if isinstance(inner, (types.FunctionType, types.MethodType, functools.partial)):
                self.value("", inner, None, names)
                break
        self.klass(type(value))
        self.package(getattr(value, "__module__", None))  # a ufunc's is numpy's
        state = getattr(value, "__dict__", None)
        if isinstance(state, dict) and self.is_user(type(value).__module__):
            self.constant(name, state, module, names)  # `MODEL = Model(k=3)`: k counts

    def function(self, func: types.FunctionType) -> None:
        if not self.first_visit(func):
            return
        info = _code_info(func)
        self.fallback |= info.fallback
        self._user_module(func.__module__)
        refs: list = []
        folded = _function_locals(func, refs)
        self.add("function", func.__module__, func.__qualname__, _digest(info.digest, *folded))
        for ref in refs:
            self.value("", ref, None, info.names)
        self.references(func, info)

    def references(self, func: types.FunctionType, info: _CodeInfo) -> None:
        namespace = func.__globals__
        for name in info.names:
            if name in namespace:  # the others are builtins, attributes or locals
                self.value(name, namespace[name], func.__module__, info.names)
        for name, level in info.imports:
            self.imported(name, level, namespace)

    def klass(self, klass: type) -> None:
        if not self.first_visit(klass):
            return
        if not self.is_user(klass.__module__):
            return self.package(klass.__module__)
        self._user_module(klass.__module__)
        digest, fallback = _memo(_class_memo, klass, _class_digest)
        self.fallback |= fallback
        refs: list = []
        texts, methods = [], []
        for key, member in vars(klass).items():
            funcs = _member_functions(member)
            if funcs is None and not key.startswith("__"):
                texts.append(f"{key}={_encode(member, refs)}")  # class-level constants
            for func in funcs or ():
                if _in_library(func):  # e.g. dataclass's repr wrapper: in the source
                    continue
                if func.__qualname__.startswith(klass.__qualname__ + "."):
                    texts += _function_locals(func, refs)
                    methods.append(func)
                else:  # assigned from elsewhere, so not in the class's source
                    refs.append(func)
        self.add("class", klass.__module__, klass.__qualname__, _digest(digest, *texts))
        for ref in (*klass.__bases__, *refs):
            self.value("", ref, None, ())
        for func in methods:
            self.references(func, _code_info(func))

    def module(self, module: types.ModuleType, names) -> None:
        if not self.is_user(module.__name__, getattr(module, "__file__", None)):
            return self.package(module.__name__)
        # `import helpers; helpers.drag()`: cover the module's names that the code uses
        self._user_module(module.__name__)
        if self.first_visit(module, key=(id(module), id(names))):
            namespace = vars(module)
            for name in names:
                if name in namespace:
                    self.value(name, namespace[name], module.__name__, names)

    def imported(self, name: str, level: int, namespace: dict) -> None:
        """A module imported in the function body: a user module by its whole file.

        The file, not the module's contents, so that the identity is the same before
        and after the function first ran (and imported it) in this process.
        """
        import importlib.util

        try:
            full = importlib.util.resolve_name("." * level + name, namespace.get("__package__"))
        except (ImportError, ValueError):
            return
        if full.partition(".")[0] in sys.stdlib_module_names:
            return
        file = _module_file(full)
        if isinstance(file, str) and os.path.isabs(file) and _is_project_file(file, self.root):
            self.add("module", None, full, _file_digest(file, os.stat(file).st_mtime_ns))
        else:
            self.package(full)


def _unwrap(func):
    """Look through decorators (``__wrapped__``) and pyjoule's wrapper (``.func``)."""
    for _ in range(100):  # bounded: some objects (mocks) invent every attribute
        try:
            inner = getattr(func, "__wrapped__", None)
            if inner is None and not isinstance(func, (types.FunctionType, functools.partial)):
                inner = getattr(func, "func", None)
        except Exception:  # noqa: BLE001 - a wrapper's attributes may raise anything: not unwrapped
            return func
        if not callable(inner):
            return func
        func = inner
    return func


def identify(
    func, version: str | None = None, project_root: str | os.PathLike | None = None
) -> Identity:
    """The identity of `func`: its code and everything of the user's it reaches.

    User code is what lives in ``__main__`` (a script or a notebook), in the
    function's own module, or in a module whose file is under `project_root` and
    outside site-packages and virtualenvs. Followed: global functions, classes
    (all methods, class-level constants) and constants the code names, also as
    attributes of user modules (``helpers.drag``); defaults, closures, nested code
    and modules imported in the body. Anything else is covered by its distribution's
    name and version; the standard library is ignored.

    Parameters
    ----------
    func : callable
        The function; decorators that set ``__wrapped__`` are looked through.
    version : str, optional
        Pins the identity to ``(name, version)``; the code is not looked at.
    project_root : str or path-like, optional
        Default: the project of the function's file (nearest ancestor holding
        ``pyproject.toml`` or ``.git`` that is the user's own), else that file's
        folder; for a notebook's function, the notebook's folder. Never the cwd,
        unless no file says where the code is (``python -c``).

    Returns
    -------
    Identity

    Examples
    --------
    >>> def area(r):
    ...     return 3.14159 * r * r
    >>> ident = identify(area)
    >>> len(ident.func_id), ident.name, list(ident.components)
    (32, 'area', ['function area'])
    >>> identify(area, version="v1").components
    {'version': 'v1'}
    """
    func = _unwrap(func)
    name = getattr(func, "__qualname__", None)
    name = name if isinstance(name, str) else type(func).__qualname__
    if project_root is None:  # the project of the function's file, not of the cwd
        root = identity_root(func)
    else:
        root = os.path.realpath(os.fspath(project_root))
    if version is not None:  # pinned to the function's full name: two scripts' ``f``
        full = f"{module_label(getattr(func, '__module__', None), root)}.{name}"
        return Identity(_digest("version 2", full, str(version)), name,
                        {"version": str(version)})
    walker = _Walker(getattr(func, "__module__", None), root)
    if isinstance(func, types.FunctionType):
        walker.function(func)
    else:
        walker.value(name, func, walker.top_module, ())
    if walker.fallback:  # bytecode compares only within one Python minor version
        walker.components["python"] = "{}.{}".format(*sys.version_info[:2])
    parts = [f"{label}={value}" for label, value in sorted(walker.components.items())]
    return Identity(_digest("pyjoule identity 1", name, *parts), name, walker.components,
                    tuple(sorted(walker.modules)))
