"""Loading an ONNX file: what a missing one is answered with."""
from __future__ import annotations

import pytest

from edgeres.errors import ArtifactError
from edgeres.onnx_model import load_onnx


def test_a_missing_model_names_the_command_that_makes_it(tmp_path):
    """The int8 model bench was given before quantize ran was answered with "make one with `edgeres export`"."""
    (tmp_path / "m.onnx").write_bytes(b"not read")
    with pytest.raises(ArtifactError, match=r"m.int8-cpu.onnx; make it with `edgeres quantize .*/m.onnx --recipe cpu`"):
        load_onnx(tmp_path / "m.int8-cpu.onnx")
    (tmp_path / "n.pt").write_bytes(b"not read")
    with pytest.raises(ArtifactError, match=r"n.onnx; make it with `edgeres export .*/n.pt --out .*/n.onnx`"):
        load_onnx(tmp_path / "n.onnx")
    with pytest.raises(ArtifactError, match=r"x.int8-tensorrt.onnx; make one with `edgeres export`"):
        load_onnx(tmp_path / "x.int8-tensorrt.onnx")  # neither the float model nor a checkpoint beside it
