"""Writes generated images (PNG + generation record) and rebuilds ``manifest.jsonl`` from them.

Safe to kill at any point and resumable:

1. ``setup``: rank 0 deletes temporary files a killed run left behind and lists the requests
   whose PNG exists and decodes with its record; the list is broadcast and the datamodule skips
   those requests, so every rank shards the same pending list (each image exactly once). A
   request is computed in its fixed batch (``datamodules/generation.py``), so a batch that holds
   a missing image is computed whole and only its missing images are written.
   An existing image whose record differs from what this run would write (another sampler,
   prompt, negative class, model, ...) is never silently kept: the run stops with an error
   naming the folder and the setting, unless ``regenerate_changed`` is set.
2. Every image is written to a temporary name in its final folder and renamed into place
   (``os.replace`` is atomic), so a PNG that exists is complete.
3. ``teardown``: after a barrier, rank 0 rebuilds ``manifest.jsonl`` from the records embedded in
   the PNGs of the whole request list (atomic write), so the manifest always matches the files.
   The guidance diagnostics of each image travel the same way (a second text chunk of its PNG)
   into ``guidance.jsonl`` and ``guidance_summary.json``; their summary goes to the log and, when
   the run has a logger, to it (``guidance/<field>_median`` per step).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from datamodules.atomic import atomic_write_text
from datamodules.generation import GenerationRequest, GenerationRequests
from datamodules.manifest import (
    GUIDANCE_SUMMARY_NAME,
    MANIFEST_NAME,
    ManifestRow,
    write_guidance,
    write_manifest,
)
from lightning_modules.sampling.diagnostics import summarize, summary_line

RECORD_KEY = "generation"
PROGRESS_SECONDS = 30.0  # a progress line (images/s, ETA) at most this often
GUIDANCE_KEY = "guidance"
TMP_SUFFIX = ".tmp"


def write_png(
    path: Path, image: torch.Tensor, row: ManifestRow, guidance: dict | None = None
) -> None:
    """Write a (3, H, W) image in [0, 1] as PNG with ``row`` (and the image's guidance
    diagnostics) as text metadata, atomically."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    info = PngInfo()
    info.add_text(RECORD_KEY, row.to_json())
    if guidance is not None:
        info.add_text(GUIDANCE_KEY, json.dumps(guidance))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        Image.fromarray(array).save(f, format="PNG", pnginfo=info)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_record(path: Path, decode: bool = False) -> ManifestRow | None:
    """The generation record of a PNG, or None if it is missing, unreadable or has none.

    The record is a text chunk written before the pixel data, so it is read without decoding the
    image; ``decode=True`` also decodes the pixels (catches files damaged after writing).
    """
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            text = image.info.get(RECORD_KEY)
        return None if text is None else ManifestRow(**json.loads(text))
    except (OSError, SyntaxError, ValueError, TypeError):
        return None


def read_png_texts(path: Path) -> tuple[ManifestRow | None, dict | None]:
    """(generation record, guidance diagnostics) stored in a PNG, each None if absent."""
    try:
        with Image.open(path) as image:
            record, guidance = image.info.get(RECORD_KEY), image.info.get(GUIDANCE_KEY)
        row = None if record is None else ManifestRow(**json.loads(record))
        return row, None if guidance is None else json.loads(guidance)
    except (OSError, SyntaxError, ValueError, TypeError):
        return None, None


def remove_temporary_files(output_dir: Path) -> int:
    """Delete the temporary files of interrupted writes; returns how many."""
    stale = list((output_dir / "images").glob(f"*/.*{TMP_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def existing_records(
    output_dir: Path, requests: Sequence[GenerationRequest], decode: bool = False
) -> dict[int, ManifestRow]:
    """Records of the requests whose PNG exists, is readable and records the request's seed."""
    found = {}
    for request in requests:
        row = read_record(output_dir / request.relative_path, decode)
        if row is not None and row.seed == request.seed and row.class_name == request.class_name:
            found[request.index] = row
    return found


# How an image was computed, not what it is: ``dtype`` follows ``precision`` (compared), and the
# accelerated UNet matches the eager one to rounding. A resumed run may change them.
EXECUTION_PARAMS = frozenset({"acceleration", "dtype"})


def _settings(row: ManifestRow) -> dict:
    record = json.loads(row.to_json())  # JSON types on both sides (tuples -> lists)
    params = record.pop("params")
    record.update({f"params.{k}": v for k, v in params.items() if k not in EXECUTION_PARAMS})
    return record


def record_differences(stored: ManifestRow, expected: ManifestRow) -> dict[str, tuple]:
    """``setting -> (stored, expected)`` for every setting in which the two records differ."""
    a, b = _settings(stored), _settings(expected)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


class ChangedSettingsError(RuntimeError):
    """Images in the output folder were made with other settings than this run's."""


def changed_settings_message(
    output_dir: Path, count: int, example: GenerationRequest, diff: dict[str, tuple]
) -> str:
    lines = "\n".join(f"  {k}: stored {old!r}, this run {new!r}" for k, (old, new) in diff.items())
    return (
        f"{count} existing image(s) in {output_dir} were generated with other settings "
        f"than this run's; e.g. {example.relative_path}:\n{lines}\n"
        "Write to a new folder (trainer.default_root_dir), delete this one, or set the "
        "GenerationWriter's regenerate_changed: true to replace those images."
    )


class GenerationWriter(BasePredictionWriter):
    """Writes ``images/<class>/<seed>.png`` per generated image and the manifest at the end.

    Needs a :class:`~datamodules.generation.GenerationRequests` datamodule and a model whose
    ``predict_step`` returns ``SynthesisOutput`` (images + manifest rows).

    Args:
        output_dir: Output directory; default: the trainer's ``default_root_dir``.
        verify_existing: On resume, fully decode every existing PNG before skipping its request
            (slower; the atomic writes already guarantee that a PNG that exists is complete).
        regenerate_changed: Replace existing images whose record differs from what this run
            would write, instead of stopping with :class:`ChangedSettingsError`.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        verify_existing: bool = False,
        regenerate_changed: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.verify_existing = verify_existing
        self.regenerate_changed = regenerate_changed
        self._root: Path | None = None
        self._written = 0
        self._start = 0.0
        self._pending = 0
        self._next_report = 0.0

    @property
    def root(self) -> Path:
        if self._root is None:
            raise RuntimeError("GenerationWriter.root is known only after setup")
        return self._root

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, GenerationRequests):
            raise TypeError(
                "GenerationWriter needs a datamodules.generation.GenerationRequests datamodule, "
                f"got {type(datamodule).__name__}"
            )
        self._root = Path(self.output_dir or trainer.default_root_dir)
        self._written, self._start = 0, 0.0
        plan: tuple[set[int], str | None] | None = None
        if trainer.is_global_zero:
            plan = self._plan(pl_module, datamodule)
        done, error = trainer.strategy.broadcast(plan, src=0)
        if error is not None:  # on every rank, so that none waits for the others
            raise ChangedSettingsError(error)
        datamodule.skip(done)

    def _plan(
        self, pl_module: L.LightningModule, datamodule: GenerationRequests
    ) -> tuple[set[int], str | None]:
        """(requests already done, error message or None); run on rank 0."""
        removed = remove_temporary_files(self.root)
        if removed:
            rank_zero_info(f"generation: removed {removed} temporary file(s) of a killed run")
        requests = datamodule.all_requests
        records = existing_records(self.root, requests, self.verify_existing)
        if not records:
            return set(), None
        if not hasattr(pl_module, "expected_row"):
            rank_zero_warn(
                f"generation: {type(pl_module).__name__} has no expected_row(); existing images "
                f"in {self.root} are kept without checking their settings"
            )
            return set(records), None
        by_index = {r.index: r for r in requests}
        changed = {}
        for index, stored in records.items():
            expected = pl_module.expected_row(by_index[index], datamodule.image_size)
            differences = record_differences(stored, expected)
            if differences:
                changed[index] = differences
        if changed and not self.regenerate_changed:
            first = next(iter(changed))
            message = changed_settings_message(
                self.root, len(changed), by_index[first], changed[first]
            )
            return set(), message
        if changed:
            rank_zero_info(f"generation: replacing {len(changed)} image(s) of other settings")
        return set(records) - set(changed), None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._written, self._start = 0, time.perf_counter()
        self._pending = len(trainer.datamodule.pending)
        self._next_report = time.perf_counter() + PROGRESS_SECONDS

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        guidance = prediction.guidance or [None] * len(prediction.rows)
        done = trainer.datamodule.done  # computed with their fixed batch, already on disk
        for image, row, record, request in zip(
            prediction.images, prediction.rows, guidance, batch["requests"]
        ):
            if request.index not in done:
                write_png(self.root / row.path, image, row, record)
                self._written += 1
        now = time.perf_counter()
        if now >= self._next_report and trainer.is_global_zero:
            self._next_report = now + PROGRESS_SECONDS
            rate = self._written / max(now - self._start, 1e-9)  # this process's images/s
            left = max(self._pending - self._written * trainer.world_size, 0)
            eta = left / max(rate * trainer.world_size, 1e-9)
            rank_zero_info(f"generation: {self._written * trainer.world_size} of {self._pending} "
                           f"images, {rate * trainer.world_size:.1f} images/s, ETA {eta:.0f} s")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict" or self._root is None:
            return
        seconds = time.perf_counter() - self._start if self._start else 0.0
        stats = torch.tensor([float(self._written)], device=pl_module.device)  # NCCL: on device
        written = int(trainer.strategy.reduce(stats, reduce_op="sum").item())
        stats = torch.tensor([seconds], device=pl_module.device)
        seconds = float(trainer.strategy.reduce(stats, reduce_op="max").item())
        trainer.strategy.barrier("generation_writer_manifest")
        if trainer.is_global_zero:
            paths = [r.relative_path for r in trainer.datamodule.all_requests]
            _, _, summary = rebuild_set(self.root, paths)
            if summary is not None:
                _log_guidance(trainer, summary)
        if written:
            rank_zero_info(
                f"generation: {written} images in {seconds:.1f} s "
                f"({written / max(seconds, 1e-9):.2f} images/s)"
            )
        trainer.strategy.barrier("generation_writer_done")


def rebuild_set(root: Path, relative_paths: Sequence[str]) -> tuple[int, int, dict | None]:
    """Rewrite ``manifest.jsonl``, ``guidance.jsonl`` and ``guidance_summary.json`` of a set
    from the records in the PNGs at ``relative_paths`` (in that order), atomically.

    Returns:
        (images found, images missing, the guidance summary or None).
    """
    rows, guidance, missing = [], [], 0
    for relative in relative_paths:
        row, record = read_png_texts(root / relative)
        if row is None:
            missing += 1
            continue
        rows.append(row)
        if record is not None:
            guidance.append({"path": row.path, "sampler": row.sampler, **record})
    path = write_manifest(root / MANIFEST_NAME, rows)
    message = f"generation: manifest {path} has {len(rows)} of {len(relative_paths)} images"
    if missing:
        rank_zero_warn(f"{message}; {missing} missing: run the same command again to finish "
                       "(sharded: once every shard has finished, python -m experiments manifest "
                       f"--directory {root})")
    else:
        rank_zero_info(message)
    summary = None
    if guidance:
        write_guidance(root, guidance)
        summary = {"sampler": guidance[0]["sampler"], "unit": "per image", **summarize(guidance)}
        atomic_write_text(root / GUIDANCE_SUMMARY_NAME, json.dumps(summary, indent=1))
        rank_zero_info(f"generation: guidance ({summary['sampler']}) {summary_line(summary)}")
    return len(rows), missing, summary


def rebuild_manifest_of_directory(directory: str) -> int:
    """``python -m experiments manifest --directory <set>``: the set's manifest (and guidance
    files) from every PNG under ``<set>/images``, in request order (by seed), e.g. after the
    shards of a sharded generation have all finished. Returns the number of images."""
    root = Path(directory)
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"directory={directory!r}: no images/ folder of generated PNGs")
    remove_temporary_files(root)
    records = []
    for path in sorted((root / "images").glob("*/*.png")):
        row = read_record(path)
        if row is None:
            raise ValueError(f"{path}: no generation record (not written by this project?)")
        records.append((row.seed, str(path.relative_to(root))))
    found, _, _ = rebuild_set(root, [relative for _, relative in sorted(records)])
    return found


def _log_guidance(trainer: L.Trainer, summary: dict) -> None:
    """Per-step medians of the coefficients to the run's loggers (W&B: one chart per field)."""
    for logger in trainer.loggers:
        for step in range(summary["steps"]):
            metrics = {f"guidance/{name}": summary[name][step]
                       for name in ("coef_pos_median", "coef_neg_median", "gamma")
                       if summary.get(name) is not None}
            logger.log_metrics(metrics, step=step)
