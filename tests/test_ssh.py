"""The SSH transport against a real OpenSSH server on 127.0.0.1 (tests/sshd_server.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import pyjoule as pj
from pyjoule._transport import auth, check, ssh


@pytest.fixture(autouse=True)
def fresh_connections():
    ssh.close_all()
    yield
    ssh.close_all()


def _config(sshd, tmp_path, extra: str = "", known_hosts=None, identity=None):
    """A copy of the server's client config, with changes, for one test."""
    text = sshd.ssh_config.read_text()
    if known_hosts is not None:
        text = text.replace(str(sshd.known_hosts), str(known_hosts))
    if identity is not None:
        text = text.replace(str(sshd.identity), str(identity))
    path = tmp_path / "ssh_config"
    path.write_text(text + extra)
    return path


def _accepted(sshd) -> int:
    """How many logins the server has accepted so far."""
    log = sshd.state / "sshd.log"
    return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0


def test_commands_share_one_connection_and_arguments_arrive_unchanged(sshd, ssh_host):
    nasty = ["a b", "it's", 'say "hi"', "x;y", "$(touch pwned)", "`id`", "new\nline", "~"]
    before = _accepted(sshd)
    conn = ssh.connect(ssh_host)
    out = conn.run(["printf", "%s\\0", *nasty]).stdout.decode()
    assert out.split("\0")[:-1] == nasty
    for _ in range(20):
        assert conn.run(["whoami"]).text.strip() == sshd.user
    assert ssh.connect(ssh_host) is conn
    assert conn.run(["ls"], cwd="~").text.split().count("pwned") == 0
    time.sleep(0.2)  # the server logs asynchronously
    assert _accepted(sshd) - before == 1  # one login for 22 commands
    assert conn.connects == 1 and conn.commands == 22


def test_stdin_env_cwd_and_large_output(ssh_host):
    conn = ssh.connect(ssh_host)
    data = bytes(range(256)) * 8192  # 2 MiB both ways
    assert conn.run(["cat"], input=data).stdout == data
    res = conn.run(["bash", "-c", 'printf "%s|%s" "$PWD" "$V"'], env={"V": "x y;$(id)"},
                   cwd="~")
    assert res.text == f"{conn.home()}|x y;$(id)"


def test_failing_command_shows_command_code_and_stderr(ssh_host):
    conn = ssh.connect(ssh_host)
    with pytest.raises(pj.RemoteCommandError) as info:
        conn.run(["bash", "-c", "echo boom >&2; exit 3", "it's"])
    err = info.value
    assert err.returncode == 3 and "boom" in err.stderr
    assert "exit code 3" in str(err) and "boom" in str(err) and "'it'\"'\"'s'" in str(err)
    assert conn.run(["false"], check=False).returncode == 1


def test_command_timeout(ssh_host):
    conn = ssh.connect(ssh_host)
    t0 = time.monotonic()
    with pytest.raises(pj.RemoteCommandError, match="timed out"):
        conn.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert conn.run(["echo", "still usable"]).text == "still usable\n"


def test_a_dropped_connection_is_reopened(sshd, ssh_host):
    conn = ssh.connect(ssh_host)
    assert conn.run(["true"]).returncode == 0
    sshd.drop_connections()
    assert conn.run(["echo", "back"]).text == "back\n"
    assert conn.connects == 2


@pytest.mark.slow
def test_a_command_running_when_sshd_restarts_is_run_again(sshd, ssh_host):
    conn = ssh.connect(ssh_host)
    threading.Timer(0.5, sshd.restart).start()
    # idempotent commands are repeated once the connection is back
    assert conn.run(["bash", "-c", "sleep 2; echo done"]).text == "done\n"
    assert conn.connects == 2


def test_sftp_and_home_on_the_same_connection(sshd, ssh_host):
    conn = ssh.connect(ssh_host)
    sftp = conn.sftp()
    with sftp.open(f"{conn.home()}/pj-sftp-test.txt", "w") as fh:
        fh.write("hello")
    assert conn.run(["cat", conn.expand("~/pj-sftp-test.txt")]).text == "hello"
    assert conn.connects == 1


def test_unknown_host_key_is_refused_with_the_fix(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cfg = _config(sshd, tmp_path, known_hosts=empty)
    with pytest.raises(pj.HostKeyError, match="not in known_hosts.*accept_new_host_key=True"):
        ssh.connect(pj.Host(sshd.alias, ssh_config=cfg))
    # the explicit opt-in records the key, and later connections check against it
    conn = ssh.connect(pj.Host(sshd.alias, ssh_config=cfg, accept_new_host_key=True))
    assert conn.run(["true"]).returncode == 0
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519" in empty.read_text()
    ssh.close_all()
    assert ssh.connect(pj.Host(sshd.alias, ssh_config=cfg)).run(["true"]).returncode == 0


def test_changed_host_key_is_refused_even_with_accept_new(sshd, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join(
        (other.with_suffix(".pub")).read_text().split()[:2]) + "\n")
    cfg = _config(sshd, tmp_path, known_hosts=wrong)
    for accept in (False, True):
        with pytest.raises(pj.HostKeyError, match="CHANGED.*ssh-keygen -R") as info:
            ssh.connect(pj.Host(sshd.alias, ssh_config=cfg, accept_new_host_key=accept))
    # not the default ~/.ssh/known_hosts: the command must name the file
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {wrong}`" in str(info.value)


def test_a_malformed_known_hosts_line_is_skipped_with_file_and_line(sshd, tmp_path, caplog):
    bad = tmp_path / "known_hosts"
    name, kind, key = sshd.known_hosts.read_text().split()[:3]
    broken = f"{name} {kind} {key.replace('AAAA', 'AAAB', 1)}"
    bad.write_text(f"# mine\n{broken}\n")
    cfg = _config(sshd, tmp_path, known_hosts=bad)
    with pytest.raises(pj.HostKeyError, match="is not in known_hosts"):
        ssh.connect(pj.Host(sshd.alias, ssh_config=cfg))
    assert f"known_hosts {bad}, line 2 cannot be read and is skipped" in caplog.text
    # never fatal for the other lines: with a good line after it, the host connects
    bad.write_text(f"# mine\n{broken}\n{name} {kind} {key}\n")
    conn = ssh.connect(pj.Host(sshd.alias, ssh_config=cfg))
    assert conn.run(["true"]).returncode == 0
    ssh.close_all()


def test_wrong_key_fails_fast_with_what_was_tried(sshd, tmp_path):
    key = tmp_path / "not_authorized"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cfg = _config(sshd, tmp_path, identity=key)
    t0 = time.monotonic()
    with pytest.raises(pj.AuthenticationError, match="refused every key.*not_authorized"):
        ssh.connect(pj.Host(sshd.alias, ssh_config=cfg))
    assert time.monotonic() - t0 < 5


def test_refused_port_is_a_clear_error_at_once(sshd, tmp_path):
    cfg = _config(sshd, tmp_path, extra="\nHost closed\n  HostName 127.0.0.1\n  Port 1\n")
    t0 = time.monotonic()
    with pytest.raises(pj.HostError, match="cannot connect to .*127.0.0.1:1.*refused"):
        ssh.connect(pj.Host("closed", ssh_config=cfg))
    assert time.monotonic() - t0 < 5


def _listener(close: bool) -> int:
    """A local TCP port that accepts connections, then closes each at once or keeps it
    open without a word (no SSH banner); the port is served until the process ends."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            peer, _ = server.accept()
            peer.close() if close else held.append(peer)

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def _listener_config(tmp_path, **ports) -> str:
    path = tmp_path / "listener_config"
    path.write_text("".join(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n"
                            f"  ConnectTimeout 1\n" for alias, port in ports.items()))
    return str(path)


@pytest.mark.slow
def test_a_port_that_never_sends_the_ssh_banner_is_a_host_error(tmp_path):
    cfg = _listener_config(tmp_path, silent=_listener(close=False))
    t0 = time.monotonic()
    with pytest.raises(pj.HostError, match=r"no SSH answer from .* within 1 s .*ConnectTimeout"):
        ssh.connect(pj.Host("silent", ssh_config=cfg))
    assert time.monotonic() - t0 < 5


def test_a_name_that_does_not_resolve_says_check_hostname(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("Host gone\n  HostName no-such-host.invalid\n")
    with pytest.raises(pj.HostError, match=r"'no-such-host.invalid' cannot be resolved "
                       rf"\(check HostName in {cfg}[,)]"):
        ssh.connect(pj.Host("gone", ssh_config=cfg))


def test_paramiko_tracebacks_stay_off_the_command_line(tmp_path, caplog):
    cfg = _listener_config(tmp_path, closer=_listener(close=True))
    env = {**os.environ, "PYJOULE_SSH_CONFIG": cfg}
    env.pop("PYJOULE_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-m", "pyjoule", "hosts", "check", "closer"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1  # the host cannot be used: a problem, not bad usage
    assert proc.stderr.startswith("pyjoule: ") and proc.stderr.count("\n") == 1, proc.stderr
    # who configures logging (here pytest's caplog) still gets paramiko's records
    with pytest.raises(pj.HostError, match="SSH handshake"):
        ssh.connect(pj.Host("closer", ssh_config=cfg))
    time.sleep(0.2)  # paramiko logs from its own thread
    assert any(r.name.startswith("paramiko") for r in caplog.records)


def test_proxy_jump_through_the_server_itself(sshd, tmp_path):
    cfg = _config(sshd, tmp_path, extra=(
        f"\nHost behind\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.identity}\n  UserKnownHostsFile {sshd.known_hosts}\n"
        f"  ProxyJump {sshd.alias}\n"))
    conn = ssh.connect(pj.Host("behind", ssh_config=cfg))
    assert conn.run(["whoami"]).text.strip() == sshd.user
    assert conn.sock is not None and conn._via is not None


def test_host_check_reports_what_pyjoule_needs(sshd, ssh_host):
    report = ssh_host.check()
    assert report.facts["python"].startswith("3.")
    assert report.facts["cpus"] >= 1 and report.facts["free_bytes"] > 0
    assert 0 < report.rtt_ms < 1000
    text = str(report)
    assert "round trip" in text and "python" in text and "slurm" in text
    if shutil.which("sbatch") is None:
        assert "no sbatch" in text
    # a Python the host does not have is a problem that names both versions
    wrong = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config, python="3.2")
    problems = " ".join(check.check_host(wrong).problems)
    assert "no Python 3.2" in problems and "Ways out" in problems
    assert report.facts["python"] in problems  # what python3 there is


def test_host_check_runs_the_setup_lines_first(sshd, ssh_host, tmp_path):
    """hosts check finds the Python a run would use: one only a setup line puts on
    PATH is reported, and a failing setup line is a problem, not "ok"."""
    folder = "/tmp/pj-check-setup-python"
    sshd.run(f"rm -rf {folder} && mkdir -p {folder} && ln -s "
             f"$(command -v python3.11 || command -v python3) {folder}/python3.11 && "
             f"chmod -R a+rx {folder}")
    good = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config,
                   setup=[f"export PATH={folder}:$PATH"])
    report = check.check_host(good)
    assert report.facts["executable"].startswith(folder), str(report)
    bad = pj.Host(ssh_host.target, ssh_config=ssh_host.ssh_config,
                  setup=["module load python/3.11"])
    problems = " ".join(check.check_host(bad).problems)
    assert "module load python/3.11" in problems and "127" in problems, problems


def test_hosts_check_command(sshd, ssh_host, monkeypatch, capsys):
    from pyjoule.cli import main

    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(sshd.ssh_config))
    code = main(["hosts", "check", sshd.alias])
    out = capsys.readouterr().out
    assert "round trip" in out and f"127.0.0.1:{sshd.port}" in out
    assert code in (0, 1) and (code == 0) == ("PROBLEM" not in out)


def test_a_failing_setup_line_is_named_with_its_exit_code_and_stderr(sshd, tmp_path):
    from pyjoule._backends.ssh import SSHBackend

    run_dir = tmp_path / "pj-setup-run"
    run_dir.mkdir()
    for name in ("payload.pkl", "tasks.pkl"):
        (run_dir / name).write_bytes(b"")
    setup = ["export A=1  # a comment", "module load python/3.11", "echo never"]
    host = pj.Host(sshd.alias, ssh_config=sshd.ssh_config, setup=setup)
    backend = SSHBackend(host, project="/tmp", python="/bin/false", lib="/tmp")
    try:
        with pytest.raises(pj.RemoteCommandError) as info:
            backend.start(str(run_dir), 1)
        err = info.value
        assert err.returncode == 127
        text = str(err)
        assert "setup line 2 of 3 failed" in text and "exit code 127" in text
        assert "module load python/3.11" in text and "not found" in text
        assert "cannot be loaded" not in text and "@pyjoule" not in text
        # setup lines that pass leave the pre-flight's failure as it was
        backend.host = pj.Host(sshd.alias, ssh_config=sshd.ssh_config, setup=setup[:1])
        with pytest.raises(pj.RemoteCommandError, match="cannot be loaded"):
            backend.start(str(run_dir), 1)
    finally:
        backend.tidy(keep_log=False)


PASSWORD = "pj test pw;$(x)"


@pytest.fixture(scope="module")
def password_sshd():
    """A second server that also offers keyboard-interactive login (PAM), as 2FA
    clusters do; pjhost gets a password for it."""
    import os

    from sshd_server import DEFAULT_STATE, ensure_server

    try:
        server = ensure_server(DEFAULT_STATE.with_name(DEFAULT_STATE.name + "-pw"),
                               {"KbdInteractiveAuthentication": "yes", "UsePAM": "yes"})
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the test sshd: {exc}")
        pytest.skip(f"no test sshd: {exc}")
    subprocess.run(["chpasswd"], input=f"{server.user}:{PASSWORD}\n", text=True, check=True)
    yield server
    server.stop()


def _unauthorized_key_config(server, tmp_path):
    key = tmp_path / "not_authorized"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return _config(server, tmp_path, identity=key)


def test_password_prompt_without_a_terminal_fails_fast(password_sshd, tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "interactive", lambda: False)
    cfg = _unauthorized_key_config(password_sshd, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(pj.AuthenticationError, match="asks for a password or code.*no "
                       "terminal or notebook"):
        ssh.connect(pj.Host(password_sshd.alias, ssh_config=cfg))
    assert time.monotonic() - t0 < 5


def test_password_is_asked_once_per_process(password_sshd, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(auth, "interactive", lambda: True)
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt: asked.append(prompt) or PASSWORD)
    cfg = _unauthorized_key_config(password_sshd, tmp_path)
    text = cfg.read_text().replace("BatchMode yes", "BatchMode no")
    cfg.write_text(text)
    conn = ssh.connect(pj.Host(password_sshd.alias, ssh_config=cfg))
    assert conn.run(["whoami"]).text.strip() == password_sshd.user
    password_sshd.drop_connections()
    assert conn.run(["echo", "again"]).text == "again\n"  # reconnected, not asked again
    assert conn.connects == 2 and len(asked) == 1
