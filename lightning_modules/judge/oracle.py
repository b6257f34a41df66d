"""The embedded dataset's judge: an oracle of class and sub-mode, built once and cached.

It is trained on a large balanced set drawn from the renderer with seeds disjoint from the
dataset's (:mod:`datamodules.embedded.judge_set`), deterministically from its settings, into
``<cache_dir>/judge-v<version>-<fingerprint>/`` (weights as safetensors, ``judge.json`` with the
settings, the sub-mode catalog and its accuracy on the dataset's real test split). The directory
is written under a temporary name and renamed into place, like the dataset.

As a feature extractor (:class:`EmbeddedJudge`) it gives 64-d features, class logits and
(class, sub-mode) unit logits for images in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from safetensors.torch import load_file, save_file
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from datamodules.dataset import load_rgb
from datamodules.embedded.build import (
    FORMAT_VERSION,
    EmbeddedSettings,
    ensure_embedded_dataset,
    read_planted_submodes,
)
from datamodules.embedded.judge_set import SubmodeCatalog, render_judge_set
from lightning_modules.judge.network import FEATURE_DIM, JudgeNet, class_logits
from lightning_modules.metric_features import MetricFeatures, MetricFeaturesOutput

JUDGE_VERSION = 3
MIN_CLASS_ACCURACY = 0.98
MIN_SUBMODE_ACCURACY = 0.97
BLUR_CHECK_SIGMA = 0.8  # the blur of the judge's robustness check (pixels at 16 px)
# The judge trains on this many CPU threads whatever the process uses: a CPU's float sums depend
# on how they are split across threads, so a judge trained at another thread count is another
# judge (on the default world, 0.9975 against 0.9925 class accuracy).
TRAIN_THREADS = 1


@dataclass(frozen=True)
class OracleSettings:
    """How the judge is trained (part of its cache key).

    Attributes:
        per_submode: Training images per (class, sub-mode) unit.
        epochs: Passes over them.
        batch_size: Images per step.
        max_lr: Peak learning rate of the one-cycle schedule (AdamW).
        width: Channels of the network's first block.
        blur: Largest sigma (pixels) of the Gaussian blur half of the training batches get on
            top of their style (0: none); so that a generator's smoothing, which the renders
            lack, is not read as a class (a blurred bowl of ramen is not pho).
        seed: Seed of the initialisation, the order and the augmentation.
    """

    per_submode: int = 200
    epochs: int = 12
    batch_size: int = 128
    max_lr: float = 4e-3
    width: int = 32
    blur: float = 1.0
    seed: int = 0


def judge_dir(cache_dir: str | Path, world: EmbeddedSettings, oracle: OracleSettings) -> Path:
    payload = json.dumps({"judge": JUDGE_VERSION, "world": world.fingerprint(),
                          "oracle": asdict(oracle)}, sort_keys=True)  # world: settings and spec
    digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"judge-v{JUDGE_VERSION}-{digest}"


def ensure_oracle(
    cache_dir: str | Path, world: EmbeddedSettings, oracle: OracleSettings = OracleSettings()
) -> Path:
    """The judge's directory for ``world``, trained first if it is not cached yet."""
    root = judge_dir(cache_dir, world, oracle)
    if _is_current(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _build(tmp, cache_dir, world, oracle)
        if root.exists() and not _is_current(root):  # trained at another thread count
            shutil.rmtree(root)
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first: its judge is the same
            if not _is_current(root):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _is_current(root: Path) -> bool:
    """A complete judge trained at ``TRAIN_THREADS`` threads (older caches did not record it)."""
    info = root / "judge.json"
    return info.is_file() and json.loads(info.read_text()).get("train_threads") == TRAIN_THREADS


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _to_tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)


def _build(out: Path, cache_dir: str | Path, world: EmbeddedSettings, oracle: OracleSettings):
    started = time.perf_counter()
    catalog = SubmodeCatalog.of_spec()
    images, units = render_judge_set(world, oracle.per_submode)
    with _torch_threads(TRAIN_THREADS):
        net = train_judge(_to_tensor(images), torch.from_numpy(units), len(catalog.pairs), oracle)
    save_file(net.state_dict(), str(out / "judge.safetensors"))
    root = ensure_embedded_dataset(cache_dir, world)
    accuracy = real_test_accuracy(net, catalog, root)
    blurred = real_test_accuracy(net, catalog, root, BLUR_CHECK_SIGMA)
    info = {
        "judge_version": JUDGE_VERSION, "world_format_version": FORMAT_VERSION,
        "world": asdict(world), "oracle": asdict(oracle),
        "units": [list(p) for p in catalog.pairs], "training_images": int(len(units)),
        "train_threads": TRAIN_THREADS,
        "accuracy_on_real_test": accuracy,
        f"accuracy_on_real_test_blurred_{BLUR_CHECK_SIGMA}": blurred,
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "judge.json").write_text(json.dumps(info, indent=2))  # written last: complete
    rank_zero_info(
        f"judge: trained on {len(units)} rendered images in {info['build_seconds']} s; on the "
        f"real test split class accuracy {accuracy['class']:.4f}, sub-mode given class "
        f"{accuracy['submode_given_class']:.4f} (blurred by {BLUR_CHECK_SIGMA} px: class "
        f"{blurred['class']:.4f})"
    )


def train_judge(images: Tensor, units: Tensor, num_units: int, oracle: OracleSettings) -> JudgeNet:
    """Train the network on ``(N, 3, S, S)`` images in [0, 1] with unit labels ``(N,)``.

    Augmentation: horizontal and vertical flips, a Gaussian blur (sigma uniform in
    ``(0, oracle.blur)``, one per batch) of a random half of each batch, and pixel noise (sigma
    0.02), all drawn from the settings' seed, so the result depends on the settings alone (on a
    given machine and thread count: the judge's cache trains it at ``TRAIN_THREADS``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(oracle.seed)
        net = JudgeNet(num_units, oracle.width)
    generator = torch.Generator().manual_seed(oracle.seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=oracle.max_lr, weight_decay=1e-4)
    per_epoch = -(-len(images) // oracle.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, oracle.max_lr, total_steps=oracle.epochs * per_epoch
    )
    net.train()
    for _ in range(oracle.epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), oracle.batch_size):
            batch = order[start : start + oracle.batch_size]
            x = images[batch]
            for dim in (3, 2):  # horizontal, vertical flips
                flip = torch.rand(len(x), generator=generator) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)
            x = _blur_half(x, oracle.blur, generator)
            x = x + 0.02 * torch.randn(x.shape, generator=generator)
            loss = F.cross_entropy(net(x)[1], units[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval().requires_grad_(False)


def _blur_half(x: Tensor, max_sigma: float, generator: torch.Generator) -> Tensor:
    """``x`` with a random half of its images blurred by one sigma in ``(0, max_sigma)``."""
    if max_sigma <= 0:
        return x
    sigma = float(torch.rand((), generator=generator)) * max_sigma
    chosen = torch.rand(len(x), generator=generator) < 0.5
    if sigma < 1e-3:
        return x
    return torch.where(chosen.view(-1, 1, 1, 1), _blur(x, sigma), x)


def _blur(x: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of ``sigma`` pixels (5 x 5 kernel: 16 px images)."""
    return gaussian_blur(x, kernel_size=[5, 5], sigma=[sigma, sigma])


@torch.no_grad()
def real_test_accuracy(
    net: JudgeNet, catalog: SubmodeCatalog, root: Path, blur_sigma: float = 0.0
) -> dict[str, float]:
    """Class accuracy and sub-mode-given-class accuracy on the dataset's real test split, its
    images blurred by ``blur_sigma`` pixels first where that is > 0."""
    planted = read_planted_submodes(root)
    keys = (root / "meta" / "test.txt").read_text().split()
    images = torch.stack([_to_tensor(np.array(load_rgb(root / "images" / f"{k}.jpg"))[None])[0]
                          for k in keys])
    if blur_sigma > 0:
        images = _blur(images, blur_sigma)
    truth = torch.tensor([catalog.index(k.split("/")[0], planted[k]) for k in keys])
    class_of = torch.tensor(catalog.class_of)
    _, logits = net(images)
    classes = class_logits(logits, class_of, int(class_of.max()) + 1).argmax(1)
    submodes = submode_given_class(logits, class_of, class_of[truth])
    return {"class": float((classes == class_of[truth]).float().mean()),
            "submode_given_class": float((submodes == truth).float().mean()),
            "images": len(keys)}


def submode_given_class(unit_logits: Tensor, class_of: Tensor, classes: Tensor) -> Tensor:
    """The most likely unit among the units of each image's given class, ``(B,)``."""
    outside = class_of.view(1, -1) != classes.view(-1, 1)  # (B, U)
    return unit_logits.masked_fill(outside, float("-inf")).argmax(1)


class EmbeddedJudge(MetricFeatures):
    """The embedded oracle as a feature extractor: 64-d features, class logits and unit logits.

    Args:
        cache_dir: Where datasets and judges are cached (the dataset's ``cache_dir``).
        settings: The embedded dataset's settings (the judge is trained for them).
        oracle: How the judge is trained.
        require_accuracy: Refuse a judge below 98% class / 97% sub-mode-given-class accuracy
            on the real test split (it could not tell a weak generator from a weak judge).
    """

    name = "judge"
    num_features = FEATURE_DIM

    def __init__(
        self,
        cache_dir: str = ".cache/lt-food-synth",
        settings: EmbeddedSettings = EmbeddedSettings(),
        oracle: OracleSettings = OracleSettings(),
        require_accuracy: bool = True,
    ) -> None:
        super().__init__()
        root = ensure_oracle(cache_dir, settings, oracle)
        self.info = json.loads((root / "judge.json").read_text())
        self.catalog = SubmodeCatalog.of_spec()
        if [tuple(u) for u in self.info["units"]] != list(self.catalog.pairs):
            raise ValueError(f"{root}: the judge's sub-modes are not the dataset spec's")
        accuracy = self.info["accuracy_on_real_test"]
        if require_accuracy and (accuracy["class"] < MIN_CLASS_ACCURACY
                                 or accuracy["submode_given_class"] < MIN_SUBMODE_ACCURACY):
            raise ValueError(
                f"judge {root} reaches {accuracy} on the real test split; expected >= "
                f"{MIN_CLASS_ACCURACY} class and >= {MIN_SUBMODE_ACCURACY} sub-mode accuracy: "
                "train it longer (oracle.epochs / per_submode)"
            )
        self.net = JudgeNet(len(self.catalog.pairs), oracle.width)
        self.net.load_state_dict(load_file(str(root / "judge.safetensors")))
        self.net.eval().requires_grad_(False)
        self.register_buffer("class_of", torch.tensor(self.catalog.class_of), persistent=False)
        self.image_size = settings.image_size
        self._identity = f"judge:{root.name}"

    @property
    def accuracy(self) -> dict[str, float]:
        """Accuracy on the real test split; ``blurred_class``: class accuracy on its images
        blurred by ``BLUR_CHECK_SIGMA`` px (smoothing must not read as another class)."""
        blurred = self.info[f"accuracy_on_real_test_blurred_{BLUR_CHECK_SIGMA}"]
        return {**self.info["accuracy_on_real_test"], "blurred_class": blurred["class"],
                "blur_sigma": BLUR_CHECK_SIGMA}

    def identity(self) -> str:
        return self._identity

    def forward(self, images: Tensor) -> MetricFeaturesOutput:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"the embedded judge takes {self.image_size} px images, got "
                f"{tuple(images.shape[-2:])}"
            )
        features, units = self.net(images)
        logits = class_logits(units, self.class_of, int(self.class_of.max()) + 1)
        return MetricFeaturesOutput(features.float(), logits.float(), units.float())
