"""What to generate: one request per image (class, seed, prompts, source image), as a DataModule.

One list serves every generation run (the DiSC-DS reference set, DiSC-DS itself, ClusDiff): they
differ only in how many images per class, the prompts and whether a negative class is named.

Requests are built class by class, in class order; request ``i`` gets ``seed = base_seed + i`` and
the output path ``images/<class_name>/<seed:08d>.png``. Requests are generated in fixed batches:
request ``i`` is always computed in batch ``i // batch_size`` with the same companions, whatever
the rank, the world size, the shard or the resume, because a network's kernels may round
differently for another batch composition (the embedded UNet on an AMD EPYC CPU: outputs of a
batch of 1-3 differ in their last bits from those of a batch of 6). An image is thus fixed, bit for
bit on one machine, by its request and the batch size. A writer that finds some images already
on disk names them with :meth:`skip` before predicting (see ``callbacks/generation_writer.py``):
``predict_dataloader`` then iterates the batches that still hold a missing image, and the writer
writes only the missing ones, so a resumed run writes each missing image once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2

from datamodules.dataset import load_rgb
from datamodules.diffusion_data import Subclass
from datamodules.info import DatasetInfo
from datamodules.long_tailed import LongTailDataModule
from datamodules.stage_csv import read_stage_csv
from datamodules.subclass_draws import (
    SubclassSampling,
    check_subclass_options,
    draw_subclasses,
    subclass_sizes,
)

DEFAULT_PROMPT = "A photo of {class_name}, a type of food."
NEGATIVES_COLUMNS = ("class_name", "negative_class_name", "similarity")


@dataclass
class GenerationRequest:
    """One image to generate (not frozen: Lightning's batch transfer rejects frozen dataclasses).

    Attributes:
        index: Position in the full request list (global, the same on every rank).
        label: Class index in the real dataset.
        class_name: Class name (c+), as in the dataset (underscores kept).
        seed: The image's seed; every random draw of the image comes from it.
        prompt: Positive prompt.
        negative_class_name: Confusing class c-, or None.
        negative_prompt: Prompt of c-, or None.
        source_image: Real image to start from (img2img), or None for pure noise.
        subclass: The sub-class the prompt names (ClusDiff), or None.
    """

    index: int
    label: int
    class_name: str
    seed: int
    prompt: str
    negative_class_name: str | None = None
    negative_prompt: str | None = None
    source_image: str | None = None
    subclass: Subclass | None = None

    @property
    def relative_path(self) -> str:
        """Where the image goes, relative to the output directory."""
        return f"images/{self.class_name}/{self.seed:08d}.png"


def render_prompt(template: str, class_name: str) -> str:
    """``template`` with ``{class_name}`` replaced by the name with underscores as spaces."""
    return template.format(class_name=class_name.replace("_", " "))


def read_negatives(path: str | Path, class_names: Sequence[str]) -> dict[str, str]:
    """``class_name -> negative_class_name`` from a ``negatives.csv`` of stage 1.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Missing columns, a class with two rows or with itself as its negative,
            unknown classes, or classes without a row.
    """
    rows = read_stage_csv(
        path, NEGATIVES_COLUMNS[:2], "negatives_csv",
        "run stage 1 (python -m experiments negatives --config ...) first, "
        "or set negatives_csv to null", unique="class_name",
    )
    for line, row in enumerate(rows, start=2):
        if row["class_name"] == row["negative_class_name"]:
            raise ValueError(f"{path}:{line}: class {row['class_name']!r} is its own negative")
    negatives = {row["class_name"]: row["negative_class_name"] for row in rows}
    known = set(class_names)
    unknown = sorted((set(negatives) | set(negatives.values())) - known)
    if unknown:
        raise ValueError(f"{path}: classes {unknown} are not classes of the dataset")
    absent = [c for c in class_names if c not in negatives]
    if absent:
        raise ValueError(f"{path}: no negative class for {absent}")
    return negatives


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``"k/N"`` -> ``(k, N)`` with 0 <= k < N (None: no sharding)."""
    if shard is None:
        return None
    try:
        k, n = (int(part) for part in str(shard).split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise ValueError(f"shard={shard!r}: expected 'k/N' with 0 <= k < N, e.g. '0/8'")
    return k, n


class RequestDataset(Dataset):
    """Requests, with their source image loaded as a (3, S, S) tensor in [0, 1]."""

    def __init__(self, requests: Sequence[GenerationRequest], image_size: int) -> None:
        self.requests = list(requests)
        self.transform = v2.Compose(
            [
                v2.Resize(image_size, antialias=True),
                v2.CenterCrop(image_size),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, i: int) -> tuple[GenerationRequest, Tensor | None]:
        request = self.requests[i]
        if request.source_image is None:
            return request, None
        return request, self.transform(load_rgb(request.source_image))


def collate_requests(items: list[tuple[GenerationRequest, Tensor | None]]) -> dict:
    """``{"requests": [B requests], "images": (B, 3, S, S) in [0, 1] or None}``."""
    requests = [request for request, _ in items]
    images = [image for _, image in items]
    if all(image is None for image in images):
        return {"requests": requests, "images": None}
    if any(image is None for image in images):
        raise ValueError("a batch mixes requests with and without a source image")
    return {"requests": requests, "images": torch.stack(images)}


class ShardSampler(DistributedSampler):
    """Whole fixed batches ``rank::num_replicas`` of the list: each request exactly once, in
    its own batch, no padding.

    ``batches`` holds the fixed-batch number of every item (consecutive items of one batch).
    Unlike Lightning's unrepeated sampler, a rank may get no request (a resumed run with fewer
    open batches than processes); predict has no collective per batch, so that is fine.
    """

    def __init__(self, batches: Sequence[int], num_replicas: int, rank: int) -> None:
        super().__init__(range(len(batches)), num_replicas=num_replicas, rank=rank, shuffle=False)
        mine = set(sorted(set(batches))[rank::num_replicas])
        self.indices = [i for i, b in enumerate(batches) if b in mine]
        self.total_size = len(batches)
        self.num_samples = len(self.indices)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


class GenerationRequests(L.LightningDataModule):
    """The images to generate, per class, from a real long-tailed dataset.

    Args:
        real: The real dataset (class names, training counts, source images).
        per_class: Generate exactly this many images per class. Default (None): fill every class
            up to ``target``.
        target: Fill each class up to this many (real + synthetic) images; default: the largest
            class's training count. Ignored when ``per_class`` is set.
        from_real: Start each image from a real training image of its class (cycled), else from
            pure noise.
        image_size: Side of the source images fed to the model (resize shorter side, center crop);
            must match the model's resolution (512 for SD v1.4).
        prompt_template: Prompt with ``{class_name}`` (underscores rendered as spaces) and,
            with ``subclasses_csv``, ``{subclass}`` (ClusDiff: ``CLUSDIFF_PROMPT``).
        negatives_csv: ``negatives.csv`` of stage 1 (``class_name,negative_class_name,
            similarity``): every request then names its class's negative class.
        base_seed: Seed of request 0; request i gets ``base_seed + i``.
        batch_size: Requests per batch and process; part of an image's identity (fixed batches,
            see the module doc): resume with the batch size of the first run.
        num_workers: DataLoader workers.
        subclasses_csv: ClusDiff: the clustering stage's ``subclasses.csv``; every request then
            names a sub-class of its class, drawn per ``subclass_sampling``.
        subclass_sampling: ``"proportional"`` (the paper: the sub-class sizes within the class)
            or ``"uniform"``.
        subclass_seed: Seed of the sub-class draws.
        shard: ``"k/N"``: generate only the batches whose number is k modulo N, with no
            collective between shards, so that N independent jobs (a SLURM array) write one
            set; ``python -m experiments manifest --directory <out>`` (or the last shard to
            finish) then writes the manifest of the union, identical to a one-process run's.
    """

    def __init__(
        self,
        real: LongTailDataModule,
        per_class: int | None = None,
        target: int | None = None,
        from_real: bool = True,
        image_size: int = 512,
        prompt_template: str = DEFAULT_PROMPT,
        negatives_csv: str | None = None,
        base_seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        subclasses_csv: str | None = None,
        subclass_sampling: SubclassSampling = "proportional",
        subclass_seed: int = 0,
        shard: str | None = None,
    ) -> None:
        super().__init__()
        self.shard = parse_shard(shard)
        check_subclass_options(subclasses_csv, subclass_sampling, prompt_template)
        for name, value in (("per_class", per_class), ("target", target)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        if "{class_name}" not in prompt_template:
            raise ValueError(
                f"prompt_template must contain '{{class_name}}', got {prompt_template!r}"
            )
        if image_size < 1 or batch_size < 1:
            raise ValueError(
                f"image_size and batch_size must be >= 1, got {image_size} and {batch_size}"
            )
        self.real = real
        self.per_class = per_class
        self.target = target
        self.from_real = from_real
        self.image_size = image_size
        self.prompt_template = prompt_template
        self.negatives_csv = negatives_csv
        self.base_seed = base_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.subclasses_csv = subclasses_csv
        self.subclass_sampling = subclass_sampling
        self.subclass_seed = subclass_seed
        self._sizes: dict[str, Counter] | None = None
        self._all: list[GenerationRequest] | None = None
        self.pending: list[GenerationRequest] = []  # the images this process still writes
        self.done: set[int] = set()  # requests whose image exists (not written again)

    @property
    def dataset_info(self) -> DatasetInfo:
        """The real dataset's info (linked to the model by the CLI)."""
        return self.real.dataset_info

    # ---- the request list --------------------------------------------------------------------
    def counts_to_generate(self) -> list[int]:
        """Images to generate per class, in class order."""
        counts = self.dataset_info.class_counts
        if self.per_class is not None:
            return [self.per_class] * len(counts)
        target = max(counts) if self.target is None else self.target
        return [max(target - count, 0) for count in counts]

    def class_subclasses(self, label: int, class_name: str, count: int) -> list[Subclass | None]:
        """The sub-class of each of a class's ``count`` requests (None: no sub-classes)."""
        if self.subclasses_csv is None:
            return [None] * count
        if self._sizes is None:
            self._sizes = subclass_sizes(self.subclasses_csv, self.real.index.train)
        sizes = self._sizes.get(class_name)
        if not sizes:
            raise ValueError(f"{self.subclasses_csv}: no sub-class of class {class_name!r}")
        return draw_subclasses(sizes, label, count, self.subclass_sampling, self.subclass_seed)

    def class_prompts(
        self, label: int, class_name: str, subclasses: list[Subclass | None]
    ) -> list[str]:
        """The positive prompt of each request of a class (one per entry of ``subclasses``)."""
        if self.subclasses_csv is None:
            return [render_prompt(self.prompt_template, class_name)] * len(subclasses)
        name = class_name.replace("_", " ")
        return [self.prompt_template.format(class_name=name, subclass=k) for k in subclasses]

    def build_requests(self) -> list[GenerationRequest]:
        """The full, deterministic request list (the same on every rank)."""
        info = self.dataset_info
        negatives = None
        if self.negatives_csv is not None:
            negatives = read_negatives(self.negatives_csv, info.class_names)
        sources: dict[int, list[str]] = {}
        for sample in self.real.index.train:
            sources.setdefault(sample.label, []).append(sample.path)
        requests: list[GenerationRequest] = []
        for label, (name, count) in enumerate(zip(info.class_names, self.counts_to_generate())):
            subclasses = self.class_subclasses(label, name, count)
            prompts = self.class_prompts(label, name, subclasses)
            if len(prompts) != count or len(subclasses) != count:
                raise ValueError(
                    f"class_prompts / class_subclasses gave {len(prompts)} / {len(subclasses)} "
                    f"entries for {count} requests"
                )
            negative = negatives[name] if negatives is not None else None
            for k, (prompt, subclass) in enumerate(zip(prompts, subclasses)):
                index = len(requests)
                requests.append(
                    GenerationRequest(
                        index=index,
                        label=label,
                        class_name=name,
                        seed=self.base_seed + index,
                        prompt=prompt,
                        negative_class_name=negative,
                        negative_prompt=(
                            None if negative is None
                            else render_prompt(self.prompt_template, negative)
                        ),
                        source_image=(
                            sources[label][k % len(sources[label])] if self.from_real else None
                        ),
                        subclass=subclass,
                    )
                )
        return requests

    @property
    def all_requests(self) -> list[GenerationRequest]:
        """Every request of the run, done or not (built once)."""
        if self._all is None:
            self._all = self.build_requests()
            self.pending = [r for r in self._all if self.in_shard(r)]
        return self._all

    def batch_of(self, request: GenerationRequest) -> int:
        """The number of the fixed batch that computes ``request``."""
        return request.index // self.batch_size

    def in_shard(self, request: GenerationRequest) -> bool:
        """Whether this process's shard (all requests without one) generates ``request``."""
        return self.shard is None or self.batch_of(request) % self.shard[1] == self.shard[0]

    def computed(self) -> list[GenerationRequest]:
        """Every request of the fixed batches that hold a pending one, in order."""
        open_batches = {self.batch_of(r) for r in self.pending}
        return [r for r in self.all_requests if self.batch_of(r) in open_batches]

    def skip(self, indices: set[int]) -> None:
        """Leave out the requests with these indices (their images exist already)."""
        self.done = set(indices)
        self.pending = [r for r in self.all_requests if r.index not in indices and self.in_shard(r)]
        shard = "" if self.shard is None else f" (shard {self.shard[0]}/{self.shard[1]})"
        rank_zero_info(
            f"generation: {len(self.all_requests)} requested, {len(indices)} already done, "
            f"{len(self.pending)} to generate{shard}"
        )

    # ---- Lightning hooks ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.real.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.all_requests  # noqa: B018 - builds the list once; a writer may then skip some

    def predict_dataloader(self) -> DataLoader:
        requests = self.computed()
        dataset = RequestDataset(requests, self.image_size)
        trainer = self.trainer  # set by the Trainer (None when used on its own)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            batches = [self.batch_of(r) for r in requests]
            sampler = ShardSampler(batches, trainer.world_size, trainer.global_rank)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_requests,
        )
