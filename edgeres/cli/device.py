"""device check and device setup, and the ssh options of every command that reaches a device."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgeres.cli import emit, handle_errors, json_option
from edgeres.ssh_options import KEEPALIVE

F = TypeVar("F", bound=Callable[..., Any])

# bench --host and device setup: here, so that only the commands that reach a device import edgeres.remote
_SSH_OPTIONS = [
    click.option(
        "--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
        help="Passed as ssh -o (repeatable; an allow-list: Port, User, ProxyJump, ServerAliveInterval …). The "
             "ServerAlive* values also set how long a command on the device outlives a quiet network "
             f"({' s × '.join(str(v) for v in KEEPALIVE.values())}); "
             "ServerAliveInterval=0 turns that off. A jump host (ProxyJump, here or in ~/.ssh/config) gets the same "
             "host-key checks and options, but Port, User and HostName."),
    click.option("--identity", type=click.Path(path_type=Path), default=None, help="SSH private key for --host."),
    click.option("--accept-new-host-key", is_flag=True,
                 help="Trust --host's key (and a jump host's) on first use; by default a host not in known_hosts is "
                      "refused."),
]


def ssh_options(f: F) -> F:
    """--ssh-option, --identity and --accept-new-host-key: how edgeres reaches --host."""
    for option in reversed(_SSH_OPTIONS):
        f = option(f)
    return f


@click.group("device")
def device_grp():
    """The device side: what a bench will find there (check), and what bench --host needs there (setup)."""


@device_grp.command("setup")
@click.option("--host", required=True, metavar="USER@DEVICE", help="The Jetson to set up, over SSH.")
@ssh_options
@click.option("--python", default="python3", show_default=True, help="The device's Python (3.10 or newer).")
@json_option
@handle_errors
def device_setup_cmd(host, ssh_options, identity, accept_new_host_key, python, as_json):
    """Make a venv on a JetPack 6/7 device that sees JetPack's TensorRT, with this edgeres and no torch.

    \b
    Example:
      edgeres device setup --host nvidia@orin.local
      edgeres bench runs/demo/model*.onnx --host nvidia@orin.local --remote-edgeres .local/share/edgeres/venv/bin/edgeres
    On JetPack 4.6 and 5 (Python 3.6/3.8) use bench --runner trtexec instead: it installs nothing.
    """
    from dataclasses import asdict

    from edgeres.device_setup import setup_device
    from edgeres.remote import SshHost

    r = setup_device(SshHost(host, tuple(ssh_options), identity, accept_new_host_key), python)
    trt = f"TensorRT {r.tensorrt} (JetPack's)" if r.tensorrt else "no TensorRT Python there (use --runner trtexec)"
    emit(as_json, asdict(r), f"{r.host}: Python {r.python}, venv {r.venv}, {trt}\n"
                             f"bench with: --host {r.host} --remote-edgeres {r.edgeres}")


@device_grp.command("check")
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--host", default=None, metavar="USER@DEVICE", help="The device to check over SSH (default: this machine).")
@ssh_options
@click.option("--target", default="jetson", show_default=True,
              help="The device's target profile; jetson: the one its device-tree model names.")
@click.option("--trtexec", "trtexec_path", default=None, metavar="PATH",
              help="trtexec on the device (default: on PATH, else /usr/src/tensorrt/bin/trtexec).")
@click.option("--remote-edgeres", default="edgeres", show_default=True, help="The edgeres command on --host.")
@json_option
@handle_errors
def device_check_cmd(models, host, ssh_options, identity, accept_new_host_key, target, trtexec_path, remote_edgeres,
                     as_json):
    """What a bench would find on the device, before any work: board and target, trtexec and TensorRT, edgeres
    (the runner), power mode and clocks, the GPU's load, energy, disk, and whether each MODEL parses there.
    Exits 1 with each problem's fix when a bench could not run; changes nothing there.

    \b
    Example:
      edgeres device check runs/demo/model.onnx runs/demo/model.int8-tensorrt.onnx --host nvidia@orin.local
    """
    from edgeres.bench.device_check import check_device
    from edgeres.remote import LocalDevice, SshHost

    if host:
        with SshHost(host, tuple(ssh_options), identity, accept_new_host_key).connected() as one:
            c = check_device(one, target, tuple(models), trtexec_path, remote_edgeres)
    else:
        c = check_device(LocalDevice(), target, tuple(models), trtexec_path, remote_edgeres)
    emit(as_json, c.to_dict(), c.text())
    if not c.ready:
        raise SystemExit(1)

