"""The decoded-image cache: the same batches as the file path, and a build that survives a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset

from datamodules import decoded_cache
from datamodules.dataset import ImageListDataset, load_rgb
from datamodules.decoded_cache import DecodedImages, build_decoded_cache
from datamodules.device_batch import PlannedUint8Collate, to_training_batch
from datamodules.manifest import read_manifest
from datamodules.mixup import MixupCollate, MixupPlanner, PlannedBatches
from datamodules.transforms import train_crop, train_transform


def _samples(datamodule, manifest):
    synthetic = [s for s in read_manifest(manifest, datamodule.dataset_info.class_names)]
    return datamodule.index.train, synthetic


@pytest.mark.parametrize("mode", ["mixup_all", "mixup_random"])
def test_same_plan_and_crops_give_the_same_mixed_batch(tiny_datamodule, synthetic_manifest,
                                                       tmp_path, mode):
    real, synthetic = _samples(tiny_datamodule, synthetic_manifest)
    samples = [*real, *synthetic]
    files = ConcatDataset([ImageListDataset(real, train_transform(16, (0.5, 1.0))),
                           ImageListDataset(synthetic, train_transform(16, (0.5, 1.0)))])
    root = build_decoded_cache(samples, 16, tmp_path / "cache")
    cached = DecodedImages(root, [s.label for s in samples], train_crop(16, (0.5, 1.0)))
    is_synthetic = [False] * len(real) + [True] * len(synthetic)
    planner = MixupPlanner(mode, is_synthetic, batch_size=8, seed=3)
    mix_files, mix_cache = MixupCollate(10), PlannedUint8Collate()
    for plan in list(planner)[:3]:
        x, y = mix_files(PlannedBatches(files)[plan])
        x_cache, y_cache = to_training_batch(mix_cache(PlannedBatches(cached)[plan]), 10)
        assert x_cache.dtype == torch.float32 and torch.equal(x_cache, x)
        assert torch.equal(y_cache, y)


def test_cache_holds_the_decoded_pixels_and_shrinks_large_images(tiny_datamodule, tmp_path):
    samples = tiny_datamodule.index.train[:5]
    cache = DecodedImages(build_decoded_cache(samples, 16, tmp_path), [s.label for s in samples])
    image, label = cache[3]
    assert label == samples[3].label and image.dtype == torch.uint8
    decoded = torch.from_numpy(np.asarray(load_rgb(samples[3].path))).permute(2, 0, 1)
    assert torch.equal(image, decoded)
    small = DecodedImages(build_decoded_cache(samples, 8, tmp_path), [s.label for s in samples])
    assert small[0][0].shape == (3, 8, 8)  # the shorter side shrunk to the requested size
    assert build_decoded_cache(samples, 16, tmp_path) == cache.root  # cached, not rebuilt


def test_a_killed_build_continues_where_it_stopped(tiny_datamodule, tmp_path, monkeypatch):
    samples = tiny_datamodule.index.train[:25]
    clean = build_decoded_cache(samples, 16, tmp_path / "clean")
    monkeypatch.setattr(decoded_cache, "CHECKPOINT_EVERY", 4)
    real_decode, calls = decoded_cache.decode, []

    def dies_at_the_eleventh(path, short_side):
        calls.append(path)
        if len(calls) == 11:
            raise KeyboardInterrupt("killed")
        return real_decode(path, short_side)

    monkeypatch.setattr(decoded_cache, "decode", dies_at_the_eleventh)
    with pytest.raises(KeyboardInterrupt):
        build_decoded_cache(samples, 16, tmp_path / "killed")
    assert not (tmp_path / "killed" / clean.name).exists()  # no half-written cache in place
    again = []
    monkeypatch.setattr(decoded_cache, "decode", lambda p, s: again.append(p) or real_decode(p, s))
    resumed = build_decoded_cache(samples, 16, tmp_path / "killed")
    assert len(again) == 25 - 8  # continued after the last recorded progress (8 images)
    for name in ("pixels.u8", "index.npy"):
        assert (resumed / name).read_bytes() == (clean / name).read_bytes()


@pytest.mark.parametrize("flip", [True, False])
def test_the_train_crop_equals_torchvisions_transforms(flip):
    """The direct crop draws and computes what RandomResizedCrop + RandomHorizontalFlip do."""
    from torchvision.transforms import v2

    resized_crop = v2.RandomResizedCrop(24, scale=(0.2, 1.0), antialias=True)
    reference = v2.Compose([resized_crop, v2.RandomHorizontalFlip()]) if flip else resized_crop
    crop = train_crop(24, (0.2, 1.0), flip=flip)
    image = torch.randint(0, 256, (40, 57, 3), dtype=torch.uint8).permute(2, 0, 1)  # cache view
    flipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        expected = reference(image)
        torch.manual_seed(seed)
        out = crop(image)
        assert out.shape == (3, 24, 24) and torch.equal(out, expected)
        torch.manual_seed(seed)
        flipped += not torch.equal(out, resized_crop(image))
    assert (10 <= flipped <= 30) if flip else flipped == 0
