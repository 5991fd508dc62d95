"""`import pyjoule` stays light, the worker's import closure stays small, and the modules
keep the layer rules of docs/design.md ("Structure")."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyjoule

from conftest import REPO

HEAVY = ("xarray", "sparse", "pandas", "paramiko", "fabric", "tqdm", "numba", "invoke",
         "matplotlib", "netCDF4")


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout))


def test_import_pyjoule_loads_no_heavy_library():
    loaded = _modules_after("import pyjoule")
    assert "pyjoule" in loaded
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)


def test_worker_import_closure_is_stdlib_cloudpickle_threadpoolctl():
    # _batch: what an executor='s engine workers run
    loaded = _modules_after("import pyjoule.worker, pyjoule._batch")
    top = {m.split(".")[0] for m in loaded}
    stdlib = set(sys.stdlib_module_names) | {"__main__", "builtins", "_distutils_hack"}
    assert top - stdlib <= {"pyjoule", "cloudpickle", "threadpoolctl"}, top - stdlib
    assert "numpy" not in top


def _type_checking_names() -> set[str]:
    """The names pyjoule/__init__.py imports eagerly for type checkers."""
    tree = ast.parse((PKG / "__init__.py").read_text())
    blocks = [n for n in tree.body if isinstance(n, ast.If) and _is_type_checking(n.test)]
    return {alias.asname or alias.name for block in blocks for node in block.body
            if isinstance(node, ast.ImportFrom) for alias in node.names}


def _reference_names() -> set[str]:
    text = (REPO / "docs" / "reference.md").read_text()
    return set(re.findall(r"^::: pyjoule\.(\w+)\s*$", text, flags=re.M))


def test_all_is_sorted_and_complete():
    """__all__, the lazy names (_EXPORTS), the names type checkers see and the API
    reference name the same public names, both ways; only pj.open stays out of
    __all__ (it would hide the builtin)."""
    assert pyjoule.__all__ == sorted(pyjoule.__all__)
    assert len(set(pyjoule.__all__)) == len(pyjoule.__all__)
    starred, lazy = set(pyjoule.__all__), set(pyjoule._EXPORTS)
    not_starred = set(pyjoule._PUBLIC_NOT_STARRED)
    assert not_starred <= lazy and not starred & not_starred
    assert starred | not_starred == lazy, (
        f"in _EXPORTS, not in __all__: {sorted(lazy - starred - not_starred)}; "
        f"in __all__, not in _EXPORTS: {sorted(starred - lazy)}")
    assert _type_checking_names() == lazy, sorted(_type_checking_names() ^ lazy)
    assert _reference_names() == lazy, sorted(_reference_names() ^ lazy)
    public = {n for n in dir(pyjoule) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(pyjoule, n)).__name__ == "module"}
    assert public - modules == lazy


@pytest.mark.parametrize("name", sorted(pyjoule._EXPORTS))
def test_every_lazy_name_resolves_from_its_module(name):
    module = importlib.import_module(f"pyjoule.{pyjoule._EXPORTS[name]}")
    assert getattr(pyjoule, name) is getattr(module, name)


def test_star_import_keeps_the_builtin_open():
    namespace: dict = {}
    exec("from pyjoule import *", namespace)
    assert "open" not in namespace and "save" in namespace
    assert callable(pyjoule.open)


def test_describing_a_host_loads_no_ssh_library():
    loaded = _modules_after("import pyjoule as pj; pj.Host('box', workdir='/w')")
    assert "paramiko" not in loaded and "pyjoule._transport.ssh" not in loaded


# --- The layer rules (docs/design.md, "Structure") -----------------------------------
# Every module of pyjoule/ belongs to one layer, by dotted prefix (``pyjoule._store``
# covers ``_store.py`` and ``_store/*``; the longest prefix wins). A module imports only
# from its own layer or below: imports inside functions count too, those under
# ``if TYPE_CHECKING:`` do not. A module not in the table fails the test: place it.

LAYERS: dict[int, tuple[str, ...]] = {
    0: ("_errors", "_records", "_pickling", "_platform", "_display", "_columns",
        "_xrimport", "_runsframe", "_raised", "_caches", "_faults", "_bulk"),
    1: ("_project", "_hashing", "_hashing_errors", "_identity", "_callables", "_private",
        "_space", "_keying", "_options", "_pyproject", "_config", "_rundir", "_files",
        "_host_answers", "_slurm", "_execute", "_supervisor", "_slurm_task", "worker",
        "_unfinished", "_progress", "_batch"),
    2: ("_store", "_transport",
        "_output"),  # captured output: kept in the store's segments, read from there
    3: ("_backends", "_results", "_claims"),
    4: ("_dispatch", "_analysis", "_figure", "_plot", "_export", "_nocache",
        "_interrupt", "_repair"),
    5: ("_api",
        "_ui"),  # the browser view: reads through the API as the cli does
    6: ("__init__", "__main__", "cli"),
}
LAYER_NAMES = {0: "L0 base", 1: "L1 core", 2: "L2 io", 3: "L3", 4: "L4", 5: "L5 api",
               6: "L6 entry points"}
PKG = Path(pyjoule.__file__).resolve().parent

# Imports that break a rule today, as (importer, imported) by dotted prefix (so an entry
# still holds while a module becomes a package): the restructure of issue #16 removes
# them, and the set shrinks with it. An entry that no longer occurs fails the test
# too, so the set cannot rot: delete it.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    ("pyjoule._options", "pyjoule._transport.hosts"):
        "host= is checked by making the pj.Host it names (lazily): a Host is the "
        "transport's description of a host, and it reads the ssh config when asked",
}


def _prefix_layer(module: str) -> int | None:
    """The layer of a dotted module name (``pyjoule`` itself is the top)."""
    if module == "pyjoule":
        return 6
    best, layer = -1, None
    rest = module.removeprefix("pyjoule.")
    for number, names in LAYERS.items():
        for name in names:
            if (rest == name or rest.startswith(name + ".")) and len(name) > best:
                best, layer = len(name), number
    return layer


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 2:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name.endswith("TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """The import statements of a module, skipping ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _targets(module: str, path: Path, node: ast.stmt, known: set[str]) -> list[str]:
    """The pyjoule modules one import statement loads (``from . import a`` loads a)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "pyjoule"]
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != "pyjoule":
        return []
    targets = []
    for alias in node.names:
        if f"{source}.{alias.name}" in known:
            targets.append(f"{source}.{alias.name}")
        elif source == "pyjoule" and alias.name in pyjoule._EXPORTS:  # a lazy name
            targets.append(f"pyjoule.{pyjoule._EXPORTS[alias.name]}")
        else:
            targets.append(source)
    return list(dict.fromkeys(targets))


def _edges() -> list[tuple[str, str, str, int]]:
    """(importer, imported, file, line) for every import between pyjoule modules."""
    modules = _modules()
    known = set(modules)
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _import_nodes(tree):
            for target in _targets(module, path, node, known):
                if target != module:
                    edges.append((module, target, str(path.relative_to(PKG.parent)),
                                  node.lineno))
    return edges


def _layer(module: str) -> int:
    layer = _prefix_layer(module)
    assert layer is not None, f"{module} is in no layer: add it to LAYERS (and docs)"
    return layer


# Extra rules: (importer prefix, imported prefix, why)
FORBIDDEN = [
    ("pyjoule._store", "pyjoule._backends", "the store never knows how work runs"),
    ("pyjoule._backends", "pyjoule._store", "backends never touch the cache"),
    ("pyjoule._transport", "pyjoule._store", "the transport moves bytes only"),
    ("pyjoule._transport", "pyjoule._backends", "the transport moves bytes only"),
    ("pyjoule._results", "pyjoule._backends", "results come from the store only"),
    ("pyjoule._results", "pyjoule._transport", "results come from the store only"),
]
CLI = ("pyjoule.cli",)
# what the cli may import besides L0-L1 and itself: the public names, the API, dispatch
# the host description and check of `pyjoule hosts`, the repair of `pyjoule cache check`
# and the captured output `pyjoule logs` prints; `pyjoule ui` serves pyjoule._ui
CLI_MAY = ("pyjoule._api", "pyjoule._ui", "pyjoule._dispatch", "pyjoule._repair", "pyjoule._output",
           "pyjoule._transport.hosts", "pyjoule._transport.check", *CLI)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _why_broken(importer: str, imported: str) -> str | None:
    """The rule an import breaks, or None. ``import pyjoule`` itself (for its
    ``__file__``) is fine anywhere: the root package loads nothing, and a name taken
    from it (``from pyjoule import Host``) counts as an import of the name's module."""
    if imported == "pyjoule":
        return None
    low, high = _layer(importer), _layer(imported)
    if high > low:
        return f"{LAYER_NAMES[low]} imports from {LAYER_NAMES[high]}"
    for source, target, why in FORBIDDEN:
        if _under(importer, source) and _under(imported, target):
            return f"{source} never imports {target}: {why}"
    if any(_under(importer, c) for c in CLI) and high > 1 \
            and not any(_under(imported, m) for m in CLI_MAY):
        return "the cli imports only public names, _api, _dispatch, the host check and L0-L1"
    return None


def _broken() -> dict[tuple[str, str], list[str]]:
    broken: dict[tuple[str, str], list[str]] = {}
    for importer, imported, file, line in sorted(_edges(), key=lambda e: (e[2], e[3])):
        why = _why_broken(importer, imported)
        if why:
            broken.setdefault((importer, imported), []).append(
                f"{file}:{line}: {importer} ({LAYER_NAMES[_layer(importer)]}) imports "
                f"{imported} ({LAYER_NAMES[_layer(imported)]}): {why}")
    return broken


def test_every_module_is_in_a_layer():
    unplaced = sorted(m for m in _modules() if _prefix_layer(m) is None)
    assert not unplaced, f"place these modules in LAYERS (and docs/design.md): {unplaced}"


def _known(pair: tuple[str, str], known: tuple[str, str]) -> bool:
    return _under(pair[0], known[0]) and _under(pair[1], known[1])


def test_imports_keep_the_layer_rules():
    broken = _broken()
    new = [msg for pair, msgs in sorted(broken.items())
           if not any(_known(pair, known) for known in KNOWN_VIOLATIONS) for msg in msgs]
    assert not new, "imports that break the layer rules:\n" + "\n".join(new)


def test_known_violations_still_occur():
    broken = _broken()
    gone = sorted(k for k in KNOWN_VIOLATIONS if not any(_known(p, k) for p in broken))
    assert not gone, f"fixed: delete these from KNOWN_VIOLATIONS (test_imports.py): {gone}"


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_crosses_layers():
    edges = {(a, b) for a, b, _, _ in _edges()
             if not any(_known((a, b), known) for known in KNOWN_VIOLATIONS)}
    crossing = [c for c in _cycles(edges) if len({_layer(m) for m in c}) > 1]
    assert not crossing, f"import cycles between layers: {crossing}"
