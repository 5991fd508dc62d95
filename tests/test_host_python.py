"""The host's Python and environment, end to end on the real test sshd with real uv:
an interpreter found only after a setup line, a requirements.txt project with links,
an existing venv used as it is, and the errors when none of the ways works."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

import pyjoule as pj
from pyjoule._transport import env, envkinds, interpreter, ssh

from conftest import run_script

MINOR = "{}.{}".format(*sys.version_info[:2])


@pytest.fixture
def workdir(sshd):
    """A workdir of its own on the host, so that environments are really built."""
    name = f"~/pj-hostpy-{uuid.uuid4().hex[:8]}"
    yield name
    sshd.run(f"rm -rf {name}")


@pytest.fixture
def project(weird_tmp_path, sshd, monkeypatch):
    root = weird_tmp_path / "study"
    root.mkdir()
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    monkeypatch.setenv("PYJOULE_CACHE", str(root / ".pyjoule"))
    monkeypatch.setenv("PYJOULE_PROGRESS", "0")
    return root


@pytest.mark.slow
def test_a_python_found_only_after_a_setup_line_is_the_one_used(sshd, project, workdir):
    """Like `module load python/3.X`: the setup line alone puts the interpreter on
    PATH. The env's pyvenv.cfg names the folder it came from; had the setup line's
    PATH been ignored, /usr/bin's python would have been found instead."""
    modpy = f"{workdir}/modules/python/bin"
    real = sshd.run(f"command -v python{MINOR}").stdout.strip()
    sshd.run(f"mkdir -p {modpy} && ln -s {real} {modpy}/python{MINOR}")
    home = sshd.run(f"cd {modpy} && pwd").stdout.strip()
    (project / "requirements.txt").write_text("cloudpickle>=3\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    out = run_script(project, f"""
        import pyjoule as pj

        host = pj.Host("pjtest", workdir={workdir!r},
                       setup=["export PATH={home}:$PATH"])

        @pj.experiment(host=host, workers=1)
        def where(i):
            import os, sys
            cfg = open(os.path.join(sys.prefix, "pyvenv.cfg")).read()
            return {{"home": [line.split("=", 1)[1].strip() for line in cfg.splitlines()
                              if line.startswith("home")][0]}}

        print(set(where.sweep(i=[1, 2]).home.values.ravel().tolist()))
    """, timeout=300).stdout.strip()
    assert out == repr({home})


def test_the_search_runs_the_setup_lines_first_in_the_same_shell():
    argv = interpreter.search_command(["module load python/3.11"], "3.11", "/u/uv")
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == ["3.11", "/u/uv"]
    script = argv[2]
    assert script.index("module load python/3.11") < script.index('"python$minor"') \
        < script.index("python find")
    assert interpreter.install_command((), "/u/uv", "3.11") == \
        ["/u/uv", "python", "install", "3.11"]
    argv = interpreter.install_command(["export UV_PYTHON_INSTALL_MIRROR=x"], "/u/uv", "3.11")
    assert argv[:2] == ["sh", "-c"] and argv[-4:] == ["/u/uv", "python", "install", "3.11"]
    assert "export UV_PYTHON_INSTALL_MIRROR=x" in argv[2] and 'exec "$@"' in argv[2]
    assert interpreter.parse_found("noise\n@pyjoule-python uv /a b/python\n") == \
        ("uv", "/a b/python")
    assert interpreter.parse_found("@pyjoule-python path\n") is None


def test_no_python_anywhere_tries_uv_then_lists_the_ways_out(ssh_host, workdir):
    """No Python 3.8 on the host and no internet: uv python install is tried for
    real (with the user's mirror, which reaches uv) and fails; the error says what
    to do."""
    conn = ssh.connect(ssh_host)
    host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, python="3.8",
                   workdir=workdir,
                   env={interpreter.MIRROR: "http://127.0.0.1:9/no-mirror",
                        "UV_HTTP_RETRIES": "0"})
    uv = env.find_uv(conn, host)
    with pytest.raises(pj.HostError) as err:
        interpreter.find_python(conn, host, "3.8", uv)
    text = str(err.value)
    assert "has no Python 3.8" in text and "uv python install failed" in text
    for way in ("module load python/3.8", "install python3.8",
                "UV_PYTHON_INSTALL_MIRROR", "UV_PYTHON_DOWNLOADS=never"):
        assert way in text
    uv_part = text.split("uv python install failed:")[1].split("Ways out:")[0]
    assert "***" in uv_part and "github.com" not in uv_part  # the mirror was used


def test_environment_yml_without_conda_is_a_clear_error(ssh_host, tmp_path, workdir):
    (tmp_path / "environment.yml").write_text("dependencies:\n  - python=3.11\n")
    conn = ssh.connect(ssh_host)
    host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, workdir=workdir)
    with pytest.raises(pj.HostError, match="has environment.yml but .* no conda, mamba "
                       "or micromamba.*module load"):
        env.ensure_env(conn, host, tmp_path, "/tmp")


def test_conda_commands_and_keys_per_kind(tmp_path):
    assert envkinds.conda_create_command("/opt/bin/micromamba", "/e/p", "/p/environment.yml") \
        == ["/opt/bin/micromamba", "create", "--yes", "--quiet", "--prefix", "/e/p",
            "--file", "/p/environment.yml"]
    assert envkinds.conda_create_command("conda", "/e/p", "/p/env.yml")[:3] == \
        ["conda", "env", "create"]
    assert "micromamba" in envkinds.conda_find_command("module load conda")[2]
    (tmp_path / "requirements.txt").write_text("numpy\n")
    key = env.env_key(tmp_path, "3.11")
    assert key.startswith("py3.11-requirements-") and key != env.env_key(tmp_path, "3.12")
    (tmp_path / "requirements.txt").write_text("numpy==2\n")
    assert env.env_key(tmp_path, "3.11") != key
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")  # wins over it
    assert env.env_key(tmp_path, "3.11").startswith("py3.11-") and "requirements" \
        not in env.env_key(tmp_path, "3.11")


@pytest.mark.parametrize("kwargs, match", [
    ({"environment": "mine"}, "expected 'auto'.*or 'existing'"),
    ({"environment": "existing"}, "name it with python='/path/on/host/bin/python'"),
    ({"environment": "existing", "python": "3.11"}, "name it with python="),
    ({"python": "python3"}, "expected a version such as '3.11' or the path"),
])
def test_bad_python_or_environment_options(kwargs, match):
    with pytest.raises(pj.OptionError, match=match):
        pj.Host("pjtest", **kwargs)
    assert pj.Host("pjtest", python="3.11").python == "3.11"
    assert pj.Host("pjtest", python="~/v/bin/python", environment="existing")


@pytest.mark.slow
def test_requirements_txt_project_with_links_runs_on_the_host(sshd, project, workdir,
                                                              tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "constants.txt").write_text("42\n")
    (project / "requirements.txt").write_text("cloudpickle>=3\n")
    (project / "docs").mkdir()
    (project / "docs" / "README.md").write_text("read me\n")
    (project / "data" / "v1").mkdir(parents=True)
    (project / "data" / "v1" / "x.txt").write_text("7\n")
    os.symlink("docs/README.md", project / "README.md")
    os.symlink("data/v1", project / "current")
    os.symlink(outside / "constants.txt", project / "constants.txt")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    out = run_script(project, f"""
        import pyjoule as pj

        @pj.experiment(host=pj.Host("pjtest", workdir={workdir!r}), workers=1)
        def read(i):
            import os, sys
            return {{"text": open("README.md").read().strip() + "|"
                     + open("current/x.txt").read().strip() + "|"
                     + open("constants.txt").read().strip(),
                     "links": f"{{os.path.islink('README.md')}} {{os.path.islink('current')}}"
                              f" {{os.path.islink('constants.txt')}}",
                     "env": os.path.basename(sys.prefix)}}

        ds = read.sweep(i=[1])
        print(ds.text.values.ravel()[0], ds.links.values.ravel()[0], ds.env.values.ravel()[0])
    """, timeout=300).stdout.split()
    assert out[:5] == ["read", "me|7|42", "True", "True", "False"]
    assert out[5].startswith(f"py{MINOR}-requirements-")
    mode = sshd.run(f"stat -c %a {workdir}/envs/{out[5]}").stdout.strip()
    assert mode == "700"


@pytest.mark.slow
def test_an_existing_venv_is_used_as_it_is(sshd, project, workdir):
    venv = f"{workdir}/venv"
    sshd.run(f"mkdir -p {workdir} && python{MINOR} -m venv --without-pip {venv}")
    (project / "pyproject.toml").write_text("[project]\nname = 'study'\nversion = '0'\n")
    (project / "needs_numpy.py").write_text(  # the host's venv has no numpy
        "import numpy\n\ndef f(x):\n    return int(numpy.int64(x))\n")
    out = run_script(project, f"""
        import pyjoule as pj

        host = pj.Host("pjtest", workdir={workdir!r}, python={venv + '/bin/python'!r},
                       environment="existing")

        @pj.experiment(host=host, workers=1)
        def where(i):
            import sys, cloudpickle
            return {{"loc": sys.prefix + " " + cloudpickle.__file__}}

        print(where.sweep(i=[1, 2])["loc"].values.ravel()[0])

        from needs_numpy import f

        @pj.experiment(host=host, workers=1)
        def uses(x):
            return f(x)

        try:
            uses.sweep(x=[1, 2])
        except pj.RemoteCommandError as exc:
            print("REFUSED", exc)
        print("runs", len(pj.runs()))
    """, timeout=300).stdout
    home = sshd.run("pwd").stdout.strip()
    prefix, cloudpickle_file = out.splitlines()[0].split()
    assert prefix == venv.replace("~", home)
    assert cloudpickle_file.startswith(f"{home}/{workdir[2:]}/lib/vendor-")
    assert "REFUSED" in out and "numpy" in out
    assert "runs 1" in out  # the refused one queued nothing
    assert sshd.run(f"ls {workdir}/envs 2>/dev/null | wc -l").stdout.strip() == "0"


def test_an_existing_python_that_is_missing_or_of_another_minor(ssh_host, workdir, sshd):
    conn = ssh.connect(ssh_host)
    host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, workdir=workdir,
                   python="~/no/such/bin/python", environment="existing")
    with pytest.raises(pj.HostError, match="is not an executable file"):
        env.ensure_vendor(conn, host, env.ensure_existing(conn, host))
    fake = f"{workdir}/fake/bin/python"  # answers like a Python of another minor
    sshd.run(f"mkdir -p {workdir}/fake/bin && printf '#!/bin/sh\\necho 3.9\\n' > {fake}"
             f" && chmod +x {fake}")
    host = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, workdir=workdir,
                   python=fake, environment="existing")
    with pytest.raises(pj.HostError, match=r"runs Python 3\.9, and the client runs "
                       r"3\.\d+: cloudpickle needs the same minor"):
        env.ensure_vendor(conn, host, env.ensure_existing(conn, host))
