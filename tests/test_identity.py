"""Function identity: every case runs real code in a fresh interpreter.

Each case writes a tiny project (``pyproject.toml`` + modules) into a temporary
directory whose name holds a space, runs ``python main.py`` there and reads the
identity that the script prints, so "same id" means "same id in a new process".
"""

from __future__ import annotations

import functools
import json
import linecache
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pyjoule._identity import Identity, describe_change, identify

REPO_ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json as _json
from pyjoule._identity import identify as _identify
_ident = _identify({target}, **{kwargs!r})
print("IDENTITY " + _json.dumps({{"func_id": _ident.func_id, "components": _ident.components}}))
"""


def run_identity(root: Path, files: dict[str, str], target: str = "simulate", **kwargs) -> dict:
    """Write `files` into a fake project at `root`, run main.py, return its identity."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    main = root / "main.py"
    main.write_text(main.read_text() + PROBE.format(target=target, kwargs=kwargs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO_ROOT)])}
    proc = subprocess.run(
        [sys.executable, "main.py"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("IDENTITY "))
    return json.loads(line[len("IDENTITY "):])


@pytest.fixture
def project(tmp_path):
    """Returns run(files, ...) -> identity dict, each call in a fresh project dir."""
    counter = iter(range(1000))

    def run(files, target="simulate", **kwargs):
        return run_identity(tmp_path / f"proj {next(counter)}", files, target, **kwargs)

    return run


MAIN = """
    G = 9.81

    def simulate(n, seed=0):
        total = 0.0
        for i in range(n):
            total += G * i
        return total
"""


def test_same_code_in_new_process_gives_same_id(project):
    first, second = project({"main.py": MAIN}), project({"main.py": MAIN})
    assert first["func_id"] == second["func_id"]
    assert len(first["func_id"]) == 32 and int(first["func_id"], 16) >= 0
    assert next(iter(first["components"])) == "function simulate"
    assert "constant G" in first["components"]


def test_body_edit_changes_id(project):
    edited = MAIN.replace("total += G * i", "total += G * i * i")
    assert project({"main.py": MAIN})["func_id"] != project({"main.py": edited})["func_id"]


def test_constant_edit_changes_id(project):
    edited = MAIN.replace("G = 9.81", "G = 9.80665")
    old, new = project({"main.py": MAIN}), project({"main.py": edited})
    assert old["func_id"] != new["func_id"]
    assert describe_change(old["components"], new["components"]) == "constant `G` changed"


LRU = "import functools\n@functools.lru_cache(maxsize=None)\ndef simulate"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("total = 0.0", "total = 0.0  # start at zero", id="comment"),
        pytest.param("seed=0):", 'seed=0):\n    """Run it."""', id="add-docstring"),
        pytest.param("total += G * i", "total += (G\n                  * i)", id="reformat"),
        pytest.param("G = 9.81", "def unrelated():\n    return 1\n\nG = 9.81", id="move-down"),
        pytest.param("def simulate", LRU, id="lru_cache"),
    ],
)
def test_cosmetic_edits_keep_id(project, old, new):
    edited = textwrap.dedent(MAIN).replace(old, new)
    assert project({"main.py": MAIN})["func_id"] == project({"main.py": edited})["func_id"]


def test_any_decorator_on_top_function_keeps_id(project):
    decorated = """
        import functools
        G = 9.81

        def experiment(**options):
            def wrap(func):
                @functools.wraps(func)
                def wrapper(*args, **kwargs):
                    return func(*args, **kwargs)
                return wrapper
            return wrap

        @experiment(workers=4, slurm={"time": "00:30:00"})
        def simulate(n, seed=0):
            total = 0.0
            for i in range(n):
                total += G * i
            return total
    """
    assert project({"main.py": MAIN})["func_id"] == project({"main.py": decorated})["func_id"]


HELPERS = """
    CD = 0.47

    def drag(v):
        return CD * v * v
"""


@pytest.mark.parametrize(
    ("main", "drag", "cd"),
    [
        (
            "from helpers import drag\n\ndef simulate(v):\n    return drag(v) + 1\n",
            "helper `helpers.drag` changed",
            "constant `helpers.CD` changed",
        ),
        (
            "import helpers\n\ndef simulate(v):\n    return helpers.drag(v) + 1\n",
            "helper `helpers.drag` changed",
            "constant `helpers.CD` changed",
        ),
        (  # a module imported in the body is covered by its whole file
            "def simulate(v):\n    from helpers import drag\n    return drag(v) + 1\n",
            "module `helpers` changed",
            "module `helpers` changed",
        ),
    ],
    ids=["from-import", "module-attribute", "import-in-body"],
)
def test_helper_in_another_module(project, main, drag, cd):
    old = project({"main.py": main, "helpers.py": HELPERS})
    new = project({"main.py": main, "helpers.py": HELPERS.replace("CD * v * v", "CD * v ** 2.5")})
    const = project({"main.py": main, "helpers.py": HELPERS.replace("0.47", "0.5")})
    cosmetic = project({"main.py": main, "helpers.py": "# a comment\n" + textwrap.dedent(HELPERS)})
    assert len({old["func_id"], new["func_id"], const["func_id"]}) == 3
    assert cosmetic["func_id"] == old["func_id"]
    assert describe_change(old["components"], new["components"]) == drag
    assert describe_change(old["components"], const["components"]) == cd


def test_import_in_body_gives_same_id_before_and_after_a_run(project):
    main = "def simulate(v):\n    from helpers import drag\n    return drag(v)\n\nsimulate(1)\n"
    before = project({"main.py": main.replace("simulate(1)", ""), "helpers.py": HELPERS})
    assert project({"main.py": main, "helpers.py": HELPERS})["func_id"] == before["func_id"]


def test_helper_added_is_described(project):
    old = project({"main.py": "def simulate(v):\n    return v * 2\n"})
    double = "def double(v):\n    return v * 2\n\n"
    new = project({"main.py": double + "def simulate(v):\n    return double(v)\n"})
    expected = "`simulate` changed; helper `double` added"
    assert describe_change(old["components"], new["components"]) == expected


CLASSES = """
    class Model:
        RATE = 0.5

        def __init__(self, k):
            self.k = k

        def step(self, x):
            return self.k * x * self.RATE

    def simulate(k, n):
        return Model(k).step(n)
"""


def test_class_method_and_class_constant_edits_change_id(project):
    old = project({"main.py": CLASSES})
    method = project({"main.py": CLASSES.replace("self.k * x", "self.k + x")})
    constant = project({"main.py": CLASSES.replace("RATE = 0.5", "RATE = 0.25")})
    assert len({old["func_id"], method["func_id"], constant["func_id"]}) == 3
    assert describe_change(old["components"], method["components"]) == "class `Model` changed"


def test_third_party_package_is_covered_by_version(project):
    main = """
        import math
        import numpy as np
        from numpy.linalg import norm

        def simulate(n):
            return norm(np.arange(n)) + math.sqrt(n)
    """
    import numpy

    components = project({"main.py": main})["components"]
    assert components["package numpy"] == numpy.__version__
    assert not any("math" in label for label in components)  # stdlib is ignored
    assert not any("numpy" in label for label in components if label != "package numpy")


def test_version_pins_identity(project):
    v1 = project({"main.py": MAIN}, version="v1")
    v1_edited = project({"main.py": MAIN.replace("G * i", "G - i")}, version="v1")
    v2 = project({"main.py": MAIN}, version="v2")
    assert v1["func_id"] == v1_edited["func_id"] != v2["func_id"]
    assert v1["components"] == {"version": "v1"}
    assert describe_change(v1["components"], v2["components"]) == "version 'v1' -> 'v2'"


def test_recursion_terminates(project):
    main = """
        def is_even(n):
            return True if n == 0 else is_odd(n - 1)

        def is_odd(n):
            return False if n == 0 else is_even(n - 1)

        def simulate(n):
            return simulate(n - 1) if n > 10 else is_even(n)
    """
    components = project({"main.py": main})["components"]
    assert {"function simulate", "function is_even", "function is_odd"} <= set(components)


# ------------------------------------------------------------ in-process cases
# Functions defined from source registered in linecache, as IPython does for cells.

_cells = iter(range(10**6))


def define(source: str, name: str, namespace: dict | None = None):
    """Execute `source` like a notebook cell and return the function `name`."""
    filename = f"<ipython-input-{next(_cells)}>"
    source = textwrap.dedent(source)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def test_notebook_cell_redefinition_is_seen():
    ns = {"__name__": "__main__"}
    define("def drag(v):\n    return v * v\n", "drag", ns)
    sim = define("def simulate(v):\n    return drag(v)\n", "simulate", ns)
    before = identify(sim)
    define("def drag(v):\n    return v ** 3\n", "drag", ns)  # the cell is edited and re-run
    after = identify(sim)
    assert before.func_id != after.func_id
    assert describe_change(before.components, after.components) == "helper `drag` changed"


NOTEBOOK_CLASS = """
import dataclasses

@dataclasses.dataclass(frozen=True)
class Model:
    rate: float = 0.5

    def step(self, x):
        return x * self.rate
"""


def test_notebook_class_without_class_source():
    # Before Python 3.13 inspect cannot find a class defined in a cell; the methods'
    # sources (in linecache) stand in for it, still without the bytecode fallback.
    def run(cell):
        ns = {"__name__": "__main__"}
        define(cell, "Model", ns)
        return identify(define("def simulate(x):\n    return Model().step(x)\n", "simulate", ns))

    first, again = run(NOTEBOOK_CLASS), run(NOTEBOOK_CLASS)
    assert first.func_id == again.func_id and "class Model" in first.components
    assert "python" not in first.components
    for before, after in [("x * self.rate", "x + self.rate"), ("0.5", "0.25")]:
        edited = run(NOTEBOOK_CLASS.replace(before, after))
        assert describe_change(first.components, edited.components) == "class `Model` changed"


def test_closures_defaults_nested_code_and_dispatch_tables():
    ns = {"__name__": "__main__"}
    define(
        """
        SCALE = 2
        def euler(x):
            return x + 1
        def rk4(x):
            return x + 2
        METHODS = {"euler": euler, "rk4": rk4}
        def make(k):
            def inner(x, scale=SCALE):
                return [METHODS["rk4"](y) * k * scale for y in x]
            return inner
        """,
        "make",
        ns,
    )
    components = identify(ns["make"](3)).components
    assert {"function rk4", "function euler", "constant METHODS"} <= set(components)
    assert identify(ns["make"](3)).func_id != identify(ns["make"](4)).func_id  # closure value
    before = identify(ns["make"](3))
    ns["SCALE"] = 5  # folded in as the default value of `scale`
    assert identify(ns["make"](3)).func_id != before.func_id


def test_global_instance_of_user_class_counts_its_state():
    ns = {"__name__": "__main__"}
    define("class Model:\n    def __init__(self, k):\n        self.k = k\n", "Model", ns)
    sim = define("MODEL = Model(3)\ndef simulate(x):\n    return MODEL.k * x\n", "simulate", ns)
    before = identify(sim)
    ns["MODEL"] = ns["Model"](4)
    after = identify(sim)
    assert {"class Model", "constant MODEL"} <= set(before.components)
    assert describe_change(before.components, after.components) == "constant `MODEL` changed"


def test_exec_without_source_uses_stable_bytecode_fallback():
    code = "def f(x):\n    'doc'\n    return helper(x) * 2\ndef helper(x):\n    return x + 1\n"
    first, second = {}, {}
    exec(code, first)
    exec(code, second)
    a, b = identify(first["f"]), identify(second["f"])
    assert a.func_id == b.func_id
    assert a.components["python"] == "{}.{}".format(*sys.version_info[:2])
    assert "function helper" in a.components
    exec(code.replace("* 2", "* 3"), second)
    assert identify(second["f"]).func_id != a.func_id


def test_wrapped_and_decorated_objects():
    ns = {"__name__": "__main__", "functools": functools}
    define("import functools\n@functools.lru_cache\ndef f(x):\n    return x\n", "f", ns)
    plain = define("def f(x):\n    return x\n", "f")
    assert identify(ns["f"]).func_id == identify(plain).func_id
    assert identify(ns["f"]).name == "f"


def test_identity_is_hashable_and_fast():
    ns = {"__name__": "__main__"}
    define("def a(x):\n    return x\ndef b(x):\n    return a(x)\n", "b", ns)
    define("def c(x):\n    return b(x)\n", "c", ns)
    sim = define("K = 3\ndef simulate(x):\n    return a(x) + b(x) + c(x) + K\n", "simulate", ns)
    assert isinstance(identify(sim), Identity) and hash(identify(sim)) == hash(identify(sim))
    identify(sim)
    start = time.perf_counter()
    for _ in range(100):
        identify(sim)
    assert (time.perf_counter() - start) / 100 < 0.01


def test_clear_caches_forgets_remembered_digests():
    from pyjoule._identity import clear_caches

    f = define("def f(x):\n    return x + 1\n", "f")
    before = identify(f).func_id
    filename = f.__code__.co_filename
    source = "def f(x):\n    return x + 2\n"  # the same code object, another source
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    assert identify(f).func_id == before  # remembered by its code object
    clear_caches()
    assert identify(f).func_id != before  # the source is read again


def test_describe_change_wording():
    old = {"function simulate": "1", "function drag": "2", "constant G": "3"}
    old["package numpy"] = "2.3.0"
    assert describe_change(old, dict(old)) == "nothing changed"
    assert describe_change(old, {**old, "package numpy": "2.4.6"}) == "package numpy 2.3.0 -> 2.4.6"
    new = {"function simulate": "9", "function drag": "8", "constant G": "7", "class Model": "6"}
    assert describe_change(old, new) == (
        "`simulate` changed; helper `drag` changed; constant `G` changed; and 2 more"
    )
    code, pinned = {"function simulate": "1"}, {"version": "v1"}
    assert describe_change(pinned, code) == "version pin 'v1' removed"
    assert describe_change(code, pinned) == "version pinned to 'v1'"


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"__file__": "{root}/scripts/run.py"}, "scripts.run"),
    ({"__file__": "/elsewhere/tool.py"}, "tool"),  # outside the project: its file name
    ({"__session__": "{root}/nb/study.ipynb"}, "nb.study"),  # JupyterLab, Notebook 7
    ({"__session__": "nb/study.ipynb"}, "nb.study"),  # relative to the server's root
    ({"__vsc_ipynb_file__": "{root}/nb/study.ipynb"}, "nb.study"),  # VS Code
    ({}, "__main__"),  # python -c, a prompt: nothing says more
])
def test_functions_of_main_are_named_after_their_file(tmp_path, monkeypatch, attrs, expected):
    import types as _types

    from pyjoule._identity import module_label

    root = tmp_path / "proj"
    (root / "nb").mkdir(parents=True)
    main = _types.ModuleType("__main__")
    for key, value in attrs.items():
        setattr(main, key, value.format(root=root))
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.chdir(root / "nb")  # where a kernel runs: the notebook's folder
    assert module_label("__main__", str(root)) == expected
    assert module_label("physics.models", str(root)) == "physics.models"


def test_python_dash_m_names_functions_after_the_module(monkeypatch):
    import importlib.machinery
    import types as _types

    from pyjoule._identity import module_label

    main = _types.ModuleType("__main__")
    main.__spec__ = importlib.machinery.ModuleSpec("studies.run", None)
    main.__file__ = "/somewhere/studies/run.py"
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert module_label("__main__") == "studies.run"
    main.__spec__ = importlib.machinery.ModuleSpec("studies.__main__", None)
    assert module_label("__main__") == "studies"
