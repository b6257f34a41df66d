"""Images per second of real + synthetic classifier training: the input paths against the model.

In one run, on the same images (Food-101-like 512x384 JPEGs and 512 px PNGs, mixed as a
Food101-LT real + synthetic set is: about 1 JPEG in 5), the same batch plan and the same model:

(a) the ceiling: ResNet-18 training steps on random tensors already on the device;
(b) the file path: decode + crop + normalise + Mixup in the DataLoader workers (float32);
(c) the decoded cache: uint8 crops in the workers, normalise + Mixup on the device.

For (b) and (c) it reports the loader alone (images/s per worker) and end to end (with the
model), and each as a ratio to the ceiling.

    python benchmarks/classifier_throughput.py --small      # CPU: 224 px crops, small batches
    python benchmarks/classifier_throughput.py              # GPU: batch 512, bf16, channels_last
    python benchmarks/classifier_throughput.py --compile --workers 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from datamodules.dataset import ImageListDataset
from datamodules.decoded_cache import DecodedImages, build_decoded_cache
from datamodules.device_batch import PlannedUint8Collate, to_training_batch
from datamodules.layout import Sample
from datamodules.mixup import MixupCollate, MixupPlanner, PlannedBatches
from datamodules.transforms import train_crop, train_transform
from lightning_modules.backbone import build_resnet18

NUM_CLASSES = 101


@dataclass
class Result:
    device: str
    image_size: int
    batch_size: int
    workers: int
    images: int
    precision: str
    compile: bool
    ceiling_images_per_s: float
    files_loader_images_per_s_per_worker: float
    cache_loader_images_per_s_per_worker: float
    files_end_to_end_images_per_s: float
    cache_end_to_end_images_per_s: float
    files_ratio_to_ceiling: float
    cache_ratio_to_ceiling: float


def make_images(root: Path, n_jpeg: int, n_png: int) -> tuple[list[Sample], list[Sample]]:
    """Smooth random pictures: 512x384 JPEGs (quality 75) and 512 px PNGs."""
    rng = np.random.default_rng(0)

    def picture(h: int, w: int) -> Image.Image:
        coarse = rng.integers(0, 255, (h // 32, w // 32, 3), dtype=np.uint8)
        return Image.fromarray(coarse).resize((w, h), Image.BILINEAR)

    real, synthetic = [], []
    for i in range(n_jpeg):
        path = root / f"real_{i:05d}.jpg"
        picture(384, 512).save(path, quality=75)
        real.append(Sample(str(path), i % NUM_CLASSES))
    for i in range(n_png):
        path = root / f"synthetic_{i:05d}.png"
        picture(512, 512).save(path)
        synthetic.append(Sample(str(path), i % NUM_CLASSES))
    return real, synthetic


def _loaders(real, synthetic, cache_root, image_size, batch_size, workers):
    is_synthetic = [False] * len(real) + [True] * len(synthetic)
    planner = MixupPlanner("mixup_random", is_synthetic, batch_size, seed=0)
    files = ConcatDataset([ImageListDataset(real, train_transform(image_size)),
                           ImageListDataset(synthetic, train_transform(image_size))])
    cached = DecodedImages(cache_root, [s.label for s in real + synthetic], train_crop(image_size))
    common = dict(sampler=planner, batch_size=None, num_workers=workers,
                  persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    return (DataLoader(PlannedBatches(files), collate_fn=MixupCollate(NUM_CLASSES), **common),
            DataLoader(PlannedBatches(cached), collate_fn=PlannedUint8Collate(), **common))


def _loader_rate(loader, batches: int) -> float:
    """Images/s of ``batches`` batches after the first (worker start-up), epoch after epoch."""

    def forever():
        while True:
            yield from loader

    it, seen = forever(), 0
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        seen += (batch[0] if isinstance(batch, tuple) else batch.images).shape[0]
    return seen / (time.perf_counter() - start)


def _train_rate(step, batches, steps: int, device) -> float:
    step(next(batches))  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, seen = time.perf_counter(), 0
    for _ in range(steps):
        seen += step(next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def benchmark(small: bool, workers: int | None, compile_model: bool, device: str) -> Result:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    image_size = 224
    batch = 32 if small else 512
    workers = (0 if small else 8) if workers is None else workers
    n_jpeg, n_png = (48, 192) if small else (2048, 8192)
    steps = 3 if small else 20  # training steps per measurement
    loader_batches = 24 if small else 100
    bf16 = dev.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        real, synthetic = make_images(Path(tmp), n_jpeg, n_png)
        cache_root = build_decoded_cache(real + synthetic, 256, Path(tmp) / "cache")
        files, cached = _loaders(real, synthetic, cache_root, image_size, batch, workers)
        per_worker = max(workers, 1)
        files_loader = _loader_rate(files, loader_batches) / per_worker
        cache_loader = _loader_rate(cached, loader_batches) / per_worker

        model = build_resnet18(NUM_CLASSES).to(dev).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        forward = torch.compile(model) if compile_model else model

        def step(batch_xy) -> int:
            x, y = batch_xy
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = forward(x.contiguous(memory_format=torch.channels_last))
                loss = torch.nn.functional.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return x.shape[0]

        def random_batches():
            x = torch.randn(batch, 3, image_size, image_size, device=dev)
            y = torch.softmax(torch.randn(batch, NUM_CLASSES, device=dev), dim=1)
            while True:
                yield x, y

        def on_device(loader, cached_path: bool):
            for b in loader:
                if cached_path:
                    b.images, b.labels = b.images.to(dev, non_blocking=True), b.labels.to(dev)
                    b.partners = b.partners.to(dev)
                    yield to_training_batch(b, NUM_CLASSES)
                else:
                    yield b[0].to(dev, non_blocking=True), b[1].to(dev, non_blocking=True)

        ceiling = _train_rate(step, random_batches(), steps, dev)
        files_e2e = _train_rate(step, on_device(files, False), steps, dev)
        cache_e2e = _train_rate(step, on_device(cached, True), steps, dev)
    return Result(
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        image_size=image_size, batch_size=batch, workers=workers, images=n_jpeg + n_png,
        precision="bf16-mixed" if bf16 else "32-true", compile=compile_model,
        ceiling_images_per_s=ceiling,
        files_loader_images_per_s_per_worker=files_loader,
        cache_loader_images_per_s_per_worker=cache_loader,
        files_end_to_end_images_per_s=files_e2e, cache_end_to_end_images_per_s=cache_e2e,
        files_ratio_to_ceiling=files_e2e / ceiling, cache_ratio_to_ceiling=cache_e2e / ceiling,
    )


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized run")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default 8; small: 0)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = benchmark(args.small, args.workers, args.compile, args.device)
    print(
        f"{result.device}, {result.image_size} px, batch {result.batch_size}, "
        f"{result.workers} workers, {result.precision}, compile {result.compile}\n"
        f"  ceiling (random tensors on the device): {result.ceiling_images_per_s:.0f} images/s\n"
        f"  file path:      loader {result.files_loader_images_per_s_per_worker:.0f} images/s "
        f"per worker, end to end {result.files_end_to_end_images_per_s:.0f} images/s "
        f"({result.files_ratio_to_ceiling:.2f} of the ceiling)\n"
        f"  decoded cache:  loader {result.cache_loader_images_per_s_per_worker:.0f} images/s "
        f"per worker, end to end {result.cache_end_to_end_images_per_s:.0f} images/s "
        f"({result.cache_ratio_to_ceiling:.2f} of the ceiling)"
    )
    print(json.dumps(asdict(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2))
    return result


if __name__ == "__main__":
    main()
