"""targets/*.toml → TargetProfile, validated: unknown keys, wrong types and missing fields are errors."""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from edgeres.errors import ConfigError
from edgeres.paths import TARGETS_DIR

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEVICE_TREE_MODEL = Path(os.environ.get("EDGERES_DEVICE_TREE_MODEL", "/proc/device-tree/model"))
RUNTIMES = ("onnxruntime", "tensorrt")
KINDS = ("cpu", "desktop", "jetson")


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    kind: str
    runtime: str
    precisions: tuple[str, ...]
    sm: str | None = None
    int8_gpu: bool = False
    dla_cores: int = 0
    jetpack: str | None = None
    tensorrt: tuple[str, ...] = ()  # the TensorRT releases of the board's JetPacks (desktop: the oldest supported on)
    memory_gb: float | None = None
    memory_bandwidth_gbs: float | None = None
    peak_fp32_tflops: float | None = None
    peak_fp16_tflops: float | None = None
    peak_int8_tops: float | None = None
    threads: int | None = None
    model_match: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            why = " (no INT8 on its GPU: use fp16)" if precision == "int8" and not self.int8_gpu else ""
            raise ConfigError(f"target {self.name} does not support {precision}{why}; "
                              f"it supports {', '.join(self.precisions)}")

    def check_dla(self, core: int | None, tensorrt: Version | None = None) -> None:
        """Refuse a DLA core the board does not have, or that this TensorRT version cannot use."""
        if core is None:
            return
        if not 0 <= core < self.dla_cores:
            have = f"cores 0–{self.dla_cores - 1}" if self.dla_cores else "no DLA"
            raise ConfigError(f"target {self.name} has {have}; drop --dla-core or pick a target with DLA "
                              f"(jetson-xavier-nx, jetson-agx-xavier, jetson-orin-nx, jetson-agx-orin)")
        if tensorrt is not None and tensorrt >= Version("11"):
            since = DLA_IN_TENSORRT_11.get(self.name)
            if since is None or tensorrt < since:
                where = f"from {since} on" if since else "on no release"
                raise ConfigError(f"TensorRT {tensorrt} has no DLA support for {self.name} ({where} of TensorRT 11); "
                                  f"drop --dla-core, or build with the TensorRT 10 of JetPack 6")

    @property
    def tensorrt_versions(self) -> list[Version]:
        return [Version(v) for v in self.tensorrt]

    @property
    def oldest_tensorrt(self) -> Version | None:
        """The oldest TensorRT that runs this target's engines: exports are made for its ONNX parser."""
        return min(self.tensorrt_versions) if self.tensorrt else None

    def check_tensorrt(self, installed: Version, what: str = "TensorRT") -> None:
        """Refuse a TensorRT that this target's JetPacks do not ship (desktops: anything older than the oldest)."""
        if not self.tensorrt:
            return
        if self.kind == "jetson":
            ok = any((installed.major, installed.minor) == (v.major, v.minor) for v in self.tensorrt_versions)
        else:
            ok = installed >= min(self.tensorrt_versions)
        if not ok:
            raise ConfigError(f"{what} {installed} does not match target {self.name}, whose JetPacks ship TensorRT "
                              f"{', '.join(self.tensorrt)}; name the target of this device (edgeres targets), or "
                              f"install the JetPack that matches")


# TensorRT 11 has no DLA before 11.4.1, and then only on AGX Orin (../shared/jetpack.md).
DLA_IN_TENSORRT_11 = {"jetson-agx-orin": Version("11.4.1")}
_REQUIRED = {"name", "description", "kind", "runtime", "precisions"}
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "kind": (str,), "runtime": (str,), "precisions": (list,),
    "sm": (str,), "int8_gpu": (bool,), "dla_cores": (int,), "jetpack": (str,), "tensorrt": (list, str),
    "memory_gb": (int, float), "memory_bandwidth_gbs": (int, float), "peak_fp32_tflops": (int, float),
    "peak_fp16_tflops": (int, float), "peak_int8_tops": (int, float), "threads": (int,),
    "model_match": (list,), "sources": (dict,),
}


def profile_from_dict(d: dict[str, Any], origin: str) -> TargetProfile:
    valid = [f.name for f in fields(TargetProfile)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ConfigError(f"{origin}: unknown key {unknown[0]!r}; valid keys are {', '.join(valid)}")
    missing = sorted(_REQUIRED - set(d))
    if missing:
        raise ConfigError(f"{origin}: missing field {missing[0]!r}; add it (required: {', '.join(sorted(_REQUIRED))})")
    for k, v in d.items():
        ok = _TYPES[k]
        if not isinstance(v, ok) or (isinstance(v, bool) and bool not in ok):
            raise ConfigError(f"{origin}: {k} = {v!r} should be {' or '.join(t.__name__ for t in ok)}")
    if d["runtime"] not in RUNTIMES:
        raise ConfigError(f"{origin}: runtime {d['runtime']!r} is not one of {', '.join(RUNTIMES)}")
    if d["kind"] not in KINDS:
        raise ConfigError(f"{origin}: kind {d['kind']!r} is not one of {', '.join(KINDS)}")
    for k in ("memory_gb", "memory_bandwidth_gbs", "peak_fp32_tflops", "peak_fp16_tflops", "peak_int8_tops", "threads"):
        if k in d and not (math.isfinite(d[k]) and d[k] > 0):
            raise ConfigError(f"{origin}: {k} = {d[k]!r} must be a positive number")
    if d.get("dla_cores", 0) < 0:
        raise ConfigError(f"{origin}: dla_cores = {d['dla_cores']} must be 0 or more")
    d = dict(d)
    d["tensorrt"] = _tensorrt_versions(d, origin)
    d["precisions"] = tuple(d["precisions"])
    d["model_match"] = tuple(d.get("model_match", ()))
    return TargetProfile(**d)


def _tensorrt_versions(d: dict[str, Any], origin: str) -> tuple[str, ...]:
    raw = d.get("tensorrt")
    if raw is None:
        if d["runtime"] == "tensorrt":
            raise ConfigError(f"{origin}: missing field 'tensorrt'; add the TensorRT releases of the board's "
                              f"JetPacks, e.g. tensorrt = [\"10.3\"]")
        return ()
    vals = [raw] if isinstance(raw, str) else raw
    out = []
    for v in vals:
        try:
            ver = Version(v) if isinstance(v, str) else None
        except InvalidVersion:
            ver = None
        if ver is None or len(ver.release) < 2:
            raise ConfigError(f"{origin}: tensorrt = {raw!r} is malformed; give releases as \"MAJOR.MINOR\" "
                              f"strings, e.g. tensorrt = [\"8.5\", \"10.3\"]")
        out.append(v)
    if not out:
        raise ConfigError(f"{origin}: tensorrt is empty; list the TensorRT releases, e.g. tensorrt = [\"10.3\"]")
    return tuple(out)


def load_target_file(path: Path) -> TargetProfile:
    try:
        d = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML file ({e}); fix its syntax") from None
    return profile_from_dict(d, str(path))


def target_names(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or TARGETS_DIR).glob("*.toml"))


def all_targets(directory: Path | None = None) -> list[TargetProfile]:
    return [load_target_file(p) for p in sorted((directory or TARGETS_DIR).glob("*.toml"))]


def detect_jetson(model_file: Path = DEVICE_TREE_MODEL, directory: Path | None = None) -> TargetProfile:
    """The Jetson profile whose ``model_match`` strings occur in ``/proc/device-tree/model``."""
    try:
        model = model_file.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        raise ConfigError(f"--target jetson works on a Jetson only ({model_file} is absent); run it on the "
                          f"device, use --host user@device, or name a target: {', '.join(target_names(directory))}") from None
    for t in all_targets(directory):
        if t.kind == "jetson" and any(m.lower() in model.lower() for m in t.model_match):
            return t
    raise ConfigError(f"{model_file} says {model!r}, which no targets/*.toml matches; add its text to a "
                      f"target's model_match")


def load_target(name: str, directory: Path | None = None, model_file: Path = DEVICE_TREE_MODEL) -> TargetProfile:
    """A target by name (``cpu``, ``jetson-orin-nano`` …), ``jetson`` to detect the board, or a .toml path."""
    directory = directory or TARGETS_DIR
    if name == "jetson":
        return detect_jetson(model_file, directory)
    if name.endswith(".toml"):
        return load_target_file(Path(name))
    path = directory / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown target {name!r}; choose one of {', '.join(target_names(directory) + ['jetson'])}")
    return load_target_file(path)
