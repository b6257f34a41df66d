"""Classifier-free guidance (Ho & Salimans, 2022), the combine step only."""

from __future__ import annotations

from torch import Tensor


def cfg_combine(eps_uncond: Tensor, eps_cond: Tensor, guidance_scale: float) -> Tensor:
    """Classifier-free guidance.

    Notation (DiSC-DS paper, Sec. 3.1; diffusers' StableDiffusionPipeline):
        eps_uncond     -> eps_u, prediction with the empty prompt
        eps_cond       -> eps_pos, prediction with the positive prompt y+
        guidance_scale -> w

        eps_cfg = eps_u + w * (eps_pos - eps_u)

    Written in the same operation order as diffusers so that the two agree bit for bit on the
    same inputs.

    Args:
        eps_uncond: Unconditional noise prediction, (B, C, H, W).
        eps_cond: Conditional noise prediction, (B, C, H, W).
        guidance_scale: w (w = 1: conditional only, w = 0: unconditional only).

    Returns:
        The guided noise prediction, same shape and dtype as the inputs.
    """
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
