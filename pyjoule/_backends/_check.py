"""One host command for every check of a dispatch (issue #14: round trips).

A dispatch needs to know the host's home and CPUs, what the project's and pyjoule's
synced copies hold (their manifests) and whether the environment is ready. Asked
one by one, that is four commands, two round trips each; :func:`check_host` asks
them in one (``_host_scripts.CHECK``), checks the answer, and hands the manifests to
:func:`.._transport.sync.expect`, so that the syncs that follow read nothing.
"""

from __future__ import annotations

import json

from .._errors import HostError
from . import _host_scripts as scripts


def check_host(conn, host, root, requirements=None) -> dict:
    """Ask the host, in one command, for its home and CPUs, the manifests of the
    project's and pyjoule's synced copies (handed to :func:`sync.expect`: the syncs
    then read nothing) and whether the environment is ready. Returns {"cpus",
    "ready", "python"}; the answer is checked before anything uses it."""
    import pyjoule

    from .._transport import env, sync

    # "~/..." until the home is known: the check expands it there
    workdir = host.workdir.rstrip("/") if conn._home is None else conn.expand(host.workdir)
    project = sync.project_dir(workdir, root)
    lib = f"{workdir}/lib/pyjoule-{pyjoule.__version__}/pyjoule"  # as env.ensure_pyjoule
    markers, python = env.expected(host, root, workdir, requirements,
                                   expand=lambda p: p if conn._home is None
                                   else conn.expand(p))
    ask = {"manifests": [f"{project}/{sync.MANIFEST}", f"{lib}/{sync.MANIFEST}"],
           "markers": markers}
    res = conn.run(["python3", "-c", scripts.CHECK, json.dumps(ask)])
    try:
        ans = json.loads(res.stdout)
        home, cpus = ans["home"], ans["cpus"]
        manifests, found = ans["manifests"], ans["markers"]
        if not (isinstance(home, str) and home.startswith("/") and isinstance(cpus, int)
                and cpus >= 1 and isinstance(found, list) and len(found) == len(markers)
                and all(isinstance(m, bool) for m in found) and len(manifests) == 2
                and all(m is None or isinstance(m, str) for m in manifests)):
            raise ValueError(home)
    except (ValueError, KeyError, TypeError, IndexError):
        raise HostError(f"{conn.endpoint} answered pyjoule's check with "
                        f"{res.stdout[:200]!r}, not the JSON its script prints: is "
                        "python3 on the host's PATH the standard one?") from None
    if conn._home is None:
        conn._home = home
    sync.expect(conn, conn.expand(project), manifests[0])
    sync.expect(conn, conn.expand(lib), manifests[1])
    return {"cpus": cpus, "ready": all(found), "python": conn.expand(python)}
