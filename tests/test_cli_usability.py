"""The ``pyjoule`` command on day one: --version, errors as JSON under --json, the
exit code of an unreachable host, help texts that only say what applies, shell
completion of run ids (the real program in a subprocess, a real bash)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import pyjoule as pj
from pyjoule.cli import cli

PROGRAM = str(Path(sys.executable).parent / "pyjoule")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def cube(x):
    return x ** 3


def square(x):
    return x * x


@pytest.fixture
def two_runs(cache_dir):
    """A cache with two runs, of two functions; their ids, oldest first."""
    pj.experiment(workers=0)(cube).sweep(x=range(3))
    pj.experiment(workers=0)(square).sweep(x=range(2))
    return [r["id"] for r in json.loads(invoke("runs", "--json").stdout)]


@pytest.fixture
def closed_port_alias(weird_tmp_path, monkeypatch) -> str:
    """An ssh config alias pointing at a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: connections are refused
    config = weird_tmp_path / "ssh_config"
    config.write_text(f"Host pj-closed\n  HostName 127.0.0.1\n  Port {port}\n"
                      "  User nobody\n")
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(config))
    return "pj-closed"


# ---------------------------------------------------------------- --version
def test_version_of_the_program_and_of_python_m():
    expected = f"pyjoule {pj.__version__}\n"
    assert pj.__version__ == version("pyjoule")
    for argv in ([PROGRAM, "--version"], [sys.executable, "-m", "pyjoule", "--version"],
                 [PROGRAM, "-V"]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, expected, ""), argv


# ------------------------------------------------------------- hosts check
def test_hosts_check_of_an_unreachable_host_exits_1(closed_port_alias):
    result = invoke("hosts", "check", closed_port_alias)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("pyjoule: cannot connect to nobody@127.0.0.1:")
    assert "Connection refused" in result.stderr and result.stderr.count("\n") == 1
    unknown = invoke("hosts", "check", "pj-no-such-alias")  # no entry, no DNS name
    assert unknown.exit_code == 1 and "unknown host 'pj-no-such-alias'" in unknown.stderr
    usage = invoke("hosts", "check")  # 2 is for usage errors only
    assert usage.exit_code == 2 and "missing argument 'ALIAS'" in usage.stderr


# ------------------------------------------------------------ errors as JSON
def test_with_json_every_error_is_json_on_stdout_and_text_on_stderr(
        two_runs, closed_port_alias, weird_tmp_path):
    nothing = str(weird_tmp_path / "not a cache")
    cases = [  # argv, exit code, type
        (["status", "nosuchrun"], 2, "RunNotFoundError"),
        (["cancel", two_runs[0][:4]], 2, "RunNotFoundError"),  # a prefix of both
        (["runs", "--function", "nosuch"], 2, "FunctionNotFoundError"),
        (["--cache", nothing, "cache", "info"], 2, "CacheError"),
        (["runs", "--cach", "x"], 2, "UsageError"),
        (["cache", "gc", "--older-than", "30"], 2, "UsageError"),
        (["cache", "clear"], 2, "UsageError"),  # no --yes and no terminal
        (["hosts", "check", closed_port_alias], 1, "HostError"),
    ]
    for argv, code, kind in cases:
        text = invoke(*argv)
        assert text.exit_code == code and text.stdout == "", (argv, text.output)
        for where in (["--json", *argv], [*argv, "--json"]):
            result = invoke(*where)
            assert result.exit_code == code, (where, result.output)
            error = json.loads(result.stdout)
            assert error == {"error": error["error"], "type": kind}, where
            assert result.stderr == text.stderr == f"pyjoule: {error['error']}\n", where
    assert len(pj.experiment(workers=0)(cube).table()) == 3  # nothing was cleared
    group = invoke("--json", "cache")  # a group alone: its help as text, an error in JSON
    assert group.exit_code == 2 and json.loads(group.stdout) == {
        "error": "missing command; see pyjoule cache --help", "type": "UsageError"}


def test_errors_are_json_from_the_program_too(two_runs):
    proc = subprocess.run([PROGRAM, "--json", "status", "nosuchrun"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)
    assert error["type"] == "RunNotFoundError" and "no run 'nosuchrun'" in error["error"]
    assert proc.stderr == f"pyjoule: {error['error']}\n"


# ------------------------------------------------------------------- --help
def _all(group: click.Group, path=()):
    yield path, group
    for name, cmd in group.commands.items():
        yield from _all(cmd, path + (name,)) if isinstance(cmd, click.Group) \
            else [(path + (name,), cmd)]


def _takes_cache(command: click.Command) -> bool:
    return any("--cache" in getattr(p, "opts", ()) for p in command.params) \
        or (isinstance(command, click.Group)
            and any(_takes_cache(c) for c in command.commands.values()))


@pytest.mark.parametrize("path,command", list(_all(cli)),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_help_says_what_applies_to_the_command(path, command):
    text = invoke(*path, "--help").output
    assert ("The cache is --cache DIR" in text) == _takes_cache(command), text
    if not _takes_cache(command):
        assert "cache" not in text.lower(), text
    codes = [line.split()[0] for line in text.split("Exit codes:")[1].splitlines()
             if line.strip()[:1].isdigit()]
    assert codes[0] == "0" and codes[-1] == "2" and codes == sorted(set(codes))
    if path in {("runs",), ("cancel",), ("cache", "info"), ("cache", "gc")}:
        assert codes == ["0", "2"], text  # they never exit with 1
    if path in {("status",), ("hosts", "check"), ("cache", "check"), ("cache", "clear")}:
        assert codes == ["0", "1", "2"], text
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    assert len(paragraphs) == len(set(paragraphs)), text


def test_status_help_and_exit_codes_agree():
    text = invoke("status", "--help").output
    assert "1  the run has failed psets" in text and "or was cancelled" in text
    assert "in flight with none so far" in text


# --------------------------------------------------------------- completion
def complete(words: str, env_cache: str | None = None, shell: str = "bash") -> list[str]:
    """What the program offers for the last word of ``words`` (as the shell asks)."""
    env = dict(os.environ, _PYJOULE_COMPLETE=f"{shell}_complete", COMP_WORDS=words,
               COMP_CWORD=str(len(words.split(" ")) - 1))
    if env_cache is not None:
        env["PYJOULE_CACHE"] = env_cache
    proc = subprocess.run([PROGRAM], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if line]


@pytest.mark.slow
def test_run_ids_complete_from_the_cache(two_runs):
    first, second = two_runs
    assert complete("pyjoule status ") == [second, first]  # newest first
    assert complete(f"pyjoule cancel {second[:-2]}") == [second]
    assert complete("pyjoule status nosuch") == []
    assert complete("pyjoule status --cache /nonexistent-pj-cache ") == []  # as typed
    assert complete("pyjoule status ", env_cache="/nonexistent-pj-cache") == []
    names = complete("pyjoule cache clear ")
    assert {"cube", "square"} <= set(names) and any(n.endswith(".cube") for n in names)
    assert complete("pyjoule runs --function sq") == ["square"]
    assert not os.path.exists("/nonexistent-pj-cache")  # completion creates no cache


def test_bash_completes_run_ids_with_the_documented_script(two_runs):
    first, _ = two_runs
    script = (f'eval "$(_PYJOULE_COMPLETE=bash_source {PROGRAM})"\n'
              f'COMP_WORDS=(pyjoule status "{first[:-2]}"); COMP_CWORD=2\n'
              f'_pyjoule_completion {PROGRAM}\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [first]
    for shell, marker in (("zsh", "compdef"), ("fish", "complete")):
        source = subprocess.run([PROGRAM], capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, _PYJOULE_COMPLETE=f"{shell}_source"))
        assert source.returncode == 0 and marker in source.stdout, source.stderr


def test_a_declined_confirmation_exits_1_and_keeps_stdout_json(two_runs):
    """`cache clear` on a terminal asks (on stderr); "n" deletes nothing, exit 1."""
    import pty

    for extra, json_out in (([], False), (["--json"], True)):
        master, slave = pty.openpty()
        proc = subprocess.Popen([PROGRAM, "cache", "clear", *extra], stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        asked = b""
        while not asked.endswith(b"[y/N]: "):
            chunk = os.read(proc.stderr.fileno(), 1024)
            assert chunk, asked
            asked += chunk
        os.write(master, b"n\n")
        out, err = proc.communicate(timeout=120)
        os.close(master)
        assert proc.returncode == 1, err
        assert asked.startswith(b"Delete 5 cached results") and b"aborted" in err
        if json_out:
            assert json.loads(out) == {"error": "aborted: nothing was changed",
                                       "type": "Abort"}
        else:
            assert out == b""
    assert len(pj.experiment(workers=0)(cube).table()) == 3
