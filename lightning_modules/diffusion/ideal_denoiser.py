"""The ideal denoiser of an empirical corpus: the reference a model's img2img confusion is read
against, computed before any model is trained.

A model that fits its training images exactly has, at noise level ``t`` (``x_t = a x_0 + s e``
with ``a^2 = alpha_bar_t``, ``s^2 = 1 - a^2``), the posterior over the images ``y_j`` of its
corpus captioned with the prompt

    p(j | x_t)  proportional to  exp(-|x_t - a y_j|^2 / (2 s^2)),

and its reverse process, started at ``t`` from a noised source image, ends at ``y_j`` with that
probability. Where some of a prompt's corpus images show its planted partner (caption noise),
the posterior's share on them is the partner confusion of an ideal img2img generator: what the
corpus and the start timestep allow. From pure noise the share is the caption-noise rate; from
a clean source it is near 0. A trained model far below it keeps more of its source than its
corpus asks for; far above it, it loses a cue its corpus carries (docs/world.md).

Images are flat vectors in the model's pixel range ``[-1, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler

from lightning_modules.sampling.sampler import img2img_timesteps


def img2img_start(
    scheduler_config: dict, num_inference_steps: int, strength: float
) -> tuple[int, float]:
    """The first timestep of an img2img run of the project's sampler (DPM-Solver++ built from
    the model's scheduler config) and its ``alpha_bar``."""
    scheduler = DPMSolverMultistepScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(num_inference_steps)
    t = int(img2img_timesteps(scheduler, num_inference_steps, strength)[0])
    return t, float(scheduler.alphas_cumprod[t])


def corpus_posterior(x_t: torch.Tensor, corpus: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """``p(j | x_t)`` of each noised image (rows of ``x_t``, ``(N, D)``) over the corpus images
    (rows of ``corpus``, ``(M, D)``): ``(N, M)``, rows summing to 1."""
    if not 0.0 < alpha_bar < 1.0:
        raise ValueError(f"alpha_bar={alpha_bar}: expected a noise level in (0, 1)")
    a, var = alpha_bar**0.5, 1.0 - alpha_bar
    sq = (x_t**2).sum(1, keepdim=True) - 2 * a * x_t @ corpus.T + alpha_bar * (corpus**2).sum(1)
    return torch.softmax(-sq / (2 * var), dim=1)


def partner_share(
    sources: np.ndarray,
    corpus: np.ndarray,
    shows_partner: np.ndarray,
    alpha_bar: float,
    draws: int = 512,
    seed: int = 0,
) -> np.ndarray:
    """Per noising and source image, the ideal denoiser's posterior share on the corpus images
    that show the partner. One noising's share scatters widely (a 4-source mean over 32
    noisings moved by 0.06 with the noise's layout), so a reading averages many.

    Args:
        sources: ``(N, D)`` source images in ``[-1, 1]``.
        corpus: ``(M, D)`` corpus images captioned with the sources' prompt, in ``[-1, 1]``.
        shows_partner: ``(M,)`` booleans: the corpus image shows the planted partner.
        alpha_bar: The start timestep's ``alpha_bar`` (:func:`img2img_start`).
        draws: Noisings per source.
        seed: Seed of the noise.

    Returns:
        ``(draws, N)`` shares in ``[0, 1]``.
    """
    shows = torch.as_tensor(np.asarray(shows_partner, dtype=np.float64))
    if sources.ndim != 2 or corpus.ndim != 2 or sources.shape[1] != corpus.shape[1]:
        raise ValueError(f"sources {sources.shape} and corpus {corpus.shape}: expected (N, D) "
                         "and (M, D) with one D")
    if shows.shape != (corpus.shape[0],):
        raise ValueError(f"shows_partner has shape {tuple(shows.shape)}; expected "
                         f"({corpus.shape[0]},), one flag per corpus image")
    if draws < 1:
        raise ValueError(f"draws={draws}: expected at least one noising per source")
    x0 = torch.as_tensor(sources, dtype=torch.float64)
    y = torch.as_tensor(corpus, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    shares = []
    for _ in range(draws):
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        x_t = alpha_bar**0.5 * x0 + (1.0 - alpha_bar) ** 0.5 * noise
        shares.append(corpus_posterior(x_t, y, alpha_bar) @ shows)
    return torch.stack(shares).numpy()
