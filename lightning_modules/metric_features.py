"""The networks that turn images into metric features (no Lightning): the standard Inception
(FID / IS), this project's ResNet-18 (any classifier checkpoint), and the image pipeline that
feeds them.

An extractor runs once per image and returns both outputs a metric needs
(:class:`MetricFeaturesOutput`): pooled features for FID, class logits for IS and a judge's class
figures (and sub-mode logits for a judge that knows the planted truth). Weights load through
:func:`lightning_modules.backbone.read_state_dict` (safetensors or ``weights_only``), the one
checkpoint loader of clustering, negatives, FID and the judge.

Images are ``(B, 3, H, W)`` floats in [0, 1] everywhere; :func:`metric_image_transform` (PIL) and
:func:`resize_for_metric` (tensors) bring real and generated images to the same size the same way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from datamodules.dataset import ImageListDataset
from datamodules.layout import Sample
from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD
from lightning_modules.backbone import (
    build_resnet18,
    penultimate_features,
    read_state_dict,
    resnet18_for_state,
)

INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's name
INCEPTION_WEIGHTS_ENV = "LT_FOOD_SYNTH_INCEPTION_WEIGHTS"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/lt-food-synth/weights")


# ---- feature extractors ------------------------------------------------------------------------
@dataclass
class MetricFeaturesOutput:
    """What one forward pass of an extractor gives: ``features`` (B, D) for FID, ``logits``
    (B, K) for IS (and class figures of a judge), and for a judge that knows the planted
    sub-modes their logits ``submode_logits`` (B, U) (None otherwise)."""

    features: Tensor
    logits: Tensor
    submode_logits: Tensor | None = None


class MetricFeatures(nn.Module):
    """Base class: images ``(B, 3, H, W)`` in [0, 1] -> :class:`MetricFeaturesOutput`.

    Subclasses set ``name`` (used in metric names: ``fid_<name>``), ``num_features`` and
    implement :meth:`forward` and :meth:`identity` (what the cached statistics depend on).
    """

    name: str = "features"
    num_features: int = 0

    def identity(self) -> str:
        """A string that changes whenever the features would (name, weights, preprocessing)."""
        raise NotImplementedError

    def forward(self, images: Tensor) -> MetricFeaturesOutput:
        raise NotImplementedError

    def train(self, mode: bool = True) -> MetricFeatures:
        return super().train(False)  # frozen: always in eval mode


def _file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]


def default_inception_weights_path() -> Path:
    """``$LT_FOOD_SYNTH_INCEPTION_WEIGHTS``, else ``~/.cache/lt-food-synth/weights/<name>``
    (either release name of the file, pytorch-fid's first)."""
    if os.environ.get(INCEPTION_WEIGHTS_ENV):
        return Path(os.environ[INCEPTION_WEIGHTS_ENV]).expanduser()
    folder = DEFAULT_WEIGHTS_DIR.expanduser()
    for name in (INCEPTION_WEIGHTS_NAME, TORCH_FIDELITY_WEIGHTS_NAME):
        if (folder / name).is_file():
            return folder / name
    return folder / INCEPTION_WEIGHTS_NAME


def missing_inception_message(path: Path) -> str:
    return (
        f"Inception weights not found: {path}. FID/IS with Inception needs the FID InceptionV3 "
        f"weights file {INCEPTION_WEIGHTS_NAME} (the TF 2015-12-05 Inception converted to PyTorch; "
        f"torch-fidelity publishes the same weights as {TORCH_FIDELITY_WEIGHTS_NAME}). Nothing is "
        f"downloaded: copy the file to {DEFAULT_WEIGHTS_DIR / INCEPTION_WEIGHTS_NAME}, or set "
        f"{INCEPTION_WEIGHTS_ENV}=/path/to/it, or pass weights_path=/path/to/it (config: "
        "extractor.init_args.weights_path). Or use ResNetFeatures for metrics named *_resnet18."
    )


class InceptionFeatures(MetricFeatures):
    """torch-fidelity's FID InceptionV3 (2048-d pool features, 1008 logits), from a LOCAL file.

    Args:
        weights_path: The weights file (see :func:`default_inception_weights_path` for None).

    Raises:
        FileNotFoundError: The file is missing; the message names the file needed and where to
            put it. Nothing is ever downloaded.
    """

    name = "inception"
    num_features = 2048

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = Path(weights_path).expanduser() if weights_path else default_inception_weights_path()
        if not path.is_file():
            raise FileNotFoundError(missing_inception_message(path))
        # torch-fidelity unpickles the file with weights_only=False; refuse anything that a
        # weights-only load rejects, so only plain tensors ever reach it.
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"weights_path={str(path)!r} is not a plain tensor state dict that loads with "
                f"torch.load(weights_only=True): {err}"
            ) from err
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(path),
            )
        except RuntimeError as err:  # load_state_dict: wrong keys or shapes
            raise ValueError(
                f"weights_path={str(path)!r} is not an FID InceptionV3 state dict "
                f"({INCEPTION_WEIGHTS_NAME}): {err}"
            ) from err
        self.weights_path = path
        self._identity = f"inception-v3-fid:{_file_sha256(path)}"

    def identity(self) -> str:
        return self._identity

    def forward(self, images: Tensor) -> MetricFeaturesOutput:
        # torch-fidelity's protocol: uint8 in [0, 255], resized to 299 inside the network
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        features, logits = self.net(pixels)
        return MetricFeaturesOutput(features.float(), logits.float())


class ResNetFeatures(MetricFeatures):
    """This project's ResNet-18: penultimate features (512-d at full width) and class logits.

    Metrics computed with it are named ``*_resnet18`` (or ``*_<name>``), never plain FID.

    Args:
        weights_path: A classifier checkpoint of this project (``.ckpt``) or a ResNet-18 state
            dict (``.safetensors`` / ``.pth``); the number of classes and the stem variant are
            read from the tensors. None: a random ResNet-18 seeded with ``seed`` (smoke runs
            only; its metrics say nothing about image quality).
        input_size: Resize images to this square size first (None: as given).
        num_classes: Classes of the random network (ignored with ``weights_path``).
        small_input_stem: Stem of the random network (ignored with ``weights_path``).
        seed: Seed of the random network.
        name: The name in metric keys.
    """

    num_features = 512

    def __init__(
        self,
        weights_path: str | None = None,
        input_size: int | None = None,
        num_classes: int = 10,
        small_input_stem: bool = True,
        seed: int = 0,
        name: str = "resnet18",
    ) -> None:
        super().__init__()
        if input_size is not None and input_size < 1:
            raise ValueError(f"input_size={input_size}: expected a positive size or None")
        self.name = name
        self.input_size = input_size
        if weights_path is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = build_resnet18(num_classes, None, small_input_stem)
            weights = f"random-seed{seed}-classes{num_classes}-small{small_input_stem}"
        else:
            try:
                self.model = resnet18_for_state(read_state_dict(weights_path))
            except ValueError as err:
                raise ValueError(f"weights_path={weights_path!r}: {err}") from None
            weights = _file_sha256(Path(weights_path).expanduser())
        self.model.eval().requires_grad_(False)
        self.num_features = self.model.fc.in_features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._identity = f"{name}:{weights}:input{input_size}:imagenet-norm"

    def identity(self) -> str:
        return self._identity

    def forward(self, images: Tensor) -> MetricFeaturesOutput:
        if self.input_size is not None:
            images = TF.resize(images, [self.input_size, self.input_size], antialias=True)
        x = (images - self.mean) / self.std
        features = penultimate_features(self.model, x)  # (B, num_features)
        return MetricFeaturesOutput(features.float(), self.model.fc(features).float())


def metric_image_transform(image_size: int) -> v2.Compose:
    """PIL image -> ``(3, S, S)`` float in [0, 1]: resize the shorter side, center crop."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])


def resize_for_metric(images: Tensor, image_size: int) -> Tensor:
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, S, S)``, the same way as real images."""
    if images.shape[-2:] != (image_size, image_size):
        images = TF.center_crop(TF.resize(images, image_size, antialias=True), image_size)
    return images.clamp(0, 1)


@torch.no_grad()
def extract_features(
    extractor: MetricFeatures, samples: Sequence[Sample], image_size: int,
    batch_size: int = 32, num_workers: int = 0, device: torch.device | str = "cpu",
) -> Iterable[tuple[MetricFeaturesOutput, Tensor]]:
    """Yield ``(extractor output, labels)`` per batch of an image list."""
    loader = DataLoader(ImageListDataset(samples, metric_image_transform(image_size)),
                        batch_size=batch_size, num_workers=num_workers)
    for images, labels in loader:
        yield extractor(images.to(device)), labels.to(device)
