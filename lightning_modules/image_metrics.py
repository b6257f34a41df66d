"""FID / IS on precomputed features, per-class FID and the real-image statistics cache (no
Lightning).

Every metric here is a torchmetrics metric underneath (``FrechetInceptionDistance``,
``InceptionScore``) fed the features of :mod:`lightning_modules.metric_features` through identity
"feature" modules, so they hold no network weights (nothing large ends up in a checkpoint) and
per-class FID costs no extra forward passes.

Metric names carry the extractor's name (``fid_inception``, ``fid_resnet18``, ``is_resnet18``):
a FID measured with the project's ResNet-18 cannot be mistaken for the standard Inception FID.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from datamodules.layout import Sample
from lightning_modules.metric_features import MetricFeatures, extract_features

DEFAULT_STATS_CACHE = ".cache/lt-food-synth/fid_stats"
ALL = "all"  # the group of every class in per-class statistics


# ---- torchmetrics on precomputed features -----------------------------------------------------
class PrecomputedFeatures(nn.Identity):
    """The ``feature`` module of a torchmetrics metric that is fed features, not images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def fid_metric(num_features: int, reset_real_features: bool = True) -> FrechetInceptionDistance:
    """torchmetrics FID whose ``update(features, real)`` takes ``(B, num_features)`` features."""
    return FrechetInceptionDistance(
        feature=PrecomputedFeatures(num_features), reset_real_features=reset_real_features
    )


def is_metric(splits: int = 1) -> InceptionScore:
    """torchmetrics IS whose ``update(logits)`` takes ``(B, K)`` class logits."""
    if splits < 1:
        raise ValueError(f"splits={splits}: expected >= 1")
    with warnings.catch_warnings():  # "will save all extracted features": logits, (N, K) only
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        return InceptionScore(feature=nn.Identity(), splits=splits)


def inception_score(metric: InceptionScore, seed: int = 0) -> tuple[float, float]:
    """``metric.compute()`` (mean, std over splits) without touching the global RNG (IS permutes
    its features with ``torch.randperm``)."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # std of 1 split
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) if metric.splits > 1 else 0.0


class ClasswiseFID(nn.Module):
    """FID over all images and per class: one torchmetrics FID state per group.

    Args:
        num_features: Feature size of the extractor.
        classes: The classes to keep per-class states for.
    """

    def __init__(self, num_features: int, classes: Sequence[int]) -> None:
        super().__init__()
        self.classes = sorted(set(int(c) for c in classes))
        self.groups = nn.ModuleDict(
            {ALL: fid_metric(num_features, False)}
            | {str(c): fid_metric(num_features, False) for c in self.classes}
        )

    def update(self, features: Tensor, labels: Tensor, real: bool) -> None:
        """Add ``(B, D)`` features of images with ``(B,)`` labels to the real or the fake side."""
        self.groups[ALL].update(features, real=real)
        for c in labels.unique().tolist():
            if str(c) in self.groups:
                self.groups[str(c)].update(features[labels == c], real=real)

    def compute(self) -> dict[str, float]:
        """``{"all": fid, "<class>": fid, ...}``; NaN for a group with < 2 images on a side."""
        out = {}
        for key, metric in self.groups.items():
            enough = metric.real_features_num_samples >= 2 and metric.fake_features_num_samples >= 2
            out[key] = float(metric.compute()) if enough else float("nan")
        return out


# ---- real-image statistics, cached ------------------------------------------------------------
@dataclass
class RealStatistics:
    """The sufficient statistics of torchmetrics' FID for one group of real images."""

    features_sum: Tensor  # (D,) float64
    features_cov_sum: Tensor  # (D, D) float64
    num_samples: Tensor  # () int64

    @classmethod
    def of(cls, metric: FrechetInceptionDistance) -> RealStatistics:
        return cls(metric.real_features_sum.detach().cpu().clone(),
                   metric.real_features_cov_sum.detach().cpu().clone(),
                   metric.real_features_num_samples.detach().cpu().clone())

    def place_into(self, metric: FrechetInceptionDistance) -> None:
        """Set the metric's real states to these statistics.

        Under DDP call this on ONE rank only and leave the others' real states at zero: the states
        are sum-reduced across processes at ``compute``, so every rank then computes with exactly
        the statistics of the whole real set, whatever the world size.
        """
        device = metric.real_features_sum.device
        metric.real_features_sum = self.features_sum.to(device, torch.float64)
        metric.real_features_cov_sum = self.features_cov_sum.to(device, torch.float64)
        metric.real_features_num_samples = self.num_samples.to(device, torch.int64)


def samples_fingerprint(samples: Iterable[Sample]) -> str:
    """A hash of an image list (paths and labels, in order)."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(f"{sample.path}\t{sample.label}\n".encode())
    return digest.hexdigest()[:16]


def statistics_key(
    dataset: str, samples: Sequence[Sample], image_size: int, extractor: MetricFeatures
) -> dict:
    """What real statistics depend on (hashed into the cache file names): a description of the
    dataset and split, the image list itself, the preprocessing and the extractor."""
    return {"dataset": dataset, "images": samples_fingerprint(samples),
            "transform": f"resize{image_size}-centercrop{image_size}-unit-range",
            "extractor": extractor.identity(), "version": "1"}


def _cache_file(cache_dir: str, key: dict, group: str) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{digest}-{group}.safetensors"


def real_statistics(
    extractor: MetricFeatures, samples: Sequence[Sample], dataset: str, image_size: int,
    classes: Sequence[int] = (),
    cache_dir: str | None = DEFAULT_STATS_CACHE, batch_size: int = 32, num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, RealStatistics]:
    """Real statistics of all images (``"all"``) and of each of ``classes``, from the cache or
    computed (in one pass over the images the missing groups need) and then cached.

    Args:
        extractor: The feature network.
        samples: The real images.
        dataset: What they are, e.g. ``"EmbeddedFoodLT:<root>:test"`` (part of the cache key,
            with a hash of the image list, ``image_size`` and the extractor's identity).
        image_size: Images are resized and center-cropped to this size.
        classes: Classes to give their own statistics.
        cache_dir: Folder of ``<hash>-<group>.safetensors`` files (None: no cache).
    """
    key = statistics_key(dataset, samples, image_size, extractor)
    groups = [ALL] + [str(c) for c in sorted(set(classes))]
    found: dict[str, RealStatistics] = {}
    for group in groups if cache_dir else ():
        path = _cache_file(cache_dir, key, group)
        if path.is_file():
            tensors = load_file(str(path))
            found[group] = RealStatistics(**tensors)
    missing = [g for g in groups if g not in found]
    if not missing:
        return found
    wanted = None if ALL in missing else {int(g) for g in missing}
    todo = [s for s in samples if wanted is None or s.label in wanted]
    per_class = ClasswiseFID(extractor.num_features, [int(g) for g in missing if g != ALL])
    per_class = per_class.to(device)
    for output, labels in extract_features(extractor, todo, image_size, batch_size,
                                           num_workers, device):
        per_class.update(output.features, labels, real=True)
    for group in missing:
        found[group] = RealStatistics.of(per_class.groups[group])
        if cache_dir:
            path = _cache_file(cache_dir, key, group)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file(vars(found[group]), str(tmp),
                      metadata={"key": json.dumps(key, sort_keys=True), "group": group})
            tmp.replace(path)  # atomic: concurrent writers race harmlessly
    return found

