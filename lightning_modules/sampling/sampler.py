"""The one sampler loop: text-to-image or img2img, any guidance variant, per-sample seeds.

Follows diffusers' StableDiffusionPipeline / StableDiffusionImg2ImgPipeline step for step (same
random draws in the same order), so with variant "cfg" it reproduces them; the other variants
differ only in the conditions fed to the UNet and in the combine step (``guidance.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .cads import randn_per_sample
from .diagnostics import GuidanceTrace
from .guidance import GuidanceConfig, branch_conditions, guide
from .schedule import annealing_time, cads_gamma

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    from lightning_modules.diffusion.components import DiffusionComponents


def img2img_timesteps(
    scheduler: "SchedulerMixin", num_inference_steps: int, strength: float
) -> Tensor:
    """The timesteps an img2img run at ``strength`` takes, of a scheduler set to
    ``num_inference_steps``: all but the first ``N - int(N * strength)`` steps (diffusers'
    ``get_timesteps``)."""
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = num_inference_steps - init_timestep
    return scheduler.timesteps[t_start * scheduler.order :]


def make_generators(
    seeds: Sequence[int], device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One seeded generator per image: an image then depends only on its own seed."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def _check_inputs(
    cond: Tensor,
    uncond: Tensor,
    neg: Tensor | None,
    guidance: GuidanceConfig,
    generators: Sequence[torch.Generator],
    num_inference_steps: int,
    init_images: Tensor | None,
    strength: float,
) -> None:
    """Raise early, naming the argument, its value and what was expected."""
    if cond.ndim != 3:
        raise ValueError(f"cond must be (B, L, D), got shape {tuple(cond.shape)}")
    batch = cond.shape[0]
    if uncond.shape[1:] != cond.shape[1:] or uncond.shape[0] not in (1, batch):
        raise ValueError(
            f"uncond must be (1 or B={batch}, {cond.shape[1]}, {cond.shape[2]}), "
            f"got {tuple(uncond.shape)}"
        )
    if guidance.uses_negative and (neg is None or neg.shape != cond.shape):
        shape = None if neg is None else tuple(neg.shape)
        raise ValueError(
            f"variant {guidance.variant!r} needs neg of shape {tuple(cond.shape)}, got {shape}"
        )
    if len(generators) != batch:
        raise ValueError(f"need one generator per image: {len(generators)} for batch {batch}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if init_images is None:
        if strength != 1.0:
            raise ValueError(f"strength={strength} needs init_images; text-to-image uses 1.0")
        return
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if int(num_inference_steps * strength) < 1:
        raise ValueError(
            f"strength={strength} x num_inference_steps={num_inference_steps} runs no step"
        )
    if init_images.ndim != 4 or init_images.shape[0] != batch or init_images.shape[1] != 3:
        raise ValueError(
            f"init_images must be (B={batch}, 3, H, W), got {tuple(init_images.shape)}"
        )
    low, high = init_images.min().item(), init_images.max().item()
    if low < 0.0 or high > 1.0:
        raise ValueError(f"init_images must be in [0, 1], got values in [{low:.3g}, {high:.3g}]")


@torch.no_grad()
def sample(
    components: DiffusionComponents,
    cond: Tensor,
    uncond: Tensor,
    guidance: GuidanceConfig,
    generators: Sequence[torch.Generator],
    *,
    neg: Tensor | None = None,
    scheduler: SchedulerMixin | None = None,
    num_inference_steps: int = 50,
    init_images: Tensor | None = None,
    strength: float = 1.0,
    height: int | None = None,
    width: int | None = None,
    trace: GuidanceTrace | None = None,
) -> Tensor:
    """Generate images with guidance, from pure noise or from init images (img2img).

    Args:
        components: Model components (``vae=None``: pixel-space model).
        cond: Positive conditions y+, (B, L, D) (from ``encode_prompts``).
        uncond: Empty-prompt embedding, (B, L, D) or (1, L, D) (expanded to B).
        guidance: Which variant and its parameters.
        generators: One generator per image; every random draw of image b uses generators[b].
        neg: Negative conditions y-, (B, L, D); needed by ccfg/disc_ds variants, else ignored.
        scheduler: Sampling scheduler; a fresh copy (``from_config``) is stepped, the argument
            is never mutated. Default: DPM-Solver++ (``DPMSolverMultistepScheduler``) from the
            config of ``components.scheduler``, as in DiSC-DS.
        num_inference_steps: N, the scheduler's number of steps.
        init_images: (B, 3, H, W) in [0, 1] for img2img, or None for text-to-image.
        strength: img2img strength: int(N * strength) of the N steps run (diffusers semantics).
        height: Image height for text-to-image; default UNet sample size x VAE scale factor.
        width: Image width, likewise.
        trace: Records what the guidance did at every step, per image (see
            :mod:`~lightning_modules.sampling.diagnostics`); ``None``: nothing is recorded.

    Returns:
        Images (B, 3, H, W) in [0, 1], float32, on the UNet's device.
    """
    _check_inputs(
        cond, uncond, neg, guidance, generators, num_inference_steps, init_images, strength
    )
    unet, vae = components.unet, components.vae
    device, dtype = unet.device, unet.dtype
    batch = cond.shape[0]
    cond, uncond = cond.to(device, dtype), uncond.to(device, dtype).expand(batch, -1, -1)
    neg = neg.to(device, dtype) if (neg is not None and guidance.uses_negative) else None
    scale = components.vae_scale_factor

    # 1. A fresh scheduler (it keeps state between steps) with N timesteps.
    if scheduler is None:
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler.from_config(components.scheduler.config)
    scheduler = type(scheduler).from_config(scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)

    # 2. img2img start: skip the first N - int(N * strength) steps (diffusers' get_timesteps).
    timesteps = img2img_timesteps(scheduler, num_inference_steps, strength)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(len(scheduler.timesteps) - len(timesteps))

    # 3. Initial latents x_T.
    if init_images is None:
        height = components.default_image_size if height is None else height
        width = components.default_image_size if width is None else width
        if height % scale or width % scale:
            raise ValueError(f"height={height}, width={width} must be multiples of {scale}")
        shape = (batch, unet.config.in_channels, height // scale, width // scale)
        latents = randn_per_sample(shape, generators, device, dtype) * scheduler.init_noise_sigma
    else:
        if (height, width) not in ((None, None), tuple(init_images.shape[-2:])):
            raise ValueError(f"height/width {height}x{width} differ from init_images' size")
        if init_images.shape[-2] % scale or init_images.shape[-1] % scale:
            raise ValueError(f"init_images' H and W must be multiples of {scale}")
        x0 = (init_images * 2.0 - 1.0).to(device, dtype)  # [0, 1] -> [-1, 1], as diffusers
        if vae is not None:  # encode one image at a time, sampling with its own generator
            x0 = torch.cat(
                [vae.encode(x0[b : b + 1]).latent_dist.sample(generators[b]) for b in range(batch)]
            )
            x0 = vae.config.scaling_factor * x0
        noise = randn_per_sample(x0.shape, generators, device, dtype)
        latents = scheduler.add_noise(x0, noise, timesteps[:1].repeat(batch))

    # 4. Denoising loop: anneal, one batched UNet call over k branches, guide, step.
    accepts_generator = "generator" in inspect.signature(scheduler.step).parameters
    step_kwargs = {"generator": list(generators)} if accepts_generator else {}
    train_steps = scheduler.config.num_train_timesteps
    k = guidance.num_branches
    host_timesteps = timesteps.tolist()  # one device sync here, none per step (float(t) syncs)
    for i, t in enumerate(timesteps):
        clock_t = annealing_time(i, len(timesteps), host_timesteps[i], train_steps, guidance.clock)
        gamma = cads_gamma(clock_t, guidance.tau1, guidance.tau2)
        embeddings = branch_conditions(guidance, uncond, cond, neg, gamma, generators)  # (kB, L, D)
        model_input = scheduler.scale_model_input(torch.cat([latents] * k), t)  # (kB, C, h, w)
        eps = unet(model_input, t, encoder_hidden_states=embeddings, return_dict=False)[0]
        eps_branches = eps.chunk(k)  # k x (B, C, h, w): u, pos[, neg]
        eps_neg = eps_branches[2] if k == 3 else None
        guided = guide(guidance, eps_branches[0], eps_branches[1], eps_neg, gamma)
        if trace is not None:
            trace.record(host_timesteps[i], gamma, guided, *eps_branches[:2], eps_neg)
        latents = scheduler.step(guided.eps, t, latents, **step_kwargs, return_dict=False)[0]

    # 5. Decode to [0, 1].
    images = latents if vae is None else vae.decode(latents / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1)
