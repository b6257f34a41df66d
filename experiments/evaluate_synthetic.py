"""FID and IS of a generated image set (a manifest) against a real dataset, overall and per class.

    python -m experiments evaluate-synthetic --manifest runs/.../synthetic/manifest.jsonl \
        --data.class_path datamodules.EmbeddedFoodLT \
        --data.init_args.cache_dir .cache/lt-food-synth \
        --extractor.class_path lightning_modules.metric_features.ResNetFeatures \
        --extractor.init_args.weights_path runs/.../checkpoints/last.ckpt --out_dir runs/.../eval

Writes ``<out_dir>/fid.csv``: one row for all classes (``class_index`` -1) and, with
``per_class``, one per class of the manifest. Per-class FID compares a class's synthetic images
with that class's real images. Real statistics are cached (see
:func:`~lightning_modules.image_metrics.real_statistics`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.atomic import atomic_open
from datamodules.long_tailed import LongTailDataModule
from datamodules.manifest import read_manifest
from lightning_modules.image_metrics import (
    ALL,
    DEFAULT_STATS_CACHE,
    ClasswiseFID,
    inception_score,
    is_metric,
    real_statistics,
)
from lightning_modules.metric_features import MetricFeatures, extract_features


def evaluate_synthetic(
    manifest: str,
    data: LongTailDataModule,
    extractor: MetricFeatures,
    out_dir: str,
    per_class: bool = True,
    split: Literal["train", "test"] = "test",
    image_size: int | None = None,
    stats_cache_dir: str | None = DEFAULT_STATS_CACHE,
    batch_size: int = 32,
    num_workers: int = 0,
    is_splits: int = 1,
    device: str = "auto",
) -> dict[str, float]:
    """Measure a synthetic set; write ``fid.csv``; return the numbers.

    Args:
        manifest: ``manifest.jsonl`` of the generated set (or its directory).
        data: The real dataset (its class names label the manifest).
        extractor: Feature network; its name is in every key (``fid_resnet18``, ``fid_inception``).
        out_dir: Where ``fid.csv`` is written.
        per_class: Also FID and IS per class of the manifest.
        split: The real split compared against.
        image_size: Both sets are resized and center-cropped to this (None: ``data.image_size``).
        stats_cache_dir: Cache of real statistics (None: no cache).
        batch_size: Images per extractor call.
        num_workers: DataLoader workers for reading images.
        is_splits: Splits of the Inception Score.
        device: ``"cpu"``, ``"cuda"``, ... or ``"auto"`` (a GPU when there is one).

    Returns:
        ``{"fid_<ext>": ..., "is_<ext>": ..., "fid_<ext>/<class>": ..., "is_<ext>/<class>": ...}``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    index = data.index
    fake = read_manifest(manifest, index.class_names)
    if len(fake) < 2:
        raise ValueError(f"manifest={manifest!r} lists {len(fake)} image(s); FID needs >= 2")
    real = getattr(index, split)
    size = image_size or data.image_size
    classes = sorted({s.label for s in fake}) if per_class else []
    extractor = extractor.requires_grad_(False).eval().to(device)

    stats = real_statistics(
        extractor, real, f"{type(data).__qualname__}:{getattr(data, 'root', '')}:{split}", size,
        classes, stats_cache_dir, batch_size, num_workers, device,
    )
    fids = ClasswiseFID(extractor.num_features, classes).to(device)
    for group, metric in fids.groups.items():
        stats[group].place_into(metric)
    scores = {group: is_metric(is_splits) for group in fids.groups}
    for output, labels in extract_features(extractor, fake, size, batch_size, num_workers, device):
        fids.update(output.features, labels, real=False)
        scores[ALL].update(output.logits)
        for c in classes:
            if (labels == c).any():
                scores[str(c)].update(output.logits[labels == c])
    fid = fids.compute()

    fid_key, is_key = f"fid_{extractor.name}", f"is_{extractor.name}"
    counts_fake = {g: int(m.fake_features_num_samples) for g, m in fids.groups.items()}
    rows, results = [], {}
    for group in fids.groups:
        name = "all" if group == ALL else index.class_names[int(group)]
        is_mean, _ = inception_score(scores[group])
        suffix = "" if group == ALL else f"/{name}"
        results[f"{fid_key}{suffix}"], results[f"{is_key}{suffix}"] = fid[group], is_mean
        rows.append({
            "class_index": -1 if group == ALL else int(group), "class_name": name,
            "num_real": int(stats[group].num_samples), "num_synthetic": counts_fake[group],
            fid_key: f"{fid[group]:.6f}", is_key: f"{is_mean:.6f}",
        })
    _write_csv(Path(out_dir) / "fid.csv", rows)
    _log(results, manifest)
    return results


def _write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _log(results: dict[str, float], manifest: str) -> None:
    overall = {k: v for k, v in results.items() if "/" not in k}
    text = ", ".join(f"{k} {v:.4f}" for k, v in overall.items())
    nan = [k for k, v in results.items() if math.isnan(v)]
    rank_zero_info(f"{manifest}: {text}" + (f" (NaN, < 2 images: {nan})" if nan else ""))
    import wandb

    if wandb.run is not None:
        wandb.log({f"synthetic/{k}": v for k, v in results.items()})
