"""ResNet-18 from torchvision: random init or weights from a local file (never a hub download)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.models import ResNet, resnet18
from torchvision.models.resnet import BasicBlock


class CosineLinear(nn.Module):
    """Final layer giving cosine similarities: ``normalize(x) @ normalize(W).T``, in [-1, 1].

    The "normed linear" layer LDAM-DRW (Cao et al.) trains with; its loss scales the cosines by
    ``s``. Its one parameter is ``weight`` of shape ``(out, in)``, as ``nn.Linear``'s.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


def build_resnet18(
    num_classes: int,
    weights_path: str | None = None,
    small_input_stem: bool = False,
    cosine_head: bool = False,
    width: int = 64,
) -> nn.Module:
    """A torchvision ResNet-18 (``width`` 64), or the same layout with narrower stages.

    Args:
        num_classes: Size of the final layer.
        weights_path: Local ``.safetensors`` or ``.pth``/``.pt`` state dict: torchvision's ImageNet
            weights (the final layer is skipped when its shape differs) or a checkpoint of this
            project's classifier (keys under ``model.``).
        small_input_stem: Replace the 7x7/stride-2 stem and max-pool by a 3x3/stride-1 conv
            (the CIFAR variant), for images of 32 pixels or less.
        cosine_head: A :class:`CosineLinear` final layer instead of ``nn.Linear`` (for LDAM).
        width: Channels of the first stage (doubled per stage: 64-128-256-512 is ResNet-18);
            the penultimate features have ``8 * width`` dimensions. The embedded dataset's 16 px
            images use 32: at 16 px the last two stages see 1x1 maps, where full width costs 3x
            the time for nothing the miniature needs.
    """
    if width < 1:
        raise ValueError(f"width={width}: expected a positive number of channels")
    model = resnet18(weights=None, num_classes=num_classes)
    if width != 64:
        _narrow(model, width, num_classes)
    if cosine_head:
        model.fc = CosineLinear(model.fc.in_features, num_classes)
    if small_input_stem:
        model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    if weights_path is not None:
        load_backbone_weights(model, weights_path)
    return model


def _narrow(model: ResNet, width: int, num_classes: int) -> None:
    """Rebuild a torchvision ResNet-18's stem and stages at ``width``, initialised as
    torchvision initialises them (Kaiming-normal convolutions, unit BatchNorm)."""
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    for k, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
        stage = model._make_layer(BasicBlock, width * 2**k, 2, stride=1 if k == 0 else 2)
        setattr(model, name, stage)
    model.fc = nn.Linear(8 * width, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def resnet18_for_state(state: dict[str, torch.Tensor]) -> nn.Module:
    """A ResNet-18 shaped like the weights of ``state`` (classes, stem, width, final layer),
    with them loaded. ``state``: :func:`read_state_dict`'s, keys with or without ``model.``."""
    if any(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if "fc.weight" not in state or "conv1.weight" not in state:
        raise ValueError(
            "expected a ResNet-18 state dict with 'conv1.weight' and 'fc.weight' (a classifier "
            f"checkpoint of this project); got keys {sorted(state)[:5]} ..."
        )
    conv1 = state["conv1.weight"]
    model = build_resnet18(
        state["fc.weight"].shape[0], small_input_stem=conv1.shape[-1] == 3,
        cosine_head="fc.bias" not in state, width=conv1.shape[0],
    )
    model.load_state_dict(state)
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, a plain state dict or a Lightning checkpoint.

    Loaded with ``weights_only=True``: nothing is unpickled.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path}. Expected a local .safetensors, .pth or Lightning "
            ".ckpt file (no download is attempted)"
        )
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load ResNet-18 weights into ``model``; a mismatched final layer is left at its init."""
    state = read_state_dict(path)
    if any(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if any(not k.startswith("fc.") for k in skipped):
        raise ValueError(f"{path}: tensor shapes do not match a ResNet-18: {skipped}")
    state = {k: v for k, v in state.items() if k not in skipped}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    unexpected = [k for k in unexpected if not k.startswith("fc.")]  # fc.bias: cosine head
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a ResNet-18 state dict (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def load_classifier_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load every weight, final layer included, from a classifier checkpoint of this project."""
    state = read_state_dict(path)
    state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    if not state:
        raise ValueError(f"{path}: not a LongTailClassifier checkpoint (no 'model.' weights)")
    model.load_state_dict(state)


def penultimate_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The global-average-pooled features before the final layer, ``(B, 8 * width)`` (512 for
    ResNet-18)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)
