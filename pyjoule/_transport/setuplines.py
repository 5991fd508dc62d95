"""The user's setup lines (``pj.Host(setup=[...])``) in the scripts run on a host:
numbered, so that when one fails the error names it, its exit code and the end of
stderr."""

from __future__ import annotations

import re

_SETUP_FAILED = re.compile(r"^@pyjoule-setup-failed (\d+) (\d+)$", re.M)


def setup_script(lines) -> str:
    """The setup lines for ``scripts.START``, each preceded by its number, so that
    the EXIT trap can tell which one failed (the lines themselves are left untouched)."""
    if not lines:
        return ""
    out = ["trap 'c=$?; [ $c = 0 ] || echo \"@pyjoule-setup-failed $pj_setup $c\" >&2' EXIT"]
    for i, line in enumerate(lines, 1):
        out += [f"pj_setup={i}", line]
    return "\n".join([*out, "trap - EXIT"])


def setup_failure(result, lines, where: str):
    """The error for a start that a setup line failed (None if none did): the line,
    its exit code and the end of stderr."""
    from .._errors import RemoteCommandError

    stderr = result.stderr.decode("utf-8", "replace")
    m = _SETUP_FAILED.search(stderr)
    if m is None:
        return None
    n, code = int(m[1]), int(m[2])
    stderr = _SETUP_FAILED.sub("", stderr).strip()
    tail = "\n".join(stderr.splitlines()[-12:])
    hint = ("; a command not found there, such as `module`, may need the profile "
            "first: `. /etc/profile`" if code == 127 else "")
    return RemoteCommandError(
        f"setup line {n} of {len(lines)} failed on {where} with exit code {code}, so "
        f"nothing was started there: {lines[n - 1]}\nFix it in pj.Host(setup=[...]); "
        f"setup lines run in `sh -c`, not a login shell{hint}."
        + (f"\n--- last lines of stderr ---\n{tail}" if tail else ""),
        result.command, code, stderr)
