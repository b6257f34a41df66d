"""Text-to-image fine-tune of Stable Diffusion's UNet (ClusDiff, and plain fine-tuned SD).

Batches are ``(images in [-1, 1], prompts)`` (:class:`datamodules.diffusion_data.
DiffusionFineTuneData`). The VAE and the text encoder are frozen; the UNet is trained fully or
through LoRA; the loss is diffusers' ``train_text_to_image`` loss:

    x0 = vae(image) * scaling_factor  (the image itself in pixel space)
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n,   n ~ N(0, I) (+ noise_offset * N(0, I) per channel)
    target = n (epsilon) | sqrt(abar_t) n - sqrt(1 - abar_t) x0 (v_prediction)
    loss = || unet(x_t, t, y) - target ||^2,      y = text_encoder(prompt or "" with p_drop)

Checkpoints hold the trained UNet weights (only the LoRA matrices with LoRA), the optimizer and
the UNet EMA; the frozen parts are rebuilt from their source on load.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, get_args

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from datamodules.epoch_seeds import derive_seed, run_seed, seed_global_generators
from datamodules.info import DatasetInfo
from lightning_modules.diffusion.components import (
    DiffusionComponents,
    TinyDiffusionConfig,
    encode_prompts,
    resolve_components,
    save_pipeline,
)
from lightning_modules.diffusion.ema import UNetEMA
from lightning_modules.sampling.guidance import GuidanceConfig
from lightning_modules.sampling.sampler import make_generators, sample
from lightning_modules.schedules import ScheduleName, warmup_then

_COMPUTE_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


class DiffusionFineTune(L.LightningModule):
    """Fine-tune the UNet of a (tiny or local pre-trained) Stable Diffusion on image/prompt pairs.

    Args:
        dataset_info: Linked from the datamodule (recorded in the hyper-parameters).
        pretrained_model_name_or_path: LOCAL diffusers-format directory (never a hub id).
        tiny: Build a tiny random model instead (tests, the embedded dataset); exactly one of
            ``pretrained_model_name_or_path`` and ``tiny`` must be set.
        prompt_dropout: Probability of replacing a prompt by "" (classifier-free guidance).
        learning_rate: AdamW learning rate.
        adam_beta1: AdamW beta1.
        adam_beta2: AdamW beta2.
        adam_weight_decay: AdamW weight decay.
        adam_epsilon: AdamW epsilon.
        warmup_steps: Linear learning-rate warm-up (optimizer steps).
        lr_schedule: After the warm-up, ``"constant"`` or ``"cosine"`` decay to 0 at the end of
            the fit.
        use_8bit_adam: bitsandbytes' AdamW8bit (GPU; bitsandbytes must be installed).
        lora_rank: Train LoRA adapters of this rank on the UNet attention projections instead
            of the full UNet (saved pipelines hold the fused weights).
        lora_alpha: LoRA alpha (default: ``lora_rank``).
        train_only: Train only the UNet parameters whose names contain one of these strings,
            the rest frozen (None: the full UNet). ``["attn2.to_k", "attn2.to_v"]`` trains the
            keys and values of the cross-attention, the projections of the text condition, as
            Custom Diffusion (Kumari et al., CVPR 2023) does to bind a new word. Not with LoRA.
        gradient_checkpointing: Recompute UNet activations in the backward pass.
        ema_decay: Keep an EMA of the trained UNet weights with this decay (None: off); the
            saved pipeline then holds the EMA weights.
        noise_offset: Offset noise scale (0: off).
        save_pipeline_dir: Where the diffusers pipeline is saved at the end of ``fit``; relative
            paths are relative to the run directory (None: not saved).
    """

    def __init__(
        self,
        dataset_info: DatasetInfo | None = None,
        pretrained_model_name_or_path: str | None = None,
        tiny: TinyDiffusionConfig | None = None,
        prompt_dropout: float = 0.1,
        learning_rate: float = 1e-4,
        adam_beta1: float = 0.9,
        adam_beta2: float = 0.999,
        adam_weight_decay: float = 1e-2,
        adam_epsilon: float = 1e-8,
        warmup_steps: int = 0,
        lr_schedule: ScheduleName = "constant",
        use_8bit_adam: bool = False,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        train_only: Sequence[str] | None = None,
        gradient_checkpointing: bool = False,
        ema_decay: float | None = None,
        noise_offset: float = 0.0,
        save_pipeline_dir: str | None = "pipeline",
    ) -> None:
        super().__init__()
        if not 0.0 <= prompt_dropout < 1.0:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {prompt_dropout}")
        if lora_rank is not None and lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 or None, got {lora_rank}")
        if train_only is not None and (lora_rank is not None or not train_only):
            raise ValueError("train_only must be a non-empty list of names, and not with lora_rank")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if lr_schedule not in get_args(ScheduleName):
            raise ValueError(
                f"lr_schedule {lr_schedule!r}: expected one of {get_args(ScheduleName)}"
            )
        self.save_hyperparameters(ignore=["dataset_info", "tiny"])
        self.hparams["tiny"] = None if tiny is None else asdict(tiny)
        self.hparams["dataset_info"] = None if dataset_info is None else asdict(dataset_info)
        self.dataset_info = dataset_info
        self.tiny = tiny
        self.components = self._build_components()
        self.unet = self.components.unet
        self.text_encoder = self.components.text_encoder.requires_grad_(False)
        self.vae = self.components.vae
        if self.vae is not None:
            self.vae.requires_grad_(False)
        self.noise_scheduler = DDPMScheduler.from_config(self.components.scheduler.config)
        prediction_type = self.noise_scheduler.config.prediction_type
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"scheduler prediction_type {prediction_type!r}: expected epsilon or v_prediction"
            )
        self.unet.train()
        if lora_rank is not None:
            self._add_lora(lora_rank, lora_alpha or lora_rank)
        if train_only is not None:
            self._train_only(list(train_only))
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.ema = None if ema_decay is None else UNetEMA(self.unet, ema_decay)
        self.strict_loading = False  # frozen parts are not in checkpoints (checked on load)

    # ---- construction ------------------------------------------------------------------------
    def _build_components(self) -> DiffusionComponents:
        return resolve_components(self.hparams.pretrained_model_name_or_path, self.tiny)

    def _add_lora(self, rank: int, alpha: float) -> None:
        from peft import LoraConfig

        self.unet.requires_grad_(False)
        self.unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=alpha,
                init_lora_weights="gaussian",
                target_modules=["to_k", "to_q", "to_v", "to_out.0"],
            )
        )

    def _train_only(self, names: list[str]) -> None:
        trained = 0
        for name, param in self.unet.named_parameters():
            param.requires_grad_(any(n in name for n in names))
            trained += param.requires_grad
        if not trained:
            raise ValueError(f"train_only {names}: no UNet parameter name contains any of them")

    # ---- training ----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        precision = str(self.trainer.precision)
        dtype = next((d for k, d in _COMPUTE_DTYPES.items() if precision.startswith(k)), None)
        if dtype is not None:  # frozen parts in the compute dtype; trained weights stay fp32
            self.text_encoder.to(dtype)
            if self.vae is not None:
                self.vae.to(dtype)
        self.text_encoder.eval()
        if self.vae is not None:
            self.vae.eval()
        if self.ema is not None:
            self.ema.to(self.device)

    def on_train_epoch_start(self) -> None:
        """Prompt dropout, noise and timesteps draw from the global generators: seed them from
        the run's seed and the epoch, so that a resumed fit repeats an uninterrupted one."""
        seed_global_generators(derive_seed(run_seed(None), self.current_epoch, 2))

    def training_step(self, batch: tuple[torch.Tensor, list[str]], batch_idx: int) -> torch.Tensor:
        images, prompts = batch  # (B, 3, H, W) in [-1, 1], B prompts
        batch_size = images.shape[0]
        drop = torch.rand(batch_size, device=self.device) < self.hparams.prompt_dropout
        prompts = ["" if d else p for p, d in zip(prompts, drop.tolist())]
        with torch.no_grad():
            if self.vae is None:
                x0 = images.float()
            else:
                posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
                x0 = posterior.sample().float() * self.vae.config.scaling_factor  # (B, C, h, w)
            cond = encode_prompts(self.components, prompts).float()  # (B, L, D)
        noise = torch.randn_like(x0)
        if self.hparams.noise_offset:
            noise = noise + self.hparams.noise_offset * torch.randn(
                (batch_size, x0.shape[1], 1, 1), device=x0.device
            )
        num_train = self.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, num_train, (batch_size,), device=x0.device)
        x_t = self.noise_scheduler.add_noise(x0, noise, t)
        if self.noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        pred = self.unet(x_t, t, encoder_hidden_states=cond, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), target.float())
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:  # once per optimizer step (gradient accumulation included)
            self.ema.step()

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        params = [p for p in self.unet.parameters() if p.requires_grad]
        if hp.use_8bit_adam:
            try:
                import bitsandbytes as bnb
            except ImportError as err:
                raise ImportError(
                    "use_8bit_adam=True needs bitsandbytes (pip install bitsandbytes)"
                ) from err
            optimizer_cls = bnb.optim.AdamW8bit
        else:
            optimizer_cls = torch.optim.AdamW
        optimizer = optimizer_cls(
            params, lr=hp.learning_rate, betas=(hp.adam_beta1, hp.adam_beta2),
            weight_decay=hp.adam_weight_decay, eps=hp.adam_epsilon,
        )
        name = hp.get("lr_schedule", "constant")
        total = self.trainer.estimated_stepping_batches if name == "cosine" else 1
        schedule = warmup_then(optimizer, name, total, hp.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- checkpoints -------------------------------------------------------------------------
    def _trained_keys(self) -> set[str]:
        if self.hparams.lora_rank is None:
            return {f"unet.{k}" for k in self.unet.state_dict()}
        return {f"unet.{n}" for n, p in self.unet.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self._trained_keys()
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if k in keep
        }
        if self.ema is not None:
            checkpoint["unet_ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        missing = sorted(self._trained_keys() - set(checkpoint["state_dict"]))
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} UNet tensors, e.g. {missing[:3]}")
        if self.ema is not None:
            if "unet_ema" not in checkpoint:
                raise KeyError("ema_decay is set but the checkpoint has no 'unet_ema' state")
            self.ema.load_state_dict(checkpoint["unet_ema"])

    # ---- sampling (FID/IS callbacks) ---------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, labels: torch.Tensor, seeds: Sequence[int], guidance_scale: float = 2.0,
        num_inference_steps: int = 25,
    ) -> torch.Tensor:
        """Images in [0, 1] for class ``labels`` with plain CFG (EMA weights when on); image
        ``i`` depends only on ``seeds[i]``. Prompts come from the datamodule's
        ``sample_prompt(label, seed)``."""
        datamodule = self.trainer.datamodule
        prompts = [datamodule.sample_prompt(int(c), int(s)) for c, s in zip(labels, seeds)]
        ema = self.ema.applied() if self.ema is not None else contextlib.nullcontext()
        with ema:
            cond = encode_prompts(self.components, prompts)  # (N, L, D)
            uncond = encode_prompts(self.components, [""])  # (1, L, D)
            guidance = GuidanceConfig(variant="cfg", guidance_scale=guidance_scale)
            return sample(self.components, cond, uncond, guidance, make_generators(seeds),
                          num_inference_steps=num_inference_steps)

    # ---- the diffusers pipeline --------------------------------------------------------------
    def export_components(self) -> DiffusionComponents:
        """The components to save: trained UNet (EMA weights if on, LoRA fused), fp32 copies.

        Frozen parts cast to a low compute dtype are re-read from their source (a tiny config
        or the local directory) so the saved pipeline keeps their original precision.
        """
        if self.ema is not None:
            with self.ema.applied():
                unet = copy.deepcopy(self.unet)
        else:
            unet = copy.deepcopy(self.unet)
        if self.hparams.lora_rank is not None:
            unet.fuse_lora()
            unet.unload_lora()
        unet = unet.float().cpu().eval()
        cast = self.text_encoder.dtype != torch.float32
        source = self._build_components() if cast else self.components
        return replace(source, unet=unet)

    def on_fit_end(self) -> None:
        directory = self.hparams.save_pipeline_dir
        if directory is None:
            return
        path = Path(directory)
        if not path.is_absolute():
            path = Path(self.trainer.default_root_dir) / path
        self._save(path)
        self.trainer.strategy.barrier("diffusion_pipeline_saved")

    @rank_zero_only
    def _save(self, path: Path) -> None:
        save_pipeline(self.export_components(), path, overwrite=True)
        ema = " (EMA weights)" if self.ema is not None else ""
        rank_zero_info(f"DiffusionFineTune: saved the diffusers pipeline{ema} to {path}")
