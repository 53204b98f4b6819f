"""bench --host over a real OpenSSH server on loopback: host keys, quoting, the report coming back."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgeres.backends.latency import LatencyConfig
from edgeres.bench import BenchConfig
from edgeres.bench.remote import config_json
from edgeres.errors import ConfigError, RemoteError
from edgeres.remote import SshHost
from tests.helpers.cli import assert_one_line_error, edgeres
from tests.helpers.sshd import alive, descendants

REMOTE_EDGERES = str(Path(sys.executable).parent / "edgeres")
FAST = ["--limit", "200", "--duration", "0.05", "--warmup", "0", "--warmup-iters", "1", "--rounds", "2",
        "--throughput-batch", "4"]


def ssh_flags(server, *, accept: bool = False) -> list[str]:
    out = ["--host", server.destination, "--identity", str(server.key), "--remote-edgeres", REMOTE_EDGERES]
    for o in server.options():
        out += ["--ssh-option", o]
    return out + (["--accept-new-host-key"] if accept else [])


@pytest.fixture
def odd_models(small_run, tmp_path):
    """The small run's models under names a shell would mangle: spaces, quotes, ; and $(…)."""
    cfg, _ = small_run
    folder = tmp_path / "it's a dir"
    folder.mkdir()
    canary = Path.home() / "edgeres-pwned"  # where the remote shell (cwd: home) would create it
    canary.unlink(missing_ok=True)
    names = ["model $(touch edgeres-pwned).onnx", "int8; touch edgeres-pwned 'x'.onnx"]
    for src, name in zip(["model.onnx", "model.int8-cpu.onnx"], names):
        shutil.copy(Path(cfg.out) / src, folder / name)
    return [folder / n for n in names], canary


def test_unknown_host_key_is_refused(sshd, small_run, tmp_path):
    cfg, _ = small_run
    sshd.known_hosts.unlink(missing_ok=True)
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), *FAST, "--out", str(tmp_path / "r"), *ssh_flags(sshd))
    assert_one_line_error(r, "not in known_hosts", "--accept-new-host-key")
    assert not sshd.known_hosts.exists() and not (tmp_path / "r").exists()


def test_remote_bench_brings_back_a_checked_report(sshd, small_run, odd_models, tmp_path):
    _, local = small_run  # the same models and images, measured here without SSH
    models, canary = odd_models
    sshd.known_hosts.unlink(missing_ok=True)
    out = tmp_path / "report"
    r = edgeres("bench", *map(str, models), *FAST, "--out", str(out), "--json", *ssh_flags(sshd, accept=True))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["remote"]["host"] == sshd.destination and doc["remote"]["edgeres"].startswith("edgeres")
    assert [x["model"] for x in doc["results"]] == [str(m) for m in models]  # local paths, sha256-checked
    assert all(x["remote_model"].startswith(doc["remote"]["dir"]) for x in doc["results"])
    assert doc["dataset"]["images"] == local["dataset"]["images"] == 200
    here = {r["label"]: r for r in local["results"]}
    for got in doc["results"]:
        want = here[got["label"].split(":")[0]]
        assert got["accuracy"]["top1"] == want["accuracy"]["top1"]
        assert got["accuracy"]["agreement"] == want["accuracy"]["agreement"]
    assert json.loads((out / "report.json").read_text())["remote"] == doc["remote"]
    assert (out / "report.png").stat().st_size > 0 and "over SSH" in (out / "report.md").read_text()
    rdir = Path(doc["remote"]["dir"])  # the "device" is this machine: its cache folder is visible here
    assert rdir.is_dir() and rdir.parent == Path.home() / ".cache/edgeres/bench" and doc["remote"]["kept"]
    assert not canary.exists() and not Path("edgeres-pwned").exists()  # names reached the remote shell quoted
    assert sshd.host_pub in sshd.known_hosts.read_text()  # trusted on first use, as asked
    # the key is now known: no flag needed the second time; the same models land in the same folder, and
    # --clean-remote removes it afterwards
    r = edgeres("bench", *map(str, models), *FAST, "--out", str(tmp_path / "again"), "--json", "--clean-remote",
                *ssh_flags(sshd))
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)["remote"]
    assert again["dir"] == str(rdir) and not again["kept"] and not rdir.exists()


def test_changed_host_key_is_refused_even_with_accept_new(sshd, small_run, tmp_path):
    cfg, _ = small_run
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = " ".join((other.with_suffix(".pub")).read_text().split()[:2])
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {fake}\n")
    try:
        r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), *FAST, "--out", str(tmp_path / "r"),
                    *ssh_flags(sshd, accept=True))
        assert_one_line_error(r, "CHANGED", "ssh-keygen -R")
    finally:
        sshd.known_hosts.unlink()


def test_remote_errors_come_back_as_one_line(sshd, small_run, tmp_path):
    cfg, _ = small_run
    model = str(Path(cfg.out) / "model.onnx")
    flags = ssh_flags(sshd, accept=True)
    r = edgeres("bench", model, *FAST, "--out", str(tmp_path / "a"), *flags[:-1], "--remote-edgeres",
                "/nowhere/edgeres", "--accept-new-host-key")
    assert_one_line_error(r, "/nowhere/edgeres` was not found on")
    # the remote's own error (this machine is no Jetson) is relayed, once, as one line
    r = edgeres("bench", model, *FAST, "--target", "jetson", "--out", str(tmp_path / "b"), "--clean-remote", *flags)
    assert_one_line_error(r, f"on {sshd.destination}", "Jetson")
    r = edgeres("bench", model, "--out", str(tmp_path / "c"), *flags, "--ssh-option", "StrictHostKeyChecking=no")
    assert_one_line_error(r, "--accept-new-host-key")


def test_ssh_command_is_an_argument_list_quoted_once():
    host = SshHost("me@dev", ("Port=2222",))
    remote = ["edgeres", "bench", "/tmp/a b/$(rm -rf x).onnx", "--target", "jetson"]
    argv = host.argv(remote)
    assert argv[-2:-1] == ["me@dev"] and argv[-3] == "--" and shlex.split(argv[-1]) == remote
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "StrictHostKeyChecking=accept-new" in SshHost("me@dev", accept_new_host_key=True).argv(["true"])
    for bad in ("-oProxyCommand=sh", "me@dev x", ""):
        with pytest.raises(ConfigError):
            SshHost(bad)
    # the guard's budget is ssh's keepalive (the first value given wins, as in ssh); 0 turns the heartbeat off
    assert shlex.split(SshHost("me@dev").guarded(["x"])[-1])[3:] == ["sh", "60", "x"]
    off = SshHost("me@dev", ("ServerAliveInterval=0", "ServerAliveInterval=5"))
    assert off.keepalive() == (0, 4) and shlex.split(off.guarded(["x"])[-1])[3:] == ["sh", "0", "x"]
    for bad in ("ProxyCommand=sh -c x", "StrictHostKeyChecking=no", "Port", "ServerAliveInterval=15s"):
        with pytest.raises(ConfigError):
            SshHost("me@dev", (bad,))


def test_the_device_gets_the_config_as_json():
    """What bench_remote sends is the BenchConfig itself, as JSON; the remote CLI reads back the same config."""
    import json

    from edgeres.config import from_dict

    cfg = BenchConfig(target="jetson", data="/data/val", limit=500, batch=2, throughput_batch=16, threads=3,
                      latency=LatencyConfig(0.5, 20, 2.5, 50, 4), max_drop=1.0)
    sent = config_json(cfg)
    assert from_dict(BenchConfig, json.loads(sent)) == replace(cfg, max_drop=None)  # max_drop is applied here
    # defaults stay out, so an earlier release's edgeres on the device reads what uses nothing new (dla_core, energy)
    assert set(json.loads(sent)) == {"target", "data", "limit", "batch", "throughput_batch", "threads", "latency"}
    assert json.loads(config_json(BenchConfig(dla_core=1))) == {"dla_core": 1}


def test_bad_config_json_is_one_line(small_run):
    cfg, _ = small_run
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), "--config-json", '{"target": "cpu", "bogus": 1}')
    assert_one_line_error(r, "unknown BenchConfig field 'bogus'")


def test_progress_relay_works_without_a_byte_stderr(monkeypatch):
    import io

    from edgeres.remote import _show

    text = io.StringIO()  # what a notebook or a captured stream gives: no .buffer
    monkeypatch.setattr("sys.stderr", text)
    _show("epoch 1/2 ✓\n".encode())
    assert text.getvalue() == "epoch 1/2 ✓\n"


@pytest.mark.parametrize("connections", ["one per command", "one for all"])
def test_a_device_that_stops_answering_is_named_not_waited_for(sshd, connections):
    """A board that goes silent mid-command (power, Wi-Fi) left edgeres waiting on TCP for hours: ssh now gives up
    after its keepalive goes unanswered (a minute by default; here 1 s × 2, as --ssh-option sets it)."""
    host = SshHost(sshd.destination, (*sshd.options(), "ServerAliveInterval=1", "ServerAliveCountMax=2"), sshd.key,
                   accept_new_host_key=True)
    argv = host.argv(["true"])
    assert argv.index("ServerAliveInterval=1") < argv.index("ServerAliveInterval=15")  # ssh keeps the first
    caught: list[BaseException] = []

    def sleep() -> None:
        with contextlib.ExitStack() as stack:
            h = stack.enter_context(host.connected()) if connections == "one for all" else host
            caught.append(pytest.raises(RemoteError, h.run, ["sleep", "60"]).value)

    t = threading.Thread(target=sleep)
    t.start()
    deadline = time.time() + 20
    while not descendants(sshd.proc.pid, "sshd") and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)  # the session's processes are all there
    stopped = descendants(sshd.proc.pid, "sshd")
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # the device goes silent: the connection stays, nothing answers
    try:
        t.join(30)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert not t.is_alive() and caught
    assert "stopped answering" in str(caught[0]) and "every 1 s went unanswered 2 times" in str(caught[0])


@pytest.mark.parametrize("connections", ["one per command", "one for all"])
def test_a_command_on_the_device_ends_when_edgeres_goes_quiet(sshd, tmp_path, connections):
    """A network that goes quiet without closing (out of Wi-Fi, a laptop asleep) left the device's sshd waiting on TCP
    (hours) and the command running on. edgeres writes a byte every keepalive interval; the device's guard stops the
    command after the keepalive budget without one (here 1 s × 3, as --ssh-option sets it), and says why. To go quiet,
    this process's ssh is stopped (SIGSTOP): the connection stays open and nothing more crosses it."""
    host = SshHost(sshd.destination, (*sshd.options(), "ServerAliveInterval=1", "ServerAliveCountMax=3"), sshd.key,
                   accept_new_host_key=True)
    pid = tmp_path / "pid"
    got: list = []

    def command() -> None:
        with contextlib.ExitStack() as stack:
            h = stack.enter_context(host.connected()) if connections == "one for all" else host
            got.append(h.run(["sh", "-c", f"echo $$ > {shlex.quote(str(pid))}; exec sleep 60"], check=False))

    t = threading.Thread(target=command)
    t.start()
    deadline = time.time() + 20
    while not (pid.is_file() and pid.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    remote = int(pid.read_text())
    time.sleep(6)  # twice the budget: the beats (every second; 2 s of slack) keep a silent command alive
    assert alive(remote)
    quiet = descendants(os.getpid(), "ssh", exact=True)  # edgeres's ssh clients; the device's sshd answers on
    assert quiet and not set(quiet) & {sshd.proc.pid, *descendants(sshd.proc.pid, "sshd")}
    for p in quiet:
        os.kill(p, signal.SIGSTOP)
    try:
        t0 = time.time()
        while alive(remote) and time.time() - t0 < 15:
            time.sleep(0.1)
        assert not alive(remote), f"the command still runs {time.time() - t0:.0f} s after edgeres went quiet"
    finally:
        for p in quiet:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
    t.join(30)
    assert got and got[0].returncode == 128 + signal.SIGTERM
    assert b"Error: nothing heard from edgeres for 3 s" in got[0].stderr


def test_one_connection_serves_a_block_and_ends_with_it(sshd):
    host = SshHost(sshd.destination, sshd.options(), sshd.key, accept_new_host_key=True)
    before = sshd.logins()
    with host.connected() as one:
        assert [one.run(["echo", str(i)]).stdout for i in range(5)] == [f"{i}\n".encode() for i in range(5)]
        assert one.run(["sh", "-c", "exit 3"], check=False).returncode == 3
        assert one.stream(["sh", "-c", "echo out; echo progress >&2"])[:2] == (0, b"out\n")
        folder = one.control_path.parent
        assert folder.is_dir() and oct(folder.stat().st_mode & 0o777) == "0o700"  # the socket is this user's alone
    assert sshd.logins() - before == 1
    assert not folder.exists()
    masters = subprocess.run(["pgrep", "-f", f"ControlPath={folder}"], capture_output=True, text=True).stdout
    assert masters == ""  # nothing outlives the block


def test_a_refused_connection_is_named_when_it_opens(sshd, tmp_path):
    host = SshHost(sshd.destination, (*sshd.options()[:1], f"UserKnownHostsFile={tmp_path / 'none'}",
                                      "GlobalKnownHostsFile=/dev/null"), sshd.key)
    with pytest.raises(RemoteError, match="not in known_hosts"):
        with host.connected():
            pass


@pytest.mark.parametrize("connections", ["one per command", "one for all"])
def test_each_way_a_connection_fails_is_named_with_its_fix(sshd, tmp_path, connections):
    """A key the device does not accept, a port nothing listens on, no ssh at all: one line each, naming the fix."""
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    cases = [(SshHost(sshd.destination, sshd.options(), stranger, accept_new_host_key=True),
              "refused the login; make `ssh .* true` work without a password"),
             (SshHost(sshd.destination, ("Port=1", *sshd.options()), sshd.key),
              r"cannot reach .*: ssh: connect to host 127.0.0.1 port 1: Connection refused; check the host name, port"),
             (SshHost(sshd.destination, sshd.options(), sshd.key, ssh=str(tmp_path / "no-ssh")),
              "no-ssh not found; install the OpenSSH client")]
    for host, says in cases:
        with pytest.raises(RemoteError, match=says):
            with contextlib.ExitStack() as stack:
                h = stack.enter_context(host.connected()) if connections == "one for all" else host
                h.run(["true"])
