"""~/.ssh/config and known_hosts as OpenSSH reads them, against real servers:
ProxyCommand, Match, unsupported options, the paramiko fallback, an ssh agent,
user and host certificates (a second sshd with a host CA), @revoked, hashed names."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule._transport import known_hosts, ssh
from pyjoule._transport.hosts import resolve

CA_STATE = Path("/tmp/pj-sshd-cfg")
CA_PORT = 2230

# a ProxyCommand: joins its stdin/stdout to host:port, and leaves a mark it was used
FORWARDER = r"""
import os, socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], "a").write("used\n")
def pump():
    while True:
        data = os.read(0, 65536)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)
threading.Thread(target=pump, daemon=True).start()
while True:
    data = sock.recv(65536)
    if not data:
        break
    os.write(1, data)
"""


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    ssh.close_all()


def _base(sshd, alias: str, known: Path | str, hostname: str = "127.0.0.1") -> str:
    """A Host block logging in to ``sshd`` (its key, user, no agent, batch)."""
    return (f"Host {alias}\n  HostName {hostname}\n  User {sshd.user}\n"
            f"  IdentityFile {sshd.identity}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
            f"  UserKnownHostsFile {known}\n  GlobalKnownHostsFile /dev/null\n"
            f"  BatchMode yes\n  ConnectTimeout 10\n")


def _key_of(sshd) -> tuple[str, str]:
    return tuple(sshd.host_key_pub.read_text().split()[:2])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------- ProxyCommand
def test_an_alias_reachable_only_through_proxycommand(sshd, tmp_path):
    fwd = _write(tmp_path / "forwarder.py", FORWARDER)
    mark = tmp_path / "used"
    kind, key = _key_of(sshd)
    known = _write(tmp_path / "known_hosts", f"pjproxied-key {kind} {key}\n")
    block = _base(sshd, "pjproxied", known, hostname="pj-nowhere.invalid")
    direct = _write(tmp_path / "direct", block + f"  Port {sshd.port}\n")
    with pytest.raises(pj.HostError, match="pj-nowhere.invalid"):
        ssh.connect(pj.Host("pjproxied", ssh_config=direct))  # the HostName alone fails
    cfg = _write(tmp_path / "config", block + f"  Port {sshd.port}\n"
                 f"  ProxyCommand {sys.executable} {fwd} 127.0.0.1 %p {mark}\n"
                 "  HostKeyAlias pjproxied-key\n")
    conn = ssh.connect(pj.Host("pjproxied", ssh_config=cfg))
    assert conn.run(["whoami"]).text.strip() == sshd.user
    assert mark.read_text() == "used\n"
    assert conn.endpoint.proxy_command.endswith(f"127.0.0.1 {sshd.port} {mark}")
    # and the real ssh agrees with the same config
    out = subprocess.run(["ssh", "-F", str(cfg), "pjproxied", "whoami"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert out.stdout.strip() == sshd.user, out.stderr


def test_a_failing_proxycommand_shows_its_stderr(sshd, tmp_path):
    kind, key = _key_of(sshd)
    known = _write(tmp_path / "known_hosts", f"x {kind} {key}\n")
    cfg = _write(tmp_path / "config", _base(sshd, "pjbroken", known, "pj-nowhere.invalid")
                 + "  ProxyCommand sh -c 'echo bastion.example: no route to %h >&2; exit 3'\n")
    with pytest.raises(pj.HostError) as info:
        ssh.connect(pj.Host("pjbroken", ssh_config=cfg))
    text = str(info.value)
    assert "ProxyCommand of pjbroken" in text
    assert "bastion.example: no route to pj-nowhere.invalid" in text
    assert "exit code 3" in text and str(cfg) in text


# -------------------------------------------------------------------- Match
def test_a_match_block_is_honoured(sshd, tmp_path):
    # the port only comes from the Match block: without it no connection
    cfg = _write(tmp_path / "config", _base(sshd, "pjmatch", sshd.known_hosts)
                 + f"Match host 127.0.0.1 originalhost pjmatch\n  Port {sshd.port}\n"
                 "  ServerAliveInterval 7\n")
    ep = resolve(pj.Host("pjmatch", ssh_config=cfg))
    assert (ep.port, ep.server_alive_interval) == (sshd.port, 7)
    conn = ssh.connect(pj.Host("pjmatch", ssh_config=cfg))
    assert conn.run(["whoami"]).text.strip() == sshd.user


def test_target_user_and_port_win_over_the_config(tmp_path):
    cfg = _write(tmp_path / "config", "Host c\n  HostName 127.0.0.7\n  User alice\n"
                 "  Port 2201\nMatch user bob\n  ServerAliveInterval 9\n")
    ep = resolve(pj.Host("bob@c:2300", ssh_config=cfg))
    assert (ep.user, ep.port, ep.server_alive_interval) == ("bob", 2300, 9)
    assert resolve(pj.Host("c", ssh_config=cfg)).server_alive_interval == 0


# ----------------------------------------------------- unsupported options
def test_unsupported_options_are_named_once(tmp_path, caplog):
    cfg = _write(tmp_path / "config", "Host u\n  HostName 127.0.0.8\n  ControlMaster auto\n"
                 "  ControlPath /tmp/%r@%h\n  GSSAPIAuthentication yes\n"
                 "  LocalForward 8080 localhost:80\n  User me\n")
    caplog.set_level(logging.WARNING, "pyjoule")
    for _ in range(3):
        resolve(pj.Host("u", ssh_config=cfg))
    warnings = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert len(warnings) == 1
    for name in ("ControlMaster auto", "GSSAPIAuthentication yes", "LocalForward", "ControlPath"):
        assert name in warnings[0]
    assert "User" not in warnings[0].split("them:")[1]


def test_without_openssh_paramiko_reads_the_config_and_says_what_it_cannot(
        tmp_path, monkeypatch, caplog):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no ssh on PATH
    _write(tmp_path / "inc.conf", "Host f\n  HostName 127.0.0.6\n  Port 2202\n"
           "  ProxyCommand nc %h %p\n  ControlMaster auto\n")
    cfg = _write(tmp_path / "config", f"Include {tmp_path}/inc.conf\n")
    caplog.set_level(logging.WARNING, "pyjoule")
    from pyjoule._transport import ssh_config

    # said once per process: as in a fresh one (another test may have seen it said)
    monkeypatch.setattr(ssh_config, "_warned_fallback", False)
    ep = resolve(pj.Host("f", ssh_config=cfg))
    assert (ep.hostname, ep.port, ep.proxy_command) == ("127.0.0.6", 2202, "nc 127.0.0.6 2202")
    assert "no OpenSSH client" in caplog.text and "Match exec" in caplog.text
    assert "ControlMaster auto" in caplog.text


def test_a_config_ssh_cannot_read_is_a_clear_error(tmp_path):
    cfg = _write(tmp_path / "config", "Host b\n  NoSuchOption yes\n")
    with pytest.raises(pj.HostError, match="ssh cannot read the config.*NoSuchOption|"
                       "ssh cannot read the config.*line 2"):
        resolve(pj.Host("b", ssh_config=cfg))


# ------------------------------------------------------------ known_hosts
def test_hashed_known_hosts_and_accept_new_from_the_config(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    shutil.copy(sshd.known_hosts, known)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True,
                   capture_output=True)
    assert known.read_text().startswith("|1|")
    cfg = _write(tmp_path / "config", _base(sshd, "pjhashed", known) + f"  Port {sshd.port}\n")
    assert ssh.connect(pj.Host("pjhashed", ssh_config=cfg)).run(["true"]).returncode == 0
    # accept-new set by the user in the config: a new key is recorded (hashed, as the
    # config says), in a private file, and the real ssh accepts what was recorded
    fresh = tmp_path / "sub" / "known_hosts"
    cfg2 = _write(tmp_path / "config2", _base(sshd, "pjnew", fresh) + f"  Port {sshd.port}\n"
                  "  StrictHostKeyChecking accept-new\n  HashKnownHosts yes\n")
    assert ssh.connect(pj.Host("pjnew", ssh_config=cfg2)).run(["true"]).returncode == 0
    assert fresh.read_text().startswith("|1|") and (fresh.stat().st_mode & 0o777) == 0o600
    out = subprocess.run(["ssh", "-F", str(cfg2), "-o", "StrictHostKeyChecking=yes", "pjnew",
                          "true"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    # never a changed key
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(tmp_path / "other")], check=True)
    assert other.returncode == 0
    okind, okey = (tmp_path / "other.pub").read_text().split()[:2]
    fresh.write_text(f"[127.0.0.1]:{sshd.port} {okind} {okey}\n")
    ssh.close_all()
    with pytest.raises(pj.HostKeyError, match=f"CHANGED.*{fresh}, line 1"):
        ssh.connect(pj.Host("pjnew", ssh_config=cfg2))


def test_accept_new_never_writes_the_global_known_hosts(sshd, tmp_path):
    glob = _write(tmp_path / "ssh_known_hosts", "")
    block = _base(sshd, "pjglob", "/dev/null").replace(
        "GlobalKnownHostsFile /dev/null", f"GlobalKnownHostsFile {glob}")
    cfg = _write(tmp_path / "config", block + f"  Port {sshd.port}\n"
                 "  StrictHostKeyChecking accept-new\n")
    assert ssh.connect(pj.Host("pjglob", ssh_config=cfg)).run(["true"]).returncode == 0
    assert glob.read_text() == ""


def test_a_revoked_host_key_is_refused(sshd, tmp_path):
    kind, key = _key_of(sshd)
    known = _write(tmp_path / "known_hosts", f"[127.0.0.1]:{sshd.port} {kind} {key}\n"
                   f"@revoked * {kind} {key}\n")
    cfg = _write(tmp_path / "config", _base(sshd, "pjrev", known) + f"  Port {sshd.port}\n")
    with pytest.raises(pj.HostKeyError, match=f"REVOKED in {known}, line 2"):
        ssh.connect(pj.Host("pjrev", ssh_config=cfg))


def test_identity_agent_socket_from_the_config(sshd, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.identity)], env=env, check=True,
                       capture_output=True)
        block = _base(sshd, "pjagent", sshd.known_hosts).replace(
            f"  IdentityFile {sshd.identity}\n  IdentitiesOnly yes\n  IdentityAgent none\n",
            f"  IdentityFile {tmp_path}/none\n  IdentityAgent {sock}\n")
        cfg = _write(tmp_path / "config", block + f"  Port {sshd.port}\n")
        conn = ssh.connect(pj.Host("pjagent", ssh_config=cfg))
        assert conn.run(["whoami"]).text.strip() == sshd.user
    finally:
        ssh.close_all()
        agent.terminate()
        agent.wait(10)


# ------------------------------------------------------- certificates
@pytest.fixture(scope="module")
def ca_sshd():
    """A second sshd whose host key is signed by a host CA (and which trusts a user
    CA), on its own port and state directory."""
    from sshd_server import ensure_ca_server

    try:
        return ensure_ca_server(CA_STATE, CA_PORT)
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the test sshd: {exc}")
        pytest.skip(f"no test sshd: {exc}")


def _ca_config(ca, tmp_path, known_text: str, extra: str = "") -> Path:
    known = _write(tmp_path / "known_hosts", known_text)
    return _write(tmp_path / "config", _base(ca.server, "pjca", known)
                  + f"  Port {ca.server.port}\n" + extra)


def test_a_host_certificate_is_accepted_through_cert_authority(ca_sshd, tmp_path):
    kind, key = ca_sshd.host_ca_pub.read_text().split()[:2]
    cfg = _ca_config(ca_sshd, tmp_path,
                     f"# only the CA\n@cert-authority [127.0.0.1]:* {kind} {key}\n")
    conn = ssh.connect(pj.Host("pjca", ssh_config=cfg))
    assert conn.run(["whoami"]).text.strip() == ca_sshd.server.user
    assert known_hosts.is_certificate(conn.transport.get_remote_server_key())
    out = subprocess.run(["ssh", "-F", str(cfg), "pjca", "true"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert out.returncode == 0, out.stderr  # OpenSSH reads the same file the same way


def test_host_certificates_refused_for_the_wrong_name_or_a_revoked_ca(ca_sshd, tmp_path):
    kind, key = ca_sshd.host_ca_pub.read_text().split()[:2]
    cfg = _ca_config(ca_sshd, tmp_path, f"@cert-authority other-name {kind} {key}\n",
                     "  HostKeyAlias other-name\n")
    with pytest.raises(pj.HostKeyError, match="names 127.0.0.1, pjca, not other-name"):
        ssh.connect(pj.Host("pjca", ssh_config=cfg))
    ssh.close_all()
    cfg = _ca_config(ca_sshd, tmp_path, f"@cert-authority * {kind} {key}\n"
                     f"@revoked * {kind} {key}\n")
    with pytest.raises(pj.HostKeyError, match="certificate authority of .* REVOKED"):
        ssh.connect(pj.Host("pjca", ssh_config=cfg))


def test_a_host_certificate_of_an_unknown_ca_falls_back_to_the_plain_key(ca_sshd, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "other_ca")], check=True)
    okind, okey = (tmp_path / "other_ca.pub").read_text().split()[:2]
    cfg = _ca_config(ca_sshd, tmp_path, f"@cert-authority * {okind} {okey}\n")
    with pytest.raises(pj.HostKeyError, match="not in known_hosts.*not on an "
                       "@cert-authority line"):
        ssh.connect(pj.Host("pjca", ssh_config=cfg))
    ssh.close_all()
    kind, key = ca_sshd.server.host_key_pub.read_text().split()[:2]
    cfg = _ca_config(ca_sshd, tmp_path, f"@cert-authority * {okind} {okey}\n"
                     f"[127.0.0.1]:{ca_sshd.server.port} {kind} {key}\n")
    assert ssh.connect(pj.Host("pjca", ssh_config=cfg)).run(["true"]).returncode == 0


def test_a_user_certificate_logs_in(ca_sshd, tmp_path):
    key = tmp_path / "id_cert"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, ca = ca_sshd.host_ca_pub.read_text().split()[:2]
    known = f"@cert-authority * {kind} {ca}\n"
    cfg = _ca_config(ca_sshd, tmp_path, known).read_text().replace(
        str(ca_sshd.server.identity), str(key))
    cfg = _write(tmp_path / "config", cfg)
    with pytest.raises(pj.AuthenticationError, match="refused every key"):
        ssh.connect(pj.Host("pjca", ssh_config=cfg))  # not in authorized_keys
    ssh.close_all()
    cert = ca_sshd.sign_user_key(key.with_name("id_cert.pub"))
    moved = cert.rename(tmp_path / "elsewhere-cert.pub")  # so only CertificateFile finds it
    cfg = _write(tmp_path / "config", cfg.read_text() + f"  CertificateFile {moved}\n")
    conn = ssh.connect(pj.Host("pjca", ssh_config=cfg))
    assert conn.run(["whoami"]).text.strip() == ca_sshd.server.user


def _signed_host_cert(tmp_path, ca, *args):
    """A paramiko key carrying a certificate made by ssh-keygen with ``args``."""
    import paramiko

    if not (tmp_path / "hk").exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "hk")], check=True)
    (tmp_path / "hk-cert.pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "t", *args,
                    str(tmp_path / "hk.pub")], check=True, capture_output=True)
    key = paramiko.PKey.from_path(str(tmp_path / "hk"))
    key.load_certificate(str(tmp_path / "hk-cert.pub"))
    return key


@pytest.mark.parametrize("args, problem", [
    (["-h", "-n", "box", "-V", "20200101:20200102"], "valid from 2020-01-01"),
    (["-n", "box", "-V", "-5m:+1d"], "user certificate, not a host certificate"),
    (["-h", "-n", "other", "-V", "-5m:+1d"], "names other, not box"),
    (["-h", "-n", "box", "-V", "-5m:+1d", "-O", "force-command=x"], "critical options"),
])
def test_certificate_checks(tmp_path, args, problem):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ca")],
                   check=True)
    entries = known_hosts.load([_write(tmp_path / "kh", "@cert-authority box " + " ".join(
        (tmp_path / "ca.pub").read_text().split()[:2]) + "\n")])
    key = _signed_host_cert(tmp_path, tmp_path / "ca", *args)
    with pytest.raises(pj.HostKeyError, match=problem):
        known_hosts.check_certificate(key, "box", "box", entries, entries)
    good = _signed_host_cert(tmp_path, tmp_path / "ca", "-h", "-n", "box", "-V", "-5m:+1d")
    assert "signed by the CA" in known_hosts.check_certificate(good, "box", "box", entries,
                                                                entries)


def test_known_hosts_patterns():
    m = known_hosts.host_matches
    assert m("[127.0.0.1]:2230", "[127.0.0.1]:2230") and m("[127.0.0.1]:*", "[127.0.0.1]:22")
    assert m("*.example.org,!bad.example.org", "a.example.org")
    assert not m("*.example.org,!bad.example.org", "bad.example.org")
    assert m("Host?", "host1") and not m("host?", "host12")
