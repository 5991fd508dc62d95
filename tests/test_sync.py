"""Project sync to the real test sshd: only what changed travels, in one stream."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.fixture
def linked(tmp_path):
    """A git project with a tracked file link, a tracked folder link, an absolute
    link inside, and a link (file and folder) to outside the project."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "shared.txt").write_text("from outside\n")
    (outside / "sub" / "table.csv").write_text("a,b\n1,2\n")
    root = tmp_path / "linked"
    (root / "docs").mkdir(parents=True)
    (root / "data" / "v1").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'linked'\n")
    (root / "docs" / "README.md").write_text("the readme\n")
    (root / "data" / "v1" / "x.txt").write_text("seven\n")
    os.symlink("docs/README.md", root / "README.md")
    os.symlink("data/v1", root / "current")  # a folder link inside
    os.symlink(root / "docs" / "README.md", root / "docs" / "abs.md")  # absolute, inside
    os.symlink(outside / "shared.txt", root / "shared.txt")
    os.symlink(outside / "sub", root / "ext")  # a folder link leading out
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    return root


LINKED = {"README.md", "current", "data/v1/x.txt", "docs/README.md", "docs/abs.md",
          "ext/table.csv", "pyproject.toml", "shared.txt"}


def test_links_are_listed_kept_or_followed(linked):
    assert set(sync.list_files(linked)) == LINKED
    assert sync.link_text(linked, "README.md") == "docs/README.md"
    assert sync.link_text(linked, "current") == "data/v1"
    assert sync.link_text(linked, "docs/abs.md") == "README.md"  # made relative
    assert sync.link_text(linked, "shared.txt") is None  # out: sent as the file
    shutil.move(linked / ".git", linked / "not-git")  # the walk finds the same
    assert set(sync.list_files(linked, exclude=["not-git"])) == LINKED


def test_links_synced_work_on_the_host(ssh_host, linked, caplog):
    conn = ssh.connect(ssh_host)
    dest = conn.expand("~/pj-sync-test/linked")
    conn.run(["rm", "-rf", dest])
    with caplog.at_level("INFO", logger="pyjoule"):
        sync.sync(conn, linked, dest)
    assert "shared.txt is a link out of the project" in caplog.text
    script = ("import os, sys\nd = sys.argv[1]\n"
              "for n in ['README.md', 'current', 'docs/abs.md', 'shared.txt', 'ext']:\n"
              "    p = os.path.join(d, n)\n"
              "    print(n, os.readlink(p) if os.path.islink(p) else 'no-link')\n"
              "print(open(os.path.join(d, 'README.md')).read().strip())\n"
              "print(open(os.path.join(d, 'current/x.txt')).read().strip())\n"
              "print(open(os.path.join(d, 'shared.txt')).read().strip())\n"
              "print(open(os.path.join(d, 'ext/table.csv')).read().split()[1])\n")
    out = conn.run(["python3", "-c", script, dest]).text.splitlines()
    assert out == ["README.md docs/README.md", "current data/v1", "docs/abs.md README.md",
                   "shared.txt no-link", "ext no-link", "the readme", "seven",
                   "from outside", "1,2"]
    # a link retargeted and one replaced by a file: the host follows, nothing written
    # through the old link
    os.unlink(linked / "README.md")
    (linked / "README.md").write_text("now a file\n")
    os.unlink(linked / "current")
    (linked / "data" / "v2").mkdir()
    (linked / "data" / "v2" / "x.txt").write_text("eight\n")
    os.symlink("data/v2", linked / "current")
    step = sync.sync(conn, linked, dest)
    assert sorted(step.changed) == ["README.md", "current", "data/v2/x.txt"]
    out = conn.run(["sh", "-c", 'cat "$1/README.md" "$1/docs/README.md" "$1/current/x.txt"',
                    "sh", dest]).text.splitlines()
    assert out == ["now a file", "the readme", "eight"]
    again = sync.sync(conn, linked, dest)
    assert (again.sent, again.deleted) == (0, 0)


def _receive(conn, dest, members) -> str:
    """Feed the receiver a hand-made tar: (name, link target or None, data)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = json.dumps({"deleted": [], "manifest": {}}).encode()
        info = tarfile.TarInfo(sync.CONTROL)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, link, body in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    res = conn.run(["python3", "-c", sync._RECEIVER, dest], input=buf.getvalue(),
                   check=False)
    return res.stderr.decode()


@pytest.mark.parametrize("members", [
    [("out", "/tmp", b""), ("out/pj-escape", None, b"x")],  # absolute link, then through
    [("out", "../..", b""), ("out/pj-escape", None, b"x")],  # relative, leading out
    [("a", "b", b""), ("b", "../../../tmp", b""), ("a/pj-escape", None, b"x")],  # chain
    [("../pj-escape", None, b"x")],
])
def test_the_receiver_stays_in_the_project_with_links(ssh_host, members):
    conn = ssh.connect(ssh_host)
    dest = conn.expand("~/pj-sync-test/confined")
    conn.run(["rm", "-rf", dest, "/tmp/pj-escape", conn.expand("~/pj-sync-test/pj-escape")])
    err = _receive(conn, dest, members)
    assert "refusing" in err
    leaked = conn.run(["sh", "-c", 'ls "$@" 2>/dev/null; true', "sh", "/tmp/pj-escape",
                       conn.expand("~/pj-sync-test/pj-escape")]).text
    assert leaked == ""
    # and no link leading out is left in the project for a later write to follow
    script = ("import os, sys\nd = os.path.realpath(sys.argv[1])\n"
              "for f, ds, fs in os.walk(d):\n"
              "    for n in ds + fs:\n"
              "        r = os.path.realpath(os.path.join(f, n))\n"
              "        if not r.startswith(d + os.sep): print(n, r)\n")
    assert conn.run(["python3", "-c", script, dest]).text == ""


def test_a_link_already_on_the_host_is_replaced_not_written_through(ssh_host):
    conn = ssh.connect(ssh_host)
    dest = conn.expand("~/pj-sync-test/replaced")
    victim = conn.expand("~/pj-sync-test/victim.txt")
    conn.run(["rm", "-rf", dest])
    conn.run(["sh", "-c", 'mkdir -p "$1" && echo keep > "$2" && ln -s "$2" "$1/f.txt"',
              "sh", dest, victim])
    assert _receive(conn, dest, [("f.txt", None, b"new\n")]) == ""
    out = conn.run(["sh", "-c", 'cat "$1"; cat "$2/f.txt"; test -L "$2/f.txt" || echo file',
                    "sh", victim, dest]).text.split()
    assert out == ["keep", "new", "file"]
