"""Hosts without a server: reading targets and ssh configs, and building commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import pyjoule as pj
from pyjoule._transport.hosts import parse_target, resolve
from pyjoule._transport.ssh import build_command, env_input

NASTY = ["a b", "it's", 'say "hi"', "x;y", "$(touch /tmp/pj-pwned)", "`id`", "new\nline",
         "*", "~", "$HOME", "-n", ""]


def test_every_argument_survives_a_real_shell_unchanged():
    command = build_command(["printf", "%s\\0", *NASTY])
    out = subprocess.run(["bash", "-c", command], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == NASTY


def test_env_and_cwd_are_quoted_too(tmp_path):
    folder = tmp_path / "dir with 'quote' and ;"
    folder.mkdir()
    env = {"V": "$(id) x;y\n'it\"s'"}
    command = build_command(["bash", "-c", 'printf "%s|%s" "$PWD" "$V"'], env=env,
                            cwd=str(folder))
    assert "$(id)" not in command  # values come on stdin, not in the command line
    out = subprocess.run(["bash", "-c", command], input=env_input(env), capture_output=True,
                         check=True)
    assert out.stdout.decode() == f"{folder}|{env['V']}"


def test_shown_commands_mask_only_the_secret_values():
    """Logs and errors show pj.Host(env=...) values as *** but pyjoule's own settings
    in clear, so a failed build can be rerun by hand."""
    shown = build_command(["uv", "sync"], shown_env={"UV_PYTHON_DOWNLOADS": "never",
                                                     "TOKEN": "s3cret-value"},
                          secret=["TOKEN"])
    assert "UV_PYTHON_DOWNLOADS=never" in shown and "TOKEN=***" in shown
    assert "s3cret" not in shown
    assert "V=***" in build_command(["true"], shown_env={"V": "x"})  # default: all hidden


def test_a_command_string_is_refused():
    with pytest.raises(TypeError, match="list of arguments"):
        build_command("rm -rf ~")


@pytest.mark.parametrize("target, expected", [
    ("alias", (None, "alias", None)),
    ("me@box", ("me", "box", None)),
    ("me@box.example.org:2200", ("me", "box.example.org", 2200)),
    ("box:22", (None, "box", 22)),
    ("me@[::1]:2222", ("me", "::1", 2222)),
])
def test_targets(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize("bad", ["", "a b", "me@", "box:port"])
def test_bad_targets_say_what_is_expected(bad):
    with pytest.raises(pj.OptionError, match="alias or 'user@name:port'"):
        pj.Host(bad)
    with pytest.raises(pj.OptionError, match="alias or 'user@name:port'"):
        pj.experiment(host=bad)(lambda x: x)  # at decoration, before any call


def _write(path, text):
    path.write_text(text)
    return path


def test_ssh_config_alias_include_and_explicit_overrides(tmp_path):
    _write(tmp_path / "more.conf", "Host cluster\n  HostName 127.0.0.5\n  Port 2201\n"
                                   "  User alice\n  IdentityFile ~/keys/id_cluster\n"
                                   "  ProxyJump gate,me@gate2:2022\n")
    cfg = _write(tmp_path / "config", f"Include {tmp_path}/*.conf\n"
                                      "Host *\n  UserKnownHostsFile /tmp/kh\n")
    ep = resolve(pj.Host("cluster", ssh_config=cfg))
    assert (ep.hostname, ep.port, ep.user) == ("127.0.0.5", 2201, "alice")
    assert ep.identity_files[0].endswith("/keys/id_cluster") and "~" not in ep.identity_files[0]
    assert ep.proxy_jump == ("gate", "me@gate2:2022")
    assert ep.known_hosts[0] == "/tmp/kh"
    assert ep.key_name == "[127.0.0.5]:2201"
    ep = resolve(pj.Host("bob@cluster:2300", ssh_config=cfg))  # as on ssh's command line
    assert (ep.user, ep.port) == ("bob", 2300)


def test_unknown_alias_is_a_clear_error_at_once(tmp_path):
    cfg = _write(tmp_path / "config", "Host known\n  HostName 127.0.0.1\n")
    with pytest.raises(pj.HostError, match="unknown host 'nosuchalias-pj'.*Host nosuchalias"):
        resolve(pj.Host("nosuchalias-pj", ssh_config=cfg))


def test_ssh_config_from_the_environment(tmp_path, monkeypatch):
    cfg = _write(tmp_path / "config", "Host viaenv\n  HostName 127.0.0.9\n  Port 2999\n")
    monkeypatch.setenv("PYJOULE_SSH_CONFIG", str(cfg))
    ep = resolve(pj.Host("viaenv"))
    assert (ep.hostname, ep.port) == ("127.0.0.9", 2999)


def test_host_options_are_checked():
    with pytest.raises(pj.OptionError, match="valid variable name"):
        pj.Host("box", env={"NOT OK": "1"})
    with pytest.raises(pj.OptionError, match="pj.Host"):
        pj.Host.of(42)
    assert pj.Host("box", setup="module load python").setup == ("module load python",)
    assert pj.Host.of("box") == pj.Host("box")


@pytest.mark.parametrize("openssh", [True, False], ids=["ssh -G", "paramiko fallback"])
def test_tokens_and_paths_as_ssh_expands_them(tmp_path, monkeypatch, openssh):
    monkeypatch.setenv("PJ_AGENT_DIR", "/run/agents")
    if not openssh:
        monkeypatch.setenv("PATH", str(tmp_path))  # no ssh there
    cfg = _write(tmp_path / "config",
                 "Host tok\n  HostName box.example.org\n  User alice\n  Port 2022\n"
                 "  IdentityFile ~/.ssh/id_%r@%h\n  CertificateFile %d/certs/%n-cert.pub\n"
                 "  IdentityAgent ${PJ_AGENT_DIR}/sock\n"
                 "  ProxyCommand nc -X connect -x proxy:3128 %h %p # %r %n %%\n"
                 "  ServerAliveInterval 15\n  ConnectTimeout 3\n  HostKeyAlias tok-key\n"
                 "  UserKnownHostsFile ~/kh1 /dev/null\n  GlobalKnownHostsFile /etc/kh\n"
                 "  StrictHostKeyChecking accept-new\n  HashKnownHosts yes\n")
    ep = resolve(pj.Host("tok", ssh_config=cfg))
    home = str(Path("~").expanduser())
    assert ep.identity_files == (f"{home}/.ssh/id_alice@box.example.org",)
    assert ep.certificate_files == (f"{home}/certs/tok-cert.pub",)
    assert ep.identity_agent == "/run/agents/sock" and ep.use_agent
    assert ep.proxy_command == ("nc -X connect -x proxy:3128 box.example.org 2022 "
                                "# alice tok %")
    assert (ep.server_alive_interval, ep.connect_timeout) == (15, 3.0)
    assert ep.key_name == "tok-key" and ep.strict_host_keys == "accept-new"
    assert ep.known_hosts == (f"{home}/kh1", "/etc/kh") and ep.record_to == f"{home}/kh1"
    assert ep.hash_known_hosts
