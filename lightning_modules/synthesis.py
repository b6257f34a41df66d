"""Predict-only image synthesis: a batch of generation requests -> images + their records.

The model is a frozen Stable Diffusion read from a LOCAL diffusers directory (or a tiny random one
for tests); sampling is the project's one loop (:func:`lightning_modules.sampling.sample`) with
DPM-Solver++ built ``from_config`` of the model's scheduler. Device and dtype come from the
Trainer (``precision: 16-true`` casts the whole pipeline to fp16, as diffusers'
``torch_dtype=float16``). Every image uses its own CPU generator seeded with the request's seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import lightning as L
from diffusers import DPMSolverMultistepScheduler
from torch import Tensor

from datamodules.generation import GenerationRequest
from datamodules.info import DatasetInfo
from datamodules.manifest import ManifestRow
from lightning_modules.diffusion import (
    Acceleration,
    DiffusionComponents,
    TinyDiffusionConfig,
    accelerate,
    encode_prompts,
    resolve_components,
)
from lightning_modules.sampling import GuidanceConfig, GuidanceTrace, make_generators, sample


@dataclass
class SynthesisOutput:
    """What ``predict_step`` returns: images and one manifest record per image.

    Attributes:
        images: (B, 3, H, W) float32 in [0, 1], on the CPU.
        rows: The generation records; ``rows[b].path`` is relative to the output directory.
        guidance: Per image, what the guidance did at every step
            (:meth:`~lightning_modules.sampling.GuidanceTrace.per_image`), or None.
    """

    images: Tensor
    rows: list[ManifestRow]
    guidance: list[dict] | None = None


class Synthesizer(L.LightningModule):
    """Generates one image per request with the configured guidance.

    Args:
        pretrained_model_name_or_path: Local diffusers-format directory (e.g. SD v1.4). Exactly
            one of this and ``tiny`` must be set.
        tiny: Sizes of a tiny random model (tests, CPU smoke runs).
        guidance: Sampler variant and its hyper-parameters.
        num_inference_steps: N, the scheduler's number of steps.
        strength: img2img strength when a request has a source image (int(N * strength) steps
            run); requests without one are generated from pure noise with all N steps.
        acceleration: Sampling speed-ups of the UNet (channels_last, fused QKV, torch.compile),
            applied to a copy made when prediction starts, on the Trainer's device and dtype.
        record_guidance: Record the guidance diagnostics of every image and step (gamma,
            tau_hat, squared norms, CCFG weights, effective coefficients); the generation writer
            keeps them in ``guidance.jsonl`` beside the manifest.
        dataset_info: Linked from the datamodule (unused; accepted like every project module).
    """

    def __init__(
        self,
        pretrained_model_name_or_path: str | None = None,
        tiny: TinyDiffusionConfig | None = None,
        guidance: GuidanceConfig = GuidanceConfig(),
        num_inference_steps: int = 50,
        strength: float = 1.0,
        acceleration: Acceleration = Acceleration(),
        record_guidance: bool = True,
        dataset_info: DatasetInfo | None = None,
    ) -> None:
        super().__init__()
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        components = resolve_components(pretrained_model_name_or_path, tiny)
        self.model_name = (
            str(pretrained_model_name_or_path) if tiny is None
            else "tiny:" + json.dumps(asdict(tiny), sort_keys=True)
        )
        # Submodules, so that the Trainer moves and casts them; frozen.
        self.unet = components.unet.requires_grad_(False)
        self.text_encoder = components.text_encoder.requires_grad_(False)
        self.vae = None if components.vae is None else components.vae.requires_grad_(False)
        self.tokenizer = components.tokenizer
        self.model_scheduler = components.scheduler
        self.scheduler = DPMSolverMultistepScheduler.from_config(components.scheduler.config)
        self.guidance = guidance
        # A resumed sharded run may leave a rank with no image to make (GenerationRequests'
        # ShardSampler): allowed, predict has no per-batch collective.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.num_inference_steps = num_inference_steps
        self.strength = strength
        self.acceleration = acceleration
        self.record_guidance = record_guidance
        self._sampling: DiffusionComponents | None = None  # built in on_predict_start

    def on_predict_start(self) -> None:
        """Prepare the sampling copies once the Trainer has moved and cast the modules."""
        self._sampling = accelerate(self.components, self.acceleration)

    def on_predict_end(self) -> None:
        """Release the sampling copies (the compiled UNet holds its own weights)."""
        self._sampling = None

    @property
    def components(self) -> DiffusionComponents:
        """The model's parts, on the module's current device and dtype."""
        return DiffusionComponents(
            self.unet, self.text_encoder, self.tokenizer, self.model_scheduler, self.vae
        )

    def params(self, strength: float, height: int, width: int) -> dict:
        """The sampler record stored with every image."""
        return {
            **self.guidance.to_dict(),
            "num_inference_steps": self.num_inference_steps,
            "strength": strength,
            "scheduler": type(self.scheduler).__name__,
            "algorithm_type": self.scheduler.config.get("algorithm_type"),
            "dtype": str(self.unet.dtype).removeprefix("torch."),
            "precision": str(self.trainer.precision) if self._trainer is not None else None,
            "height": height,
            "width": width,
            "acceleration": asdict(self.acceleration),
        }

    def predict_step(self, batch: dict, batch_idx: int = 0) -> SynthesisOutput:
        """Generate the batch's requests (see ``datamodules.generation.collate_requests``)."""
        requests, init_images = batch["requests"], batch["images"]
        components = self.components if self._sampling is None else self._sampling
        cond = encode_prompts(components, [r.prompt for r in requests])  # (B, L, D)
        uncond = encode_prompts(components, [""])  # (1, L, D)
        neg = None
        if self.guidance.uses_negative:
            lacking = sorted({r.class_name for r in requests if r.negative_prompt is None})
            if lacking:
                raise ValueError(
                    f"guidance variant {self.guidance.variant!r} needs a negative class per "
                    f"request; classes {lacking} have none (set data.init_args.negatives_csv)"
                )
            neg = encode_prompts(components, [r.negative_prompt for r in requests])
        strength = self.strength if init_images is not None else 1.0
        trace = GuidanceTrace(self.guidance.ccfg_norm) if self.record_guidance else None
        images = sample(
            components,
            cond,
            uncond,
            self.guidance,
            make_generators([r.seed for r in requests]),  # CPU: independent of the device
            neg=neg,
            scheduler=self.scheduler,
            num_inference_steps=self.num_inference_steps,
            init_images=init_images,
            strength=strength,
            trace=trace,
        ).cpu()
        params = self.params(strength, images.shape[-2], images.shape[-1])
        rows = [self.manifest_row(r, params) for r in requests]
        return SynthesisOutput(images, rows, None if trace is None else trace.per_image())

    def manifest_row(self, request: GenerationRequest, params: dict) -> ManifestRow:
        """The record stored with the image of ``request`` (``params``: :meth:`params`)."""
        return ManifestRow(
            path=request.relative_path,
            label=request.label,
            class_name=request.class_name,
            seed=request.seed,
            sampler=self.guidance.variant,
            negative_class_name=(
                request.negative_class_name if self.guidance.uses_negative else None
            ),
            source_image=request.source_image,
            params=params,
            model=self.model_name,
            prompt=request.prompt,
            subclass=request.subclass,
        )

    def expected_row(self, request: GenerationRequest, source_image_size: int) -> ManifestRow:
        """The record this model would store for ``request``, without generating it.

        ``source_image_size`` is the side source images are resized to (the datamodule's
        ``image_size``); requests without a source image use the model's default size.
        """
        if request.source_image is not None:
            size, strength = source_image_size, self.strength
        else:
            size, strength = self.components.default_image_size, 1.0
        return self.manifest_row(request, self.params(strength, size, size))
