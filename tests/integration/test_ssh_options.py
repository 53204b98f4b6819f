"""Jump hosts held to the device's checks, over a real OpenSSH server on loopback (the jump is ``localhost``, the
device ``127.0.0.1``: the same server, two names, so ssh sees two hosts and two host keys to check).

ssh's own ProxyJump gave the jump host none of edgeres's ``-o`` options: on a terminal, an unknown jump host asked
"Are you sure you want to continue connecting?" inside a bench.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeres.errors import ConfigError, RemoteError
from edgeres.remote import KEEPALIVE, SshHost
from edgeres.ssh_options import jump_hops
from tests.helpers.cli import assert_one_line_error, edgeres


def _trust(server, *names: str) -> None:
    server.known_hosts.write_text("".join(f"[{n}]:{server.port} {server.host_pub}\n" for n in names))


def _value(argv: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in argv if a.startswith(key + "="))


def _run_by_ssh(proxy_command: str, host: str, port: str) -> list[str]:
    """The argument list a ProxyCommand becomes: ssh expands its % tokens (%% is %), then the shell splits it."""
    return shlex.split(re.sub("%(.)", lambda m: {"%": "%", "h": host, "p": port}[m.group(1)], proxy_command))


def test_every_hop_gets_edgeres_checks_and_not_the_device_s_names(tmp_path):
    key = tmp_path / "id"
    key.write_text("")
    host = SshHost("me@dev", ("Port=2222", "User=pi", "UserKnownHostsFile=/k/%k", "ServerAliveInterval=5",
                              "ProxyJump=me@bastion:2200,ssh://you@[fe80::1%eth0]"), identity=key)
    argv = host.argv(["true"])
    assert not any(a.startswith("ProxyJump=") for a in argv) and "Port=2222" in argv
    outer = _run_by_ssh(_value(argv, "ProxyCommand"), "dev", "22")  # reaches the device through the last hop
    inner = _run_by_ssh(_value(outer, "ProxyCommand"), "fe80::1%eth0", "22")  # reaches that hop through the first
    for hop, dest, target in ((outer, "you@fe80::1%eth0", "[dev]:22"), (inner, "me@bastion", "[fe80::1%eth0]:22")):
        assert hop[-4:] == ["-W", target, "--", dest]
        assert {"BatchMode=yes", "StrictHostKeyChecking=yes", "ServerAliveInterval=5"} <= set(hop)
        assert f"ServerAliveCountMax={KEEPALIVE['ServerAliveCountMax']}" in hop and str(key) in hop
        assert not {"Port=2222", "User=pi", "IdentitiesOnly=yes"} & set(hop)  # those name the device
        assert "UserKnownHostsFile=/k/%k" in hop  # each hop's own ssh expands the user's %k for itself
    assert "-p" not in outer and inner[inner.index("-p") + 1] == "2200"
    assert "StrictHostKeyChecking=accept-new" in shlex.split(_value(
        SshHost("me@dev", ("ProxyJump=b",), accept_new_host_key=True).argv(["true"]), "ProxyCommand"))
    assert "ProxyJump=none" in SshHost("me@dev", ("ProxyJump=none",)).argv(["true"])  # turns a config's jump off
    assert jump_hops("b1,u@b2:22") == [("b1", None), ("u@b2", "22")]
    for bad in ("ProxyJump=me@bastion:22:33", "ProxyJump=b,,c", "ProxyJump=b:port", "ProxyJump=%r@b"):
        with pytest.raises(ConfigError, match="jump host"):
            SshHost("me@dev", (bad,))


def test_through_a_jump_host_commands_run_and_an_unknown_jump_key_is_refused(sshd):
    host = SshHost(sshd.destination, (*sshd.options(), f"ProxyJump={sshd.user}@localhost:{sshd.port}"), sshd.key)
    _trust(sshd, "127.0.0.1", "localhost")
    before = sshd.logins()
    assert host.run(["echo", "through the jump"]).stdout == b"through the jump\n"
    assert sshd.logins() - before == 2  # the jump host, then the device through it
    with host.connected() as one:
        assert [one.run(["echo", str(i)]).stdout for i in range(3)] == [b"0\n", b"1\n", b"2\n"]
    _trust(sshd, "127.0.0.1")  # the device is known, the jump host is not
    with pytest.raises(RemoteError, match=f"jump host {sshd.user}@localhost:{sshd.port}, is not in known_hosts"):
        host.run(["true"])
    assert "localhost" not in sshd.known_hosts.read_text()
    learned = SshHost(sshd.destination, host.options, sshd.key, accept_new_host_key=True)
    assert learned.run(["echo", "ok"]).stdout == b"ok\n"
    assert len(sshd.known_hosts.read_text().splitlines()) == 2  # the jump host's key, learned on first use
    # a jump host that is down, and one that cannot reach the device, are named with what the jump's ssh said
    down = SshHost(sshd.destination, (*sshd.options(), f"ProxyJump={sshd.user}@localhost:1"), sshd.key)
    with pytest.raises(RemoteError, match=r"through the jump host .*@localhost:1: ssh: connect to host localhost port 1"):
        down.run(["true"])
    astray = SshHost(sshd.destination, ("Port=1", *host.options), sshd.key)
    with pytest.raises(RemoteError, match=r"through the jump host .*: channel 0: open failed.*that it reaches"):
        astray.run(["true"])


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) (util-linux) for a terminal")
def test_on_a_terminal_an_unknown_jump_host_is_refused_not_asked_about(sshd):
    host = SshHost(sshd.destination, (*sshd.options(), f"ProxyJump={sshd.user}@localhost:{sshd.port}"), sshd.key)
    _trust(sshd, "127.0.0.1")
    p = subprocess.run(["timeout", "20", "script", "-qec", shlex.join(host.argv(["echo", "hi"])), "/dev/null"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 255 and "Host key verification failed" in p.stdout, p.stdout
    assert "continue connecting" not in p.stdout and "hi" not in p.stdout


def test_a_jump_in_the_ssh_config_gets_the_same_checks(sshd, tmp_path):
    """A ProxyJump in ~/.ssh/config, as ``ssh -G`` reads it (here a config given by a wrapper's -F)."""
    config = tmp_path / "config"
    config.write_text(f"Host 127.0.0.1\n  ProxyJump {sshd.user}@localhost:{sshd.port}\n")
    wrapper = tmp_path / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec ssh -F {shlex.quote(str(config))} "$@"\n')
    wrapper.chmod(0o755)
    host = SshHost(sshd.destination, sshd.options(), sshd.key, ssh=str(wrapper))
    assert host.hops == ((f"{sshd.user}@localhost", str(sshd.port)),) and "ProxyCommand=" in " ".join(host.argv([]))
    _trust(sshd, "127.0.0.1")
    with pytest.raises(RemoteError, match="jump host"):
        host.run(["true"])
    _trust(sshd, "127.0.0.1", "localhost")
    before = sshd.logins()
    assert host.run(["echo", "hi"]).stdout == b"hi\n" and sshd.logins() - before == 2
    direct = SshHost(sshd.destination, (*sshd.options(), "ProxyJump=none"), sshd.key, ssh=str(wrapper))
    assert direct.hops == () and direct.run(["echo", "hi"]).stdout == b"hi\n"
    config.write_text("Host 127.0.0.1\n  ProxyJump %r@bastion\n")  # ssh -G passes it, edgeres cannot write it
    with pytest.raises(ConfigError, match="ProxyJump of .* in ~/.ssh/config"):
        SshHost("me@127.0.0.1", sshd.options(), ssh=str(wrapper))


def test_a_jump_host_s_own_jump_in_the_config_is_followed(sshd, tmp_path):
    """hopB is reached through hopA by hopB's own ProxyJump in the config: ssh would make that hop with none of
    edgeres's options, so edgeres follows the chain and writes both hops (two aliases of the loopback server)."""
    config = tmp_path / "config"
    alias = "  HostName 127.0.0.1\n  Port {p}\n  HostKeyAlias {a}\n"
    config.write_text(f"Host hopA\n{alias.format(p=sshd.port, a='hopA')}Host hopB\n{alias.format(p=sshd.port, a='hopB')}"
                      f"  ProxyJump {sshd.user}@hopA\nHost 127.0.0.1\n  ProxyJump {sshd.user}@hopB\n")
    wrapper = tmp_path / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec ssh -F {shlex.quote(str(config))} "$@"\n')
    wrapper.chmod(0o755)
    host = SshHost(sshd.destination, sshd.options(), sshd.key, ssh=str(wrapper))
    assert host.hops == ((f"{sshd.user}@hopA", None), (f"{sshd.user}@hopB", None))
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pub}\nhopB {sshd.host_pub}\n")
    p = subprocess.run(["timeout", "20", "script", "-qec", shlex.join(host.argv(["echo", "hi"])), "/dev/null"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert p.returncode == 255 and "continue connecting" not in p.stdout, p.stdout  # hopA unknown: refused
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_pub}\nhopA {sshd.host_pub}\nhopB {sshd.host_pub}\n")
    before = sshd.logins()
    assert host.run(["echo", "hi"]).stdout == b"hi\n" and sshd.logins() - before == 3
    config.write_text(f"Host hopA\n  ProxyJump {sshd.user}@hopA\nHost 127.0.0.1\n  ProxyJump {sshd.user}@hopA\n")
    with pytest.raises(ConfigError, match="a loop in ~/.ssh/config"):
        SshHost(sshd.destination, sshd.options(), ssh=str(wrapper))


def test_the_cli_names_the_unknown_jump_host(sshd, small_run, tmp_path):
    cfg, _ = small_run
    _trust(sshd, "127.0.0.1")
    flags = ["--host", sshd.destination, "--identity", str(sshd.key)]
    for o in (*sshd.options(), f"ProxyJump={sshd.user}@localhost:{sshd.port}"):
        flags += ["--ssh-option", o]
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), "--out", str(tmp_path / "r"), *flags)
    assert_one_line_error(r, "jump host", "--accept-new-host-key")
