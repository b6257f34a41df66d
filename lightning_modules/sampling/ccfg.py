"""Contrastive classifier-free guidance (CCFG), weights and combine.

Reference: Chang, Chung, Ye, "Contrastive CFG: Improving CFG in Diffusion Models by Contrasting
Positive and Negative Concepts", arXiv 2411.17077, Eq. 8, and the official code
(jinhojsk515/ContrastiveCFG). Algorithm 1 line 6 of the DiSC-DS paper uses eps_neg inside w+: a
typo, not followed here.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

NormReduction = Literal["sum", "mean"]
NORM_REDUCTIONS: tuple[str, ...] = get_args(NormReduction)


def per_sample_sq_norm(x: Tensor, reduction: NormReduction = "sum") -> Tensor:
    """Squared norm over every dim but the batch, in float32: (B, ...) -> (B,).

    ``"sum"`` is the official CCFG code's (its size grows with the number of elements: 16,384 for
    SD v1.x latents); ``"mean"`` divides by the number of elements (independent of image size).
    """
    squares = x.float().pow(2).flatten(1)
    if reduction == "sum":
        return squares.sum(dim=1)
    if reduction == "mean":
        return squares.mean(dim=1)
    raise ValueError(f"CCFG norm reduction must be one of {NORM_REDUCTIONS}, got {reduction!r}")


def ccfg_weights(
    eps_uncond: Tensor,
    eps_pos: Tensor,
    eps_neg: Tensor,
    guidance_scale: float,
    tau: float,
    norm: NormReduction = "sum",
) -> tuple[Tensor, Tensor]:
    """Per-sample CCFG weights (w_pos, w_neg), computed in float32.

    Notation (CCFG Eq. 8):
        eps_uncond     -> eps_u
        eps_pos        -> eps_pos, prediction with the positive condition y+
        eps_neg        -> eps_neg, prediction with the negative condition y-
        guidance_scale -> w
        tau            -> tau, temperature (DiSC-DS: tau_hat(t) = tau * sqrt(gamma(t)))

        l_pos = tau * ||eps_pos - eps_u||^2        (per sample; sum over C, H, W, or mean)
        l_neg = tau * ||eps_neg - eps_u||^2
        w_pos =  2w * sigmoid(l_pos)               in [w, 2w)
        w_neg = -2w * sigmoid(-l_neg)              in (-w, 0]

    Float32 matters: in float16, exp(-l_neg) underflows to 0 for moderate l_neg and silently
    sets w_neg = 0.

    Args:
        eps_uncond: (B, C, H, W).
        eps_pos: (B, C, H, W).
        eps_neg: (B, C, H, W).
        guidance_scale: w >= 0.
        tau: Temperature >= 0.
        norm: Reduction of the squared norm: ``"sum"`` (official code) or ``"mean"``.

    Returns:
        (w_pos, w_neg), each a float32 tensor of shape (B,).
    """
    sq_pos = per_sample_sq_norm(eps_pos - eps_uncond, norm)  # (B,)
    sq_neg = per_sample_sq_norm(eps_neg - eps_uncond, norm)  # (B,)
    return weights_from_norms(sq_pos, sq_neg, guidance_scale, tau)


def weights_from_norms(
    sq_pos: Tensor, sq_neg: Tensor, guidance_scale: float, tau: float
) -> tuple[Tensor, Tensor]:
    """(w_pos, w_neg) from the squared norms ||eps_pos - eps_u||^2, ||eps_neg - eps_u||^2, (B,)."""
    w_pos = 2.0 * guidance_scale * torch.sigmoid(tau * sq_pos)
    w_neg = -2.0 * guidance_scale * torch.sigmoid(-tau * sq_neg)
    return w_pos, w_neg


def ccfg_apply(
    eps_uncond: Tensor, eps_pos: Tensor, eps_neg: Tensor, w_pos: Tensor, w_neg: Tensor
) -> Tensor:
    """eps_u + w_pos (eps_pos - eps_u) + w_neg (eps_neg - eps_u), per-sample weights (B,),
    in float32; returned in ``eps_uncond``'s dtype."""
    view = (-1,) + (1,) * (eps_uncond.ndim - 1)  # (B,) -> (B, 1, 1, 1)
    u = eps_uncond.float()
    out = u + w_pos.view(view) * (eps_pos.float() - u) + w_neg.view(view) * (eps_neg.float() - u)
    return out.to(eps_uncond.dtype)


def ccfg_combine(
    eps_uncond: Tensor,
    eps_pos: Tensor,
    eps_neg: Tensor,
    guidance_scale: float,
    tau: float,
    norm: NormReduction = "sum",
) -> Tensor:
    """Contrastive CFG prediction.

    Notation (CCFG Eq. 8), with (w_pos, w_neg) from :func:`ccfg_weights`:

        eps_ccfg = eps_u + w_pos * (eps_pos - eps_u) + w_neg * (eps_neg - eps_u)

    Args:
        eps_uncond: (B, C, H, W).
        eps_pos: (B, C, H, W).
        eps_neg: (B, C, H, W).
        guidance_scale: w.
        tau: Temperature.
        norm: Reduction of the squared norm (see :func:`ccfg_weights`).

    Returns:
        The guided prediction, same shape and dtype as ``eps_uncond`` (combined in float32).
    """
    w_pos, w_neg = ccfg_weights(eps_uncond, eps_pos, eps_neg, guidance_scale, tau, norm)
    return ccfg_apply(eps_uncond, eps_pos, eps_neg, w_pos, w_neg)
