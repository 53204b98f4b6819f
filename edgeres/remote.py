"""Commands and files on another machine over OpenSSH: argument lists, quoted; unknown host keys refused."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeres.errors import ConfigError, RemoteError
from edgeres.ssh_options import (
    DEVICE_ONLY,
    HOST_RE,
    KEEPALIVE,
    first_values,
    jump_chain,
    parse_ssh_option,
    proxy_command,
)

MASTER_LOG = "master.log"  # beside the socket of ``SshHost.connected``: what the one connection's ssh said


def _show(data: bytes) -> None:
    """Relay the remote's progress to this stderr (a notebook's stderr has no byte buffer)."""
    buf = getattr(sys.stderr, "buffer", None)
    if buf is not None:
        buf.write(data)
    else:
        sys.stderr.write(data.decode(errors="replace"))
    sys.stderr.flush()


# Around every remote command but the tar that reads its stdin. ssh gives a command that has no terminal no signal when
# the connection goes (Ctrl-C here, edgeres killed): a TensorRT build would run on for minutes, holding the GPU that
# the next bench then times beside it. edgeres holds ssh's stdin open and writes one byte to it every keepalive
# interval; the guard reads it, and when it ends (ssh gone) or stays silent for the whole keepalive budget (a network
# that went quiet without closing, which the device's sshd would notice only through TCP, in hours) it sends SIGTERM
# to the session's process group, every process the command started (sshd makes each session a process group). Its
# first argument is that budget in seconds (0, or no `timeout` on the device: wait for the end alone). The command
# reads /dev/null (in POSIX sh a background job's stdin is /dev/null, hence fd 3); fd 4, the session's stderr, is the
# watcher's alone, so that nothing left of it holds the session open. The guard exits 143 where SIGTERM would kill
# it: ssh reports a remote death by signal as its own failure (255), a connection error.
STOP_WITH_SSH = """s=$1; shift; trap 'exit 143' TERM; exec 3<&0 </dev/null 4>&2
"$@" 3<&- 4>&- & c=$!
(if [ "$s" -gt 0 ] && command -v timeout >/dev/null 2>&1; then
   while b=$(timeout "$s" dd bs=1 count=1 <&3 2>/dev/null 4>&-); r=$?; [ -n "$b" ]; do :; done
   [ "$r" = 0 ] || echo "Error: nothing heard from edgeres for $s s (the network went quiet, or edgeres was stopped): \
the command was stopped on this device; re-run when it is reachable: finished work is kept" >&4
 else cat <&3 4>&-; fi; kill -TERM 0) >/dev/null 2>&1 &
w=$!; exec 3<&- 4>&-; wait $c; r=$?; kill $w 2>/dev/null; exit $r"""
BEAT = b"."  # what edgeres writes: not a newline, which the guard's $(…) would strip


@contextlib.contextmanager
def _held_stdin(beat_s: float = 0.0) -> Iterator[int]:
    """The read end of a pipe this process holds open until the block ends (or the process dies): ssh's stdin. With
    ``beat_s``, a thread writes ``BEAT`` to it that often, so the remote guard hears that edgeres is still there.
    """
    r, w = os.pipe()
    os.set_blocking(w, False)  # a reader that stopped reading fills the pipe: drop beats, never block
    done = threading.Event()

    def beat() -> None:
        while not done.wait(beat_s):
            try:
                os.write(w, BEAT)
            except BlockingIOError:
                continue
            except OSError:  # the reader is gone (ssh ended), or the pipe is closed
                return

    t = threading.Thread(target=beat, daemon=True) if beat_s > 0 else None
    if t is not None:
        t.start()
    try:
        yield r
    finally:
        done.set()
        if t is not None:
            t.join()
        os.close(r)
        os.close(w)


def _end_group(proc: subprocess.Popen, group: bool = True) -> None:
    """SIGTERM to ``proc``'s process group (or to it alone), SIGKILL to what is left after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass(frozen=True)
class SshHost:
    """``user@host`` and how to reach it. ``options`` are ``Key=Value`` pairs passed as ``ssh -o``."""

    destination: str
    options: tuple[str, ...] = ()
    identity: Path | None = None
    accept_new_host_key: bool = False
    connect_timeout_s: int = 15
    ssh: str = "ssh"
    control_path: Path | None = None  # set by ``connected``: the socket of the one connection commands ride
    # the jump hosts ssh goes through, first hop first, as (user@host, port): ``jump_chain`` when this host was made
    hops: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = self.destination
        if self.identity is not None and not Path(self.identity).is_file():
            raise ConfigError(f"--identity {self.identity} does not exist; give the private key file ssh should use")
        if not d or d.startswith("-") or any(c.isspace() for c in d):
            raise ConfigError(f"--host {d!r} is not a destination; give user@host (no spaces, no leading '-')")
        if not HOST_RE.fullmatch(d):
            raise ConfigError(f"--host {d!r} has characters no user or host name has; give user@host, "
                              f"user@10.0.0.5 or user@[fe80::1] (a port goes in --ssh-option Port=N)")
        for o in self.options:
            parse_ssh_option(o)
        self.keepalive()  # whole numbers, and jump hosts edgeres can write, checked before any connection
        object.__setattr__(self, "hops", tuple(jump_chain(self.ssh, self.destination, self.options)))

    def argv(self, remote: Sequence[str]) -> list[str]:
        """The local ``ssh`` argument list that runs ``remote`` (an argument list) on the host, quoted."""
        cmd = [self.ssh, *self._options(hop=False)]
        if self.hops:  # ssh's own ProxyJump would reach the jump host without edgeres's checks
            cmd += ["-o", "ProxyCommand=" + proxy_command(self.ssh, self.hops, self._options(hop=True))]
        if self.control_path is not None:  # ride the connection when it is there, else connect as before
            cmd += ["-o", f"ControlPath={self.control_path}", "-o", "ControlMaster=no"]
        return cmd + ["--", self.destination, shlex.join(list(remote))]

    def _options(self, hop: bool) -> list[str]:
        """The ``-o`` options (and ``-i``) of the device's ssh, or of a jump host's: edgeres's checks, then the
        user's, re-written as Key=Value from the parsed, allowed pair; a hop gets all but those that name the device.
        """
        cmd = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
               "-o", f"StrictHostKeyChecking={'accept-new' if self.accept_new_host_key else 'yes'}"]
        if self.identity is not None:  # a hop may log in with another key: this one is added, not the only one
            cmd += ["-i", str(self.identity)] + ([] if hop else ["-o", "IdentitiesOnly=yes"])
        for key, value in map(parse_ssh_option, self.options):
            if not (key == "ProxyJump" and self.hops) and not (hop and key in DEVICE_ONLY):
                cmd += ["-o", f"{key}={value}"]
        for name, n in KEEPALIVE.items():  # after the user's: ssh keeps the first value of an option
            cmd += ["-o", f"{name}={n}"]
        return cmd

    @contextlib.contextmanager
    def connected(self) -> Iterator[SshHost]:
        """This host over one connection for the block: every command rides it (ssh's ControlMaster), so the host's
        key is checked and the login made once, not once per command (a trtexec accuracy pass runs four per batch).
        The connection ends with the block; if edgeres is killed, with edgeres (its remote ``cat`` reads a pipe
        held here). Nothing outlives the command that made it.
        """
        if self.control_path is not None:
            yield self
            return
        short = len(tempfile.gettempdir()) < 80  # a socket's path must fit sockaddr_un (108 bytes)
        with tempfile.TemporaryDirectory(prefix="edgeres-ssh-", dir=None if short else "/tmp") as folder, \
                _held_stdin() as stdin, open(Path(folder) / MASTER_LOG, "w+b") as log:
            sock = Path(folder) / "c"
            argv = self.argv(["cat"])
            argv[-3:-3] = ["-M", "-o", f"ControlPath={sock}", "-o", "ControlPersist=no"]
            try:
                master = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=log)
            except FileNotFoundError:
                raise RemoteError(f"{self.ssh} not found; install the OpenSSH client (apt-get install "
                                  f"openssh-client)") from None
            try:
                deadline = time.monotonic() + self.connect_timeout_s + 10
                while not sock.exists() and master.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                if not sock.exists():
                    _end_group(master, group=False)
                    log.seek(0)
                    err = log.read().decode(errors="replace")
                    self._connection_error(255, err)
                    raise RemoteError(f"cannot reach {self.destination}: ssh's connection did not open "
                                      f"({err.strip()[-200:] or 'no message'}); check the host and network")
                yield replace(self, control_path=sock)
            finally:
                _end_group(master, group=False)

    def keepalive(self) -> tuple[int, int]:
        """ssh's keepalive as it runs: (seconds between probes, unanswered probes it allows), the user's
        ``--ssh-option`` first, else ``KEEPALIVE``. The guard's heartbeat uses the same figures in the other direction.
        """
        given = first_values(self.options)
        every, count = (given.get(k, str(v)) for k, v in KEEPALIVE.items())
        try:
            return max(0, int(every)), max(1, int(count))
        except ValueError:
            raise ConfigError(f"--ssh-option ServerAliveInterval={every} / ServerAliveCountMax={count} must be whole "
                              f"seconds and a count, e.g. --ssh-option ServerAliveInterval=15") from None

    def guarded(self, remote: Sequence[str]) -> list[str]:
        """``argv`` of ``remote`` under ``STOP_WITH_SSH``: it ends when ssh does, or when edgeres goes unheard for
        as long as ssh's keepalive would wait for the device (a minute by default).
        """
        every, count = self.keepalive()
        return self.argv(["sh", "-c", STOP_WITH_SSH, "sh", str(every * count), *remote])

    def run(self, remote: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run ``remote`` and capture its output; a connection failure raises ``RemoteError``. The remote command
        ends if this process does (Ctrl-C, kill, a lost connection): it does not run on unseen.
        """
        try:
            with _held_stdin(self.keepalive()[0]) as stdin:
                p = subprocess.run(self.guarded(remote), stdin=stdin, capture_output=True)
        except FileNotFoundError:
            raise RemoteError(f"{self.ssh} not found; install the OpenSSH client (apt-get install openssh-client)") from None
        self._connection_error(p.returncode, p.stderr.decode(errors="replace"))
        if check and p.returncode != 0:
            raise RemoteError(self.failure(remote, p.returncode, p.stderr.decode(errors="replace")))
        return p

    def stream(self, remote: Sequence[str]) -> tuple[int, bytes, str]:
        """Run ``remote``: its stderr (progress) is shown live and kept; returns (exit code, stdout, stderr). As with
        ``run``, the remote command ends if this process does.
        """
        with _held_stdin(self.keepalive()[0]) as stdin:
            return self._stream(remote, stdin)

    def _stream(self, remote: Sequence[str], stdin: int) -> tuple[int, bytes, str]:
        proc = subprocess.Popen(self.guarded(remote), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err: list[bytes] = []

        def relay() -> None:  # progress shows as it comes; the remote's "Error:" line is raised, not echoed
            pending = b""
            for chunk in iter(lambda: proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
                err.append(chunk)
                pending += chunk
                cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
                done, pending = pending[:cut], pending[cut:]
                shown = b"".join(ln for ln in done.splitlines(keepends=True) if not ln.startswith(b"Error: "))
                if shown:
                    _show(shown)
            if pending and not pending.startswith(b"Error: "):
                _show(pending)
        t = threading.Thread(target=relay, daemon=True)
        t.start()
        try:
            out = proc.stdout.read()  # type: ignore[union-attr]
            rc = proc.wait()
        except BaseException:
            proc.kill()
            raise
        t.join()
        text = b"".join(err).decode(errors="replace")
        self._connection_error(rc, text)
        return rc, out, text

    def put(self, files: dict[str, Path], remote_dir: str) -> None:
        """Copy local ``files`` into ``remote_dir`` as the given names, one tar stream over one connection."""
        proc = subprocess.Popen(self.argv(["tar", "-x", "-f", "-", "-C", remote_dir]), stdin=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                for name, path in files.items():
                    tar.add(str(path), arcname=name, recursive=False)
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # ssh ended early; its exit code and stderr say why
        err = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        rc = proc.wait()
        self._connection_error(rc, err)
        if rc != 0:
            raise RemoteError(self.failure(["tar", "-x"], rc, err))

    def read(self, path: str) -> bytes:
        """The bytes of a file on the host (``cat``: nothing but a shell and coreutils needed there)."""
        return bytes(self.run(["cat", "--", path]).stdout)

    def _connection_error(self, rc: int, stderr: str) -> None:
        if rc != 255:
            return
        if self.control_path is not None:  # a command riding the connection: why it ended, ssh's master says
            with contextlib.suppress(OSError):  # (first: the command's own last line stays the last)
                stderr = (self.control_path.parent / MASTER_LOG).read_text(errors="replace") + stderr
        d = self.destination
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            raise RemoteError(f"the host key of {d} has CHANGED since it was trusted; if the machine was really "
                              f"reinstalled, remove the old key with `ssh-keygen -R <host>`, else do not connect")
        names = [h if port is None else f"{h}:{port}" for h, port in self.hops]
        hops = " and ".join(names)
        if "Host key verification failed" in stderr:
            raise RemoteError(f"{d}'s host key{f', or that of its jump host {hops},' if hops else ''} is not in "
                              f"known_hosts; check its fingerprint and add it by running "
                              f"`ssh {'-J ' + ','.join(names) + ' ' if names else ''}{d}` once, or pass "
                              f"--accept-new-host-key to trust it on first use")
        if "not responding" in stderr:  # ssh: "Timeout, server HOST not responding."
            every, count = self.keepalive()
            raise RemoteError(f"{d} stopped answering (ssh's keepalive every {every} s went unanswered {count} times); "
                              f"check that it is up and on the network, then re-run: finished work there is kept")
        if "Permission denied" in stderr:
            raise RemoteError(f"{d}{f' or its jump host {hops}' if hops else ''} refused the login; make "
                              f"`ssh {d} true` work without a password (ssh-copy-id, or --identity KEY)")
        lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
        if hops and lines and "UNKNOWN port 65535" in lines[-1]:  # the jump's ssh ended: its own line says why
            said = [ln for ln in lines if not any(s in ln for s in ("UNKNOWN port 65535", "kex_exchange_identification",
                                                                     "stdio forwarding failed"))]
            raise RemoteError(f"cannot reach {d} through the jump host {hops}: {said[-1] if said else lines[-1]}; "
                              f"check the jump host's name and port (--ssh-option ProxyJump=user@host:port), and "
                              f"that it reaches {d} (--ssh-option Port=N)")
        raise RemoteError(f"cannot reach {d}: {lines[-1] if lines else 'ssh failed'}; check the host name, port "
                          f"(--ssh-option Port=N) and network")

    def failure(self, remote: Sequence[str], rc: int, stderr: str) -> str:
        """One line saying which remote command failed, with the remote's own last error line."""
        lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
        said = next((ln for ln in reversed(lines) if ln.startswith("Error:")), lines[-1] if lines else "")
        if rc == 127:
            return (f"`{remote[0]}` was not found on {self.destination}; install it there, or give its path "
                    f"(non-interactive ssh has a short PATH)")
        return f"on {self.destination}, `{shlex.join(list(remote))[:120]}` exited {rc}: {said[:300]}"


class LocalDevice:
    """This machine, behind the same calls as ``SshHost`` (run, put, read): the trtexec runner works on either."""

    destination = "this machine"

    def run(self, remote: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run ``remote`` here, in a process group of its own that a stop of edgeres (Ctrl-C, SIGTERM) ends whole:
        ``sh -c`` around trtexec and tegrastats would otherwise leave both running.
        """
        try:
            proc = subprocess.Popen(list(remote), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            p = subprocess.CompletedProcess(list(remote), 127, b"", f"{remote[0]}: not found".encode())
        except PermissionError:
            p = subprocess.CompletedProcess(list(remote), 126, b"", f"{remote[0]}: permission denied".encode())
        else:
            try:
                out, err = proc.communicate()
            except BaseException:
                _end_group(proc)
                raise
            p = subprocess.CompletedProcess(list(remote), proc.returncode, out, err)
        if check and p.returncode != 0:
            raise RemoteError(self.failure(remote, p.returncode, p.stderr.decode(errors="replace")))
        return p

    def put(self, files: dict[str, Path], remote_dir: str) -> None:
        import shutil

        for name, path in files.items():
            shutil.copyfile(path, Path(remote_dir) / name)

    def read(self, path: str) -> bytes:
        return Path(path).read_bytes()

    def failure(self, remote: Sequence[str], rc: int, stderr: str) -> str:
        lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
        if rc == 127:
            return f"`{remote[0]}` was not found on this machine; install it, or give its path"
        return f"`{shlex.join(list(remote))[:120]}` exited {rc}: {(lines[-1] if lines else '')[:300]}"
