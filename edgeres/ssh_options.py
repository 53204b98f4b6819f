"""What edgeres passes to OpenSSH: the allow-listed ``--ssh-option`` pairs, the keepalive, and jump hosts that are held
to the same checks as the device.

ssh's own ``ProxyJump`` runs ``ssh -W`` for the jump host with none of the ``-o`` options edgeres sets: no
``BatchMode``, no ``StrictHostKeyChecking``, not the user's ``UserKnownHostsFile``. On a terminal, a jump host whose
key is unknown then asks "Are you sure you want to continue connecting?", and one without a key login asks for a
password, inside a bench. So edgeres writes the jump itself, as the ``ProxyCommand`` ssh would run, with its own
options on every hop.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Sequence

from edgeres.errors import ConfigError

# Options that edgeres sets itself: a user may not loosen host-key checking or allow prompts through --ssh-option.
_RESERVED = {"stricthostkeychecking", "batchmode", "permitlocalcommand", "localcommand", "proxycommand",
             "knownhostscommand", "nohostauthenticationforlocalhost", "verifyhostkeydns", "updatehostkeys"}
# The only options --ssh-option passes on (ssh_config(5) names, compared case-insensitively as ssh does). None of
# them runs a local command or weakens host-key checking; anything else is refused.
SSH_OPTION_ALLOW = {k.lower(): k for k in (
    "Port", "User", "ConnectTimeout", "ConnectionAttempts", "ServerAliveInterval", "ServerAliveCountMax",
    "TCPKeepAlive", "Compression", "AddressFamily", "BindAddress", "IPQoS", "LogLevel", "RekeyLimit",
    "Ciphers", "MACs", "KexAlgorithms", "HostKeyAlgorithms", "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes",
    "HostKeyAlias", "HostName", "UserKnownHostsFile", "GlobalKnownHostsFile", "HashKnownHosts", "CheckHostIP",
    "IdentityFile", "IdentitiesOnly", "CertificateFile", "PreferredAuthentications", "PubkeyAuthentication",
    "ProxyJump",
)}
# What names the device, or its key, and not a jump host: a jump hop gets every other option the device gets.
DEVICE_ONLY = {"Port", "User", "HostName", "HostKeyAlias", "ProxyJump", "IdentitiesOnly", "CertificateFile",
               "Compression"}
# A device that goes silent (Wi-Fi gone, board powered off) ends ssh after a minute without an answer, instead of
# leaving edgeres waiting for TCP to give up (hours). sshd answers these during a build that prints nothing.
KEEPALIVE = {"ServerAliveInterval": 15, "ServerAliveCountMax": 4}
# A value is one plain word: no blanks (ssh would read "Key Value #…"), quotes, or shell and comment characters.
_VALUE = re.compile(r"[A-Za-z0-9@._:,/+\-~%\[\]]+")
# user@host: a POSIX user name, then a DNS name, an IPv4 address or a bracketed IPv6 address
HOST_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.%a-z0-9]+\])")
_HOP = re.compile(rf"(?:ssh://)?(?P<dest>{HOST_RE.pattern})(?::(?P<port>[0-9]{{1,5}}))?")


def parse_ssh_option(option: str) -> tuple[str, str]:
    """``(Key, value)`` of one ``--ssh-option``, split as ssh splits it (``Key=Value``, ``Key Value``, ``Key = Value``).

    Raises ``ConfigError`` for an option that is not on :data:`SSH_OPTION_ALLOW`, or whose value is not one word.
    """
    m = re.fullmatch(r"\s*([A-Za-z0-9]+)(?:\s*=\s*|\s+)(.*?)\s*", option, flags=re.S)
    if m is None or not m.group(2):
        raise ConfigError(f"--ssh-option {option!r} is not Key=Value, e.g. --ssh-option Port=2222")
    key, value = m.group(1), m.group(2)
    if key.lower() in _RESERVED:
        raise ConfigError(f"--ssh-option {key} is refused: it would run a local command or loosen the host-key "
                          f"checks edgeres sets; to trust a new host key pass --accept-new-host-key, or add the key "
                          f"with `ssh <host>` once")
    if key.lower() not in SSH_OPTION_ALLOW:
        raise ConfigError(f"--ssh-option {key} is not allowed; edgeres passes only "
                          f"{', '.join(sorted(SSH_OPTION_ALLOW.values()))} (put anything else in ~/.ssh/config)")
    if not _VALUE.fullmatch(value) or value.startswith("-"):
        raise ConfigError(f"--ssh-option {key} value {value!r} must be one plain word (letters, digits, "
                          f"@._:,/+-~%[]), e.g. --ssh-option {SSH_OPTION_ALLOW[key.lower()]}=VALUE")
    key = SSH_OPTION_ALLOW[key.lower()]
    if key == "ProxyJump" and value.lower() != "none":
        jump_hops(value)
    return key, value


def first_values(options: Sequence[str]) -> dict[str, str]:
    """Each option's value as ssh uses it: the first one given."""
    given: dict[str, str] = {}
    for key, value in map(parse_ssh_option, options):
        given.setdefault(key, value)
    return given


def jump_hops(spec: str, source: str = "--ssh-option ProxyJump") -> list[tuple[str, str | None]]:
    """``[(user@host, port or None), …]`` of a ProxyJump value, the first hop first; ``ConfigError`` for one that is
    not ``[user@]host[:port]`` hops, comma-separated (or ``ssh://`` URIs of them), as ssh_config(5) writes them.
    """
    hops = []
    for hop in spec.split(","):
        m = _HOP.fullmatch(hop.strip())
        if m is None:
            raise ConfigError(f"{source} {spec!r}: {hop!r} is not a jump host [user@]host[:port]; write e.g. "
                              f"--ssh-option ProxyJump=me@bastion:22 (hops separated by commas)")
        hops.append((m.group("dest").replace("[", "").replace("]", ""), m.group("port")))  # ssh takes user@fe80::1
    return hops


def config_of(ssh: str, destination: str, options: tuple[str, ...]) -> dict[str, str]:
    """``ssh -G``: the options ssh would use for ``destination`` (its config files, then ``options``), lower-case
    keys; empty where ssh cannot say (no ssh, a broken config: the connection itself then says why). Nothing connects.
    """
    argv = [ssh, *(a for o in options for a in ("-o", o)), "-G", "--", destination]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if p.returncode != 0:
        return {}
    return dict(ln.split(" ", 1) for ln in p.stdout.splitlines() if " " in ln)


def jump_chain(ssh: str, destination: str, options: Sequence[str], limit: int = 8) -> list[tuple[str, str | None]]:
    """The jump hosts that reach ``destination``, first hop first: ``--ssh-option ProxyJump``, else the ProxyJump
    of ``~/.ssh/config`` for it (as ``ssh -G`` reads it), then those of the first hop's own config, and so on (ssh
    would reach that hop through them without edgeres's options). A config that runs its own ProxyCommand ends the
    chain there: edgeres leaves it as it is.
    """
    given = first_values(options).get("ProxyJump")
    source = "--ssh-option ProxyJump"
    if given is None:
        given, source = _config_jump(ssh, destination, tuple(options))
    hops: list[tuple[str, str | None]] = []
    while given is not None and given.lower() != "none":
        hops = jump_hops(given, source) + hops
        if len(hops) > limit:
            raise ConfigError(f"{destination} is more than {limit} jump hosts away ({source} leads on to "
                              f"{hops[0][0]}): a loop in ~/.ssh/config? Give the hops as --ssh-option ProxyJump=a,b")
        dest, port = hops[0]
        given, source = _config_jump(ssh, dest, (f"Port={port}",) if port else ())
    return hops


def _config_jump(ssh: str, destination: str, options: tuple[str, ...]) -> tuple[str | None, str]:
    """The ProxyJump of ``destination`` in the ssh config (None if there is none, or a ProxyCommand of the user's
    own), and where it came from, for a message.
    """
    config = config_of(ssh, destination, options)
    return (None if "proxycommand" in config else config.get("proxyjump"),
            f"the ProxyJump of {destination} in ~/.ssh/config")


def proxy_command(ssh: str, hops: Sequence[tuple[str, str | None]], hop_options: Sequence[str]) -> str:
    """The ``ProxyCommand`` that reaches the next host through ``hops`` as ssh's ProxyJump would (``ssh -W``, each hop
    through the ones before it), with ``hop_options`` on every hop. ssh runs it through the shell after expanding
    ``%`` tokens: every argument is quoted, every ``%`` doubled but those of the ``-W`` target it fills in.
    """
    *before, (dest, port) = hops
    args = [ssh, *hop_options]
    if before:
        args += ["-o", "ProxyCommand=" + proxy_command(ssh, before, hop_options)]
    if port is not None:
        args += ["-p", port]
    def quoted(a: str) -> str:
        return shlex.quote(a).replace("%", "%%")

    return " ".join([*map(quoted, args), "-W", "'[%h]:%p'", "--", quoted(dest)])  # dest: an IPv6 scope's % too
