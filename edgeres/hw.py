"""What this machine's CPU can do: decides the int8 recipe and bf16 training."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

KEEP = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "asimddp", "i8mm", "bf16")


@lru_cache(maxsize=1)
def cpu_features() -> list[str]:
    """The SIMD features that decide ONNX Runtime's int8 kernels and PyTorch's bf16 speed."""
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith(("flags", "Features"))), [])
    except OSError:
        return []
    return [f for f in KEEP if f in flags]


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (taskset, a container's cpuset), not every core the
    machine has, so that a pinned run does not start more threads than it has cores.
    """
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity on macOS
        return os.cpu_count() or 1


def has_vnni() -> bool:
    return any(f in cpu_features() for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"))


def has_native_bf16() -> bool:
    return any(f in cpu_features() for f in ("avx512_bf16", "amx_bf16", "bf16"))
