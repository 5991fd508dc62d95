"""The structure the next engineers change: module-level mutable state is declared in
one place (pyjoule/_caches.py), and CI runs the static checks the README names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pyjoule
from pyjoule import _caches

from conftest import REPO

PKG = Path(pyjoule.__file__).resolve().parent

# Module-level state that exists today and is not yet declared in pyjoule/_caches.py,
# as (module, name): (what it holds, why it is safe). The lead moves each to
# ``_caches.declare`` (or onto an object with a lifetime) and deletes its entry here;
# an entry whose state is gone or declared fails the test, so the list cannot rot.
ALLOWLIST: dict[tuple[str, str], tuple[str, str]] = {
    ("pyjoule._backends.pool", "_THROWAWAY"): (
        "roots of this process's cache=False caches",
        "only added to; removed at exit by the process that made them"),
    ("pyjoule._transport.dial", "_proxies"): (
        "id(socket) -> its ProxyCommand process and stderr",
        "removed when the socket closes"),
}

CONTAINERS = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque", "Counter",
              "WeakValueDictionary", "WeakKeyDictionary", "WeakSet", "bytearray"}
MUTATORS = {"append", "add", "update", "setdefault", "pop", "clear", "extend", "insert",
            "remove", "discard", "popitem", "appendleft", "__setitem__"}
MEMOIZERS = {"lru_cache", "cache"}


def _name_of(node: ast.expr) -> str | None:
    node = node.func if isinstance(node, ast.Call) else node
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _top_level(body: list[ast.stmt]):
    """The module's own statements, including those under a module-level if/try."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody"):
            if isinstance(node, (ast.If, ast.Try)):
                yield from _top_level(getattr(node, field, []))
        for handler in getattr(node, "handlers", []):
            yield from _top_level(handler.body)


def _is_container(value: ast.expr | None) -> bool:
    literal = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    return isinstance(value, literal) or (
        isinstance(value, ast.Call) and _name_of(value) in CONTAINERS)


def _mutated(tree: ast.AST) -> set[str]:
    """Names changed in place somewhere in the module: x[k] = v, del x[k], x.add(...)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.attr in MUTATORS:
            names.add(node.func.value.id)
        targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete))
                   else [node.target] if isinstance(node, ast.AugAssign) else [])
        names |= {t.value.id for t in targets
                  if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)}
    return names


def _declared(tree: ast.AST) -> set[str]:
    """Names the module declares with ``_caches.declare(__name__, "name", ...)``."""
    return {node.args[1].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _name_of(node) == "declare"
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)}


def _state(module: str, tree: ast.Module) -> dict[str, str]:
    """The module-level mutable state of one module: name -> how it was found."""
    found: dict[str, str] = {}
    mutated = _mutated(tree)
    for node in _top_level(tree.body):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_container(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= {t.id: f"line {node.lineno}: a container changed in place"
                      for t in targets if isinstance(t, ast.Name) and t.id in mutated}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                _name_of(d) in MEMOIZERS for d in node.decorator_list):
            found[node.name] = f"line {node.lineno}: a memoized function"
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found |= dict.fromkeys(node.names, f"line {node.lineno}: a `global` statement")
    if module == "pyjoule._caches":
        found.pop("_RESETS", None)  # the registry itself
    return {name: how for name, how in found.items() if name not in _declared(tree)}


def _module_state() -> dict[tuple[str, str], str]:
    state = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(), str(path))
        state |= {(module, name): how for name, how in _state(module, tree).items()}
    return state


def test_module_level_state_is_declared():
    undeclared = [f"{m}.{n} ({how})" for (m, n), how in sorted(_module_state().items())
                  if (m, n) not in ALLOWLIST]
    assert not undeclared, (
        "module-level mutable state: declare it with pyjoule._caches.declare (with what "
        "resets it), or keep it on an object with a lifetime:\n" + "\n".join(undeclared))


def test_the_allowlist_of_undeclared_state_does_not_rot():
    gone = sorted(set(ALLOWLIST) - set(_module_state()))
    assert not gone, f"declared or removed: delete from ALLOWLIST (test_structure.py): {gone}"


def test_the_finder_sees_each_kind_of_state():
    code = '''
import functools
from pyjoule import _caches
_memo = {}
_seen = set()
_fixed = {"a": 1}
_kept = _caches.declare(__name__, "_kept", {})
_flag = None
def remember(k, v):
    global _flag
    _memo[k] = v
    _seen.add(k)
    _kept[k] = v
    _flag = True
@functools.lru_cache(maxsize=None)
def digest(path):
    return path
'''
    found = _state("pyjoule._example", ast.parse(code))
    assert set(found) == {"_memo", "_seen", "_flag", "digest"}, found


def test_reset_all_empties_declared_state():
    memo = _caches.declare("pyjoule._example", "memo", {"k": 1})
    flags = {"set": True}
    _caches.declare("pyjoule._example", "flag", flags, reset=lambda: flags.update(set=False))
    try:
        assert {"pyjoule._example.memo", "pyjoule._example.flag"} <= set(_caches.declared())
        _caches.reset_all()
        assert memo == {} and flags == {"set": False}
    finally:
        _caches.forget("pyjoule._example", "memo")
        _caches.forget("pyjoule._example", "flag")
    assert not any(d.startswith("pyjoule._example.") for d in _caches.declared())


def _readme_test_command() -> str:
    """The quick start's second command: the one that runs the test suite."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, flags=re.S)
    assert block, "README.md has no bash block under '## Quick start'"
    commands = [line for line in block.group(1).splitlines()
                if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    return commands[1]


def test_ci_runs_the_readme_test_command_exactly():
    script = (REPO / ".ci" / "run").read_text().splitlines()
    assert script[0].startswith("#!")
    commands = [line for line in script[1:] if line.strip() and not line.startswith("#")]
    assert commands[-1] == _readme_test_command()


def test_the_static_checks_run_before_the_tests():
    steps = [step.strip() for step in _readme_test_command().split("&&")]
    runs = [step.removeprefix("python -m uv run --frozen ") for step in steps[1:]]
    assert runs == ["ruff check", "mypy", "pytest"], steps
