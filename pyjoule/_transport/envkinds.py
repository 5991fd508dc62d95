"""Which kind of environment a project asks for, its key, and the commands that build it.

A project names its packages in one of these files, looked for in this order:
``uv.lock``, ``pyproject.toml`` (built with ``uv sync``), ``requirements.txt`` (a uv
venv and ``uv pip install -r``), ``environment.yml`` / ``environment.yaml`` (the
host's ``conda``, ``mamba`` or ``micromamba``). A folder with none of them gets an
environment of the pinned distributions its function uses (:mod:`.env`). Each
environment is keyed by the hash of its spec file plus the Python minor version, so
it is built once per spec and reused by every later dispatch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .._errors import HostError

UV_PROJECT = "uv"  # uv.lock / pyproject.toml
REQUIREMENTS = "requirements"  # requirements.txt
CONDA = "conda"  # environment.yml
SPEC_FILES = (("uv.lock", UV_PROJECT), ("pyproject.toml", UV_PROJECT),
              ("requirements.txt", REQUIREMENTS), ("environment.yml", CONDA),
              ("environment.yaml", CONDA))
CONDA_TOOLS = ("micromamba", "mamba", "conda")  # the first found on the host is used


@dataclass(frozen=True)
class Spec:
    kind: str
    file: str  # the spec file's name in the project

    def key(self, root: Path, minor: str) -> str:
        """``py<minor>-[<kind>-]<hash of the file and minor>``: the uv kind keeps the
        name it always had, so environments built before stay in use."""
        data = (Path(root) / self.file).read_bytes()
        digest = hashlib.sha256(data + minor.encode()).hexdigest()[:16]
        return f"py{minor}-{digest}" if self.kind == UV_PROJECT \
            else f"py{minor}-{self.kind}-{digest}"


def spec_of(root: Path) -> Spec | None:
    """The spec that decides the environment of the project at ``root`` (None: a
    folder with no spec, whose function's packages are used instead)."""
    for name, kind in SPEC_FILES:
        if (Path(root) / name).is_file():
            return Spec(kind, name)
    return None


def conda_find_command(setup_script: str) -> list[str]:
    """Prints the path of the host's conda-like tool (after the setup lines: conda is
    often a module), nothing when there is none."""
    script = "\n".join(["set -e", setup_script, "set +e",
                        f"for c in {' '.join(CONDA_TOOLS)}; do",
                        '  p=$(command -v "$c" 2>/dev/null) && { echo "$p"; exit 0; }',
                        "done", "exit 0"])
    return ["sh", "-c", script, "sh"]


def conda_create_command(tool: str, prefix: str, spec_path: str) -> list[str]:
    """The argv that creates the environment of ``spec_path`` at ``prefix``."""
    name = tool.rsplit("/", 1)[-1]
    if name == "micromamba":
        return [tool, "create", "--yes", "--quiet", "--prefix", prefix, "--file", spec_path]
    # conda and mamba: `env create` is the one that reads an environment.yml
    return [tool, "env", "create", "--quiet", "--prefix", prefix, "--file", spec_path]


def no_conda_error(endpoint, spec_file: str) -> HostError:
    return HostError(
        f"the project has {spec_file} but {endpoint} has no conda, mamba or micromamba "
        "(looked for after the setup lines and on PATH). Load one in "
        "pj.Host(setup=['module load miniforge']) (your site's name for it), install "
        "micromamba there, or give the project a requirements.txt or pyproject.toml "
        "instead (built with uv).")
