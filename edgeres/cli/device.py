"""device setup."""
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
    """The device side: what bench --host needs there."""


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
