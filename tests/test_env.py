"""The per-project uv environment on the real test sshd, with real uv."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pyjoule as pj
from pyjoule._transport import env, ssh, sync


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    """A project needing only cloudpickle, locked with the real uv."""
    root = tmp_path_factory.mktemp("tiny") / "tiny project"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        "[project]\nname = 'tiny'\nversion = '0'\nrequires-python = '>=3.10'\n"
        "dependencies = ['cloudpickle>=3']\n")
    (root / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    from sshd_server import _local_uv

    uv = _local_uv()
    assert uv is not None, "uv is needed (pip install uv)"
    subprocess.run([str(uv), "lock", "--quiet"], cwd=root, check=True)
    return root


@pytest.mark.slow
def test_environment_is_built_once_then_reused_without_uv(ssh_host, tiny_project):
    conn = ssh.connect(ssh_host)
    workdir = conn.expand(ssh_host.workdir)
    dest = f"{workdir}/projects/tiny-test"
    sync.sync(conn, tiny_project, dest)
    venv_key = env.env_key(tiny_project, env.python_minor(ssh_host))
    conn.run(["rm", "-rf", f"{workdir}/envs/{venv_key}"])
    python = env.ensure_env(conn, ssh_host, tiny_project, dest)
    # threadpoolctl is not in the project: the worker's own imports are added
    out = conn.run([python, "-c", "import cloudpickle, threadpoolctl, sys, helper; "
                    "print(sys.version_info[:2], helper.twice(21))"], cwd=dest).text
    assert out.strip() == f"{tuple(sys.version_info[:2])} 42"
    before = conn.commands
    assert env.ensure_env(conn, ssh_host, tiny_project, dest) == python
    assert conn.commands - before == 1  # one test, no uv
    # a changed lock is a new environment
    assert env.env_key(tiny_project, "3.11") != env.env_key(tiny_project, "3.12")


def test_python_version_mismatch_names_both_versions(ssh_host, tiny_project):
    conn = ssh.connect(ssh_host)
    dest = conn.expand(f"{ssh_host.workdir}/projects/tiny-test")
    sync.sync(conn, tiny_project, dest)
    # the user forbids uv to download one: the install fails at once, and says so
    host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, python="3.9",
                   env={"UV_PYTHON_DOWNLOADS": "never"})
    with pytest.raises(pj.HostError, match=r"(?s)no Python 3\.9.*client runs 3\.\d+.*"
                       "downloads are not allowed.*Ways out"):
        env.ensure_env(conn, host, tiny_project, dest)


def test_uv_missing_where_configured_is_a_clear_error(ssh_host, tiny_project):
    conn = ssh.connect(ssh_host)
    host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, uv="/no/such/uv",
                   python="3.0")  # a key no environment is ready for
    with pytest.raises(pj.HostError, match="uv not found at '/no/such/uv'"):
        env.ensure_env(conn, host, tiny_project, "/tmp")


def test_project_without_a_lock_or_pyproject_is_refused(tmp_path):
    with pytest.raises(pj.HostError,
                       match="no uv.lock, pyproject.toml, requirements.txt or environment.yml"):
        env.env_key(tmp_path, "3.11")


def test_pyjoule_itself_goes_to_the_host(ssh_host):
    conn = ssh.connect(ssh_host)
    lib = env.ensure_pyjoule(conn, ssh_host)
    out = conn.run(["python3", "-c", "import pyjoule; print(pyjoule.__version__, "
                    "pyjoule.__file__)"], env={"PYTHONPATH": lib}).text.split()
    assert out == [pj.__version__, f"{lib}/pyjoule/__init__.py"]


@pytest.mark.slow
def test_uv_missing_and_not_allowed_to_install(sshd, ssh_host, tiny_project):
    conn = ssh.connect(ssh_host)
    sshd.run("mv ~/.local/bin/uv ~/.local/bin/uv.hidden")
    try:
        host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, install_uv=False,
                       python="3.0")
        with pytest.raises(pj.HostError, match="uv is not installed.*install_uv=False"):
            env.ensure_env(conn, host, tiny_project, "/tmp")
    finally:
        sshd.run("mv ~/.local/bin/uv.hidden ~/.local/bin/uv")


@pytest.mark.slow
def test_two_processes_building_the_same_environment_at_once(sshd, tmp_path):
    """Both get a working environment, built into their own folders, one published:
    neither wipes the other's (repeated: it is a race)."""
    import os
    import uuid

    (tmp_path / "requirements.txt").write_text("cloudpickle>=3\n")
    script = tmp_path / "build.py"
    script.write_text(
        "import os, sys\nimport pyjoule as pj\nfrom pyjoule._transport import env, ssh, sync\n"
        "host = pj.Host('pjtest', ssh_config=sys.argv[1], workdir=sys.argv[2])\n"
        "conn = ssh.connect(host)\n"
        "dest = conn.expand(f'{host.workdir}/project-{os.getpid()}')\n"
        "sync.sync(conn, sys.argv[3], dest)\n"
        "python = env.ensure_env(conn, host, sys.argv[3], dest)\n"
        "print(conn.run([python, '-c', 'import cloudpickle; print(cloudpickle.__name__)'])"
        ".text.strip())\n")
    for _ in range(3):
        workdir = f"~/pj-envrace-{uuid.uuid4().hex[:8]}"
        try:
            procs = [subprocess.Popen([sys.executable, str(script), str(sshd.ssh_config),
                                       workdir, str(tmp_path)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": os.getcwd()})
                     for _ in range(2)]
            outs = [p.communicate(timeout=300) for p in procs]
            assert [p.returncode for p in procs] == [0, 0], outs
            assert [o[0].strip() for o in outs] == ["cloudpickle", "cloudpickle"]
            left = sshd.run(f"ls -a {workdir}/envs").stdout.split()
            assert len([n for n in left if n.startswith("py")]) == 1, left
            assert not [n for n in left if ".building-" in n], left
        finally:
            sshd.run(f"rm -rf {workdir}")
