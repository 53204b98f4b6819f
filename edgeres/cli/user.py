"""Your model and your images: predict, import a foreign ONNX, bundle a model for DeepStream, Triton or a script."""
from __future__ import annotations

from pathlib import Path

import click

from edgeres.cli import emit, handle_errors, json_option, preprocessing_options


@click.command("predict")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=int, default=3, show_default=True, help="Classes to print per image.")
@click.option("--target", default="cpu", show_default=True, help="Runtime for an ONNX or engine (an engine's own "
              "manifest names its target).")
@json_option
@handle_errors
def predict_cmd(model, images, top_k, target, as_json):
    """Classify images with a checkpoint, an ONNX (float or Q/DQ) or an engine: top-k labels and probabilities.

    IMAGES are PNG/JPEG files or folders of them (searched recursively). The model's own preprocessing is applied.

    \b
    Examples:
      edgeres predict runs/demo/model.onnx shoe.png
      edgeres predict runs/demo/model.int8-cpu.onnx photos/ --top-k 1 --json
    """
    from edgeres.errors import ConfigError
    from edgeres.predict import image_inputs, load

    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    files = image_inputs(list(images))
    with load(model, target) as m:
        preds = m.predict_many(files, top_k)
    lines = [f"{p.source}: " + ", ".join(f"{lab} {100 * pr:.1f}%" for lab, _, pr in p.top) for p in preds]
    emit(as_json, {"model": str(model), "predictions": [p.to_dict() for p in preds]}, "\n".join(lines))


@click.command("import")
@click.argument("onnx_path", metavar="ONNX", type=click.Path(path_type=Path))
@click.option("--labels", required=True, help="Class labels: a file with one class per line (DeepStream's and "
              "Triton's form), or a,b,c.")
@preprocessing_options("The model's", required=True)
@click.option("--data", default=None, help="The data set it classifies (an ImageFolder), used by quantize and bench.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: ONNX with .edgeres.onnx.")
@json_option
@handle_errors
def import_cmd(onnx_path, labels, size, resize, mean, std, data, out, as_json):
    """Adopt a classifier ONNX made elsewhere: record its preprocessing and labels, check it with ONNX Runtime.

    From then on every stage takes it (quantize, build, bench, predict, bundle). The input file is not changed.

    \b
    Example (jetson-inference's ResNet-18, input_0/output_0, batch 1):
      edgeres import resnet18.onnx --labels labels.txt --size 224 --resize 256 \\
          --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --out models/resnet18.edgeres.onnx
    """
    from edgeres.data.labels import parse_floats, read_labels
    from edgeres.data.preprocess import Preprocessing
    from edgeres.import_onnx import ImportConfig, onnx_from_foreign

    m, s = parse_floats("--mean", mean), parse_floats("--std", std)
    cfg = ImportConfig(Preprocessing(size, len(m), m, s, resize=resize), tuple(read_labels(labels, "--labels")), data)
    out = out or onnx_path.with_name(f"{onnx_path.stem}.edgeres.onnx")
    r = onnx_from_foreign(onnx_path, out, cfg)
    emit(as_json, {"onnx": r.onnx, "input": r.input_name, "output": r.output_name, "dynamic_batch": r.dynamic_batch,
                   "precision": r.precision, "classes": len(cfg.classes)},
         f"{r.onnx}: {r.precision}, input {r.input_name}, output {r.output_name}, {len(cfg.classes)} classes, "
         f"{'dynamic batch' if r.dynamic_batch else 'static batch (its graph fixes it)'}")


@click.command("bundle")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="The device it deploys to (see `edgeres targets`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="A new or empty folder.")
@click.option("--softmax", is_flag=True, help="Add a softmax, so the model outputs probabilities.")
@click.option("--report", type=click.Path(path_type=Path), default=None, metavar="REPORT_JSON",
              help="A `bench --sweep` report of this model on this target: Triton's dynamic batcher prefers the "
                   "smallest batch within 5% of its most images per second.")
@click.option("--dla-core", type=int, default=None, metavar="N",
              help="DeepStream: nvinfer builds the ONNX for this DLA core (enable-dla, use-dla-core; fp16 for an "
                   "fp32 model). An engine keeps the core it was built for.")
@json_option
@handle_errors
def bundle_cmd(model, target, out, softmax, report, dla_core, as_json):
    """Write what production needs: labels, the model and its manifest, a DeepStream nvinfer config, a Triton
    model repository and infer.py (numpy, Pillow and onnxruntime or tensorrt; no edgeres).

    MODEL is an ONNX (float, Q/DQ or imported) or an engine from `edgeres build`.

    \b
    Examples:
      edgeres bundle runs/demo/model.int8-tensorrt.onnx --target jetson-orin-nano --out deploy/orin
      edgeres bundle runs/demo/model.onnx --target cpu --out deploy/cpu && python3 deploy/cpu/infer.py shoe.png
      edgeres bundle runs/demo/model.int8-cpu.onnx --target cpu --report runs/sweep/report.json --out deploy/cpu8
      edgeres bundle runs/demo/model.int8-tensorrt.onnx --target jetson-agx-orin --dla-core 0 --out deploy/orin-dla0
    """
    from edgeres.bundle import bundle

    r = bundle(model, target, out, softmax, report, dla_core)
    text = f"{r.out}: " + ", ".join(r.files) + "".join(f"\nnote: {n}" for n in r.notes)
    emit(as_json, {"out": r.out, "files": r.files, "runtime": r.runtime, "notes": r.notes}, text)
