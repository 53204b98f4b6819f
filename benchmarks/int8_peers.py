"""INT8 against the peers: the same float ONNX, the same calibration images, the same scoring, one table.

    .venv/bin/python benchmarks/int8_peers.py [--archs resnet18,resnext50_32x4d,densenet121] [--dir runs/hard]
                                              [--limit-test 2000] [--also-first N] [--peer-python PY] [--quick]
                                              [--calib-seeds 1,2,3] [--unseen-train N] [--cache DIR]
                                              [--no-defaults] [--no-auto] [--auto-extra PLACEMENT:METHOD[:PCT],...]
                                              [--peers ort-minmax,...]

Models: `DIR/ARCH.onnx`, made if missing with the variants benchmark's settings (`edgeres train --arch ARCH
--epochs 2 --limit-train 20000`, then `edgeres export`). Calibration: the 500 images of the shipped set
(`fashion-mnist-train-500`), for every tool (edgeres's `--method auto` holds 100 of them out to choose with).
Scoring: the first LIMIT test images; each model against the float model's own top-1 (Δtop-1, points) and
predictions (agreement). Symmetric int8 Q/DQ models run as fake-quant in fp32, the arithmetic TensorRT performs
(ONNX Runtime with graph optimizations off); edgeres's cpu recipe runs natively in ONNX Runtime's int8 kernels.

Peers (`benchmarks/int8_peer_runner.py`, run in `--peer-python`, default this Python): ONNX Runtime's stock
`quantize_static` (QDQ, symmetric int8, per-channel; MinMax, Entropy and Percentile each; the best on the test
images is listed, which flatters it), NNCF's default PTQ and ModelOpt's ONNX int8 PTQ where installed. A peer that is
not installed is listed as skipped. None of them is a dependency of edgeres.

`--calib-seeds S,...` repeats the whole table for other calibration sets: for each seed, 500 class-balanced
training images drawn with `edgeres calib make --per-class 50 --seed S` (seed 0 is the shipped set), the same
images for every tool. A last table gives each quantizer's Δtop-1 and agreement per seed, their mean and spread, and
how often each edgeres row is no worse than the best peer of its own draw. Each table ends with a control row, the
float model itself (Δ 0, agreement 100%, `benchmarks/int8_tables.py`): how a quantizer that changed no prediction
would fare against the best peer, which is picked among several rows on the scored images. On a model where every
tool is within a few test images of fp32, this separates a quantizer's level from the luck of one calibration draw.

`--unseen-train N` also scores on N training images the checkpoint never trained on (its manifest's `--limit-train`
and seed say which it did) and that no calibration draw of the run holds: runs with other `--calib-seeds` score other
training images. `--cache DIR` keeps each peer's predictions under a key of everything they depend on and reuses them,
so a change to edgeres is measured against the same peer results. For experiments: `--peers` (which, '' for none),
`--no-defaults`, `--no-auto`, and `--auto-extra PLACEMENT:METHOD[:PCT],...`, rows of `--method auto` with those
candidates added to `AUTO_CANDIDATES` (a candidate that earns its place moves into the library).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeres.backends.onnxruntime import OrtSession
from edgeres.data.calibration import load_calibration_set, make_calibration_set
from edgeres.data.datasets import ImageSet, load_dataset
from edgeres.onnx_model import onnx_info
from edgeres.paths import DEFAULT_CALIBRATION, calibration_path
from edgeres.quantize import QuantConfig, ptq, qdq_from_onnx
from edgeres.train.loop import limited_indices

sys.path.insert(0, str(Path(__file__).parent))
from int8_tables import Table, images, print_summary, print_tables, scored  # noqa: E402

RUNNER = Path(__file__).with_name("int8_peer_runner.py")
PEERS = ("ort-minmax", "ort-entropy", "ort-percentile", "nncf", "modelopt")


def ensure_model(arch: str, folder: Path) -> Path:
    onnx_path = folder / f"{arch}.onnx"
    if not onnx_path.exists():
        ckpt = folder / f"{arch}.pt"
        edgeres = [sys.executable, "-m", "edgeres"]
        if not ckpt.exists():
            subprocess.run([*edgeres, "train", "--arch", arch, "--epochs", "2", "--limit-train", "20000",
                            "--limit-test", "2000", "--out", str(ckpt)], check=True)
        subprocess.run([*edgeres, "export", str(ckpt), "--out", str(onnx_path)], check=True)
    return onnx_path


def predictions(path: Path, x: np.ndarray, simulate: bool) -> np.ndarray:
    """Top-1 class of every test image."""
    sess = OrtSession(path, simulate=simulate)
    try:
        return sess.infer_all(x).argmax(1)
    finally:
        sess.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="resnet18,resnext50_32x4d,densenet121")
    ap.add_argument("--dir", type=Path, default=Path("runs/hard"))
    ap.add_argument("--limit-test", type=int, default=2000)
    ap.add_argument("--peer-python", default=sys.executable)
    ap.add_argument("--quick", action="store_true", help="edgeres: auto only, without the --equalize rows")
    ap.add_argument("--also-first", type=int, action="append", default=[],
                    help="also print the tables for the first N test images (repeatable): the same models")
    ap.add_argument("--calib-seeds", default="0",
                    help="comma-separated calibration draws (0: the shipped set); more than one adds a summary")
    ap.add_argument("--no-defaults", action="store_true", help="edgeres: without the defaults (minmax) rows")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated, of " + ", ".join(PEERS) + "; '' for none")
    ap.add_argument("--no-auto", action="store_true",
                    help="edgeres: without the plain --method auto rows (with --auto-extra: the experiment's rows only)")
    ap.add_argument("--auto-extra", default="", metavar="PLACEMENT:METHOD[:PCT],...",
                    help="also rows of --method auto with these candidates added (an experiment: ort:percentile:99.999)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the peers' predictions here and reuse them when model, calibration and images match")
    ap.add_argument("--unseen-train", type=int, default=0,
                    help="also score on N training images the model never trained on and no draw calibrates with")
    args = ap.parse_args()
    if set(args.peers.split(",")) - {"", *PEERS}:
        ap.error(f"--peers: choose from {', '.join(PEERS)}")
    args.dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.calib_seeds.split(",")]
    tables: dict[int, dict[str, Table]] = {}
    with tempfile.TemporaryDirectory(prefix="int8-peers-") as tmp:
        work = Path(tmp)
        calibs = {seed: DEFAULT_CALIBRATION if seed == 0 else str(
            make_calibration_set("fashion-mnist", work / f"calib-{seed}", per_class=50, seed=seed)) for seed in seeds}
        models = [Model.load(arch, args, set(calibs.values())) for arch in args.archs.split(",")]
        for seed, calib in calibs.items():
            print(f"calibration draw {seed}: {calib}", flush=True)
            tables[seed] = {m.arch: one_model(m, calib, work, args) for m in models}
    for seed in seeds:
        for n in sorted({*args.also_first, args.limit_test + args.unseen_train}):
            print_tables(tables[seed], n, args.limit_test, DEFAULT_CALIBRATION if seed == 0 else f"draw {seed}, seed {seed}")
    if len(seeds) > 1:
        print_summary(tables, args.limit_test)


@dataclass
class Model:
    """One float model and what every draw scores against: its test images, labels and fp32 predictions."""

    arch: str
    src: Path
    dataset: str | None
    preprocessing: Any  # the model's own, applied to test and calibration images alike
    x: np.ndarray
    y: np.ndarray
    ref: np.ndarray

    @functools.cached_property
    def images_sha256(self) -> str:
        """The scored images, for ``--cache``'s keys (hashed once per model, not once per peer and draw)."""
        return hashlib.sha256(self.x.tobytes()).hexdigest()

    @classmethod
    def load(cls, arch: str, args: argparse.Namespace, calibs: set[str]) -> Model:
        src = ensure_model(arch, args.dir)
        info = onnx_info(src)
        test = load_dataset(info.dataset or "fashion-mnist", "test")
        x = test.tensors(info.preprocessing, "test images")[:args.limit_test]
        y = test.labels[:args.limit_test]
        if args.unseen_train:
            if len(x) < args.limit_test:
                sys.exit(f"--unseen-train follows the test images: lower --limit-test to the test split's {len(x)}")
            extra = unseen_training_images(args.dir / f"{arch}.pt.json", calibs, args.unseen_train)
            x = np.concatenate([x, extra.tensors(info.preprocessing, "unseen training images")])
            y = np.concatenate([y, extra.labels])
            print(f"{arch}: scoring on {args.limit_test} test images and {len(extra)} training images it never "
                  f"trained on", flush=True)
        return cls(arch, src, info.dataset, info.preprocessing, x, y, predictions(src, x, simulate=False))


def unseen_training_images(checkpoint_manifest: Path, calibs: set[str], n: int) -> ImageSet:
    """``n`` training images (a seeded draw) that the checkpoint did not train on and no calibration set holds."""
    cfg = json.loads(checkpoint_manifest.read_text())["config"]
    if cfg["data"] != "fashion-mnist" or cfg.get("val_split"):
        sys.exit(f"--unseen-train: {checkpoint_manifest} trained on {cfg['data']} (val_split {cfg.get('val_split')}); "
                 f"it knows only Fashion-MNIST's training split without a validation share")
    train = load_dataset("fashion-mnist", "train")
    used = set(limited_indices(len(train), cfg["limit_train"], cfg["seed"]).tolist())
    for name in calibs:
        source = json.loads(calibration_path(name).joinpath("manifest.json").read_text())
        if source["source"]["split"] != "train":
            sys.exit(f"--unseen-train: calibration set {name} is not drawn from the training split")
        used.update(e["index"] for e in source["images"])
    pool = np.setdiff1d(np.arange(len(train)), np.fromiter(used, np.int64))
    if n > len(pool):
        sys.exit(f"--unseen-train {n}: only {len(pool)} training images are unseen and uncalibrated")
    return train.subset(np.sort(np.random.default_rng(2026).choice(pool, n, replace=False)))


def one_model(m: Model, calib_name: str, work: Path, args: argparse.Namespace) -> Table:
    """Every quantizer on one model with one calibration set."""
    arch, src, x, y, ref = m.arch, m.src, m.x, m.y, m.ref
    calib = load_calibration_set(calibration_path(calib_name))
    np.save(work / "calib.npy", calib.images.tensors(m.preprocessing, "calibration images"))
    rows: list[dict] = []
    fp32 = 100 * float((ref == y).mean())
    print(f"{arch}: fp32 top-1 {fp32:.2f}% on {images(len(y), args.limit_test)}", flush=True)
    runs: list[tuple[str, dict[str, Any], str]] = [] if args.no_auto else [("edgeres --method auto", {"method": "auto"}, "")]
    if not args.no_defaults:
        runs.insert(0, ("edgeres defaults (minmax)", {}, ""))
    if not args.quick:
        runs.append(("edgeres --method auto --equalize", {"method": "auto", "equalize": True}, ""))
    if args.auto_extra:
        runs.append((f"edgeres --method auto + {args.auto_extra}", {"method": "auto"}, args.auto_extra))
    for name, opts, extra in runs:
        for recipe in ("tensorrt", "cpu"):
            out = work / f"{arch}-{recipe}.onnx"
            t0 = time.perf_counter()
            cfg = QuantConfig(recipe=recipe, eval_data=m.dataset, calibration=calib_name, **opts)
            with extra_candidates(extra):
                r = qdq_from_onnx(src, out, cfg)
            secs = time.perf_counter() - t0
            pred = predictions(out, x, simulate=recipe == "tensorrt")
            rows.append({"quantizer": f"{name} [{recipe}]", "plan": r.search.plan, "seconds": secs, "pred": pred})
            print(_line(rows[-1], y, ref), flush=True)
    for peer in [p for p in args.peers.split(",") if p]:
        rows.append(peer_row(peer, m, work, args))
        print(_line(rows[-1], y, ref), flush=True)
    return rows, y, ref


@contextmanager
def extra_candidates(spec: str) -> Iterator[None]:
    """``--method auto`` with more candidates while inside: ``spec`` is ``PLACEMENT:METHOD[:PERCENTILE],...``
    (``ort:percentile:99.999``), appended to ``AUTO_CANDIDATES``. An experiment of this benchmark, not an option of
    edgeres: a candidate that earns its place moves into ``edgeres/quantize/plans.py``.
    """
    if not spec:
        yield
        return
    more = []
    for item in spec.split(","):
        placement, method, *pct = item.split(":")
        more.append((placement, method, float(pct[0]) if pct else None))
    before = ptq.AUTO_CANDIDATES
    ptq.AUTO_CANDIDATES = (*before, *more)
    try:
        yield
    finally:
        ptq.AUTO_CANDIDATES = before


@functools.cache
def peer_environment(python: str) -> str:
    """What a peer's result depends on besides its inputs: the peer's Python and its installed packages, and the
    ONNX Runtime of this process, which scores the peer's model.
    """
    import onnxruntime

    listing = subprocess.run([python, "-c", "import importlib.metadata as m; print(sorted((d.metadata['Name'] or '', "
                              "d.version) for d in m.distributions()))"], capture_output=True, text=True).stdout
    return f"{python}\0{listing}\0onnxruntime {onnxruntime.__version__}"


def peer_row(peer: str, m: Model, work: Path, args: argparse.Namespace) -> dict:
    """One peer quantizes ``m`` with the calibration array in ``work``; its scored images' predictions.

    With ``--cache DIR`` a peer's predictions are kept under a key of everything they depend on (the peer, its Python
    and that Python's packages, this process's ONNX Runtime that scores them, the model file, the calibration array
    and the scored images), and read back instead of running it again: edgeres's
    rows always run, so a change to edgeres is measured against the same peer results at a fraction of the time.
    """
    key = ""
    if args.cache:
        h = hashlib.sha256(f"{peer}\0{peer_environment(args.peer_python)}\0{m.images_sha256}\0".encode())
        for part in (m.src.read_bytes(), (work / "calib.npy").read_bytes()):
            h.update(hashlib.sha256(part).digest())
        key = h.hexdigest()[:32]
        hit = args.cache / f"{key}.npz"
        if hit.exists():
            with np.load(hit) as z:
                return {"quantizer": peer, "seconds": float(z["seconds"]), "pred": z["pred"], "cached": True}
    out = work / f"{m.arch}-{peer}.onnx"
    t0 = time.perf_counter()
    p = subprocess.run([args.peer_python, str(RUNNER), peer, str(m.src), str(work / "calib.npy"), str(out)],
                       capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if p.returncode == 3:
        return {"quantizer": peer, "skipped": "not installed in " + args.peer_python}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:160]
        return {"quantizer": peer, "skipped": f"failed: {tail}"}
    pred = predictions(out, m.x, simulate=True)
    if key:
        args.cache.mkdir(parents=True, exist_ok=True)
        tmp = args.cache / f"{key}.tmp.npz"
        np.savez(tmp, pred=pred, seconds=secs)
        tmp.replace(args.cache / f"{key}.npz")
    return {"quantizer": peer, "seconds": secs, "pred": pred}


def _line(row: dict, y: np.ndarray, ref: np.ndarray) -> str:
    if "pred" not in row:
        return json.dumps(row)
    d, a, _ = scored(row["pred"], y, ref)
    return json.dumps({**{k: v for k, v in row.items() if k != "pred"}, "delta": round(d, 2), "agreement": round(a, 2)})


if __name__ == "__main__":
    main()
