"""DiSC-DS stage 1b: pick each class's most confusing other class from a reference set.

Reference set (stage 1a, ``generate.yaml`` + ``variants/reference_set.yaml``): images per class
made with CADS and the positive prompt only, from real images. Here: ResNet-18 penultimate features of those images,
class mean features v_c, cosine similarity sim(v_c, v_c'), negative class
c- = argmax over c' != c of sim(v_c, v_c'). Writes into ``output_dir``:

- ``negatives.csv``: ``class_name,negative_class_name,similarity`` (read by stage 2),
- ``similarity.csv``: the full matrix, ``similarity.png``: its heatmap,
- ``summary.json``: the pairs and, on the embedded dataset, the planted confusable pairs
  recovered (a pair counts if either class picked the other).

Run: ``python -m experiments negatives --data experiments/configs/data/embedded.yaml
--manifest <reference set> --weights_path <CE run>/checkpoints/last.ckpt --output_dir <out>``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from datamodules.atomic import atomic_open, atomic_write_text
from datamodules.info import PlantedTruth
from datamodules.long_tailed import LongTailDataModule


@dataclass
class NegativesResult:
    """What stage 1b found (also written to ``summary.json``)."""

    class_names: list[str]
    negatives: dict[str, str]
    similarity: list[list[float]]
    planted_pairs: list[tuple[str, str]] | None = None
    recovered_pairs: list[tuple[str, str]] | None = None

    def metrics(self) -> dict[str, float]:
        """Numbers for result tables: planted confusable pairs recovered (embedded data)."""
        if self.planted_pairs is None:
            return {}
        return {"negatives/recovered_pairs": float(len(self.recovered_pairs or [])),
                "negatives/planted_pairs": float(len(self.planted_pairs))}


def class_mean_features(features: Tensor, labels: Tensor, class_names: Sequence[str]) -> Tensor:
    """Mean feature per class, (C, D), from features (N, D) and labels (N,)."""
    num_classes = len(class_names)
    counts = torch.bincount(labels, minlength=num_classes)
    empty = [class_names[c] for c in range(num_classes) if counts[c] == 0]
    if empty:
        raise ValueError(f"the reference set has no image of classes {empty}")
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels, features.double())
    return sums / counts[:, None]


def cosine_similarity_matrix(means: Tensor) -> Tensor:
    """sim[i, j] = cos(v_i, v_j), (C, C)."""
    unit = torch.nn.functional.normalize(means, dim=1)
    return unit @ unit.T


def pick_negatives(similarity: Tensor) -> list[int]:
    """For each class i, argmax over j != i of similarity[i, j]."""
    if similarity.shape[0] < 2:
        raise ValueError(f"need at least 2 classes to pick negatives, got {similarity.shape[0]}")
    masked = similarity.clone()
    masked.fill_diagonal_(-torch.inf)
    return masked.argmax(dim=1).tolist()


def recovered(
    negatives: dict[str, str], pairs: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The planted pairs (a, b) where a picked b or b picked a."""
    return [(a, b) for a, b in pairs if negatives.get(a) == b or negatives.get(b) == a]


def extract_features(
    paths: Sequence[str],
    weights_path: str,
    image_size: int,
    resize_size: int,
    batch_size: int,
    device: str,
) -> Tensor:
    """ResNet-18 penultimate features (N, D) of images, eval transforms, no gradients."""
    from torch.utils.data import DataLoader

    from datamodules.dataset import ImageListDataset
    from datamodules.layout import Sample
    from datamodules.transforms import eval_transform
    from lightning_modules.feature_extractor import ResNetFeatureExtractor

    extractor = ResNetFeatureExtractor(weights_path).to(device).eval()
    dataset = ImageListDataset(
        [Sample(p, 0) for p in paths], eval_transform(image_size, resize_size)
    )
    chunks = []
    with torch.inference_mode():
        for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            chunks.append(extractor(images.to(device)).float().cpu())
    return torch.cat(chunks)


def write_outputs(output_dir: Path, result: NegativesResult) -> None:
    """negatives.csv, similarity.csv, similarity.png and summary.json."""
    output_dir.mkdir(parents=True, exist_ok=True)
    names, sim = result.class_names, result.similarity
    with atomic_open(output_dir / "negatives.csv") as f:
        writer = csv.writer(f)
        writer.writerow(["class_name", "negative_class_name", "similarity"])
        for i, name in enumerate(names):
            negative = result.negatives[name]
            writer.writerow([name, negative, f"{sim[i][names.index(negative)]:.6f}"])
    with atomic_open(output_dir / "similarity.csv") as f:
        writer = csv.writer(f)
        writer.writerow(["class_name", *names])
        for name, row in zip(names, sim):
            writer.writerow([name, *(f"{v:.6f}" for v in row)])
    atomic_write_text(output_dir / "summary.json", json.dumps(asdict(result), indent=2))
    from experiments.plots import plot_similarity  # matplotlib only when writing

    plot_similarity(output_dir / "similarity.csv", output_dir / "similarity.png")


def eval_sizes(
    data: LongTailDataModule | None, image_size: int | None, resize_size: int | None
) -> tuple[int, int]:
    """``(image_size, resize_size)``: the given ones, else the data's, else 224 / 256."""
    if image_size is None:
        image_size = data.image_size if data is not None else 224
    if resize_size is None:
        resize_size = data.resize_size if data is not None else 256
    return image_size, resize_size


def select_negatives(
    manifest: str,
    weights_path: str,
    output_dir: str,
    data: LongTailDataModule | None = None,
    image_size: int | None = None,
    resize_size: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
) -> NegativesResult:
    """Stage 1b of DiSC-DS: negative class per class from the reference set's features.

    Args:
        manifest: The reference set's ``manifest.jsonl`` (or its directory).
        weights_path: ResNet-18 weights: this project's classifier checkpoint (``.ckpt``) or a
            local state dict (``.safetensors`` / ``.pth``).
        output_dir: Where the CSVs, heatmap and summary go.
        data: The real dataset: fixes the class order, validates the manifest's labels and, for
            the embedded dataset, gives the planted confusable pairs to score against.
        image_size: Eval center-crop size; default: the data's (the size its classifier was
            trained at), 224 without data.
        resize_size: Eval resize of the shorter side before the crop; default: the data's,
            256 without data.
        batch_size: Feature-extraction batch size.
        device: ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:1``, ...

    Returns:
        The class names, negatives, similarity matrix and, when known, the pair recovery.
    """
    from lightning.pytorch.utilities import rank_zero_info

    from datamodules.manifest import read_manifest

    class_names = data.dataset_info.class_names if data is not None else None
    samples = read_manifest(manifest, class_names)
    if not samples:
        raise ValueError(f"manifest={manifest!r} lists no images")
    if class_names is None:
        by_label = {s.label: s.row.class_name for s in samples}
        class_names = [by_label.get(i, f"<label {i}>") for i in range(max(by_label) + 1)]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    image_size, resize_size = eval_sizes(data, image_size, resize_size)
    features = extract_features(
        [s.path for s in samples], weights_path, image_size, resize_size,
        batch_size, device,
    )
    labels = torch.tensor([s.label for s in samples])
    similarity = cosine_similarity_matrix(class_mean_features(features, labels, class_names))
    picks = pick_negatives(similarity)
    result = NegativesResult(
        class_names=list(class_names),
        negatives={name: class_names[j] for name, j in zip(class_names, picks)},
        similarity=similarity.tolist(),
    )
    if isinstance(data, PlantedTruth):
        result.planted_pairs = [tuple(p) for p in data.confusable_pairs()]
        result.recovered_pairs = recovered(result.negatives, result.planted_pairs)
    write_outputs(Path(output_dir), result)
    rank_zero_info(f"negatives: {len(samples)} reference images -> {output_dir}/negatives.csv")
    for name, negative in result.negatives.items():
        rank_zero_info(f"  {name} -> {negative}")
    if result.planted_pairs is not None:
        rank_zero_info(
            f"negatives: recovered {len(result.recovered_pairs)} of {len(result.planted_pairs)} "
            f"planted confusable pairs: {result.recovered_pairs}"
        )
    return result
