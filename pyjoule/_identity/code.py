"""Digests of code: functions and classes by their normalised AST (bytecode without
source), and module files imported in a function body."""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import textwrap
import types
from typing import NamedTuple

from .. import _caches
from .constants import _digest, _encode
from .places import _MEMO_SIZE, _in_library

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


class _CodeInfo(NamedTuple):
    digest: str
    fallback: bool  # digest of bytecode, which differs between Python versions
    names: tuple[str, ...]  # co_names of the code and all nested code objects
    imports: tuple[tuple[str, int], ...]  # (module, level) imported in the body


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
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
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


def clear_caches() -> None:
    """Forget the digests remembered in this process: of code objects and classes
    (keyed by the objects themselves, at most ``_MEMO_SIZE`` each) and of module files
    (keyed by path and mtime). Never needed for correctness; tests use it to start
    from nothing."""
    _code_memo.clear()
    _class_memo.clear()
    _file_digest.cache_clear()


# process state, declared (pyjoule/_caches.py): a test resets it with reset_all()
_caches.declare(__name__, "_code_memo", _code_memo)
_caches.declare(__name__, "_class_memo", _class_memo)
_caches.declare(__name__, "_file_digest", _file_digest, reset=_file_digest.cache_clear)
