"""Batches for the Stable Diffusion fine-tune: ``(images in [-1, 1], prompts)``.

Wraps a real :class:`~datamodules.long_tailed.LongTailDataModule` (its class names and image
lists) and turns each training image into a text prompt: the class name alone (fine-tuned SD, the
"no clustering" ablation) or the class name and the image's ClusDiff sub-class, read from the
``subclasses.csv`` that the clustering stage writes. A dataset with planted sub-modes (the
embedded one) can also name each image's sub-mode in a share of the prompts, as web captions name
a dish's variant ("miso ramen"). Prompts are built here, once: the model only sees strings, and
prompt dropout (for classifier-free guidance) is the model's business.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from datamodules.dataset import load_rgb
from datamodules.epoch_seeds import (
    EpochShuffle,
    SeededDataset,
    SeededSampler,
    TrainerEpoch,
    run_seed,
)
from datamodules.info import DatasetInfo, PlantedTruth
from datamodules.layout import Sample, read_split
from datamodules.long_tailed import LongTailDataModule
from datamodules.stage_csv import read_stage_csv

Subclass = int | str
"""A sub-class: the clustering's integer id, or a name (``read_subclasses``)."""


def image_key(path: str | Path) -> str:
    """``"class/id"`` of an image path (the Food-101 split-file key; independent of the root)."""
    path = Path(path)
    return f"{path.parent.name}/{path.stem}"


def check_subclass_prompt(subclasses_csv: str | None, prompt_template: str) -> None:
    """A sub-class prompt (``{subclass}``) needs ``subclasses_csv``, and the reverse."""
    has_subclass = "{subclass}" in prompt_template
    if subclasses_csv is not None and not has_subclass:
        raise ValueError(
            f"subclasses_csv={subclasses_csv!r} needs a prompt_template with '{{subclass}}', "
            f"got {prompt_template!r}"
        )
    if subclasses_csv is None and has_subclass:
        raise ValueError(
            f"prompt_template={prompt_template!r} uses {{subclass}}: set subclasses_csv"
        )


def check_submode_prompt(real: LongTailDataModule, template: str, rate: float, split: str) -> None:
    """Sub-mode prompts: a rate in [0, 1]; above 0, the pre-training corpus of a dataset with
    planted sub-modes (on the training split they would hand a fine-tune the planted answer) and
    a template over exactly ``{class_name}`` and ``{submode}``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"submode_prompt_rate={rate}: expected a fraction in [0, 1]")
    if rate == 0:
        return
    if split != "pretrain":
        raise ValueError(f"submode_prompt_rate={rate} with split={split!r}: sub-mode prompts "
                         "are for split='pretrain' only")
    if "{submode}" not in template:
        raise ValueError(f"submode_prompt_template={template!r}: expected '{{submode}}' in it")
    try:
        template.format(class_name="x", submode="y")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"submode_prompt_template={template!r}: expected a format string over "
                         f"{{class_name}} and {{submode}} only ({err!r})") from None
    if not isinstance(real, PlantedTruth):
        raise ValueError(f"submode_prompt_rate > 0 needs a dataset with planted sub-modes "
                         f"(the embedded one), got {type(real).__name__}")


def submode_prompted(n: int, rate: float, seed: int = 0) -> list[int]:
    """The indices of the ``round(rate * n)`` images whose prompt names their sub-mode: a fixed
    seeded draw, the same for every run."""
    chosen = np.random.default_rng(seed).permutation(n)[: round(rate * n)]
    return sorted(chosen.tolist())


def read_subclasses(path: str | Path) -> dict[str, Subclass]:
    """``"class/id"`` -> sub-class, from a ``subclasses.csv`` of the clustering stage.

    A sub-class is an integer id (what the clustering writes) or, in a file of names only, a
    word (a hand-labelled file, or ``planted-subclasses --names``: the prompt then names it).

    Raises:
        ValueError: A file mixing ids and names, or an empty sub-class.
    """
    rows = read_stage_csv(
        path, ("path", "subclass"), "subclasses_csv",
        "run the clustering stage first "
        "(python -m experiments predict --config experiments/configs/cluster.yaml)",
        unique="path",
    )
    values = [row["subclass"].strip() for row in rows]
    ids = [v.isdigit() for v in values]
    if "" in values or (any(ids) and not all(ids)):
        odd = next(v for v, i in zip(values, ids) if v == "" or i != ids[0])
        raise ValueError(
            f"subclasses_csv={str(path)!r}: sub-class {odd!r}; expected integer ids in every row "
            "or names (non-empty, not all digits) in every row"
        )
    labels = [int(v) if i else v for v, i in zip(values, ids)]
    return {image_key(row["path"]): label for row, label in zip(rows, labels)}


def subclasses_of(samples: Sequence[Sample], path: str | Path) -> list[Subclass]:
    """The sub-class of each sample, from a ``subclasses.csv`` that must cover exactly them.

    Raises:
        ValueError: An image without a row, or rows for images that are not among ``samples``
            (the file was written for another split or dataset).
    """
    table = read_subclasses(path)
    keys = [image_key(s.path) for s in samples]
    missing = [k for k in keys if k not in table]
    if missing:
        raise ValueError(
            f"subclasses_csv={str(path)!r} has no row for {len(missing)} of {len(keys)} training "
            f"images (e.g. {missing[:3]}): re-run the clustering stage on this dataset"
        )
    extra = sorted(set(table) - set(keys))
    if extra:
        raise ValueError(
            f"subclasses_csv={str(path)!r} has rows for {len(extra)} images outside the "
            f"{len(keys)} training images (e.g. {extra[:3]}): it was written for another split "
            "or dataset; re-run the clustering stage on this one"
        )
    return [table[k] for k in keys]


class PromptedImages(Dataset):
    """``(image, prompt)`` pairs: images through ``transform``, prompts precomputed."""

    def __init__(self, paths: list[str], prompts: list[str], transform: v2.Transform) -> None:
        self.paths, self.prompts, self.transform = paths, prompts, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.transform(load_rgb(self.paths[index])), self.prompts[index]


class DiffusionFineTuneData(L.LightningDataModule):
    """Images and prompts of a long-tailed dataset for text-to-image fine-tuning.

    Args:
        real: The dataset (e.g. ``datamodules.EmbeddedFoodLT``); only its class names and image
            lists are used, not its transforms or loaders.
        resolution: Image side fed to the model (the diffusion model's image size).
        center_crop: Center crop after resizing the shorter side; False: random crop.
        random_flip: Random horizontal flip.
        split: ``train``: the long-tailed training split; ``pretrain``: the dataset's balanced
            pre-training corpus ``<root>/meta/pretrain.txt`` (the embedded dataset has one).
        prompt_template: Python format string over ``{class_name}`` (underscores become spaces)
            and, with ``subclasses_csv``, ``{subclass}`` (ClusDiff).
        subclasses_csv: ``subclasses.csv`` of the clustering stage; then every image's prompt
            carries its sub-class id and the template must contain ``{subclass}``.
        submode_prompt_template: Format string over ``{class_name}`` and ``{submode}`` (the
            planted sub-mode's name) for the images drawn by ``submode_prompt_rate``; needs
            ``split="pretrain"`` of a datamodule with planted sub-modes (the embedded one). A
            corpus image of caption noise (captioned with its partner's name) is named by the
            sub-mode it shows, a sub-mode of the partner: a web caption that names the variant
            shown gives away, in part, which dish is shown.
        submode_prompt_rate: Fraction of the images (exactly, rounded; a fixed seeded draw) whose
            prompt names their sub-mode. 0: none.
        batch_size: Per-process batch size.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        real: LongTailDataModule,
        resolution: int = 16,
        center_crop: bool = True,
        random_flip: bool = True,
        split: Literal["train", "pretrain"] = "train",
        prompt_template: str = "A photo of {class_name}, a type of food.",
        subclasses_csv: str | None = None,
        submode_prompt_template: str = "A photo of {class_name}, style {submode}, a type of food.",
        submode_prompt_rate: float = 0.0,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_subclass_prompt(subclasses_csv, prompt_template)
        check_submode_prompt(real, submode_prompt_template, submode_prompt_rate, split)
        if split not in ("train", "pretrain"):
            raise ValueError(f"split must be 'train' or 'pretrain', got {split!r}")
        if split == "pretrain" and subclasses_csv is not None:
            raise ValueError("split='pretrain' has no sub-classes: subclasses_csv must be None")
        self.real = real
        self.resolution = resolution
        self.center_crop = center_crop
        self.random_flip = random_flip
        self.split = split
        self.prompt_template = prompt_template
        self.subclasses_csv = subclasses_csv
        self.submode_prompt_template = submode_prompt_template
        self.submode_prompt_rate = submode_prompt_rate
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.dataset: PromptedImages | None = None
        self._prompts: list[str] | None = None
        self._labels: list[int] | None = None

    @property
    def dataset_info(self) -> DatasetInfo:
        return self.real.dataset_info

    def prompt(self, label: int, subclass: Subclass | None = None) -> str:
        """The prompt of an image of class ``label`` (and sub-class ``subclass``)."""
        return self.prompt_template.format(class_name=self._words(label), subclass=subclass)

    def _words(self, label: int) -> str:
        """Class ``label``'s name as prompt words (underscores become spaces)."""
        return self.dataset_info.class_names[label].replace("_", " ")

    def _samples(self) -> list[Sample]:
        if self.split == "train":
            return self.real.index.train
        root = getattr(self.real, "root", None)
        if root is None:
            raise ValueError(f"split='pretrain' needs a datamodule with a root, got {self.real!r}")
        images = Path(root) / "images"
        return read_split(Path(root) / "meta" / "pretrain.txt", images, self.real.index.class_names)

    def _build_prompts(self, samples: list[Sample]) -> list[str]:
        if self.subclasses_csv is None:
            prompts = [self.prompt(s.label) for s in samples]
        else:
            subclasses = subclasses_of(samples, self.subclasses_csv)
            prompts = [self.prompt(s.label, k) for s, k in zip(samples, subclasses)]
        if self.submode_prompt_rate > 0:
            planted = self.real.planted_submodes()
            for i in submode_prompted(len(samples), self.submode_prompt_rate):
                s = samples[i]
                prompts[i] = self.submode_prompt_template.format(
                    class_name=self._words(s.label), submode=planted[image_key(s.path)])
        return prompts

    def prepare_data(self) -> None:
        self.real.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        samples = self._samples()
        self._labels = [s.label for s in samples]
        self._prompts = self._build_prompts(samples)
        crop = v2.CenterCrop if self.center_crop else v2.RandomCrop
        transform = v2.Compose([
            v2.Resize(self.resolution, antialias=True),
            crop(self.resolution),
            *([v2.RandomHorizontalFlip()] if self.random_flip else []),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5], [0.5]),  # [0, 1] -> [-1, 1]
        ])
        self.dataset = PromptedImages([s.path for s in samples], self._prompts, transform)

    def sample_prompt(self, label: int, seed: int) -> str:
        """A prompt for one generated image of class ``label``: the prompt of one of the class's
        training images, picked by ``seed`` (so ClusDiff samples follow the sub-class mix)."""
        if self._prompts is None:
            self.setup("fit")
        prompts = [p for lab, p in zip(self._labels, self._prompts) if lab == label]
        if not prompts:
            raise ValueError(f"no training image of class {label}")
        return prompts[seed % len(prompts)]

    def grid_prompts(self, per_class: int) -> list[list[str]]:
        """``per_class`` prompts for each class, for sample grids.

        ClusDiff: the class's sub-classes, largest first, repeated to fill ``per_class``;
        otherwise the class prompt ``per_class`` times.
        """
        if self._prompts is None:
            self.setup("fit")
        by_class: dict[int, Counter] = defaultdict(Counter)
        for label, prompt in zip(self._labels, self._prompts):
            by_class[label][prompt] += 1
        grid = []
        for c in range(self.dataset_info.num_classes):
            ranked = [p for p, _ in by_class[c].most_common()] or [self.prompt(c, 0)]
            grid.append([ranked[i % len(ranked)] for i in range(per_class)])
        return grid

    def train_dataloader(self) -> DataLoader:
        if self.dataset is None:
            raise RuntimeError("DiffusionFineTuneData.setup() has not run")
        seed = run_seed(None)
        return DataLoader(
            SeededDataset(self.dataset),
            batch_size=self.batch_size,
            sampler=TrainerEpoch(SeededSampler(EpochShuffle(len(self.dataset), seed), seed), self),
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
