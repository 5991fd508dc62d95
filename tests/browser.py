"""The browser the UI tests drive: Debian's ``chromium``, installed with apt when
missing (as tests/sshd_server.py installs openssh), launched through Playwright with
``executable_path`` (Playwright's own browser download site is not reachable).

In CI (``CI=true``) a browser that cannot be had fails the tests; elsewhere they are
skipped. Standard library only (Playwright is imported by tests/ui_helpers.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from machine_setup import apt_install, locked, missing_packages

CHROMIUM = "/usr/bin/chromium"
PACKAGES = {"chromium": ["chromium"]}
LOCK = Path(os.environ.get("PYJOULE_TEST_BROWSER_LOCK", "/tmp/pyjoule-chromium.lock"))
#: headless, without anything that would reach the network or need a GPU
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]


def ensure_chromium() -> str:
    """The path of a chromium executable, installed with apt if missing;
    RuntimeError when that is impossible (not root, no apt, no network)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0:
        raise RuntimeError(f"no {CHROMIUM}, and installing Debian's chromium needs root "
                           f"(apt-get install {' '.join(missing_packages(PACKAGES))})")
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"no {CHROMIUM} and no apt-get to install it with")
    try:
        with locked(LOCK):
            apt_install(PACKAGES, recommends=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot install chromium: {exc}") from exc
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"apt installed chromium but there is no {CHROMIUM}")
    return CHROMIUM
