"""The seed's variants, ResNeXt and DenseNet, and deeper ResNets: torchvision's sizes, names and structure."""
from __future__ import annotations

import pytest
import torch

from edgeres.archs import ARCHS, ModelConfig, config_for
from edgeres.errors import ArtifactError, ConfigError
from edgeres.models import build_model, load_checkpoint
from edgeres.models.densenet import DenseLayer
from edgeres.models.resnet import Bottleneck

# sum(p.numel() for p in torchvision.models.<arch>().parameters()), as torchvision's model docs list them
TORCHVISION_PARAMS = {"resnet34": 21_797_672, "resnet50": 25_557_032, "resnext50_32x4d": 25_028_904,
                      "resnext101_32x8d": 88_791_336, "densenet121": 7_978_856, "densenet169": 14_149_480}

# (key, shape) spot checks from torchvision/models/resnet.py and densenet.py
TORCHVISION_KEYS = {
    "resnet50": [("layer1.0.conv1.weight", (64, 64, 1, 1)), ("layer1.0.downsample.0.weight", (256, 64, 1, 1)),
                 ("layer4.2.bn3.running_var", (2048,)), ("fc.weight", (1000, 2048))],
    "resnext50_32x4d": [("layer1.0.conv2.weight", (128, 4, 3, 3)), ("layer4.0.conv2.weight", (1024, 32, 3, 3)),
                        ("layer3.5.conv3.weight", (1024, 512, 1, 1)), ("fc.weight", (1000, 2048))],
    "densenet121": [("features.conv0.weight", (64, 3, 7, 7)), ("features.norm0.running_mean", (64,)),
                    ("features.denseblock1.denselayer1.conv1.weight", (128, 64, 1, 1)),
                    ("features.denseblock4.denselayer16.conv2.weight", (32, 128, 3, 3)),
                    ("features.transition3.conv.weight", (512, 1024, 1, 1)), ("features.norm5.weight", (1024,)),
                    ("classifier.weight", (1000, 1024))],
}


@pytest.mark.parametrize("arch", list(TORCHVISION_PARAMS))
def test_parameter_counts_are_torchvision_s(arch):
    assert sum(p.numel() for p in build_model(config_for(arch)).parameters()) == TORCHVISION_PARAMS[arch]


@pytest.mark.parametrize("arch", list(TORCHVISION_KEYS))
def test_names_and_shapes_are_torchvision_s(arch):
    sd = build_model(config_for(arch)).state_dict()
    for key, shape in TORCHVISION_KEYS[arch]:
        assert tuple(sd[key].shape) == shape, key


def test_resnext_splits_the_3x3_into_32_paths():
    m = build_model(config_for("resnext50_32x4d"))
    for i, width in enumerate((128, 256, 512, 1024), start=1):
        b = getattr(m, f"layer{i}")[0]
        assert isinstance(b, Bottleneck) and b.conv2.groups == 32 and b.conv2.out_channels == width
        assert b.conv2.stride == ((1, 1) if i == 1 else (2, 2))  # the stride sits on the 3×3, as in v1.5
        assert b.downsample is not None  # projection where the width (×4) or size changes


def test_densenet_layers_see_every_earlier_map():
    m = build_model(config_for("densenet121"))
    block = m.features.denseblock2
    for i, layer in enumerate(block.values()):
        assert isinstance(layer, DenseLayer) and layer.conv1.in_channels == 128 + 32 * i
    # the block's output is its input and all 12 layers' maps, concatenated
    x = torch.randn(1, 128, 8, 8)
    with torch.no_grad():
        y = block.eval()(x)
    assert y.shape == (1, 128 + 12 * 32, 8, 8) and torch.equal(y[:, :128], x)


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d", "densenet121"])
@pytest.mark.parametrize("stem,size", [("imagenet", 64), ("small-s2", 32)])
def test_small_inputs_and_classes(arch, stem, size):
    m = build_model(config_for(arch, 1, 10, stem)).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["resnet34", "resnet50", "resnext50_32x4d", "densenet121"])
def test_torchvision_format_state_dicts_load(arch, tmp_path):
    ref = build_model(config_for(arch)).eval()
    p = tmp_path / f"{arch}.pth"
    torch.save(ref.state_dict(), p)
    ck = load_checkpoint(p)
    assert ck.model_cfg == config_for(arch)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ck.model()(x), ref(x))


def test_old_densenet_names_load(tmp_path):
    """torchvision's first DenseNet files say ``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight``."""
    sd = build_model(config_for("densenet121")).state_dict()
    old = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2.") if "denselayer" in k else k: v
           for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "old.pth")
    assert load_checkpoint(tmp_path / "old.pth").model_cfg.arch == "densenet121"


def test_unknown_structures_are_named(tmp_path):
    sd = build_model(ModelConfig("x", layers=(1, 1, 1, 1))).state_dict()
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(ArtifactError, match=r"stages \(1, 1, 1, 1\)"):
        load_checkpoint(tmp_path / "odd.pth")
    with pytest.raises(ConfigError, match="densenet121"):
        config_for("resnet19")
    assert set(ARCHS) >= {"resnet18", "resnext50_32x4d", "densenet121"}


def test_old_checkpoint_configs_still_read():
    """Checkpoints written before the variants store no block/groups fields: they are ResNet-18s."""
    old = {"arch": "resnet18", "in_channels": 1, "num_classes": 10, "stem": "imagenet",
           "layers": [2, 2, 2, 2], "widths": [64, 128, 256, 512]}
    assert ModelConfig.from_dict(old) == config_for("resnet18", 1, 10)
