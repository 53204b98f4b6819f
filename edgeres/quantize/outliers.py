"""Planted outlier channels: the same float function, ruined per-tensor int8 ranges (benchmarks and tests of the
INT8 hard case use it to show what equalization and the accuracy budget recover).
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

from edgeres.errors import ArtifactError


def outlier_model(src: Path, dest: Path, alpha: float = 1000.0, blocks: int = 8) -> list[str]:
    """A diagnostic model for the INT8 hard case.

    Inside every residual block, scale one channel between conv1 and conv2 by alpha and back by 1/alpha:
    the same function in float (ReLU is positively homogeneous), but activations whose per-tensor int8 range
    is ruined by a single channel. Returns the names of the conv2 nodes that read those activations.
    """
    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    victims: list[str] = []
    for relu in (n for n in m.graph.node if n.op_type == "Relu"):
        c1 = producer.get(relu.input[0])
        after = consumers.get(relu.output[0], [])
        if c1 is None or c1.op_type != "Conv" or len(after) != 1 or after[0].op_type != "Conv":
            continue
        c2 = after[0]
        if len(victims) == blocks:
            break
        for name, axis, f in ((c1.input[1], 0, alpha), (c1.input[2], 0, alpha), (c2.input[1], 1, 1 / alpha)):
            a = numpy_helper.to_array(inits[name]).copy()
            idx: list[slice | int] = [slice(None)] * a.ndim
            idx[axis] = 0
            a[tuple(idx)] *= f
            inits[name].CopyFrom(numpy_helper.from_array(a, name))
        victims.append(c2.name)
    if len(victims) != blocks:  # one inner conv→relu→conv chain per basic block
        raise ArtifactError(f"{src} has {len(victims)} Conv → Relu → Conv chains, fewer than the {blocks} asked for")
    onnx.save(m, str(dest))
    return victims
