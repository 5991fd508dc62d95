"""The per-project uv environment on a host, and pyjoule's own code there.

The environment lives in ``<workdir>/envs/<key>``, where the key hashes the lock file
(``uv.lock``, else ``pyproject.toml``) and the Python minor version; for a folder with
no project (a notebook's), the pinned distributions the function uses instead. It is built with
``uv sync --frozen`` only when no environment of that key is ready; a warm dispatch
runs one ``test`` command and no uv at all. pyjoule itself is not installed from an
index: its package directory is synced (incrementally, like the project) to
``<workdir>/lib/pyjoule-<version>/`` and put on the worker's ``PYTHONPATH``, so the
host runs exactly the client's pyjoule.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

from .._errors import HostError
from . import sync

log = logging.getLogger("pyjoule")

READY = ".pyjoule-ready"

# Find uv: the configured path, PATH, or where its installer puts it. Prints the path.
_FIND_UV = r"""
for c in "$@"; do
  if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; exit 0; fi
  if [ -n "$c" ] && p=$(command -v "$c" 2>/dev/null) && [ -n "$p" ]; then echo "$p"; exit 0; fi
done
exit 1
"""


def python_minor(host) -> str:
    return host.python or "%d.%d" % sys.version_info[:2]


def has_project_file(root: Path) -> bool:
    return any((Path(root) / n).is_file() for n in ("uv.lock", "pyproject.toml"))


def env_key(root: Path, python: str) -> str:
    """Hash of the lock file (or pyproject.toml) and the Python minor version."""
    for name in ("uv.lock", "pyproject.toml"):
        path = Path(root) / name
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes() + python.encode()).hexdigest()
            return f"py{python}-{digest[:16]}"
    raise HostError(f"{root} has neither uv.lock nor pyproject.toml: pyjoule cannot tell "
                    "which packages the host needs. Add a pyproject.toml listing them.")


def find_uv(conn, host) -> str:
    """uv's path on the host, installed into ``~/.local/bin`` when missing and allowed."""
    local_bin = conn.expand("~/.local/bin/uv")
    candidates = [host.uv] if host.uv else ["uv", local_bin]
    res = conn.run(["sh", "-c", _FIND_UV, "sh", *candidates], check=False)
    if res.returncode == 0:
        return res.text.strip().splitlines()[-1]
    if host.uv:
        raise HostError(f"uv not found at {host.uv!r} on {conn.endpoint}: fix pj.Host(uv=...)"
                        " or leave it out to let pyjoule find or install uv")
    if not host.install_uv:
        raise HostError(f"uv is not installed on {conn.endpoint} (not on PATH, not in "
                        "~/.local/bin) and pj.Host(install_uv=False) forbids installing "
                        "it: install it there (python3 -m pip install --user uv) or pass "
                        "pj.Host(uv=PATH)")
    log.info("installing uv on %s (python3 -m pip install --user uv)", conn.endpoint)
    res = conn.run(["python3", "-m", "pip", "install", "--user", "--quiet", "uv"],
                   check=False, timeout=600)
    if res.returncode != 0:
        from .ssh import remote_error

        raise HostError(str(remote_error(conn.endpoint, res, "installing uv")) +
                        "\nInstall uv on the host yourself, or pass pj.Host(uv=PATH).")
    return local_bin


def ensure_env(conn, host, root: Path, project_dest: str) -> str:
    """The path of the environment's Python on the host, building it if needed."""
    python = python_minor(host)
    workdir = conn.expand(host.workdir)
    venv = f"{workdir}/envs/{env_key(root, python)}"
    if conn.run(["test", "-f", f"{venv}/{READY}"], check=False).returncode == 0:
        return f"{venv}/bin/python"
    uv = find_uv(conn, host)
    argv = [uv, "sync", "--no-install-project", "--python", python, "--quiet"]
    if (Path(root) / "uv.lock").is_file():
        argv.insert(2, "--frozen")  # exactly the lock; without one uv resolves
    env = {"UV_PROJECT_ENVIRONMENT": venv, "UV_PYTHON_DOWNLOADS": "never"}
    log.info("building the environment %s on %s with uv", venv, conn.endpoint)
    res = conn.run(argv, env=env, secret_env=host.env, cwd=project_dest, check=False,
                   timeout=1800)
    if res.returncode != 0:
        raise _python_error(conn, python, res)
    # the worker's own imports, for a project that does not depend on pyjoule
    _install(conn, uv, venv, worker_requirements(), env, host.env)
    _ready(conn, venv)
    return f"{venv}/bin/python"


def _ready(conn, venv: str) -> None:
    """Mark ``venv`` complete, private first: uv hardlinks files from its cache, and
    a cache older than pyjoule's ``umask 077`` has them readable by all."""
    conn.run(["sh", "-c", 'chmod -R go-rwx "$1" && touch "$1/$2"', "sh", venv, READY])


def _install(conn, uv: str, venv: str, requirements: list[str], env: dict,
             secret_env: dict) -> None:
    res = conn.run([uv, "pip", "install", "--quiet", "--python", f"{venv}/bin/python",
                    *requirements], env=env, secret_env=secret_env, check=False,
                   timeout=1800)
    if res.returncode != 0:
        from .ssh import remote_error

        raise remote_error(conn.endpoint, res, "installing the function's packages")


def worker_requirements() -> list[str]:
    """cloudpickle and threadpoolctl at the versions installed here."""
    from importlib import metadata

    out = []
    for name in WORKER_REQUIREMENTS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


WORKER_REQUIREMENTS = ("cloudpickle", "threadpoolctl")  # the worker's own imports


def requirements_from(components: dict) -> list[str]:
    """Pinned requirements for a folder with no project: the distributions (at the
    versions installed here) that the function's identity found it uses, and the
    worker's own."""
    reqs: dict[str, str] = {}
    for label, version in components.items():
        if label.startswith("package "):
            name = label[len("package "):]
            reqs[name.lower()] = f"{name}=={version}" if version != "unknown" else name
    for req in worker_requirements():
        reqs.setdefault(req.split("==")[0], req)
    return sorted(reqs.values())


def ensure_env_for(conn, host, requirements: list[str]) -> str:
    """An environment on the host with exactly ``requirements`` (for a notebook or
    folder with no project), keyed by them and the Python minor version."""
    python = python_minor(host)
    digest = hashlib.sha256("\n".join([python, *requirements]).encode()).hexdigest()
    venv = f"{conn.expand(host.workdir)}/envs/py{python}-req-{digest[:16]}"
    if conn.run(["test", "-f", f"{venv}/{READY}"], check=False).returncode == 0:
        return f"{venv}/bin/python"
    uv = find_uv(conn, host)
    env = {"UV_PYTHON_DOWNLOADS": "never"}
    log.info("building the environment %s on %s with uv (%s)", venv, conn.endpoint,
             ", ".join(requirements))
    res = conn.run([uv, "venv", "--quiet", "--python", python, venv], env=env,
                   secret_env=host.env, check=False)
    if res.returncode != 0:
        raise _python_error(conn, python, res)
    _install(conn, uv, venv, requirements, env, host.env)
    _ready(conn, venv)
    return f"{venv}/bin/python"


def _python_error(conn, python: str, res):
    stderr = res.stderr.decode("utf-8", "replace")
    if "No interpreter found" in stderr:
        return HostError(
            f"{conn.endpoint} has no Python {python}, and the client runs "
            f"{'%d.%d' % sys.version_info[:2]}: cloudpickle needs the same minor "
            f"version on both sides. Install Python {python} there (uv python install "
            f"{python}, or a module load in pj.Host(setup=[...])).\n{stderr[-1500:]}")
    from .ssh import remote_error

    return remote_error(conn.endpoint, res, "building the environment")


def ensure_pyjoule(conn, host) -> str:
    """Sync this pyjoule's package to the host; return the folder for PYTHONPATH."""
    import pyjoule

    package = Path(pyjoule.__file__).parent
    lib = f"{conn.expand(host.workdir)}/lib/pyjoule-{pyjoule.__version__}"
    sync.sync(conn, package, f"{lib}/pyjoule")
    return lib


def ready_marker(host, root: Path, workdir: str, requirements=None) -> tuple[str, str]:
    """(ready marker, Python) of the environment :func:`ensure_env` (or, given
    ``requirements``, :func:`ensure_env_for`) makes for ``root`` under ``workdir``:
    a host command that finds the marker may skip both (one round trip for all the
    checks of a warm dispatch, see ``SSHBackend.prepare``)."""
    python = python_minor(host)
    if requirements is None:
        venv = f"{workdir}/envs/{env_key(root, python)}"
    else:
        digest = hashlib.sha256("\n".join([python, *requirements]).encode()).hexdigest()
        venv = f"{workdir}/envs/py{python}-req-{digest[:16]}"
    return f"{venv}/{READY}", f"{venv}/bin/python"
