"""Train and eval image transforms (torchvision v2).

Training crops and flips the decoded uint8 image (:func:`train_crop`); float conversion and
normalisation (:func:`to_model_input`) follow, in the worker for the file path or on the device
for the decoded cache (:mod:`datamodules.device_batch`): the same functions in both, so the two
input paths give the same tensors for the same crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrainCrop:
    """uint8 image tensor ``(3, H, W)`` -> RandomResizedCrop (+ horizontal flip) -> ``(3, S, S)``.

    The parameters come from torchvision's ``RandomResizedCrop.make_params`` and the flip from
    the same ``torch.rand(1) < 0.5`` draw as ``RandomHorizontalFlip``, and the kernels are
    torchvision's: the output equals ``v2.Compose([RandomResizedCrop, RandomHorizontalFlip])``
    bit for bit (a test), in about half the time. The output is channels-last in memory.
    """

    def __init__(
        self, image_size: int, crop_scale: tuple[float, float], crop_ratio: tuple[float, float],
        flip: bool,
    ) -> None:
        self.crop = v2.RandomResizedCrop(image_size, scale=crop_scale, ratio=crop_ratio,
                                         antialias=True)
        self.flip = flip

    def __call__(self, image: Tensor) -> Tensor:
        box = self.crop.make_params([image])
        top, left, height, width = box["top"], box["left"], box["height"], box["width"]
        # Copied out channels-last (HWC), the crop takes torch's fast uint8 resize, whose output
        # stays channels-last: a third faster than resizing the strided view.
        crop = image[:, top : top + height, left : left + width].permute(1, 2, 0).contiguous()
        out = TF.resize_image(crop.permute(2, 0, 1), self.crop.size, antialias=True)
        if self.flip and torch.rand(1) < 0.5:
            out = TF.horizontal_flip_image(out)
        return out


def train_crop(
    image_size: int,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> TrainCrop:
    """uint8 image tensor -> RandomResizedCrop (+ horizontal flip) -> uint8 ``(3, S, S)``."""
    return TrainCrop(image_size, tuple(crop_scale), tuple(crop_ratio), flip)


def to_model_input(
    images: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32 in [0, 1], normalised (single images or batches)."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


def train_transform(
    image_size: int,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> v2.Compose:
    """PIL image -> uint8 tensor -> :func:`train_crop` -> :func:`to_model_input`."""
    return v2.Compose([v2.PILToTensor(), train_crop(image_size, crop_scale, crop_ratio, flip),
                       to_model_input])


def eval_transform(
    image_size: int,
    resize_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Resize (shorter side) + center crop + normalisation."""
    return v2.Compose(
        [
            v2.Resize(resize_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
