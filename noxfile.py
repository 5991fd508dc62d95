"""Sessions: ``nox -s tests``, ``nox -s example``, ``nox -s docs``, ``nox -s benchmarks``.

Each uses the project's locked environment (``uv sync --frozen``), so a session runs
exactly what CI and the README run.
"""

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (what `.ci/run` runs)."""
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
