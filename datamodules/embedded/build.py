"""Write the embedded dataset to disk in Food-101's own layout, deterministically from a seed.

Layout (what the real Food-101 loaders read)::

    <root>/images/<class>/<id>.jpg
    <root>/meta/classes.txt          one class name per line
    <root>/meta/train.txt            balanced training pool, lines "class/id"
    <root>/meta/train_lt.txt         the long-tailed training split (a subset of train.txt)
    <root>/meta/test.txt             balanced test split
    <root>/meta/pretrain.txt         a separate balanced corpus (the "broad knowledge" SD has)
    <root>/meta/submodes.csv         image,class_name,submode for every image
    <root>/meta/embedded.json        generator settings, class specs, confusable pairs, LT counts

The directory is built under a temporary name and renamed into place, so a crash never leaves a
half-written dataset, and concurrent builders (DDP ranks) race harmlessly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.embedded.render import render_dish
from datamodules.embedded.spec import CONFUSABLE_PAIRS, DISHES, DishSpec
from datamodules.long_tail import exponential_counts

FORMAT_VERSION = 3
SPLITS = ("train", "test", "pretrain")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class EmbeddedSettings:
    """Everything the generated images depend on.

    Attributes:
        image_size: Side length of the generated images in pixels.
        n_max: Training images of the largest class (the balanced pool holds this many per class).
        imbalance_factor: n_max / n_min of the long-tailed split.
        num_test: Test images per class (balanced).
        num_pretrain: Images per class of the separate pre-training corpus.
        seed: Master seed.
    """

    image_size: int = 16
    n_max: int = 100
    imbalance_factor: float = 50.0
    num_test: int = 40
    num_pretrain: int = 60
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size={self.image_size}: expected >= 8 pixels")
        if self.n_max < 2 or self.num_test < 1 or self.num_pretrain < 0:
            raise ValueError(
                f"n_max={self.n_max}, num_test={self.num_test}, num_pretrain={self.num_pretrain}: "
                "expected n_max >= 2, num_test >= 1, num_pretrain >= 0"
            )
        if not 1.0 <= self.imbalance_factor <= self.n_max:
            raise ValueError(
                f"imbalance_factor={self.imbalance_factor}: expected between 1 and n_max={self.n_max}"
            )

    def fingerprint(self) -> str:
        payload = json.dumps({"version": FORMAT_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def split_size(self, split: str) -> int:
        return {"train": self.n_max, "test": self.num_test, "pretrain": self.num_pretrain}[split]


def dataset_dir(cache_dir: str | Path, settings: EmbeddedSettings) -> Path:
    """Where the dataset for ``settings`` lives below ``cache_dir``."""
    return Path(cache_dir) / f"embedded-v{FORMAT_VERSION}-{settings.fingerprint()}"


def ensure_embedded_dataset(cache_dir: str | Path, settings: EmbeddedSettings) -> Path:
    """Return the dataset directory, generating it first if it does not exist yet."""
    root = dataset_dir(cache_dir, settings)
    if (root / "meta" / "embedded.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _write_dataset(tmp, settings)
        try:
            os.rename(tmp, root)
        except OSError:  # another process finished first: its copy is identical
            if not (root / "meta" / "embedded.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_dataset(root: Path, settings: EmbeddedSettings) -> None:
    meta = root / "meta"
    meta.mkdir(parents=True)
    submode_rows: list[tuple[str, str, str]] = []
    split_lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    for class_idx, dish in enumerate(DISHES):
        (root / "images" / dish.name).mkdir(parents=True)
        for split_idx, split in enumerate(SPLITS):
            for k in range(settings.split_size(split)):
                image_id = f"{split}_{k:05d}"
                submode = _draw_image(root, dish, class_idx, split_idx, k, image_id, settings)
                split_lines[split].append(f"{dish.name}/{image_id}")
                submode_rows.append((f"{dish.name}/{image_id}", dish.name, submode))

    counts = exponential_counts(settings.n_max, settings.imbalance_factor, len(DISHES))
    lt_lines = [
        f"{dish.name}/train_{k:05d}" for dish, n in zip(DISHES, counts) for k in range(n)
    ]
    (meta / "classes.txt").write_text("".join(f"{d.name}\n" for d in DISHES))
    for split, lines in split_lines.items():
        (meta / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines))
    (meta / "train_lt.txt").write_text("".join(f"{line}\n" for line in lt_lines))
    with open(meta / "submodes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "class_name", "submode"])
        writer.writerows(submode_rows)
    info = {
        "format_version": FORMAT_VERSION,
        "settings": asdict(settings),
        "lt_counts": dict(zip([d.name for d in DISHES], counts)),
        "confusable_pairs": [list(p) for p in CONFUSABLE_PAIRS],
        "dishes": [asdict(d) for d in DISHES],
    }
    # Written last: its presence marks a complete dataset.
    (meta / "embedded.json").write_text(json.dumps(info, indent=2))


def _draw_image(
    root: Path, dish: DishSpec, class_idx: int, split_idx: int, k: int, image_id: str,
    settings: EmbeddedSettings,
) -> str:
    rng = np.random.default_rng([settings.seed, split_idx, class_idx, k])
    weights = np.array([m.weight for m in dish.submodes])
    submode = dish.submodes[rng.choice(len(weights), p=weights / weights.sum())]
    pixels = render_dish(dish, submode, rng, settings.image_size)
    (root / "images" / dish.name / f"{image_id}.jpg").write_bytes(encode_jpeg(pixels))
    return submode.name


def encode_jpeg(pixels: np.ndarray) -> bytes:
    """The dataset's JPEG encoding of a rendered ``(S, S, 3)`` uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def read_planted_submodes(root: str | Path) -> dict[str, str]:
    """Map ``"class/id"`` to the planted sub-mode name, from ``meta/submodes.csv``."""
    with open(Path(root) / "meta" / "submodes.csv", newline="") as f:
        return {row["image"]: row["submode"] for row in csv.DictReader(f)}


def read_confusable_pairs(root: str | Path) -> list[tuple[str, str]]:
    """The planted confusable class pairs, from ``meta/embedded.json``."""
    info = json.loads((Path(root) / "meta" / "embedded.json").read_text())
    return [tuple(p) for p in info["confusable_pairs"]]
