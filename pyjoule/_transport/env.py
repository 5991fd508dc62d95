"""The per-project environment on a host, and pyjoule's own code there.

The environment lives in ``<workdir>/envs/<key>``, where the key hashes the project's
spec file (:mod:`.envkinds`: ``uv.lock``/``pyproject.toml`` built with ``uv sync``,
``requirements.txt`` with a uv venv and ``uv pip install -r``, ``environment.yml``
with the host's conda) and the Python minor version; for a folder with no spec (a
notebook's), the pinned distributions the function uses instead. The interpreter it
is built from is found by :mod:`.interpreter`. It is built only when no environment
of that key is ready; a warm dispatch finds every marker of :func:`expected` in
the one command of its host check (``_backends/_check.py``) and runs no uv at all.
pyjoule itself is not installed from an index: its package directory
is synced (incrementally, like the project) to ``<workdir>/lib/pyjoule-<version>/``
and put on the worker's ``PYTHONPATH``, so the host runs exactly the client's pyjoule.

``pj.Host(python=PATH, environment="existing")`` uses that interpreter as it is (no
uv): the client's cloudpickle and threadpoolctl are copied to ``lib/vendor-<hash>``
and put on ``PYTHONPATH`` too (as for a conda environment, which pyjoule does not
install packages into).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from .._errors import HostError
from . import envkinds, interpreter, sync

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
    """The minor version the host must run: ``pj.Host(python="3.X")``, else the
    client's (a ``python=`` path must be of the client's minor too)."""
    if host.python and not interpreter.is_path(host.python):
        return host.python
    return interpreter.client_minor()


def has_project_file(root: Path) -> bool:
    """Whether ``root`` names its packages in a spec file (:mod:`.envkinds`)."""
    return envkinds.spec_of(root) is not None


def env_key(root: Path, python: str) -> str:
    """Hash of the spec file (uv.lock, pyproject.toml, requirements.txt or
    environment.yml) and the Python minor version."""
    spec = envkinds.spec_of(root)
    if spec is None:
        raise HostError(f"{root} has no uv.lock, pyproject.toml, requirements.txt or "
                        "environment.yml: pyjoule cannot tell which packages the host "
                        "needs. Add a pyproject.toml (or requirements.txt) listing them.")
    return spec.key(root, python)


def env_dir(conn, host, root: Path) -> str:
    """Where the environment of the project at ``root`` lives on the host."""
    return f"{conn.expand(host.workdir)}/envs/{env_key(root, python_minor(host))}"


def ready_marker(venv: str) -> str:
    """The file whose presence says the environment at ``venv`` is complete: the one
    cheap test of a warm dispatch (``test -f``)."""
    return f"{venv}/{READY}"


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


def _interpreter(conn, host, uv: str | None) -> str:
    """The interpreter an environment is built from: ``pj.Host(python=PATH)`` as
    given, else the one :func:`.interpreter.find_python` finds."""
    if interpreter.is_path(host.python):
        python = conn.expand(host.python)
        _check_minor(conn, host, python, f"pj.Host(python={host.python!r})")
        return python
    return interpreter.find_python(conn, host, python_minor(host), uv)


def needs_vendor(host, root: Path | None) -> bool:
    """Whether the worker's own imports come from ``lib/`` rather than the
    environment: one pyjoule did not build with uv (``environment="existing"``, conda)."""
    if host.environment == "existing":
        return True
    spec = envkinds.spec_of(root) if root is not None else None
    return spec is not None and spec.kind == envkinds.CONDA


def ensure_env(conn, host, root: Path, project_dest: str) -> str:
    """The path of the environment's Python on the host, building it if needed."""
    spec = envkinds.spec_of(root)
    venv = env_dir(conn, host, root)
    python = f"{venv}/bin/python"
    if conn.run(["test", "-f", ready_marker(venv)], check=False).returncode == 0:
        return python
    if spec.kind == envkinds.CONDA:
        _build_conda(conn, host, spec, venv, project_dest)
        return python
    uv = find_uv(conn, host)
    base = _interpreter(conn, host, uv)
    env = {"UV_PYTHON_DOWNLOADS": "never"}
    log.info("building the environment %s on %s with uv (%s, %s)", venv, conn.endpoint,
             spec.file, base)
    tmp = _building(venv)
    try:
        if spec.kind == envkinds.UV_PROJECT:
            argv = [uv, "sync", "--no-install-project", "--python", base, "--quiet"]
            if spec.file == "uv.lock":
                argv.insert(2, "--frozen")  # exactly the lock; without one uv resolves
            res = conn.run(interpreter.with_setup(host.setup, argv),
                           env={**env, "UV_PROJECT_ENVIRONMENT": tmp},
                           secret_env=host.env, cwd=project_dest, check=False, timeout=1800)
            if res.returncode != 0:
                raise _python_error(conn, python_minor(host), res)
        else:  # requirements.txt: a venv, then uv pip install -r (relative to the project)
            _venv(conn, host, uv, base, tmp, env)
            _install(conn, host, uv, tmp, ["-r", spec.file], env, cwd=project_dest)
        # the worker's own imports, for a project that does not depend on pyjoule
        _install(conn, host, uv, tmp, worker_requirements(), env)
    except BaseException:
        _drop(conn, tmp)
        raise
    _publish(conn, tmp, venv)
    return python


def _building(venv: str) -> str:
    """A fresh folder beside ``venv`` to build in: two processes building the same
    environment at once each build their own, and the first to finish publishes it."""
    import uuid

    return f"{venv}.building-{uuid.uuid4().hex[:12]}"


def _drop(conn, tmp: str) -> None:
    """Remove a build that failed (best effort: the connection may be what failed)."""
    try:
        conn.run(["rm", "-rf", tmp], check=False)
    except Exception:  # noqa: BLE001 - the build's own error is the one to show
        log.debug("could not remove %s on %s", tmp, conn.endpoint)


# Publish a built environment: private, marked ready, then renamed into place in one
# step, so an environment's folder only ever appears complete. If another process
# published it first, this build is dropped; a folder there without the marker (an
# interrupted build of an older pyjoule) is replaced.
_PUBLISH = r"""
import os, shutil, subprocess, sys
tmp, venv, ready = sys.argv[1:4]
subprocess.run(["chmod", "-R", "go-rwx", tmp], check=True)
open(os.path.join(tmp, ready), "w").close()
for attempt in range(2):
    try:
        os.rename(tmp, venv)
        break
    except OSError:
        if os.path.isfile(os.path.join(venv, ready)):
            shutil.rmtree(tmp, ignore_errors=True)
            break
        shutil.rmtree(venv, ignore_errors=True)
else:
    sys.exit("cannot put the environment in place at %s" % venv)
"""


def _publish(conn, tmp: str, venv: str) -> None:
    """Mark ``tmp`` complete (private first: uv hardlinks files from its cache, and a
    cache older than pyjoule's ``umask 077`` has them readable by all), then move it
    to ``venv`` unless another process did so first."""
    conn.run(["python3", "-c", _PUBLISH, tmp, venv, READY])


def _venv(conn, host, uv: str, base: str, venv: str, env: dict) -> None:
    argv = [uv, "venv", "--quiet", "--python", base, venv]
    res = conn.run(interpreter.with_setup(host.setup, argv), env=env,
                   secret_env=host.env, check=False)
    if res.returncode != 0:
        raise _python_error(conn, python_minor(host), res)


def _build_conda(conn, host, spec, prefix: str, project_dest: str) -> None:
    """Create the conda environment of ``spec`` at ``prefix`` with the host's conda,
    mamba or micromamba; its Python must be the client's minor."""
    from .setuplines import setup_script
    from .ssh import remote_error

    found = conn.run(envkinds.conda_find_command(setup_script(host.setup)),
                     secret_env=host.env, check=False).text.strip().splitlines()
    if not found:
        raise envkinds.no_conda_error(conn.endpoint, spec.file)
    tool = found[-1]
    log.info("building the environment %s on %s with %s (%s)", prefix, conn.endpoint,
             tool, spec.file)
    conn.run(["rm", "-rf", prefix])  # a half-built one from an interrupted build
    argv = envkinds.conda_create_command(tool, prefix, f"{project_dest}/{spec.file}")
    res = conn.run(interpreter.with_setup(host.setup, argv), secret_env=host.env,
                   cwd=project_dest, check=False, timeout=3600)
    if res.returncode != 0:
        raise remote_error(conn.endpoint, res, f"building the environment of {spec.file}")
    _check_minor(conn, host, f"{prefix}/bin/python", spec.file)
    _ready(conn, prefix)


def _check_minor(conn, host, python: str, what: str) -> None:
    """``python`` runs on the host (after the setup lines) and is of the minor version
    the client needs."""
    minor = python_minor(host)
    argv = [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    res = conn.run(interpreter.with_setup(host.setup, argv), secret_env=host.env,
                   check=False)
    got = res.text.strip()
    if res.returncode != 0 or got != minor:
        raise HostError(
            f"{python} on {conn.endpoint} (from {what}) "
            + (f"runs Python {got}" if res.returncode == 0 else "does not run")
            + f", and the client runs {minor}: cloudpickle needs the same minor version "
            f"on both sides. Use a Python {minor} there (for {what}: an interpreter or "
            f"a python={minor} pin of that minor), or run the client with {got or 'it'}.")


def _ready(conn, venv: str) -> None:
    """Mark ``venv`` complete, private first: uv hardlinks files from its cache, and
    a cache older than pyjoule's ``umask 077`` has them readable by all."""
    conn.run(["sh", "-c", 'chmod -R go-rwx "$1" && touch "$1/$2"', "sh", venv, READY])


def _install(conn, host, uv: str, venv: str, requirements: list[str], env: dict,
             cwd: str | None = None) -> None:
    argv = [uv, "pip", "install", "--quiet", "--python", f"{venv}/bin/python",
            *requirements]
    res = conn.run(interpreter.with_setup(host.setup, argv), env=env,
                   secret_env=host.env, cwd=cwd, check=False, timeout=1800)
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


def env_dir_for(conn, host, requirements: list[str]) -> str:
    """Where the environment of exactly ``requirements`` lives on the host."""
    return _req_path(conn.expand(host.workdir), python_minor(host), requirements)


def _req_path(workdir: str, python: str, requirements: list[str]) -> str:
    digest = hashlib.sha256("\n".join([python, *requirements]).encode()).hexdigest()
    return f"{workdir}/envs/py{python}-req-{digest[:16]}"


def ensure_env_for(conn, host, requirements: list[str]) -> str:
    """An environment on the host with exactly ``requirements`` (for a notebook or
    folder with no project), keyed by them and the Python minor version."""
    venv = env_dir_for(conn, host, requirements)
    if conn.run(["test", "-f", ready_marker(venv)], check=False).returncode == 0:
        return f"{venv}/bin/python"
    uv = find_uv(conn, host)
    env = {"UV_PYTHON_DOWNLOADS": "never"}
    base = _interpreter(conn, host, uv)
    log.info("building the environment %s on %s with uv (%s, %s)", venv, conn.endpoint,
             base, ", ".join(requirements))
    tmp = _building(venv)
    try:
        _venv(conn, host, uv, base, tmp, env)
        _install(conn, host, uv, tmp, requirements, env)
    except BaseException:
        _drop(conn, tmp)
        raise
    _publish(conn, tmp, venv)
    return f"{venv}/bin/python"


def _python_error(conn, python: str, res):
    stderr = res.stderr.decode("utf-8", "replace")
    if "No interpreter found" in stderr:
        return interpreter.no_python_error(conn.endpoint, python,
                                           "uv found none:\n" + stderr[-1500:])
    from .ssh import remote_error

    return remote_error(conn.endpoint, res, "building the environment")


def ensure_pyjoule(conn, host) -> str:
    """Sync this pyjoule's package to the host; return the folder for PYTHONPATH."""
    import pyjoule

    package = Path(pyjoule.__file__).parent
    lib = f"{conn.expand(host.workdir)}/lib/pyjoule-{pyjoule.__version__}"
    sync.sync(conn, package, f"{lib}/pyjoule")
    return lib


# ------------------------------------------------- an environment not built by uv
def vendor_dir(conn, host) -> str:
    """``lib/vendor-<hash>``: the client's cloudpickle and threadpoolctl, for an
    interpreter whose environment pyjoule did not build (keyed by their versions)."""
    return _vendor_path(conn.expand(host.workdir))


def _vendor_path(workdir: str) -> str:
    versions = ",".join(worker_requirements())
    digest = hashlib.sha256(versions.encode()).hexdigest()[:16]
    return f"{workdir}/lib/vendor-{digest}"


def vendor_marker(vendor: str, python: str) -> str:
    """The marker of ``vendor`` checked with ``python``: one per interpreter, written
    once its minor version was found to be the client's."""
    digest = hashlib.sha256(python.encode()).hexdigest()[:12]
    return f"{vendor}/{READY}-{digest}"


def ensure_vendor(conn, host, python: str) -> str:
    """The vendor folder for PYTHONPATH, sent (one tar) when not there yet; the first
    time for ``python``, its minor version is checked against the client's."""
    vendor = vendor_dir(conn, host)
    marker = vendor_marker(vendor, python)
    if conn.run(["test", "-f", marker], check=False).returncode == 0:
        return vendor
    _check_existing(conn, host, python)
    payload = sync.tar_files(_vendor_files(), {"deleted": [], "manifest": {}})
    res = conn.run(["python3", "-c", sync._RECEIVER, vendor], input=payload, check=False)
    if res.returncode != 0:
        from .ssh import remote_error

        raise remote_error(conn.endpoint, res, "copying cloudpickle and threadpoolctl")
    conn.run(["touch", marker])
    return vendor


def _check_existing(conn, host, python: str) -> None:
    """``python`` runs on the host and is of the client's minor version."""
    res = conn.run(["test", "-x", python], check=False)
    if res.returncode != 0:
        raise HostError(f"pj.Host(python={host.python!r}): {python} is not an executable "
                        f"file on {conn.endpoint}. Give the full path of the environment's "
                        "interpreter there (e.g. /home/you/env/bin/python).")
    _check_minor(conn, host, python, f"pj.Host(python={host.python!r})"
                 if host.environment == "existing" else "the environment")


def _vendor_files() -> list[tuple[str, str]]:
    """(path here, name in the vendor folder) of the client's cloudpickle package and
    threadpoolctl module: the versions the client pickles with."""
    import cloudpickle
    import threadpoolctl

    package = Path(cloudpickle.__file__).parent
    files = [(str(p), str(p.relative_to(package.parent)))
             for p in sorted(package.rglob("*.py"))]
    return [*files, (threadpoolctl.__file__, "threadpoolctl.py")]


def ensure_existing(conn, host) -> str:
    """``pj.Host(python=PATH, environment="existing")``: the interpreter as given, no
    uv at all; its minor version is checked once (with the vendor folder's marker)."""
    return conn.expand(host.python)


# ------------------------------------------------- what a warm dispatch checks
def expected(host, root: Path, workdir: str, requirements=None,
             expand=lambda path: path) -> tuple[list[str], str]:
    """(ready markers, Python) of the environment that :func:`ensure_env`,
    :func:`ensure_env_for` (given ``requirements``) or :func:`ensure_existing` gives
    ``root`` under ``workdir``, with the vendor folder's marker where the worker's
    imports come from ``lib/``: a host command that finds every marker may skip them
    all (one round trip for all the checks of a warm dispatch: ``SSHBackend.prepare``).
    ``expand`` turns ``~/`` into the host's home when it is known (else a marker
    is simply not found, and the ensure functions run)."""
    if host.environment == "existing":
        python = expand(host.python)
        return [vendor_marker(_vendor_path(workdir), python)], python
    python = python_minor(host)
    if requirements is None:
        venv = f"{workdir}/envs/{env_key(root, python)}"
    else:
        venv = _req_path(workdir, python, requirements)
    markers = [ready_marker(venv)]
    if needs_vendor(host, root):
        markers.append(vendor_marker(_vendor_path(workdir), f"{venv}/bin/python"))
    return markers, f"{venv}/bin/python"
