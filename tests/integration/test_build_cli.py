"""edgeres export --target and edgeres build on this machine (no TensorRT, no GPU): what is written, what is refused.

Each refusal is one line that names the fix, a non-zero exit, and nothing written.
"""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgeres.onnx_limits import model_opset, parser_problems, target_limits
from edgeres.targets import TARGETS_DIR, load_target
from tests.helpers.cli import assert_one_line_error, edgeres


@pytest.fixture(scope="module")
def nano_model(exports):
    made = exports(13)  # `edgeres export … --target jetson-nano --json`
    assert made["export_json"]["opset"] == 13 and made["export_json"]["agreement"] == 100.0
    return made["fp32"]


def test_export_for_nano_is_opset_13_without_axes_inputs(nano_model):
    model = onnx.load(str(nano_model))
    assert model_opset(model) == 13
    assert parser_problems(model, target_limits(load_target("jetson-nano"))) == []
    assert all(len(n.input) == 1 for n in model.graph.node if n.op_type == "ReduceMean")


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_build_for_a_jetson_on_this_machine_says_why_not(nano_model):
    before = listing(nano_model.parent)
    r = edgeres("build", str(nano_model), "--target", "jetson-nano")
    assert_one_line_error(r, "jetson-nano engines are built on that board", "--force-device")
    assert listing(nano_model.parent) == before


def test_build_without_tensorrt_says_how_to_get_it(nano_model):
    before = listing(nano_model.parent)
    r = edgeres("build", str(nano_model), "--target", "jetson-nano", "--force-device")
    assert_one_line_error(r, "TensorRT needs an NVIDIA GPU", "--target cpu")
    assert listing(nano_model.parent) == before


def test_build_refusals(small_run, nano_model, tmp_path):
    cfg, _ = small_run
    run = Path(cfg.out)
    cases = [
        (["build", str(run / "model.int8-tensorrt.onnx"), "--target", "jetson-nano"], ["does not support int8",
                                                                                       "use fp16"]),
        (["build", str(run / "model.int8-tensorrt.onnx"), "--target", "jetson-tx2"], ["does not support int8"]),
        (["build", str(nano_model), "--target", "jetson-nano", "--dla-core", "0"], ["has no DLA"]),
        (["build", str(nano_model), "--target", "jetson-xavier-nx", "--dla-core", "2"], ["cores 0–1"]),
        (["build", str(nano_model), "--target", "jetson-xavier-nx", "--dla-core", "-1"], ["cores 0–1"]),
        (["build", str(run / "model.onnx"), "--target", "jetson-nano"],  # the export to run, from the manifest
         ["opset 18", f"`edgeres export {run / 'model.pt'} --target jetson-nano --out {run / 'model.jetson-nano.onnx'}`"]),
        (["build", str(run / "model.int8-tensorrt.onnx"), "--target", "jetson-xavier-nx"],
         ["7–17", f"then quantize that ONNX: `edgeres quantize {run / 'model.jetson-xavier-nx.onnx'} --recipe tensorrt"]),
        (["build", str(run / "model.onnx"), "--target", "jetson-xavier-nx"], ["7–17", "--target jetson-xavier-nx"]),
        (["build", str(run / "model.onnx"), "--target", "jetson-nano", "--precision", "int8"], ["Q/DQ"]),
        (["build", str(nano_model), "--target", "jetson-nano", "--batch", "0"], ["--batch"]),
        (["export", str(run / "model.pt"), "--target", "jetson-nano", "--opset", "17", "--out",
          str(tmp_path / "x.onnx")], ["--opset 17 is outside", "7–13"]),
        (["export", str(run / "model.pt"), "--opset", "99", "--out", str(tmp_path / "x.onnx")], ["between 13 and 25"]),
        (["export", str(run / "model.pt"), "--target", "jetson-mars", "--out", str(tmp_path / "x.onnx")],
         ["unknown target"]),
    ]
    for args, needles in cases:
        assert_one_line_error(edgeres(*args), *needles)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("line,needle", [
    (None, "missing field 'tensorrt'"),
    ('tensorrt = "ten"', "malformed"),
    ('tensorrt = ["10.x"]', "malformed"),
    ('tensorrt = [10.3]', "malformed"),
    ('tensorrt = []', "empty"),
    ('tensorrt = 10', "should be list or str"),
])
def test_a_target_whose_tensorrt_field_is_missing_or_malformed(tmp_path, nano_model, line, needle):
    src = TARGETS_DIR / "jetson-nano.toml"
    text = "\n".join(ln for ln in src.read_text().splitlines() if not ln.startswith("tensorrt ="))
    if line:
        text = text.replace('precisions =', f'{line}\nprecisions =', 1)
    bad = tmp_path / "board.toml"
    bad.write_text(text)
    assert_one_line_error(edgeres("build", str(nano_model), "--target", str(bad)), needle, str(bad))
    assert listing(tmp_path) == ["board.toml"]


def test_energy_on_where_it_cannot_be_measured_is_refused_first(small_run, tmp_path):
    cfg, _ = small_run
    r = edgeres("bench", str(Path(cfg.out) / "model.onnx"), "--energy", "on", "--out", str(tmp_path / "r"))
    assert_one_line_error(r, "--energy on", "cannot be measured")
    assert not (tmp_path / "r").exists()
