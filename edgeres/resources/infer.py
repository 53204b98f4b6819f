#!/usr/bin/env python3
"""Classify images with the model of this bundle: numpy, Pillow and onnxruntime (or the runner shipped beside it).

    python3 infer.py IMAGE_OR_FOLDER [...] [--top-k 3] [--json]

Written by `edgeres bundle`. It reads bundle.json and labels.txt beside it and preprocesses each image with
pixels.py, the very module edgeres itself uses: decode (PNG/JPEG), colour mode, shorter side resized, centre crop,
scaled to [0, 1], normalized with the recorded mean and std.
"""
import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pixels import (  # type: ignore[import-not-found]  # noqa: E402
    OTHER_IMAGES,
    SUFFIXES,
    decode,
    grey_or_rgb,
    normalize,
    resize_crop,
)


def preprocess(path, pre):
    """One PNG/JPEG file to a float32 CHW array, exactly as edgeres preprocesses it."""
    img = resize_crop(grey_or_rgb(decode(str(path))), pre["size"], pre["channels"], pre.get("resize") or pre["size"],
                      pre.get("resample", "bilinear"))
    return normalize(img, pre["mean"], pre["std"])


class OnnxRunner:
    def __init__(self, path, settings):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if settings.get("fake_quant"):  # Q/DQ run in float, the arithmetic TensorRT performs (as edgeres scores it)
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.name = self.sess.get_inputs()[0].name
        batch = self.sess.get_inputs()[0].shape[0]
        self.static = batch if isinstance(batch, int) else None  # a graph of fixed batch takes that batch only
        self.max_batch = self.static or 64

    def __call__(self, x):
        n = len(x)
        if self.static and n < self.static:  # pad, then cut
            x = np.concatenate([x, np.zeros((self.static - n,) + x.shape[1:], x.dtype)])
        return self.sess.run(None, {self.name: x})[0][:n]


def load_runner(root, settings):
    """ONNX Runtime, or the runner module the bundle ships beside this script for its runtime (bundle.json names it;
    edgeres writes one for engines). Either takes a batch and returns its outputs, and says its ``max_batch``.
    """
    name = settings.get("runner")
    if not name:
        return OnnxRunner(root / settings["model"], settings)
    if not str(name).isidentifier() or not (root / f"{name}.py").is_file():
        sys.exit(f"error: bundle.json names the runner {name!r}, which is not a module beside infer.py; "
                 f"make the bundle again with `edgeres bundle`")
    return importlib.import_module(name).Runner(root / settings["model"], settings)


def softmax(z):
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def image_paths(args):
    """The files named, and the PNG/JPEG files under the folders named: hidden ones left out (macOS writes an
    AppleDouble ._photo.jpg beside each photo on a USB stick, Jupyter keeps copies in .ipynb_checkpoints/), as
    edgeres lists them; images of other formats are refused by name, never skipped in silence.
    """
    out = []
    for a in map(Path, args):
        if a.is_dir():
            files = sorted(p for p in a.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(a).parts))
            other = [p for p in files if p.suffix.lower() in OTHER_IMAGES]
            if other:
                kind = other[0].suffix.lower()
                sys.exit(f"error: {other[0]} is a {kind} image, and this model reads PNG and JPEG; convert it "
                         f"(ImageMagick: mogrify -format png *{kind}) and move the {kind} files out of {a}")
            out += [p for p in files if p.suffix.lower() in SUFFIXES]
        elif a.is_file():
            out.append(a)
        else:
            sys.exit(f"error: {a} does not exist; pass PNG/JPEG files or folders of them")
    return out


def batch_of(files, pre):
    """The preprocessed images of ``files`` as one array; a file that is not a readable PNG or JPEG is named."""
    rows = []
    for p in files:
        try:
            rows.append(preprocess(p, pre))
        except (OSError, ValueError) as e:
            sys.exit(f"error: {p} is not a readable PNG or JPEG ({e}); remove it or pass the others")
    return np.stack(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Classify images with this bundle's model.")
    ap.add_argument("images", nargs="+", help="PNG/JPEG files or folders")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ap.add_argument("--bundle", default=str(HERE), help="the bundle folder (default: this script's)")
    args = ap.parse_args(argv)
    root = Path(args.bundle)
    settings = json.loads((root / "bundle.json").read_text())
    labels = (root / "labels.txt").read_text(encoding="utf-8").splitlines()
    runner = load_runner(root, settings)
    pre = settings["preprocessing"]
    files = image_paths(args.images)
    results = []
    for i in range(0, len(files), runner.max_batch):
        chunk = files[i:i + runner.max_batch]
        x = batch_of(chunk, pre)
        out = runner(x)
        prob = out.astype(np.float64) if settings.get("outputs") == "probabilities" else softmax(out)
        for p, row in zip(chunk, prob):
            best = np.argsort(-row, kind="mergesort")[:max(1, args.top_k)]  # stable; numpy < 1.15 has no "stable"
            results.append({"source": str(p), "label": labels[best[0]], "index": int(best[0]),
                            "top": [{"label": labels[j], "index": int(j), "probability": float(row[j])}
                                    for j in best]})
    if args.json:
        print(json.dumps({"predictions": results}, indent=2))
    else:
        for r in results:
            print(f"{r['source']}: " + ", ".join(f"{t['label']} {100 * t['probability']:.1f}%" for t in r["top"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
