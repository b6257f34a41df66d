"""A decoded-image cache: every training image decoded once into one uint8 memory-mapped file.

Decoding is the input path's cost (a 512 px PNG takes ~9 ms, a JPEG ~1 ms per core); a uint8 copy
out of a memory-mapped file costs microseconds and is shared by every worker and rank through the
page cache. ``prepare_data`` (one process per node) builds the cache; workers then only crop and
flip uint8 tensors, and float conversion, normalisation and Mixup happen on the device
(:mod:`datamodules.device_batch`).

Layout of ``<cache_dir>/<key>/``: ``pixels.u8`` (every image's ``(H, W, 3)`` bytes, concatenated)
and ``index.npy`` (``(N, 3)`` int64: offset, height, width). Images are stored at their size, or
resized (antialiased, aspect kept) so that their shorter side is ``short_side`` when larger. The
key hashes the image list (paths, labels, sizes and modification times), ``short_side`` and the
format version, so a changed file or list gets a new cache. The build writes to
``<key>.partial/``, records its progress every ``CHECKPOINT_EVERY`` images (a killed build
continues where it stopped) and renames the folder into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from datamodules.dataset import load_rgb
from datamodules.layout import Sample

CACHE_VERSION = 1
CHECKPOINT_EVERY = 1000


def cache_key(samples: Sequence[Sample], short_side: int) -> str:
    """Hash of what the cache's bytes depend on."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, short_side]).encode())
    for s in samples:
        stat = os.stat(s.path)
        h.update(f"{s.path}\t{s.label}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def decode(path: str, short_side: int) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8, shrunk (never enlarged) to ``short_side``."""
    image = TF.pil_to_tensor(load_rgb(path))  # (3, H, W) uint8
    if min(image.shape[-2:]) > short_side:
        image = TF.resize(image, short_side, antialias=True)
    return image.permute(1, 2, 0).numpy()


def build_decoded_cache(samples: Sequence[Sample], short_side: int, cache_dir: str | Path) -> Path:
    """The cache directory of ``samples``, built (or finished) first if needed."""
    root = Path(cache_dir) / cache_key(samples, short_side)
    if (root / "index.npy").is_file():
        return root
    partial = root.with_name(root.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    index = _resume_index(partial)
    with open(partial / "pixels.u8", "ab") as data:
        data.truncate(int(index[-1][0] + index[-1][1] * index[-1][2] * 3) if index else 0)
        data.seek(0, os.SEEK_END)
        for i in range(len(index), len(samples)):
            pixels = decode(samples[i].path, short_side)
            index.append((data.tell(), pixels.shape[0], pixels.shape[1]))
            data.write(np.ascontiguousarray(pixels).tobytes())
            if len(index) % CHECKPOINT_EVERY == 0:
                data.flush()
                _save_index(partial / "progress.npy", index)
        data.flush()
        os.fsync(data.fileno())
    _save_index(partial / "index.npy", index)
    (partial / "progress.npy").unlink(missing_ok=True)
    try:
        os.rename(partial, root)
    except OSError:  # another node finished first: its cache is the same
        shutil.rmtree(partial, ignore_errors=True)
    size = (root / "pixels.u8").stat().st_size / 2**20
    rank_zero_info(f"decoded cache: {len(samples)} images, {size:.1f} MiB in {root}")
    return root


def _resume_index(partial: Path) -> list[tuple[int, int, int]]:
    progress = partial / "progress.npy"
    if not progress.is_file():
        return []
    done = [tuple(int(v) for v in row) for row in np.load(progress)]
    rank_zero_info(f"decoded cache: continuing a build at image {len(done)}")
    return done


def _save_index(path: Path, index: list[tuple[int, int, int]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(index, dtype=np.int64).reshape(-1, 3))
    tmp.replace(path)


class DecodedImages(Dataset):
    """``(uint8 image (3, H, W) after ``transform``, label)`` from a decoded cache.

    Args:
        root: A directory of :func:`build_decoded_cache`.
        labels: The label of each cached image, in cache order.
        transform: uint8 tensor -> uint8 tensor (the random crop and flip), or None.
    """

    def __init__(self, root: str | Path, labels: Sequence[int], transform=None) -> None:
        self.root = Path(root)
        self.index = np.load(self.root / "index.npy")
        if len(self.index) != len(labels):
            raise ValueError(
                f"decoded cache {self.root} holds {len(self.index)} images, expected {len(labels)}"
            )
        self.labels = list(labels)
        self.transform = transform
        self._pixels: np.memmap | None = None  # opened in each process on first use

    def __len__(self) -> int:
        return len(self.index)

    def pixels(self, i: int) -> Tensor:
        if self._pixels is None:  # copy-on-write: a writable view without copying the file
            self._pixels = np.memmap(self.root / "pixels.u8", dtype=np.uint8, mode="c")
        offset, h, w = (int(v) for v in self.index[i])
        flat = self._pixels[offset : offset + h * w * 3]
        return torch.from_numpy(flat).reshape(h, w, 3).permute(2, 0, 1)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image = self.pixels(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[i]

    def __getstate__(self) -> dict:  # workers open their own memory map
        return {**self.__dict__, "_pixels": None}
