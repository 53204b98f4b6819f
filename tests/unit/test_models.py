"""ResNet-18: torchvision's parameter names and shapes, the seed's structure, and safe checkpoint loading."""
from __future__ import annotations

import pytest
import torch

from edgeres.errors import ArtifactError
from edgeres.models import Checkpoint, load_checkpoint, save_checkpoint
from edgeres.models.resnet import BasicBlock, ResNetConfig, resnet18

# torchvision.models.resnet18().state_dict(): every key and shape, in order, written out from
# torchvision/models/resnet.py (ResNet with BasicBlock, layers [2, 2, 2, 2]).
TORCHVISION_RESNET18 = [
    ('conv1.weight', (64, 3, 7, 7)),
    ('bn1.weight', (64,)),
    ('bn1.bias', (64,)),
    ('bn1.running_mean', (64,)),
    ('bn1.running_var', (64,)),
    ('bn1.num_batches_tracked', ()),
    ('layer1.0.conv1.weight', (64, 64, 3, 3)),
    ('layer1.0.bn1.weight', (64,)),
    ('layer1.0.bn1.bias', (64,)),
    ('layer1.0.bn1.running_mean', (64,)),
    ('layer1.0.bn1.running_var', (64,)),
    ('layer1.0.bn1.num_batches_tracked', ()),
    ('layer1.0.conv2.weight', (64, 64, 3, 3)),
    ('layer1.0.bn2.weight', (64,)),
    ('layer1.0.bn2.bias', (64,)),
    ('layer1.0.bn2.running_mean', (64,)),
    ('layer1.0.bn2.running_var', (64,)),
    ('layer1.0.bn2.num_batches_tracked', ()),
    ('layer1.1.conv1.weight', (64, 64, 3, 3)),
    ('layer1.1.bn1.weight', (64,)),
    ('layer1.1.bn1.bias', (64,)),
    ('layer1.1.bn1.running_mean', (64,)),
    ('layer1.1.bn1.running_var', (64,)),
    ('layer1.1.bn1.num_batches_tracked', ()),
    ('layer1.1.conv2.weight', (64, 64, 3, 3)),
    ('layer1.1.bn2.weight', (64,)),
    ('layer1.1.bn2.bias', (64,)),
    ('layer1.1.bn2.running_mean', (64,)),
    ('layer1.1.bn2.running_var', (64,)),
    ('layer1.1.bn2.num_batches_tracked', ()),
    ('layer2.0.conv1.weight', (128, 64, 3, 3)),
    ('layer2.0.bn1.weight', (128,)),
    ('layer2.0.bn1.bias', (128,)),
    ('layer2.0.bn1.running_mean', (128,)),
    ('layer2.0.bn1.running_var', (128,)),
    ('layer2.0.bn1.num_batches_tracked', ()),
    ('layer2.0.conv2.weight', (128, 128, 3, 3)),
    ('layer2.0.bn2.weight', (128,)),
    ('layer2.0.bn2.bias', (128,)),
    ('layer2.0.bn2.running_mean', (128,)),
    ('layer2.0.bn2.running_var', (128,)),
    ('layer2.0.bn2.num_batches_tracked', ()),
    ('layer2.0.downsample.0.weight', (128, 64, 1, 1)),
    ('layer2.0.downsample.1.weight', (128,)),
    ('layer2.0.downsample.1.bias', (128,)),
    ('layer2.0.downsample.1.running_mean', (128,)),
    ('layer2.0.downsample.1.running_var', (128,)),
    ('layer2.0.downsample.1.num_batches_tracked', ()),
    ('layer2.1.conv1.weight', (128, 128, 3, 3)),
    ('layer2.1.bn1.weight', (128,)),
    ('layer2.1.bn1.bias', (128,)),
    ('layer2.1.bn1.running_mean', (128,)),
    ('layer2.1.bn1.running_var', (128,)),
    ('layer2.1.bn1.num_batches_tracked', ()),
    ('layer2.1.conv2.weight', (128, 128, 3, 3)),
    ('layer2.1.bn2.weight', (128,)),
    ('layer2.1.bn2.bias', (128,)),
    ('layer2.1.bn2.running_mean', (128,)),
    ('layer2.1.bn2.running_var', (128,)),
    ('layer2.1.bn2.num_batches_tracked', ()),
    ('layer3.0.conv1.weight', (256, 128, 3, 3)),
    ('layer3.0.bn1.weight', (256,)),
    ('layer3.0.bn1.bias', (256,)),
    ('layer3.0.bn1.running_mean', (256,)),
    ('layer3.0.bn1.running_var', (256,)),
    ('layer3.0.bn1.num_batches_tracked', ()),
    ('layer3.0.conv2.weight', (256, 256, 3, 3)),
    ('layer3.0.bn2.weight', (256,)),
    ('layer3.0.bn2.bias', (256,)),
    ('layer3.0.bn2.running_mean', (256,)),
    ('layer3.0.bn2.running_var', (256,)),
    ('layer3.0.bn2.num_batches_tracked', ()),
    ('layer3.0.downsample.0.weight', (256, 128, 1, 1)),
    ('layer3.0.downsample.1.weight', (256,)),
    ('layer3.0.downsample.1.bias', (256,)),
    ('layer3.0.downsample.1.running_mean', (256,)),
    ('layer3.0.downsample.1.running_var', (256,)),
    ('layer3.0.downsample.1.num_batches_tracked', ()),
    ('layer3.1.conv1.weight', (256, 256, 3, 3)),
    ('layer3.1.bn1.weight', (256,)),
    ('layer3.1.bn1.bias', (256,)),
    ('layer3.1.bn1.running_mean', (256,)),
    ('layer3.1.bn1.running_var', (256,)),
    ('layer3.1.bn1.num_batches_tracked', ()),
    ('layer3.1.conv2.weight', (256, 256, 3, 3)),
    ('layer3.1.bn2.weight', (256,)),
    ('layer3.1.bn2.bias', (256,)),
    ('layer3.1.bn2.running_mean', (256,)),
    ('layer3.1.bn2.running_var', (256,)),
    ('layer3.1.bn2.num_batches_tracked', ()),
    ('layer4.0.conv1.weight', (512, 256, 3, 3)),
    ('layer4.0.bn1.weight', (512,)),
    ('layer4.0.bn1.bias', (512,)),
    ('layer4.0.bn1.running_mean', (512,)),
    ('layer4.0.bn1.running_var', (512,)),
    ('layer4.0.bn1.num_batches_tracked', ()),
    ('layer4.0.conv2.weight', (512, 512, 3, 3)),
    ('layer4.0.bn2.weight', (512,)),
    ('layer4.0.bn2.bias', (512,)),
    ('layer4.0.bn2.running_mean', (512,)),
    ('layer4.0.bn2.running_var', (512,)),
    ('layer4.0.bn2.num_batches_tracked', ()),
    ('layer4.0.downsample.0.weight', (512, 256, 1, 1)),
    ('layer4.0.downsample.1.weight', (512,)),
    ('layer4.0.downsample.1.bias', (512,)),
    ('layer4.0.downsample.1.running_mean', (512,)),
    ('layer4.0.downsample.1.running_var', (512,)),
    ('layer4.0.downsample.1.num_batches_tracked', ()),
    ('layer4.1.conv1.weight', (512, 512, 3, 3)),
    ('layer4.1.bn1.weight', (512,)),
    ('layer4.1.bn1.bias', (512,)),
    ('layer4.1.bn1.running_mean', (512,)),
    ('layer4.1.bn1.running_var', (512,)),
    ('layer4.1.bn1.num_batches_tracked', ()),
    ('layer4.1.conv2.weight', (512, 512, 3, 3)),
    ('layer4.1.bn2.weight', (512,)),
    ('layer4.1.bn2.bias', (512,)),
    ('layer4.1.bn2.running_mean', (512,)),
    ('layer4.1.bn2.running_var', (512,)),
    ('layer4.1.bn2.num_batches_tracked', ()),
    ('fc.weight', (1000, 512)),
    ('fc.bias', (1000,)),
]


def test_state_dict_matches_torchvision_keys_and_shapes():
    sd = resnet18().state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == TORCHVISION_RESNET18


def test_parameter_count_is_resnet18():
    assert sum(p.numel() for p in resnet18().parameters()) == 11_689_512
    # the demo's model: 1 channel in, 10 classes, same 64–512 widths
    assert sum(p.numel() for p in resnet18(1, 10).parameters()) == 11_175_370


def test_structure_follows_the_seed():
    m = resnet18()
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert isinstance(m.maxpool, torch.nn.MaxPool2d) and m.maxpool.stride == 2
    for i, width in enumerate((64, 128, 256, 512), start=1):
        layer = getattr(m, f"layer{i}")
        assert len(layer) == 2 and all(isinstance(b, BasicBlock) for b in layer)
        assert layer[0].conv2.out_channels == width
        # projection shortcut exactly where stride or width changes
        assert (layer[0].downsample is not None) == (i > 1)
        assert layer[1].downsample is None
        if i > 1:
            proj = layer[0].downsample[0]
            assert proj.kernel_size == (1, 1) and proj.stride == (2, 2)


@pytest.mark.parametrize("stem,size,feat", [("imagenet", 224, 7), ("imagenet", 40, 2), ("small", 28, 4), ("small-s2", 28, 2)])
def test_stems_and_shapes(stem, size, feat):
    m = resnet18(1, 10, stem).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, 512, feat, feat)
        assert m(x).shape == (2, 10)


def test_small_stem_keeps_names():
    sd = resnet18(3, 10, "small").state_dict()
    assert list(sd) == [k for k, _ in TORCHVISION_RESNET18]
    assert tuple(sd["conv1.weight"].shape) == (64, 3, 3, 3)


def test_torchvision_format_state_dict_loads(tmp_path):
    ref = resnet18().eval()
    p = tmp_path / "resnet18-torchvision.pth"
    torch.save(ref.state_dict(), p)  # what torchvision's hub files hold: a bare state dict
    ck = load_checkpoint(p)
    assert ck.model_cfg == ResNetConfig("resnet18", 3, 1000, "imagenet")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ck.model()(x), ref(x))


def test_checkpoint_round_trip(tmp_path):
    m = resnet18(1, 10)
    ck = Checkpoint(ResNetConfig("resnet18", 1, 10), m.state_dict(), None, list("abcdefghij"), {"epoch": 1})
    p = save_checkpoint(tmp_path / "m.pt", ck)
    back = load_checkpoint(p)
    assert back.classes == list("abcdefghij") and back.extra["epoch"] == 1
    assert all(torch.equal(back.state_dict[k], v) for k, v in m.state_dict().items())


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    p = save_checkpoint(tmp_path / "m.pt", Checkpoint(ResNetConfig(), resnet18().state_dict(), None, []))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        load_checkpoint(p)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, p)
    with pytest.raises(ArtifactError, match="weights_only"):
        load_checkpoint(p)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 8, 100])
def test_schedules_run_for_any_number_of_steps(steps):
    """Issue 12, defect 10: one-cycle divided by zero with exactly 4 steps (`edgeres run --limit-train 256`)."""
    import torch

    from edgeres.config import TrainConfig
    from edgeres.train.loop import _scheduler

    for schedule in ("onecycle", "cosine"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = _scheduler(opt, TrainConfig(schedule=schedule), steps)
        for _ in range(steps):
            opt.step()
            sched.step()
        assert all(0 <= g["lr"] < 1 for g in opt.param_groups)


@pytest.mark.parametrize("n,layers", [(3, 20), (9, 56)])
def test_the_cifar_family_plain_and_residual(n, layers):
    """He et al.'s 6n+2 networks: the plain one has the residual one's parameters, and no shortcut."""
    import torch

    from edgeres.archs import config_for
    from edgeres.models import build_model

    plain, res = (build_model(config_for(f"{k}{layers}", 1, 10, "imagenet")) for k in ("plain", "resnet"))
    weighted = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in res.modules())
    assert weighted == layers == 6 * n + 2
    assert [p.shape for p in plain.parameters()] == [p.shape for p in res.parameters()]
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 28, 28)
    plain.eval(), res.eval()
    assert plain(x).shape == (2, 10) and not torch.allclose(plain(x), res(x))  # the shortcut is the only difference
