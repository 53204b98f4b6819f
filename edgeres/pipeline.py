"""The demo: train → export → quantize (each recipe) → bench, resumable through manifests."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeres.artifacts import is_fresh, read_manifest
from edgeres.bench import bench
from edgeres.config import PipelineConfig
from edgeres.data.calibration import make_calibration_set
from edgeres.export import onnx_from_checkpoint
from edgeres.paths import calibration_path
from edgeres.progress import log
from edgeres.quantize import qdq_from_onnx
from edgeres.train import TrainConfig, data_inputs, train


@dataclass
class StageLog:
    stages: list[dict] = field(default_factory=list)

    def add(self, name: str, path: Path, skipped: bool, seconds: float) -> None:
        self.stages.append({"stage": name, "artifact": str(path), "skipped": skipped, "seconds": round(seconds, 1)})
        log(f"[{name}] {'up to date, skipped' if skipped else f'done in {seconds:.1f} s'}: {path}")


def _checkpoint_done(ckpt: Path, cfg: TrainConfig) -> bool:
    man = read_manifest(ckpt)
    return (is_fresh(ckpt, data_inputs(cfg), asdict(cfg))
            and man is not None and man.get("results", {}).get("epoch") == cfg.epochs)


def run_pipeline(cfg: PipelineConfig = PipelineConfig(), force: bool = False) -> dict:
    """Run every stage whose output is missing or stale; returns the bench report."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    st = StageLog()

    ckpt = out / "model.pt"
    t = time.perf_counter()
    done = not force and _checkpoint_done(ckpt, cfg.train)
    if not done:
        resume = not force and ckpt.is_file() and (read_manifest(ckpt) or {}).get("config") == asdict(cfg.train)
        train(cfg.train, ckpt, resume=resume)
    st.add("train", ckpt, done, time.perf_counter() - t)

    onnx_path = out / "model.onnx"
    t = time.perf_counter()
    done = not force and is_fresh(onnx_path, {"checkpoint": ckpt}, asdict(cfg.export))
    if not done:
        onnx_from_checkpoint(ckpt, onnx_path, cfg.export)
    st.add("export", onnx_path, done, time.perf_counter() - t)

    calib = calibration_path(cfg.quant.calibration)
    if not (calib / "manifest.json").is_file():
        t = time.perf_counter()
        make_calibration_set(cfg.train.data, calib, cfg.calib_per_class, "train")
        st.add("calibration set", calib, False, time.perf_counter() - t)

    models = [onnx_path]
    for recipe in cfg.recipes:
        q = replace(cfg.quant, recipe=recipe)
        qpath = out / f"model.int8-{recipe}.onnx"
        t = time.perf_counter()
        done = not force and is_fresh(qpath, {"onnx": onnx_path, "calibration_manifest": calib / "manifest.json"},
                                      asdict(q))
        if not done:
            qdq_from_onnx(onnx_path, qpath, q)
        st.add(f"quantize {recipe}", qpath, done, time.perf_counter() - t)
        models.append(qpath)

    t = time.perf_counter()
    report = bench(models, out / "report", cfg.bench, ckpt if cfg.bench_torch else None)
    st.add("bench", out / "report", False, time.perf_counter() - t)
    report["pipeline"] = st.stages
    return report
