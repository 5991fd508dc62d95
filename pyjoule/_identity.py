"""Function identity: one hash for a function and everything of the user's it reaches.

Half of every cache key (API section 5). Code is hashed through its normalised AST, so
comments, docstrings, formatting and position in the file do not count; bytecode is the
fallback when there is no source. The user's helpers, classes and global constants are
followed; third-party code is covered by distribution name and version only.
"""

from __future__ import annotations

import ast
import dis
import functools
import hashlib
import inspect
import os
import sys
import textwrap
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ._project import identity_root, notebook_path

__all__ = ["Identity", "describe_change", "identify"]

_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS = (tuple, list, set, frozenset, dict)
# pyjoule's own version must not invalidate results; the others are not distributions.
_NOT_PACKAGES = frozenset({"", "builtins", "__main__", "pyjoule"})
_THIRD_PARTY_DIRS = frozenset({"site-packages", "dist-packages"})
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORT_NAME = dis.opmap["IMPORT_NAME"]
_MAX_DEPTH = 32  # deeper (or self-containing) containers are not treated as constants
_MEMO_SIZE = 4096


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


class _CodeInfo(NamedTuple):
    digest: str
    fallback: bool  # digest of bytecode, which differs between Python versions
    names: tuple[str, ...]  # co_names of the code and all nested code objects
    imports: tuple[tuple[str, int], ...]  # (module, level) imported in the body


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")  # ("ab","c") != ("a","bc")
    return h.hexdigest()


# ------------------------------------------------------------------ constants


def _encode(value, refs: list | None = None, depth: int = 0) -> str | None:
    """Stable text for a constant, or ``None`` when `value` is not one.

    With `refs`, other leaves (functions, instances) become placeholders appended to
    `refs`, so that a dispatch table ``{"euler": euler}`` is covered as well.
    """
    kind = type(value)
    if kind in _SCALARS:
        return f"{kind.__name__}:{value!r}"
    if kind in _CONTAINERS:
        return _encode_container(value, refs, depth) if depth < _MAX_DEPTH else None
    if _is_numpy(value):
        return _encode_numpy(value)
    if refs is None:
        return None
    refs.append(value)
    name = getattr(value, "__qualname__", None)
    return "ref:" + (name if isinstance(name, str) else kind.__qualname__)


def _encode_container(value, refs, depth) -> str | None:
    if type(value) is dict:
        depth += 1
        pairs = [(_encode(k, refs, depth), _encode(v, refs, depth)) for k, v in value.items()]
        if any(None in pair for pair in pairs):
            return None
        return "dict:{" + ",".join(sorted(f"{k}:{v}" for k, v in pairs)) + "}"
    items = [_encode(item, refs, depth + 1) for item in value]
    if None in items:
        return None
    if isinstance(value, (set, frozenset)):
        items.sort()  # set order varies between processes (hash randomisation)
    return f"{type(value).__name__}:[" + ",".join(items) + "]"


def _is_numpy(value) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype")  # no numpy import


def _encode_numpy(value) -> str | None:
    from ._hashing import canonical_bytes  # lazy; it canonicalises byte order and NaNs

    try:
        return "numpy:" + canonical_bytes(value).decode("ascii", "replace")
    except (TypeError, ValueError):  # HashingError: an object array holding anything
        return None


# ----------------------------------------------------------------------- code


def _dump(node) -> str:
    """``ast.dump`` without positions and without empty fields.

    Skipping ``None`` and ``[]`` keeps the text equal across Python versions that add
    fields (``type_params`` in 3.12) which are empty in ordinary code.
    """
    if isinstance(node, ast.AST):
        fields = (f"{k}={_dump(v)}" for k, v in ast.iter_fields(node) if v is not None and v != [])
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_dump(item) for item in node) + "]"
    return repr(node)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, *_DEFS)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    node.body = node.body[1:]


def _parse(source: str) -> list[ast.stmt] | None:
    try:
        return ast.parse(textwrap.dedent(source)).body
    except SyntaxError:
        pass
    try:  # a multi-line string flush with the margin defeats dedent
        return ast.parse("if True:\n" + source).body[0].body
    except (SyntaxError, AttributeError, IndexError):
        return None


def _source_digest(obj) -> str | None:
    """Digest of the normalised AST of `obj`'s source; ``None`` without source."""
    try:
        body = _parse(inspect.getsource(obj))
    except (OSError, TypeError):  # exec'd code, python -c, a notebook class
        return None
    if not body:
        return None
    node: ast.AST = ast.Module(body=body, type_ignores=[])
    if getattr(obj, "__name__", None) == "<lambda>":
        # getsource gives whole lines; keep the lambda when it is alone on them
        lambdas = [n for n in ast.walk(node) if isinstance(n, ast.Lambda)]
        node = lambdas[0] if len(lambdas) == 1 else node
    elif isinstance(body[0], _DEFS):
        node = body[0]
        if not isinstance(node, ast.ClassDef):
            node.decorator_list = []  # @pj.experiment(...) must not change the id
    _strip_docstrings(node)
    return _digest(_dump(node))


def _code_digest(code: types.CodeType, doc=None) -> str:
    """Digest of a code object without line numbers or file name (the fallback)."""
    consts = list(code.co_consts)
    if consts and doc is not None and consts[0] == doc:
        consts = consts[1:]
    parts = [code.co_name, code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    parts += [repr(code.co_freevars), repr(code.co_cellvars), str(code.co_flags)]
    parts += [str(code.co_argcount), str(code.co_kwonlyargcount)]
    for const in consts:
        text = _code_digest(const) if isinstance(const, types.CodeType) else _encode(const)
        parts.append(text if text is not None else repr(const))
    return _digest(*parts)


def _collect(code: types.CodeType, names: list, imports: list) -> None:
    names.extend(code.co_names)
    if _IMPORT_NAME in code.co_code[::2]:  # disassemble only code that imports
        ops = list(dis.get_instructions(code))
        for i, op in enumerate(ops):
            if op.opname == "IMPORT_NAME":
                level = ops[i - 2].argval if i >= 2 and type(ops[i - 2].argval) is int else 0
                imports.append((op.argval, level))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested defs, lambdas, comprehensions
            _collect(const, names, imports)


_code_memo: dict[int, tuple] = {}
_class_memo: dict[int, tuple] = {}


def _memo(memo: dict, key, compute):
    # By identity, not by name: a re-run notebook cell makes new objects. Holding
    # `key` keeps its id from being reused while the entry lives.
    hit = memo.get(id(key))
    if hit is not None and hit[0] is key:
        return hit[1]
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    value = compute(key)
    memo[id(key)] = (key, value)
    return value


def _code_info(func: types.FunctionType) -> _CodeInfo:
    def compute(code):
        names: list[str] = []
        imports: list[tuple[str, int]] = []
        _collect(code, names, imports)
        digest = _source_digest(func)
        fallback = digest is None
        digest = _code_digest(code, func.__doc__) if fallback else digest
        return _CodeInfo(digest, fallback, tuple(dict.fromkeys(names)), tuple(imports))

    return _memo(_code_memo, func.__code__, compute)


def _member_functions(member) -> list | None:
    """The functions behind a class attribute; ``None`` when it is no method."""
    if isinstance(member, types.FunctionType):
        return [member]
    if isinstance(member, (staticmethod, classmethod)):
        return [member.__func__]
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if f is not None]
    if isinstance(member, functools.cached_property):
        return [member.func]
    return None


def _class_digest(klass: type) -> tuple[str, bool]:
    digest = _source_digest(klass)
    if digest is not None:
        return digest, False
    # No class source (notebooks before Python 3.13): hash the methods instead.
    made_by_dataclass = "__dataclass_fields__" in vars(klass)
    parts = [klass.__qualname__, repr(inspect.get_annotations(klass))]
    parts.append(repr(vars(klass).get("__dataclass_params__")))
    fallback = False
    for key, member in vars(klass).items():
        for func in _member_functions(member) or ():
            if _in_library(func) or (made_by_dataclass and func.__code__.co_filename == "<string>"):
                continue  # made from the fields and parameters hashed above
            info = _code_info(func)
            parts.append(f"{key}:{info.digest}")
            fallback |= info.fallback
    return _digest(*parts), fallback


def _function_locals(func: types.FunctionType, refs: list) -> list[str]:
    """Defaults and closure cells as text; what is no constant goes to `refs`."""
    values = [(f"default {i}", v) for i, v in enumerate(func.__defaults__ or ())]
    values += [(f"default {k}", v) for k, v in (func.__kwdefaults__ or {}).items()]
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or ()):
        try:
            values.append((f"cell {name}", cell.cell_contents))
        except ValueError:  # an empty cell: assigned after the def
            values.append((f"cell {name}", None))
    return [f"{label}={_encode(value, refs)}" for label, value in values]


# ----------------------------------------------------------------- whose code


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=1)
def _library_dirs() -> frozenset[str]:
    import sysconfig  # lazy: needed once per process

    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return frozenset(os.path.realpath(paths[k]) for k in keys)


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _is_library_file(path: str) -> bool:
    """Whether `path` belongs to the standard library or an installed package."""
    path = os.path.realpath(path)
    if _THIRD_PARTY_DIRS.intersection(path.split(os.sep)):
        return True
    return any(_is_under(path, directory) for directory in _library_dirs())


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _is_project_file(path: str, root: str) -> bool:
    return _is_under(os.path.realpath(path), root) and not _is_library_file(path)


def _in_library(func: types.FunctionType) -> bool:
    # functools.wraps copies __module__, so a library's wrapper may claim "__main__"
    file = func.__code__.co_filename
    return os.path.isabs(file) and _is_library_file(file)


@functools.lru_cache(maxsize=None)
def _distribution(top: str) -> tuple[str, str]:
    """(distribution name, version) for a top-level import name."""
    from importlib import metadata  # lazy: tens of ms to import (xarray does anyway)

    def candidates():
        yield top
        yield from metadata.packages_distributions().get(top, ())  # slow: only if needed

    for name in candidates():
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return top, str(version) if version is not None else "unknown"


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int) -> str:
    """Digest of a user module imported in a function body but not loaded yet."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return _digest(data.hex())
    _strip_docstrings(tree)
    return _digest(_dump(tree))


def _module_file(full: str) -> str | None:
    """The file of module `full`, found without importing anything."""
    module = sys.modules.get(full)
    if module is not None:
        return getattr(module, "__file__", None)
    from importlib.machinery import PathFinder

    spec, path, parts = None, None, full.split(".")
    for i in range(len(parts)):
        try:
            spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return spec.origin


# ----------------------------------------------------------------------- walk


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
            except Exception:  # properties of arbitrary objects may raise anything
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
        except Exception:
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


# ------------------------------------------------------------------ naming


def module_label(module: str | None, root: str | None = None) -> str:
    """The name results are filed under for functions of ``module``.

    A module's own name; for ``__main__``, where the code is: the module run with
    ``python -m``, else the script's or notebook's path relative to the project root,
    dotted and without its suffix (``scripts/run.py`` -> ``scripts.run``), so that two
    scripts' ``simulate`` are not one function. ``__main__`` when nothing says more
    (``python -c``, an interactive prompt).

    Examples
    --------
    >>> module_label("physics.models")
    'physics.models'
    """
    if module != "__main__":
        return module if isinstance(module, str) and module else "__main__"
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and isinstance(spec.name, str) and spec.name not in ("", "__main__"):
        return spec.name.removesuffix(".__main__")
    space = vars(main) if main is not None else {}
    path = space.get("__file__")
    if not isinstance(path, str) or not path:
        path = notebook_path(space)
    if not path:
        return "__main__"
    path = os.path.realpath(path)
    root = root or identity_root()
    rel = os.path.relpath(path, root) if _is_under(path, root) else os.path.basename(path)
    stem = os.path.splitext(rel)[0]
    return ".".join(part for part in stem.split(os.sep) if part) or "__main__"


# ------------------------------------------------------------ describing changes


def _phrase(label: str, old: str | None, new: str | None, is_top: bool) -> str:
    kind, _, what = label.partition(" ")
    verb = "added" if old is None else "removed" if new is None else "changed"
    if kind in ("package", "python"):
        return f"{label} {old} -> {new}" if verb == "changed" else f"{label} {verb}"
    if is_top:
        return f"`{what}` {verb}"
    return f"{'helper' if kind == 'function' else kind} `{what}` {verb}"


def describe_change(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """One short phrase saying how two identities' components differ.

    Parameters
    ----------
    old, new : mapping of str to str
        `Identity.components` of the older and the newer identity. The first entry
        of each is taken as the function itself: keep their order when storing them.

    Returns
    -------
    str
        Up to three items, then "and N more"; "nothing changed" when equal.

    Examples
    --------
    >>> describe_change({"function f": "1", "function drag": "2"},
    ...                 {"function f": "1", "function drag": "3", "constant G": "4"})
    'helper `drag` changed; constant `G` added'
    >>> describe_change({"package numpy": "2.3.0"}, {"package numpy": "2.4.6"})
    'package numpy 2.3.0 -> 2.4.6'
    """
    if "version" in old or "version" in new:
        before, after = old.get("version"), new.get("version")
        if before == after:
            return "nothing changed"
        if before is None:
            return f"version pinned to {after!r}"
        if after is None:
            return f"version pin {before!r} removed"
        return f"version {before!r} -> {after!r}"
    tops = {next(iter(old), None), next(iter(new), None)}
    labels = [*new, *(label for label in old if label not in new)]
    changed = [label for label in labels if old.get(label) != new.get(label)]
    items = [_phrase(k, old.get(k), new.get(k), k in tops) for k in changed]
    if not items:
        return "nothing changed"
    return "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
