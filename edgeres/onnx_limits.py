"""What each TensorRT's ONNX parser reads: opsets and op forms, from ``onnx_parsers.toml``, and the checks on a model.

TensorRT's parsers do not refuse an ONNX they misread: 8.x reads a Reduce* whose axes come as an input (opset 18) as
"reduce every axis", and logs newer opsets and goes on. So edgeres checks a model against the parser of the oldest
TensorRT a target runs before ``build`` and ``bench``, and ``export --target`` writes a model within those limits.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from edgeres.config import DEFAULT_OPSET, MIN_OPSET
from edgeres.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    import onnx

    from edgeres.targets import TargetProfile

PARSERS_FILE = Path(__file__).with_name("onnx_parsers.toml")
# Reduce ops whose axes became an input in opset 18 (ReduceSum: in 13, and 8.x parsers read that one).
REDUCE_AXES_INPUT_OPS = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}


@dataclass(frozen=True)
class ParserLimits:
    """What one TensorRT release's ONNX parser reads."""

    tensorrt: Version
    min_opset: int
    max_opset: int
    reduce_axes_input: bool
    source: str


@lru_cache(maxsize=1)
def _rows() -> tuple[ParserLimits, ...]:
    doc = tomllib.loads(PARSERS_FILE.read_text(encoding="utf-8"))
    rows = [ParserLimits(Version(r["tensorrt"]), int(r["min_opset"]), int(r["max_opset"]),
                         bool(r["reduce_axes_input"]), str(r["source"])) for r in doc["parser"]]
    return tuple(sorted(rows, key=lambda r: r.tensorrt))


def parser_limits(tensorrt: Version | str) -> ParserLimits:
    """The limits of ``tensorrt``'s parser: the row of the nearest release at or below it."""
    v = Version(str(tensorrt))
    below = [r for r in _rows() if r.tensorrt <= v]
    if not below:
        raise ConfigError(f"TensorRT {v} is older than any parser edgeres knows "
                          f"(oldest: {_rows()[0].tensorrt}); use JetPack 4.6 or newer")
    return below[-1]


def target_limits(target: TargetProfile) -> ParserLimits | None:
    """The parser of the oldest TensorRT the target runs; None for targets without TensorRT."""
    oldest = target.oldest_tensorrt
    return None if oldest is None else parser_limits(oldest)


def export_opset(target: TargetProfile) -> int:
    """The opset ``edgeres export --target`` writes: the default, or the parser's limit where that is lower."""
    lim = target_limits(target)
    return DEFAULT_OPSET if lim is None else max(MIN_OPSET, min(DEFAULT_OPSET, lim.max_opset))


def model_opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def parser_problems(model: onnx.ModelProto, lim: ParserLimits) -> list[str]:
    """Why ``lim``'s parser would misread or refuse ``model``; empty when it reads it as written."""
    out = []
    opset = model_opset(model)
    if not lim.min_opset <= opset <= lim.max_opset:
        out.append(f"opset {opset} is outside the {lim.min_opset}–{lim.max_opset} that TensorRT {lim.tensorrt}'s "
                   f"ONNX parser reads")
    if not lim.reduce_axes_input:
        bad = [n.name or n.op_type for n in model.graph.node
               if n.op_type in REDUCE_AXES_INPUT_OPS and len(n.input) > 1 and n.input[1]]
        if bad:
            out.append(f"{len(bad)} Reduce node(s) take their axes as an input ({bad[0]}), which TensorRT "
                       f"{lim.tensorrt}'s parser misreads as 'reduce every axis'")
    return out


def require_parsable(path: Path, model: onnx.ModelProto, target: TargetProfile,
                     installed: Version | None = None) -> None:
    """Refuse a model that the target's (or the installed) TensorRT would misread, naming the export to run."""
    checks = [lim for lim in (target_limits(target), None if installed is None else parser_limits(installed)) if lim]
    for lim in checks:
        problems = parser_problems(model, lim)
        if problems:
            raise ConfigError(f"{path}: {problems[0]}; {export_fix(path, target, min(export_opset(target), lim.max_opset))}")


def export_fix(path: Path, target: TargetProfile, opset: int) -> str:
    """The commands that make the model again within the target's parser, from what the manifests say it came from:
    the checkpoint's export (and the quantize after it) where that checkpoint is still there and unchanged, or, for an
    imported ONNX, its own exporter.
    """
    from edgeres.artifacts import read_manifest, sha256_file

    quantize: str | None = None  # the quantize options of a Q/DQ model, to make it again from the new export
    p = Path(path)
    for _ in range(4):  # a Q/DQ or FP16 model → its float ONNX → the checkpoint (or the ONNX it imported)
        man = read_manifest(p) or {}
        inputs, cfg = (_dict(man.get(k)) for k in ("inputs", "config"))
        if man.get("kind") == "onnx-int8-qdq" and quantize is None:
            quantize = "".join(f" --{k} {cfg[k]}" for k in ("recipe", "method") if isinstance(cfg.get(k), str))
        if man.get("kind") == "onnx-imported":
            return (f"it was imported: export it again from its framework at opset {opset} "
                    f"(torch.onnx.export(..., opset_version={opset}, dynamo=False)) and `edgeres import` that")
        entry = _dict(inputs.get("checkpoint") or inputs.get("onnx"))
        src = entry.get("path")
        if not isinstance(src, str):
            break
        if "checkpoint" in inputs and Path(src).is_file() and sha256_file(Path(src)) == entry.get("sha256"):
            out = shlex.quote(str(Path(src).with_name(f"{Path(src).stem}.{target.name}.onnx")))
            then = "" if quantize is None else f", then quantize that ONNX: `edgeres quantize {out}{quantize}`"
            return (f"re-export it for the target: `edgeres export {shlex.quote(src)} --target {target.name} "
                    f"--out {out}`{then}")
        p = Path(src)
    return (f"re-export it for the target with `edgeres export CHECKPOINT --target {target.name}`"
            + ("" if quantize is None else " (then quantize that ONNX again)"))


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}
