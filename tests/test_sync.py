"""Project sync to the real test sshd: only what changed travels, in one stream."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from pyjoule._transport import ssh, sync


@pytest.fixture
def project(weird_tmp_path):
    root = weird_tmp_path / "proj ect"
    (root / "pkg" / "sub dir").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (root / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "pkg" / "sub dir" / "it's; $(x).py").write_text("Y = 2\n")
    (root / "data.bin").write_bytes(os.urandom(300_000))
    (root / "ignored.log").write_text("noise")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("obj")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (root / ".venv").mkdir()
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / ".pyjoule").mkdir()
    (root / ".pyjoule" / "index.sqlite").write_text("cache")
    (root / "secret.env").write_text("TOKEN=1")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


EXPECTED = {".gitignore", "data.bin", "pkg/__init__.py", "pkg/sub dir/it's; $(x).py",
            "pyproject.toml"}


def _remote_files(conn, dest) -> dict[str, str]:
    script = ("import hashlib, json, os, sys\nd = sys.argv[1]\nout = {}\n"
              "for f, _, names in os.walk(d):\n"
              "    for n in names:\n"
              "        p = os.path.join(f, n)\n"
              "        out[os.path.relpath(p, d)] = hashlib.sha256(open(p, 'rb').read())"
              ".hexdigest()\n"
              "print(json.dumps(out))")
    files = json.loads(conn.run(["python3", "-c", script, dest]).stdout)
    files.pop(sync.MANIFEST)
    return files


def _local_files(root) -> dict[str, str]:
    return {n: m[2] for n, m in sync.manifest(root, sync.list_files(root, ["secret.env"])).items()}


def test_listing_follows_gitignore_and_the_built_in_exclusions(project):
    assert set(sync.list_files(project, exclude=["secret.env"])) == EXPECTED
    (project / ".git").rename(project / "not-git")  # no git: the walk excludes the same
    assert set(sync.list_files(project, exclude=["secret.env", "not-git"])) == EXPECTED


def test_first_sync_then_only_changes_travel(ssh_host, project):
    conn = ssh.connect(ssh_host)
    dest = "~/pj-sync-test/proj 'x'"
    conn.run(["rm", "-rf", conn.expand("~/pj-sync-test")])
    first = sync.sync(conn, project, dest, exclude=["secret.env"])
    assert first.sent == len(EXPECTED) and first.deleted == 0
    assert _remote_files(conn, conn.expand(dest)) == _local_files(project)

    # no change: one command, nothing sent
    again = sync.sync(conn, project, dest, exclude=["secret.env"])
    assert (again.sent, again.deleted, again.commands, again.bytes_sent) == (0, 0, 1, 0)

    # edit one, add one, delete one, touch one without changing it
    (project / "pkg" / "__init__.py").write_text("X = 2\n")
    (project / "pkg" / "new.py").write_text("Z = 3\n")
    (project / "data.bin").unlink()
    os.utime(project / "pyproject.toml", (time.time() + 5, time.time() + 5))
    step = sync.sync(conn, project, dest, exclude=["secret.env"])
    assert sorted(step.changed) == ["pkg/__init__.py", "pkg/new.py"]
    assert step.deleted == 1 and step.commands == 2 and step.bytes_sent < 20_000
    assert _remote_files(conn, conn.expand(dest)) == _local_files(project)


def test_a_damaged_remote_manifest_means_a_full_resend(ssh_host, project):
    conn = ssh.connect(ssh_host)
    dest = conn.expand("~/pj-sync-test/damaged")
    conn.run(["rm", "-rf", dest])
    sync.sync(conn, project, dest)
    conn.run(["bash", "-c", 'echo "{not json" > "$1"', "_", f"{dest}/{sync.MANIFEST}"])
    again = sync.sync(conn, project, dest)
    assert again.sent == again.files
    assert _remote_files(conn, dest).keys() == set(sync.list_files(project))


def test_each_project_has_its_own_folder_on_the_host(project, tmp_path):
    here = sync.project_dir("/w/", project)
    assert here.startswith("/w/projects/proj_ect-") and "'" not in here
    assert sync.project_dir("/w", project) == here
    assert sync.project_dir("/w", tmp_path / "proj ect") != here
