"""DiSC-DS guidance: a mix of CFG and contrastive CFG with a time-dependent temperature.

Reference: "Synthetic Data Augmentation using Pre-trained Diffusion Models for Long-tailed Food
Image Classification" (DiSC-DS, arXiv 2506.01368), Sec. 3.3. The fixed-tau variant is the paper's
ablation (Table 3, tau in {0.2, 0.5, 0.8}).
"""

from __future__ import annotations

import math

from torch import Tensor

from .ccfg import NormReduction, ccfg_combine
from .cfg import cfg_combine


def dynamic_tau(tau: float, gamma: float) -> float:
    """DiSC-DS temperature tau_hat(t) = tau * sqrt(gamma(t)).

    Notation: tau -> tau, gamma -> gamma(t) of the CADS schedule. Early steps (gamma = 0) get
    tau_hat = 0, i.e. CCFG weights (w, -w); late steps (gamma = 1) get the full tau.

    Args:
        tau: Base temperature >= 0.
        gamma: CADS gamma(t) in [0, 1].

    Returns:
        tau_hat.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return tau * math.sqrt(gamma)


def disc_ds_mix(eps_cfg: Tensor, eps_ccfg: Tensor, alpha: float) -> Tensor:
    """eps = alpha * eps_cfg + (1 - alpha) * eps_ccfg, in float32, in ``eps_cfg``'s dtype."""
    return (alpha * eps_cfg.float() + (1.0 - alpha) * eps_ccfg.float()).to(eps_cfg.dtype)


def disc_ds_combine(
    eps_uncond: Tensor,
    eps_pos: Tensor,
    eps_neg: Tensor,
    guidance_scale: float,
    tau: float,
    alpha: float,
    gamma: float | None = None,
    norm: NormReduction = "sum",
) -> Tensor:
    """DiSC-DS guided prediction.

    Notation (DiSC-DS Sec. 3.3):
        guidance_scale -> w,  alpha -> alpha,  tau -> tau,  gamma -> gamma(t)

        tau_hat  = tau * sqrt(gamma)                  (dynamic; gamma=None: tau_hat = tau, ablation)
        eps      = alpha * eps_cfg + (1 - alpha) * eps_ccfg(tau_hat)

    with eps_cfg from :func:`cfg_combine` and eps_ccfg from :func:`ccfg_combine`. With alpha = 1
    this is exactly CFG (1 * x + 0 * y == x in floating point for finite y).

    Args:
        eps_uncond: (B, C, H, W) prediction with the empty prompt.
        eps_pos: (B, C, H, W) prediction with the positive prompt y+.
        eps_neg: (B, C, H, W) prediction with the negative (confusing class) prompt y-.
        guidance_scale: w.
        tau: Base temperature.
        alpha: Weight of the CFG term, in [0, 1].
        gamma: CADS gamma(t) for the dynamic temperature, or None for a fixed temperature.
        norm: CCFG's squared-norm reduction, ``"sum"`` or ``"mean"``.

    Returns:
        The guided prediction, same shape and dtype as ``eps_uncond``.
    """
    tau_hat = tau if gamma is None else dynamic_tau(tau, gamma)
    eps_cfg = cfg_combine(eps_uncond, eps_pos, guidance_scale)
    eps_ccfg = ccfg_combine(eps_uncond, eps_pos, eps_neg, guidance_scale, tau_hat, norm)
    return disc_ds_mix(eps_cfg, eps_ccfg, alpha)
