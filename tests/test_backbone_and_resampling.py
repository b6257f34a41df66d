"""The cosine final layer (LDAM) and the class-aware resampler (ROS / RUS / class-balanced)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models import resnet18

from datamodules.resampling import ClassResampler
from lightning_modules.backbone import CosineLinear, build_resnet18


def test_cosine_head_gives_cosines_invariant_to_feature_scale():
    layer = CosineLinear(8, 3)
    x = torch.randn(5, 8)
    expected = torch.stack([F.cosine_similarity(x, w.expand_as(x), dim=-1) for w in layer.weight],
                           dim=-1)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(7.0 * x), layer(x))
    assert layer(x).abs().max() <= 1.0 + 1e-6


def test_cosine_head_resnet_loads_imagenet_shaped_weights(tmp_path):
    source = resnet18(num_classes=1000)  # an ImageNet checkpoint's keys: fc.weight and fc.bias
    path = tmp_path / "r18.safetensors"
    save_file(source.state_dict(), str(path))
    model = build_resnet18(4, str(path), cosine_head=True)
    assert isinstance(model.fc, CosineLinear) and model.fc.weight.shape == (4, 512)
    torch.testing.assert_close(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model(torch.randn(2, 3, 32, 32)).abs().max() <= 1.0 + 1e-6


@pytest.mark.parametrize("small_stem,cosine", [(False, False), (True, True)])
def test_narrow_resnet18_round_trips_through_its_state_dict(small_stem, cosine):
    """Width 32: ResNet-18's layout, stages 32-64-128-256; every loader reads the shape off the
    weights (classes, stem, width, final layer)."""
    from lightning_modules.backbone import penultimate_features, resnet18_for_state

    model = build_resnet18(7, small_input_stem=small_stem, cosine_head=cosine, width=32).eval()
    assert [model.layer1[0].conv1.out_channels, model.layer4[1].conv2.out_channels] == [32, 256]
    assert sum(p.numel() for p in model.parameters()) < 0.26 * 11.2e6
    x = torch.randn(2, 3, 16, 16)
    assert penultimate_features(model, x).shape == (2, 256)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}  # a classifier checkpoint's
    again = resnet18_for_state(state).eval()
    torch.testing.assert_close(again(x), model(x))
    with pytest.raises(ValueError, match="width=0"):
        build_resnet18(3, width=0)


LABELS = [0] * 10 + [1] * 3 + [2] * 1


@pytest.mark.parametrize("mode,per_class", [("oversample", 10), ("undersample", 1)])
def test_ros_and_rus_draw_every_class_equally(mode, per_class):
    sampler = ClassResampler(LABELS, mode, seed=0)
    epoch = list(sampler)
    assert len(epoch) == len(sampler) == 3 * per_class
    assert Counter(LABELS[i] for i in epoch) == {0: per_class, 1: per_class, 2: per_class}
    if mode == "oversample":  # every real image of a class is used before any repeat
        assert set(epoch) == set(range(len(LABELS)))
    else:
        assert len(set(epoch)) == len(epoch)


def test_class_balanced_keeps_the_epoch_length_and_evens_out_classes():
    sampler = ClassResampler(LABELS * 50, "class_balanced", seed=0)
    epoch = list(sampler)
    counts = Counter((LABELS * 50)[i] for i in epoch)
    assert len(epoch) == len(LABELS) * 50
    assert all(abs(n / len(epoch) - 1 / 3) < 0.05 for n in counts.values())  # 700 draws, p=1/3


def test_resampler_redraws_each_epoch_and_is_seeded():
    a, b = ClassResampler(LABELS, "undersample", seed=1), ClassResampler(LABELS, "undersample", 1)
    first = list(a)
    assert first == list(b)
    assert any(list(a) != first for _ in range(10))  # later epochs draw afresh
