"""The stand-in ``tensorrt``'s foundations: the API manifests, the call recorder, enum values, and ``Strict``, the base
of every stand-in object, which lets through only the members NVIDIA's pybind sources of one release define.

Conformance only (see ``trt_standin``): nothing here builds or measures anything.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
API_DIR = Path(os.environ.get("EDGERES_TRT_API_DIR", REPO.parent / "shared" / "tensorrt-api"))
VERSIONS = ("8.2", "8.5", "8.6", "10.3", "10.13", "10.16", "11.0", "11.1")
# the patch release a device reports for each branch (JetPack 4.6: 8.2.1, 5.1: 8.5.2, 6.0: 8.6.2)
FULL_VERSION = {"8.2": "8.2.1", "8.5": "8.5.2", "8.6": "8.6.2", "10.3": "10.3.0", "10.13": "10.13.0",
                "10.16": "10.16.0", "11.0": "11.0.0", "11.1": "11.1.0"}
PLAN_MAGIC = b"EDGERES-TENSORRT-STANDIN: not an engine\n"
_ENUMS = {"BuilderFlag", "NetworkDefinitionCreationFlag", "DataType", "DeviceType", "MemoryPoolType",
          "ProfilingVerbosity", "LayerInformationFormat", "TensorIOMode", "Severity"}

DLA_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "BatchNormalization", "Add", "Concat", "QuantizeLinear",
           "DequantizeLinear"}


def manifest(version: str) -> dict[str, Any]:
    return json.loads((API_DIR / f"{version}.json").read_text())


@dataclass
class Recorder:
    """Every call and attribute write edgeres made on the stand-in, and every rule it broke."""

    version: str
    calls: list[tuple[str, str, tuple, dict]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def add(self, cls: str, member: str, args: tuple = (), kwargs: dict | None = None) -> None:
        self.calls.append((cls, member, args, kwargs or {}))

    def called(self, cls: str, member: str) -> list[tuple]:
        return [c[2] for c in self.calls if c[0] == cls and c[1] == member]


class EnumValue:
    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


def _enum(name: str, members: list[str]) -> type:
    values = {m: EnumValue(name, m, i) for i, m in enumerate(sorted(members))}
    return type(name, (), values)


class Strict:
    """Base of every stand-in object: only the manifest's members exist; reads of them and writes are recorded."""

    _cls = "?"
    _members: frozenset[str] = frozenset()
    _rec: Recorder

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            cls = object.__getattribute__(self, "_cls")
            if name not in object.__getattribute__(self, "_members"):
                rec = object.__getattribute__(self, "_rec")
                raise AttributeError(f"'tensorrt.{cls}' object has no attribute '{name}' (TensorRT {rec.version})")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        """A listed member without behaviour here: record the call. Python calls this after ``__getattribute__``
        raised, so a name the release does not define must raise here too (else ``hasattr`` is always true).
        """
        rec, cls = self._rec, self._cls
        if name.startswith("_") or name not in self._members:
            raise AttributeError(f"'tensorrt.{cls}' object has no attribute '{name}' (TensorRT {rec.version})")
        return lambda *a, **k: rec.add(cls, name, a, k)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            if name not in self._members:
                raise AttributeError(f"'tensorrt.{self._cls}' object has no attribute '{name}' "
                                     f"(TensorRT {self._rec.version})")
            self._rec.add(self._cls, f"set {name}", (value,))
        object.__setattr__(self, name, value)

    def _call(self, member: str, *args: Any) -> None:
        self._rec.add(self._cls, member, args)
