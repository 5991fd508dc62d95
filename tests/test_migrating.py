"""docs/migrating.md: every pyjoule example on the page runs as written and does what
the text around it says (its ``assert`` statements are the claims).

Each fenced block of the page is marked on the line before it:

- ``<!-- run: NAME [needs=15.1,15.3] -->``: a pyjoule example. The blocks of one NAME
  run in page order in one new project folder (a ``pyproject.toml``, so the cache is
  its ``.pyjoule/``), each in a fresh process: ``python`` blocks as a script,
  ``bash`` blocks with ``bash -e`` and the ``pyjoule`` command on PATH. ``needs=``
  names the items of issue #15 the example relies on, for the failure message.
- ``<!-- file: NAME PATH -->``: the block is written to PATH in NAME's project
  before its examples run (e.g. a ``pyproject.toml`` with ``[tool.pyjoule]``).
- ``<!-- peer: TOOL -->``: another tool's code, shown for comparison and not run.

An unmarked block fails the test: no pyjoule example can go untested by omission.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "migrating.md"
MARK = re.compile(r"<!-- (run|file|peer): (\S+)(?: (\S+))? -->")
FENCE = re.compile(r"^```(\w*)\s*$")
PYPROJECT = '[project]\nname = "study"\nversion = "0.1"\n'


@dataclass
class Block:
    line: int
    lang: str
    text: str
    kind: str | None = None  # run, file, peer; None: unmarked
    name: str = ""
    arg: str = ""


@dataclass
class Example:
    name: str
    steps: list[Block] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    needs: set[str] = field(default_factory=set)


def blocks(text: str) -> list[Block]:
    """The fenced blocks of the page, each with the marker on the line before it."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        block = Block(line=i + 1, lang=m.group(1), text="\n".join(lines[i + 1:end]) + "\n")
        mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
        if mark:
            block.kind, block.name, block.arg = mark.group(1), mark.group(2), mark.group(3) or ""
        out.append(block)
        i = end + 1
    return out


def examples(text: str) -> dict[str, Example]:
    """The runnable examples by name, in page order."""
    out: dict[str, Example] = {}
    for b in blocks(text):
        if b.kind not in ("run", "file"):
            continue
        ex = out.setdefault(b.name, Example(b.name))
        if b.kind == "file":
            ex.files[b.arg] = b.text
        else:
            ex.steps.append(b)
            if b.arg.startswith("needs="):
                ex.needs.update(b.arg[len("needs="):].split(","))
    return out


EXAMPLES = examples(PAGE.read_text())


def test_every_block_is_marked():
    unmarked = [f"docs/migrating.md:{b.line} ({b.lang or 'no language'})"
                for b in blocks(PAGE.read_text()) if b.kind is None]
    assert not unmarked, ("mark each block with <!-- run: NAME -->, <!-- file: NAME PATH "
                          f"--> or <!-- peer: TOOL --> on the line before it: {unmarked}")


def test_the_page_has_examples_of_every_kind():
    """The parser finds what the page holds (guards against a marker typo hiding all)."""
    kinds = {b.kind for b in blocks(PAGE.read_text())}
    assert kinds == {"run", "file", "peer"}
    assert len(EXAMPLES) >= 10
    for ex in EXAMPLES.values():
        assert ex.steps, f"{ex.name}: files but no example to run"
        assert all(s.lang in ("python", "bash") for s in ex.steps), ex.name


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_runs_as_written(name, weird_tmp_path):
    ex = EXAMPLES[name]
    project = weird_tmp_path / "project"
    project.mkdir(mode=0o700)
    (project / "pyproject.toml").write_text(PYPROJECT)
    for path, text in ex.files.items():
        (project / path).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYJOULE_")}
    env.update(PYJOULE_WORKERS="2", PYJOULE_PROGRESS="0", MPLBACKEND="Agg",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    for n, step in enumerate(ex.steps, 1):
        if step.lang == "python":
            script = project / f"{name.replace('-', '_')}_{n}.py"
            script.write_text(step.text)
            cmd = [sys.executable, script.name]
        else:
            cmd = ["bash", "-e", "-c", step.text]
        proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                              timeout=240)
        needs = (" (it relies on " + ", ".join(
            "#" + n.replace(".", " item ") for n in sorted(ex.needs)) + ")" if ex.needs else "")
        assert proc.returncode == 0, (
            f"docs/migrating.md:{step.line}: the example {name!r} failed{needs}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
