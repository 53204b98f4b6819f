"""The demo: train → export → quantize (each recipe) → bench, resumable through manifests."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeres.artifacts import is_fresh, read_manifest, sha256_file
from edgeres.bench import bench
from edgeres.config import DEFAULT_DATASET, PipelineConfig
from edgeres.data.calibration import make_calibration_set
from edgeres.errors import ArtifactError
from edgeres.export import onnx_from_checkpoint
from edgeres.paths import DEFAULT_CALIBRATION, calibration_path
from edgeres.progress import log
from edgeres.quantize import qdq_from_onnx
from edgeres.train import TrainConfig, data_inputs, train


@dataclass
class StageLog:
    stages: list[dict] = field(default_factory=list)

    def add(self, name: str, path: Path, skipped: bool, seconds: float) -> None:
        self.stages.append({"stage": name, "artifact": str(path), "skipped": skipped, "seconds": round(seconds, 1)})
        log(f"[{name}] {'up to date, skipped' if skipped else f'done in {seconds:.1f} s'}: {path}")


def _train_state(ckpt: Path, cfg: TrainConfig, force: bool) -> str:
    """``done``, ``resume`` or ``fresh`` for the run's checkpoint. A checkpoint whose bytes no longer match its
    manifest (a killed copy, a full disk) is trained afresh, never "resumed"; one without an edgeres manifest is not
    edgeres's to replace.
    """
    if not ckpt.exists():
        return "fresh"
    man = read_manifest(ckpt)
    if man is None or man.get("kind") != "checkpoint":
        if force:
            return "fresh"
        raise ArtifactError(f"{ckpt} exists but edgeres has no record of making it (no valid {ckpt.name}.json); "
                            f"move it away, or pass --force to replace it")
    if force:
        return "fresh"
    if (man.get("artifact") or {}).get("sha256") != sha256_file(ckpt):
        log(f"{ckpt} does not match its manifest (damaged or cut short): training afresh")
        return "fresh"
    if is_fresh(ckpt, data_inputs(cfg), asdict(cfg)):  # the same data (an ImageFolder: the same listing), settings
        return "done" if man.get("results", {}).get("epoch") == cfg.epochs else "resume"
    if man.get("config") == asdict(cfg):
        log(f"{cfg.data} changed since {ckpt} was trained on it: training afresh")
    return "fresh"


def pipeline_calibration(cfg: PipelineConfig, out: Path) -> Path:
    """--calibration; else the shipped Fashion-MNIST set, or one drawn from the user's training split into the run."""
    if cfg.quant.calibration is not None:
        return calibration_path(cfg.quant.calibration)
    if cfg.train.data == DEFAULT_DATASET:
        return calibration_path(DEFAULT_CALIBRATION)
    return out / "calibration"


def run_pipeline(cfg: PipelineConfig = PipelineConfig(), force: bool = False) -> dict:
    """Run every stage whose output is missing or stale; returns the bench report."""
    for c in (cfg.train, cfg.export, cfg.quant, cfg.bench):
        c.validate()  # every setting is checked before anything is made
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    st = StageLog()

    ckpt = out / "model.pt"
    t = time.perf_counter()
    state = _train_state(ckpt, cfg.train, force)
    done = state == "done"
    if not done:
        train(cfg.train, ckpt, resume=state == "resume")
    st.add("train", ckpt, done, time.perf_counter() - t)

    onnx_path = out / "model.onnx"
    t = time.perf_counter()
    done = not force and is_fresh(onnx_path, {"checkpoint": ckpt}, asdict(cfg.export))
    if not done:
        onnx_from_checkpoint(ckpt, onnx_path, cfg.export)
    st.add("export", onnx_path, done, time.perf_counter() - t)

    calib = pipeline_calibration(cfg, out)
    if not (calib / "manifest.json").is_file() and not (cfg.quant.calibration and calib.is_dir()):
        t = time.perf_counter()
        make_calibration_set(cfg.train.data, calib, cfg.calib_per_class, "train",
                             strict=cfg.train.data == DEFAULT_DATASET)
        st.add("calibration set", calib, False, time.perf_counter() - t)

    models = [onnx_path]
    for recipe in cfg.recipes:
        q = replace(cfg.quant, recipe=recipe, calibration=str(calib))
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
