"""Sessions: ``nox -s static``, ``nox -s tests``, ``nox -s example``, ``nox -s docs``,
``nox -s benchmarks``.

Each uses the project's locked environment (``uv sync --frozen``), so a session runs
exactly what CI and the README run.

While changing code, the quick loop leaves out the tests marked ``slow`` (scripts in
fresh interpreters, SSH and SLURM round trips, fault tests, mypy; the rest takes about
two minutes on a 2-core machine)::

    nox -s tests -- -m "not slow"          # or: uv run --frozen pytest -m "not slow"
    nox -s tests -- tests/test_space.py    # one file

CI (``.ci/run``) runs the static checks (``nox -s static``: ruff, then mypy) and then
every test (``nox -s tests`` without arguments).
CONTRIBUTING.md says more.
"""

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["static", "tests"]


@nox.session
def static(session: nox.Session) -> None:
    """ruff (lint and import order) and mypy, as `.ci/run` runs them before the tests."""
    session.run("uv", "run", "--frozen", "ruff", "check", *session.posargs, external=True)
    session.run("uv", "run", "--frozen", "mypy", external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (`.ci/run` runs it after `static`); ``-- -m "not slow"``: the
    quick loop."""
    session.run("uv", "run", "--frozen", "pytest", *session.posargs, external=True)


@nox.session
def example(session: nox.Session) -> None:
    """The quick-start study (run it twice: the second run is served from the cache)."""
    session.run("uv", "run", "--frozen", "python", "examples/quickstart.py", external=True)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, into site/; any warning is an error (as in tests/test_docs.py)."""
    session.run("uv", "run", "--frozen", "mkdocs", "build", "--strict", *session.posargs,
                external=True)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """pyjoule against joblib, multiprocessing and psweep; writes docs/benchmarks.md."""
    session.run("uv", "run", "--frozen", "--group", "bench", "python", "benchmarks/run.py",
                *session.posargs, external=True)
