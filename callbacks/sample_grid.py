"""A grid of samples per class with classifier-free guidance, every N training steps.

Rows are classes, columns the ``per_class`` samples of a class (ClusDiff: one sub-class prompt per
column, largest sub-classes first, from the datamodule's ``grid_prompts``). Seeds are fixed, so
grids at different steps show the same noise. Saved as ``<run_dir>/samples/step<NNNNNN>.png`` and
logged with ``WandbLogger.log_image`` when a W&B logger is attached (other loggers: file only).
Sampling runs on rank 0 only, with the EMA weights when the module keeps an EMA.
"""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lightning_modules.diffusion.components import encode_prompts
from lightning_modules.sampling.guidance import GuidanceConfig
from lightning_modules.sampling.sampler import make_generators, sample

DEFAULT_TEMPLATE = "A photo of {class_name}, a type of food."


class SampleGrid(L.Callback):
    """Log a per-class grid of CFG samples of a :class:`DiffusionFineTune` during ``fit``.

    Args:
        every_n_steps: Sample when ``global_step`` is a multiple of this (> 0).
        per_class: Samples per class (grid columns).
        max_classes: At most this many classes (the first ones; None: all).
        guidance_scale: CFG scale w.
        num_inference_steps: Sampler steps (DPM-Solver++ from the model's scheduler config).
        seed: Seed of the first image; image i uses ``seed + i``.
        at_fit_end: Also sample once when ``fit`` ends.
        output_dir: Folder of the PNG files; default ``<run_dir>/samples``.
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        per_class: int = 4,
        max_classes: int | None = None,
        guidance_scale: float = 5.0,
        num_inference_steps: int = 25,
        seed: int = 0,
        at_fit_end: bool = True,
        output_dir: str | None = None,
    ) -> None:
        if every_n_steps < 1 or per_class < 1:
            raise ValueError(
                f"SampleGrid: every_n_steps and per_class must be >= 1, got {every_n_steps}, "
                f"{per_class}"
            )
        self.every_n_steps = every_n_steps
        self.per_class = per_class
        self.max_classes = max_classes
        self.guidance = GuidanceConfig(variant="cfg", guidance_scale=guidance_scale)
        self.num_inference_steps = num_inference_steps
        self.seed = seed
        self.at_fit_end = at_fit_end
        self.output_dir = output_dir
        self._last_step = -1
        self.saved: list[Path] = []

    def _prompts(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[list[str]]:
        grid_prompts = getattr(trainer.datamodule, "grid_prompts", None)
        if grid_prompts is not None:
            rows = grid_prompts(self.per_class)
        else:
            names = pl_module.dataset_info.class_names
            rows = [[DEFAULT_TEMPLATE.format(class_name=n.replace("_", " "))] * self.per_class
                    for n in names]
        return rows[: self.max_classes]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.log_grid(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at_fit_end and trainer.global_step != self._last_step:
            self.log_grid(trainer, pl_module)

    @rank_zero_only
    def log_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Sample the grid now, save the PNG and log it."""
        step = trainer.global_step
        self._last_step = step
        rows = self._prompts(trainer, pl_module)
        prompts = [p for row in rows for p in row]
        components = pl_module.components
        ema = getattr(pl_module, "ema", None)
        weights = ema.applied() if ema is not None else contextlib.nullcontext()
        was_training = components.unet.training
        components.unet.eval()
        try:
            with weights, trainer.precision_plugin.forward_context():
                cond = encode_prompts(components, prompts)  # (N, L, D)
                uncond = encode_prompts(components, [""])  # (1, L, D)
                seeds = range(self.seed, self.seed + len(prompts))
                images = sample(
                    components, cond, uncond, self.guidance, make_generators(seeds),
                    num_inference_steps=self.num_inference_steps,
                )  # (N, 3, H, W) in [0, 1]
        finally:
            components.unet.train(was_training)
        from experiments.plots import plot_prompt_grid  # matplotlib only when writing

        out = Path(self.output_dir or Path(trainer.default_root_dir) / "samples")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"step{step:06d}.png"
        plot_prompt_grid(images, [textwrap.fill(row[0], 24) for row in rows], path)
        self.saved.append(path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                caption = " | ".join(row[0] for row in rows)
                logger.log_image(key="samples", images=[str(path)], step=step, caption=[caption])

