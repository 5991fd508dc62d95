"""tests/sshd_server.py: the test OpenSSH server, checked with the real OpenSSH client.

Tests that stop or restart sshd use their own state directory (own port and listener),
so they do not cut the connections of others using the shared default server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sshd_server
from sshd_server import SshServer, ensure_server

SELFTEST_STATE = sshd_server.DEFAULT_STATE.with_name(
    sshd_server.DEFAULT_STATE.name + "-selftest")


def _ensure(state: Path | None) -> SshServer:
    """ensure_server(), failing in CI and skipping elsewhere when it cannot work."""
    try:
        return ensure_server(state)
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the test sshd: {exc}")
        pytest.skip(f"no test sshd: {exc}")


@pytest.fixture(scope="module")
def server():
    srv = _ensure(SELFTEST_STATE)
    yield srv
    srv.drop_connections()
    srv.stop()


def _session(server: SshServer) -> subprocess.Popen:
    """An open ssh session: the remote ``cat`` lives as long as the connection."""
    proc = subprocess.Popen(["ssh", "-F", str(server.ssh_config), server.alias,
                             "echo up; cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    return proc


def _dropped(proc: subprocess.Popen) -> bool:
    """Whether the session ended by itself (its stdin is still open)."""
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    return code == 255  # ssh's code for a lost connection


def test_the_default_server_runs():
    srv = _ensure(None)
    assert srv.state == sshd_server.DEFAULT_STATE
    assert srv.pid() is not None
    assert srv.run("true").returncode == 0


def test_ensure_server_again_is_fast_and_changes_nothing(server):
    started = time.monotonic()
    again = ensure_server(server.state)
    elapsed = time.monotonic() - started
    assert (again.port, again.pid()) == (server.port, server.pid())
    assert elapsed < 2, f"ensure_server() on a running server took {elapsed:.2f} s"


def test_commands_run_as_the_user_through_openssh(server):
    assert server.run("echo hi; whoami").stdout == "hi\npjhost\n"
    failed = server.run("echo oops >&2; exit 3", check=False)
    assert (failed.returncode, failed.stderr) == (3, "oops\n")
    listing = server.run("stat -c '%U %a %n' ~ ~/.ssh ~/.ssh/authorized_keys "
                         "~/.config/uv/uv.toml").stdout.split("\n")[:-1]
    assert [line.split()[:2] for line in listing] == [
        ["pjhost", "755"], ["pjhost", "700"], ["pjhost", "600"], ["pjhost", "644"]]
    assert Path(listing[0].split()[2]) == server.home


def test_uv_on_the_remote_reads_its_config(server):
    if server.notes:
        pytest.skip("; ".join(server.notes))
    # `uv cache dir` parses ~/.config/uv/uv.toml and fails on a bad one
    out = server.run("~/.local/bin/uv --version && ~/.local/bin/uv cache dir "
                     "&& stat -c %U ~/.local/bin/uv").stdout.split("\n")
    assert out[0].startswith("uv ") and out[1] == f"{server.home}/.cache/uv"
    assert out[2] == "pjhost"


def test_the_host_key_is_checked_against_known_hosts(server, tmp_path):
    key_type, key = server.host_key_pub.read_text().split()[:2]
    assert server.known_hosts.read_text() == f"[127.0.0.1]:{server.port} {key_type} {key}\n"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    text = server.ssh_config.read_text()
    assert f"UserKnownHostsFile {server.known_hosts}\n" in text
    config.write_text(text.replace(str(server.known_hosts), str(empty)))
    proc = subprocess.run(["ssh", "-F", str(config), server.alias, "true"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 255
    assert "Host key verification failed" in proc.stderr
    assert empty.read_text() == ""  # StrictHostKeyChecking yes: nothing learned


def test_drop_connections_keeps_the_listener(server):
    listener = server.pid()
    session = _session(server)
    server.drop_connections()
    assert _dropped(session)
    assert server.pid() == listener
    assert server.run("echo back").stdout == "back\n"


def test_restart_drops_connections_and_keeps_the_port(server):
    listener, port = server.pid(), server.port
    session = _session(server)
    server.restart()
    assert _dropped(session)
    assert server.pid() not in (None, listener) and server.port == port
    assert server.run("echo back").stdout == "back\n"


def test_a_taken_port_fails_fast_and_ensure_server_moves_to_a_free_one():
    # a fixed directory: each new one adds its client key to ~pjhost/.ssh/authorized_keys
    first = _ensure(SELFTEST_STATE.with_name(SELFTEST_STATE.name + "-port"))
    try:
        first.drop_connections()
        first.stop()
        with socket.socket() as squatter:
            squatter.bind((first.host, first.port))
            squatter.listen()
            started = time.monotonic()
            with pytest.raises(RuntimeError, match="Cannot bind any address"):
                first.start()
            assert time.monotonic() - started < 5
            moved = ensure_server(first.state)
            assert moved.port != first.port
            assert moved.run("whoami").stdout == "pjhost\n"
    finally:
        first.drop_connections()
        first.stop()


def test_the_command_line_reports_the_config(server):
    proc = subprocess.run([sys.executable, sshd_server.__file__, "--state", str(server.state),
                           "status"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert f"ssh_config  {server.ssh_config}" in proc.stdout
    assert f"pid {server.pid()}" in proc.stdout
