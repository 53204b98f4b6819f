"""A real OpenSSH server on loopback for the remote-bench tests, and a client key it accepts.

sshd comes from /usr/sbin/sshd, or from Debian's openssh-server unpacked by ``scripts/fetch-sshd.sh`` into
~/.cache/edgeres/openssh-server. As root, sshd needs its privilege-separation user and /run/sshd: both are
given to it inside a private mount namespace (``unshare --mount``), so the machine itself is not changed.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeres" / "openssh-server"


@dataclass
class Sshd:
    port: int
    user: str
    key: Path
    known_hosts: Path
    host_pub: str
    proc: subprocess.Popen
    log: Path | None = None

    def logins(self) -> int:
        """How many logins the server has accepted so far (each ssh connection is one)."""
        return self.log.read_text().count("Accepted publickey") if self.log else 0

    def options(self) -> tuple[str, ...]:
        return (f"Port={self.port}", f"UserKnownHostsFile={self.known_hosts}", "GlobalKnownHostsFile=/dev/null")

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1"


def find_sshd() -> tuple[Path | None, dict]:
    """The sshd binary and the environment it needs, or (None, reason)."""
    for cand, unpacked in ((os.environ.get("EDGERES_SSHD"), False), ("/usr/sbin/sshd", False),
                           (str(CACHE / "usr/sbin/sshd"), True)):
        if cand and Path(cand).is_file():
            env = dict(os.environ)
            if unpacked:  # libwrap0 came unpacked beside it
                libs = [str(p) for p in sorted(CACHE.glob("usr/lib/*-linux-gnu")) + sorted(CACHE.glob("lib/*-linux-gnu"))]
                env["LD_LIBRARY_PATH"] = ":".join(libs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
            return Path(cand), env
    return None, {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(folder: Path, extra_config: tuple[str, ...] = (), account: str | None = None) -> Sshd | str:
    """Start sshd on a free loopback port; returns the server, or why it cannot run here.

    ``account`` is an /etc/passwd line of an extra login the server alone sees (as root, inside its namespace), for a
    device account with its own shell and home.
    """
    sshd, env = find_sshd()
    if sshd is None:
        return "no sshd: run scripts/fetch-sshd.sh (Debian's openssh-server, unpacked into ~/.cache/edgeres)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "no OpenSSH client (apt-get install openssh-client)"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = _free_port()
    (folder / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "PermitRootLogin prohibit-password", "StrictModes no",
        *extra_config, ""]))
    cmd = [str(sshd), "-D", "-e", "-f", str(folder / "sshd_config")]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            return "sshd as root needs unshare (util-linux) for its privilege-separation user"
        passwd = folder / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text() + "sshd:x:64999:65534:sshd privsep:/run/sshd:/usr/sbin/nologin\n"
                          + (account + "\n" if account else ""))
        script = (f"mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && mount --bind {passwd} /etc/passwd && "
                  f"exec {' '.join(cmd)}")
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    log = open(folder / "sshd.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    for _ in range(100):
        if proc.poll() is not None:
            return f"sshd did not start: {(folder / 'sshd.log').read_text().strip()[-300:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        return "sshd did not listen within 10 s"
    host_pub = (folder / "host_key.pub").read_text().split()[:2]
    user = account.split(":")[0] if account and os.geteuid() == 0 else getpass.getuser()
    return Sshd(port, user, folder / "client_key", folder / "known_hosts", " ".join(host_pub), proc, folder / "sshd.log")


DEVICE_TOOLS = ("sh", "mkdir", "ls", "cat", "sha256sum", "tar", "rm", "test", "wc", "grep")


def start_device(folder: Path, path: Path, env: tuple[str, ...] = ()) -> Sshd | str:
    """A loopback 'device': sshd whose account ``jetson`` (uid 0, shell /bin/sh, which reads no rc file, home under
    ``folder``) has ``path`` as its whole PATH, holding a shell, coreutils and tar (and what the test adds)."""
    path.mkdir(parents=True, exist_ok=True)
    for tool in DEVICE_TOOLS:
        where = shutil.which(tool)
        if where and not (path / tool).exists():
            (path / tool).symlink_to(where)
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    setenv = " ".join((f"PATH={path}", *env))
    server = start_sshd(folder / "sshd", (f"SetEnv {setenv}",), f"jetson:x:0:0:device:{home}:/bin/sh")
    if isinstance(server, Sshd) and server.user != "jetson":
        server.proc.terminate()
        return "the device account needs root (its own passwd line inside sshd's namespace)"
    return server


def serving(server: Sshd | str) -> Iterator[Sshd]:
    """A fixture's body for a started server: yields it, and stops it after; skips the test with why it did not start."""
    import pytest

    if isinstance(server, str):
        pytest.skip(server)
    yield server
    server.proc.terminate()
    server.proc.wait(10)


def descendants(pid: int, name: str, exact: bool = False) -> list[int]:
    """The processes under ``pid`` whose name starts with ``name`` (or is ``name``, with ``exact``), down through those
    that match: an sshd's per-connection processes (``sshd``, ``sshd-session``) and not the commands they run, or
    this process's ``ssh`` clients and not the sshd it started.
    """
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            comm, fields = text.split("(", 1)[1].rsplit(")", 1)[0], text.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and (comm == name if exact else comm.startswith(name)):
                child = int(stat.parent.name)
                out += [child, *descendants(child, name, exact)]
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
