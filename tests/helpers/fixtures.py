"""One small but real run of the whole path, shared by the integration tests.

Real ResNet-18, real Fashion-MNIST (a slice), real ONNX export, ORT quantization and ORT sessions.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeres.backends.latency import LatencyConfig
from edgeres.bench import BenchConfig
from edgeres.data.calibration import make_calibration_set
from edgeres.export import ExportConfig
from edgeres.pipeline import PipelineConfig, run_pipeline
from edgeres.quantize import QuantConfig
from edgeres.train import TrainConfig
from tests.helpers.sshd import serving, start_sshd

FAST_LATENCY = LatencyConfig(warmup_s=0.02, warmup_iters=2, duration_s=0.1, min_iters=5)


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    return make_calibration_set("fashion-mnist", tmp_path_factory.mktemp("calib") / "fm-100", per_class=10)


@pytest.fixture(scope="session")
def small_cfg(tmp_path_factory, calib_dir):
    out = tmp_path_factory.mktemp("run")
    return PipelineConfig(
        out=str(out),
        # fp32 on every CPU: bf16 autocast where the CPU has it natively (a Xeon) and fp32 elsewhere (an EPYC with
        # AVX2 only) trained two other models. At lr 0.1 the fp32 one stopped at 45% with logits up to 54, too steep
        # for QAT's tests; at 0.02 it reaches about 78%. Residuals are not zero-initialized: the outlier tests need a
        # block whose residual branch counts after one epoch
        train=TrainConfig(epochs=1, batch_size=64, limit_train=3200, limit_test=200, size=32, lr=0.02,
                          zero_init_residual=False, amp="off"),
        export=ExportConfig(parity_images=64),
        quant=QuantConfig(calibration=str(calib_dir)),
        bench=BenchConfig(limit=200, latency=FAST_LATENCY),
    )


@pytest.fixture(scope="session")
def small_run(small_cfg):
    report = run_pipeline(small_cfg)
    return small_cfg, report


@pytest.fixture(scope="session")
def float_model(small_run, tmp_path_factory):
    """The small run's float ONNX and its ONNX Runtime pre-processed copy, what quantize searches ranges on."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeres.quantize.calibrate import quiet

    cfg, _ = small_run
    src = Path(cfg.out) / "model.onnx"
    pre = tmp_path_factory.mktemp("pre") / "pre.onnx"
    with quiet():
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
    return src, pre


@pytest.fixture(scope="session")
def calib_x(float_model, calib_dir):
    """The calibration images as the model's input tensors, and the input's name."""
    from edgeres.data.calibration import load_calibration_set
    from edgeres.onnx_model import onnx_info

    info = onnx_info(float_model[0])
    return load_calibration_set(Path(calib_dir)).images.tensors(info.preprocessing, "calibration"), info.input_name


# one target for each parser limit below edgeres's default opset 18: opset 13 (TensorRT 8.2), 17 (8.5/8.6, desktop's
# oldest); only the opset differs between exports for targets that share a parser
EXPORT_FOR = {13: "jetson-nano", 17: "jetson-orin-nano"}


class TargetExports:
    """The small run's checkpoint exported for a parser's opset and quantized (tensorrt recipe), through the CLI as a
    user runs it, once per session: ``exports(17)["fp32"]``, ``["int8"]``, and ``["export_json"]``, what `edgeres
    export --json` printed. Opset 18 is the small run's own pair (its export has no --target).
    """

    def __init__(self, run_out: Path, calibration: str, folder: Path) -> None:
        self.run_out, self.calibration, self.folder = run_out, calibration, folder
        self.made: dict[int, dict] = {18: {"fp32": run_out / "model.onnx", "int8": run_out / "model.int8-tensorrt.onnx"}}

    def __call__(self, opset: int) -> dict:
        if opset not in self.made:
            import json

            from tests.helpers.cli import edgeres

            target = EXPORT_FOR[opset]
            fp32, int8 = self.folder / f"model.{target}.onnx", self.folder / f"model.{target}.int8-tensorrt.onnx"
            r = edgeres("export", str(self.run_out / "model.pt"), "--target", target, "--parity-images", "32",
                        "--out", str(fp32), "--json")
            assert r.returncode == 0, r.stderr
            q = edgeres("quantize", str(fp32), "--calibration", self.calibration, "--out", str(int8))
            assert q.returncode == 0, q.stderr
            self.made[opset] = {"fp32": fp32, "int8": int8, "export_json": json.loads(r.stdout)}
        return self.made[opset]


@pytest.fixture(scope="session")
def exports(small_run, tmp_path_factory) -> TargetExports:
    cfg, _ = small_run
    return TargetExports(Path(cfg.out), cfg.quant.calibration, tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on loopback, one per test module (each module's known_hosts is its own)."""
    yield from serving(start_sshd(tmp_path_factory.mktemp("sshd")))


def blank_calibration(folder, n: int = 100):
    """A calibration folder of n black images: a real, badly chosen set that ruins every activation range."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("L", (28, 28), 0).save(folder / f"{i}.png")
    return folder


def python_of(version: str) -> Path | None:
    """A CPython of that version ("3.6") that runs, from pyenv's versions or PATH (a pyenv shim on PATH may not run:
    it needs the version selected); None where this machine has none.
    """
    import shutil
    import subprocess

    which = shutil.which(f"python{version}")
    for py in [*sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python")), *([Path(which)] if which else [])]:
        r = subprocess.run([str(py), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                           text=True)
        if r.returncode == 0 and r.stdout.strip() == version:
            return py
    return None


def bare_cache(folder: Path) -> dict[str, str]:
    """The environment of an empty edgeres cache in ``folder`` that still finds Fashion-MNIST where it is: a bare
    XDG_CACHE_HOME alone made every such test fetch the Debian package again (a download, 1.3 s here).
    """
    from edgeres.data import fashion_mnist

    return {"XDG_CACHE_HOME": str(folder), "EDGERES_FASHION_MNIST_DIR": str(fashion_mnist.locate())}


def fixed_batch_copy(src: Path, batch: int, dest: Path) -> Path:
    """``src`` with its input's and output's batch fixed at ``batch`` in the graph: what an ONNX exported without a
    dynamic batch (or imported with one baked in) looks like. Everything else, metadata included, is the same."""
    import onnx

    m = onnx.load(str(src))
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = batch
    onnx.save(m, str(dest))
    return dest
