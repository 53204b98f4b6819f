"""What one ssh connection per bench saves: a trtexec-runner bench over a real OpenSSH server on loopback, with every
command riding one connection (what edgeres does) against a connection per command (what it did).

    .venv/bin/python benchmarks/ssh_connections.py MODEL.onnx [MORE.onnx …] [--images 1000] [--rounds 2]

The models must suit the `desktop` target (opset ≤ 17: `edgeres export … --target desktop`). The device is a loopback
sshd (tests/helpers/sshd.py: Debian's openssh-server, `scripts/fetch-sshd.sh`) whose account has a shell, coreutils and
the STAND-IN trtexec (tests/helpers/trtexec_standin.py, computing with ONNX Runtime): its work is the same in both
modes, so the difference is the connections. No TensorRT ran and no figure here describes a device. On a network the
handshake costs more than on loopback (round trips, a Jetson's slower CPU). Modes alternate, each from a bare cache.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeres.bench import BenchConfig  # noqa: E402
from edgeres.bench.runners import bench_with  # noqa: E402
from edgeres.config import LatencyConfig  # noqa: E402
from edgeres.remote import SshHost  # noqa: E402
from tests.helpers.sshd import start_device  # noqa: E402
from tests.helpers.trtexec_standin import install  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    os.environ["EDGERES_QUIET"] = "1"
    folder = Path(tempfile.mkdtemp(prefix="edgeres-ssh-bench-"))
    install(folder / "path", "100300", second=1.0)  # whole-second timed runs, as the README's figures were measured
    server = start_device(folder, folder / "path")
    if isinstance(server, str):
        sys.exit(f"no loopback device: {server}")
    host = SshHost(server.destination, server.options(), server.key, accept_new_host_key=True)
    # a control socket that is never there: ssh then connects afresh for each command, as before one connection
    modes = {"one connection (edgeres)": host,
             "a connection per command": replace(host, control_path=folder / "no-such-socket")}
    cfg = BenchConfig(target="desktop", limit=a.images, throughput_batch=4, energy="off",
                      latency=LatencyConfig(warmup_s=0.0, warmup_iters=1, duration_s=0.2, min_iters=2, rounds=1))
    rows = []
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")  # a cache of its own, for each round to start bare
    ours = folder / "cache" / "edgeres"
    ours.mkdir(parents=True)
    for data in (Path.home() / ".cache" / "edgeres").glob("fashion-mnist*"):
        (ours / data.name).symlink_to(data)  # the data set already here: not fetched inside the timing
    try:
        for r in range(a.rounds):
            for name, h in (modes.items() if r % 2 == 0 else reversed(list(modes.items()))):
                shutil.rmtree(ours / "trtexec", ignore_errors=True)
                shutil.rmtree(folder / "home" / ".cache", ignore_errors=True)  # the device's folder too: both bare
                logins, t = server.logins(), time.perf_counter()
                bench_with(list(a.models), folder / "report", cfg, "trtexec", h)
                rows.append((r + 1, name, time.perf_counter() - t, server.logins() - logins))
    finally:
        server.proc.terminate()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{len(a.models)} model(s), {a.images} images, trtexec runner over loopback sshd (stand-in trtexec)")
    print(f"{'round':>5}  {'mode':<26} {'wall s':>7} {'logins':>7}")
    for r, name, wall, logins in rows:
        print(f"{r:>5}  {name:<26} {wall:>7.1f} {logins:>7}")


if __name__ == "__main__":
    main()
