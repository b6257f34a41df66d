"""Write the embedded dataset to disk in Food-101's own layout, deterministically from a seed.

Layout (what the real Food-101 loaders read)::

    <root>/images/<class>/<id>.jpg
    <root>/meta/classes.txt          one class name per line
    <root>/meta/train.txt            balanced training pool, lines "class/id"
    <root>/meta/train_lt.txt         the long-tailed training split (a subset of train.txt)
    <root>/meta/test.txt             balanced test split
    <root>/meta/pretrain.txt         a separate balanced corpus (the "broad knowledge" SD has), in
                                     its own "web" style, with caption noise between partners
    <root>/meta/submodes.csv         image,class_name,submode,rendered_class,style for every image
                                     (rendered_class differs from class_name where the caption is
                                     the partner's: caption noise)
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
from datamodules.embedded.spec import (
    CONFUSABLE_PAIRS,
    DISHES,
    NUISANCE,
    WEB_STYLE,
    DishSpec,
    SubMode,
)
from datamodules.long_tail import exponential_counts

FORMAT_VERSION = 12
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
        web_style: Strength in [0, 1] of the pre-training corpus's "web" look (the train and
            test splits keep the photo style): the domain gap synthetic images bring.
        caption_noise: Fraction of a confusable partner's pre-training images that show the
            other partner (its caption is wrong): what makes a pre-trained model confuse them.
            One fraction for every partner, or a mapping of every partner's class name to its
            own (the model's confusion of a pair need not be symmetric, its captions either).
        seed: Master seed.
    """

    image_size: int = 16
    n_max: int = 100
    imbalance_factor: float = 50.0
    num_test: int = 40
    num_pretrain: int = 300
    web_style: float = 0.7
    caption_noise: float | dict[str, float] = 0.3
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
        if not 0.0 <= self.web_style <= 1.0:
            raise ValueError(f"web_style={self.web_style}: expected a value in [0, 1]")
        partners = sorted(c for pair in CONFUSABLE_PAIRS for c in pair)
        if isinstance(self.caption_noise, dict) and sorted(self.caption_noise) != partners:
            raise ValueError(f"caption_noise names {sorted(self.caption_noise)}: expected every "
                             f"confusable partner once, {partners}")
        for name in partners:
            if not 0.0 <= self.noise_of(name) <= 1.0:
                raise ValueError(f"caption_noise of {name}={self.noise_of(name)}: expected a "
                                 "value in [0, 1]")

    def split_style(self, split: str) -> float:
        """Web-style strength of a split: the pre-training corpus's, 0 (photo) otherwise."""
        return self.web_style if split == "pretrain" else 0.0

    def noise_of(self, class_name: str) -> float:
        """The caption noise of a confusable partner's pre-training images."""
        if isinstance(self.caption_noise, dict):
            return float(self.caption_noise[class_name])
        return float(self.caption_noise)

    def mislabelled(self, split: str, class_name: str) -> int:
        """How many of a confusable partner's images of ``split`` show the other partner."""
        if split != "pretrain":
            return 0
        return round(self.noise_of(class_name) * self.num_pretrain)

    def fingerprint(self) -> str:
        """Hash of the settings and of the world's spec (dishes, pairs, nuisance, web style):
        editing either gives a new dataset directory, never a stale cached one."""
        spec = [asdict(d) for d in DISHES], CONFUSABLE_PAIRS, asdict(NUISANCE), asdict(WEB_STYLE)
        payload = json.dumps({"version": FORMAT_VERSION, **asdict(self), "spec": spec},
                             sort_keys=True)
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
    submode_rows: list[tuple] = []
    split_lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    partners = {a: b for pair in CONFUSABLE_PAIRS for a, b in (pair, pair[::-1])}
    by_name = {dish.name: dish for dish in DISHES}
    for class_idx, dish in enumerate(DISHES):
        (root / "images" / dish.name).mkdir(parents=True)
        for split_idx, split in enumerate(SPLITS):
            wrong = settings.mislabelled(split, dish.name) if dish.name in partners else 0
            for k in range(settings.split_size(split)):
                image_id = f"{split}_{k:05d}"
                shown = by_name[partners[dish.name]] if k < wrong else dish  # caption noise
                rng = np.random.default_rng([settings.seed, split_idx, class_idx, k])
                submode = _draw_image(root / "images" / dish.name / f"{image_id}.jpg", shown, rng,
                                      settings.image_size, settings.split_style(split))
                split_lines[split].append(f"{dish.name}/{image_id}")
                submode_rows.append((f"{dish.name}/{image_id}", dish.name, submode, shown.name,
                                     "web" if settings.split_style(split) else "photo"))

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
        writer.writerow(["image", "class_name", "submode", "rendered_class", "style"])
        writer.writerows(submode_rows)
    info = {
        "format_version": FORMAT_VERSION,
        "settings": asdict(settings),
        "lt_counts": dict(zip([d.name for d in DISHES], counts)),
        "confusable_pairs": [list(p) for p in CONFUSABLE_PAIRS],
        "dishes": [asdict(d) for d in DISHES],
        "nuisance": asdict(NUISANCE),
        "web_style": asdict(WEB_STYLE),
    }
    # Written last: its presence marks a complete dataset.
    (meta / "embedded.json").write_text(json.dumps(info, indent=2))


def draw_submode(dish: DishSpec, rng: np.random.Generator) -> SubMode:
    """A sub-mode of ``dish`` drawn by the planted weights."""
    weights = np.array([m.weight for m in dish.submodes])
    return dish.submodes[rng.choice(len(weights), p=weights / weights.sum())]


def _draw_image(
    path: Path, dish: DishSpec, rng: np.random.Generator, size: int, web: float
) -> str:
    submode = draw_submode(dish, rng)
    path.write_bytes(encode_jpeg(render_dish(dish, submode, rng, size, web)))
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
