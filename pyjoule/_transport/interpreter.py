"""A Python interpreter of the client's minor version on a host.

cloudpickle needs the same minor version on both sides, and clusters provide their
Pythons in several ways. The search runs in ONE shell command, in this order:

1. after the user's ``setup`` lines, in the same shell (``module load python/3.11``
   puts its interpreter on ``PATH``), then on ``PATH``: ``python3.X``, ``python3``,
   ``python``, each asked for its version;
2. uv's managed (or otherwise discovered) Pythons: ``uv python find 3.X``.

Only when both fail does pyjoule ask ``uv python install 3.X`` for one (a download
from GitHub, or from ``UV_PYTHON_INSTALL_MIRROR`` when the user set it in
``pj.Host(env=...)`` or the host's own environment), and when that fails too the
error lists the three ways out. The search runs only when an environment is built:
a warm dispatch never looks for an interpreter.
"""

from __future__ import annotations

import logging
import re
import sys

from .._errors import HostError

log = logging.getLogger("pyjoule")

FOUND = "@pyjoule-python"  # the line of the search's answer: "@pyjoule-python <how> <path>"
MIRROR = "UV_PYTHON_INSTALL_MIRROR"

# $1: the minor version wanted, $2: uv's path (may be empty). {setup}: the user's
# lines, numbered by the caller so that a failing one is named.
_SEARCH = r"""minor=$1; uv=$2
set -e
{setup}
set +e
for c in "python$minor" python3 python; do
  p=$(command -v "$c" 2>/dev/null) || continue
  v=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  if [ "$v" = "$minor" ]; then echo "@pyjoule-python path $p"; exit 0; fi
done
if [ -n "$uv" ]; then
  p=$(UV_PYTHON_DOWNLOADS=never "$uv" python find --no-project "$minor" 2>/dev/null) \
    && [ -n "$p" ] && { echo "@pyjoule-python uv $p"; exit 0; }
fi
exit 0
"""


def client_minor() -> str:
    return "{}.{}".format(*sys.version_info[:2])


def is_path(python: str | None) -> bool:
    """Whether ``pj.Host(python=...)`` names an interpreter file, not a version."""
    return bool(python) and ("/" in python or python.startswith("~"))


def search_command(setup_lines, minor: str, uv: str | None) -> list[str]:
    """The argv that prints ``@pyjoule-python <how> <path>`` for the first interpreter
    of ``minor`` found after ``setup_lines``, on PATH or by uv (nothing if none)."""
    from .setuplines import setup_script

    script = _SEARCH.replace("{setup}", setup_script(tuple(setup_lines)))
    return ["sh", "-c", script, "sh", minor, uv or ""]


def with_setup(setup_lines, argv: list[str]) -> list[str]:
    """``argv`` run after the setup lines, in the same shell: a build must see what
    ``module load`` sets (a module's Python may need its ``LD_LIBRARY_PATH`` to run,
    a mirror may be exported there). Without setup lines, ``argv`` itself."""
    if not setup_lines:
        return list(argv)
    from .setuplines import setup_script

    script = "\n".join(["set -e", setup_script(tuple(setup_lines)), 'exec "$@"'])
    return ["sh", "-c", script, "sh", *argv]


def install_command(setup_lines, uv: str, minor: str) -> list[str]:
    """``uv python install`` of ``minor`` after the setup lines (a mirror reaches it
    through the environment: ``pj.Host(env=...)``, the host's own, or a setup line)."""
    return with_setup(setup_lines, [uv, "python", "install", minor])


def parse_found(text: str) -> tuple[str, str] | None:
    """(how, path) from the search's output, None when it found nothing."""
    for line in reversed(text.splitlines()):
        m = re.fullmatch(re.escape(FOUND) + r" (path|uv) (/.+)", line.strip())
        if m:
            return m[1], m[2]
    return None


def find_python(conn, host, minor: str, uv: str | None) -> str:
    """The path of an interpreter of ``minor`` on the host, installed by uv as the
    last resort; a :class:`HostError` listing the ways out when there is none."""
    found = _search(conn, host, minor, uv)
    if found is not None:
        return found
    if uv is None:
        raise no_python_error(conn.endpoint, minor, "uv is not available to install one")
    log.info("no Python %s on %s: installing one with uv python install%s", minor,
             conn.endpoint, f" (from {MIRROR})" if MIRROR in host.env else "")
    res = conn.run(install_command(host.setup, uv, minor), secret_env=host.env, check=False,
                   timeout=1800)
    if res.returncode != 0:
        stderr = res.stderr.decode("utf-8", "replace").strip()
        raise no_python_error(conn.endpoint, minor,
                              "uv python install failed:\n" + stderr[-1500:])
    found = _search(conn, host, minor, uv)
    if found is None:
        raise no_python_error(conn.endpoint, minor,
                              "uv python install succeeded but uv cannot find it")
    return found


def _search(conn, host, minor: str, uv: str | None) -> str | None:
    from .setuplines import setup_failure
    from .shell import mask

    res = conn.run(search_command(host.setup, minor, uv), secret_env=host.env,
                   check=False)
    if res.returncode != 0:
        res.stderr = mask(res.stderr, host.env.values())
        failed = setup_failure(res, host.setup, str(conn.endpoint))
        if failed is not None:
            raise failed
        from .ssh import remote_error

        raise remote_error(conn.endpoint, res, "looking for Python")
    found = parse_found(res.text)
    if found is None:
        return None
    log.info("Python %s on %s: %s (%s)", minor, conn.endpoint, found[1],
             "after the setup lines / on PATH" if found[0] == "path" else "uv python find")
    return found[1]


def no_python_error(endpoint, minor: str, why: str) -> HostError:
    client = client_minor()
    versions = (f"the client runs {client}: cloudpickle needs the same minor version "
                "on both sides" if minor == client else
                f"pj.Host(python={minor!r}) asks for it, and the client runs {client}")
    return HostError(
        f"{endpoint} has no Python {minor} ({versions}); it was looked for after the "
        f"setup lines, on PATH as python{minor}, and with uv python find, and {why}.\n"
        "Ways out:\n"
        f"  1. load one in pj.Host(setup=['module load python/{minor}']) (or your "
        "site's name for it);\n"
        f"  2. install python{minor} on the host (your package manager, or ask the "
        "admins);\n"
        f"  3. let uv install it: uv python install {minor} needs github.com; where "
        f"that is blocked, give a mirror with pj.Host(env={{'{MIRROR}': URL}}), and "
        "do not set UV_PYTHON_DOWNLOADS=never there.")
