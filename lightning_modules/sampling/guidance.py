"""Guidance configuration and the dispatch from branch predictions to one eps, per variant.

Branches: every variant evaluates the UNet on the unconditional branch u (empty prompt) and the
positive branch pos (y+); the contrastive variants add the negative branch neg (y-). All branches
go through ONE batched UNet call, in the order [u, pos, neg] (diffusers' order for [u, pos]).

Decisions, one row per variant (DiSC-DS Tables 2 and 3; docs/algorithms.md, DiSC-DS):

=====================  =========  ==========  ==================================================
variant                annealing  branches    eps
=====================  =========  ==========  ==================================================
``cfg``                no         u, pos      eps_u + w (eps_pos - eps_u). The negative
                                              condition is ignored (its weight is 0), so the
                                              UNet batch is 2B: exactly diffusers' CFG.
``cads``               yes        u, pos      CFG on annealed conditions (negative ignored).
``ccfg``               no         u, pos, neg pure CCFG with the fixed temperature ``tau``;
                                              ``alpha`` is ignored.
``disc_ds``            yes        u, pos, neg alpha CFG + (1 - alpha) CCFG(tau sqrt(gamma)).
``disc_ds_fixed_tau``  yes        u, pos, neg alpha CFG + (1 - alpha) CCFG(tau) (ablation).
=====================  =========  ==========  ==================================================

Annealing (CADS) noises the positive condition always, the negative one when
``anneal_negative`` (default True) and the unconditional one only when ``anneal_unconditional``
(default False: the empty-prompt embedding stays clean). Noise is drawn in the order pos, neg, u,
each from the per-sample generators. ``gamma`` is computed once per step by the sampler from the
clock (``schedule.annealing_time``) and is also the gamma of DiSC-DS's dynamic temperature.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from .cads import anneal_condition
from .ccfg import (
    NORM_REDUCTIONS,
    NormReduction,
    ccfg_apply,
    per_sample_sq_norm,
    weights_from_norms,
)
from .cfg import cfg_combine
from .disc_ds import disc_ds_mix, dynamic_tau
from .schedule import Clock

Variant = Literal["cfg", "cads", "ccfg", "disc_ds", "disc_ds_fixed_tau"]
VARIANTS: tuple[str, ...] = get_args(Variant)
CLOCKS: tuple[str, ...] = get_args(Clock)
_ANNEALING = frozenset({"cads", "disc_ds", "disc_ds_fixed_tau"})
_NEGATIVE = frozenset({"ccfg", "disc_ds", "disc_ds_fixed_tau"})


@dataclass(frozen=True)
class GuidanceConfig:
    """How the branch predictions are combined; defaults are the DiSC-DS paper's.

    Attributes:
        variant: One of ``cfg``, ``cads``, ``ccfg``, ``disc_ds``, ``disc_ds_fixed_tau``.
        guidance_scale: w >= 0 (CFG and CCFG scale).
        tau1: CADS threshold below which the condition is clean, in [0, 1].
        tau2: CADS threshold above which the condition is pure noise, tau1 <= tau2 <= 1.
        noise_scale: CADS s >= 0.
        psi: CADS rescale mixing factor in [0, 1].
        tau: CCFG temperature >= 0 (DiSC-DS base temperature).
        alpha: Weight of CFG in DiSC-DS, in [0, 1].
        clock: ``steps`` (t = 1 - i / n_run) or ``absolute`` (t = timestep / T).
        anneal_unconditional: Also anneal the empty-prompt embedding.
        anneal_negative: Also anneal the negative embedding.
        ccfg_norm: Reduction of CCFG's squared norms ||eps - eps_u||^2 over (C, H, W): ``sum``
            (the official CCFG code; its size grows with the latent size) or ``mean``. The
            papers do not say; see docs/guidance.md for what it does to the negative term.
    """

    variant: Variant = "disc_ds"
    guidance_scale: float = 2.0
    tau1: float = 0.5
    tau2: float = 0.9
    noise_scale: float = 0.1
    psi: float = 1.0
    tau: float = 0.8
    alpha: float = 0.8
    clock: Clock = "steps"
    anneal_unconditional: bool = False
    anneal_negative: bool = True
    ccfg_norm: NormReduction = "sum"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(
                f"GuidanceConfig.variant must be one of {VARIANTS}, got {self.variant!r}"
            )
        if self.ccfg_norm not in NORM_REDUCTIONS:
            raise ValueError(
                f"GuidanceConfig.ccfg_norm must be one of {NORM_REDUCTIONS}, got {self.ccfg_norm!r}"
            )
        if self.clock not in CLOCKS:
            raise ValueError(f"GuidanceConfig.clock must be one of {CLOCKS}, got {self.clock!r}")
        for name in ("anneal_unconditional", "anneal_negative"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"GuidanceConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )
        ranges = {
            "guidance_scale": (0.0, math.inf),
            "tau1": (0.0, 1.0),
            "tau2": (0.0, 1.0),
            "noise_scale": (0.0, math.inf),
            "psi": (0.0, 1.0),
            "tau": (0.0, math.inf),
            "alpha": (0.0, 1.0),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"GuidanceConfig.{name} must be a number, got {value!r}")
            if not (low <= value <= high and math.isfinite(value)):
                expected = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
                raise ValueError(f"GuidanceConfig.{name} must be {expected}, got {value}")
        if self.tau1 > self.tau2:
            raise ValueError(
                f"GuidanceConfig needs tau1 <= tau2, got tau1={self.tau1}, tau2={self.tau2}"
            )

    @property
    def uses_annealing(self) -> bool:
        """Whether the conditions are CADS-annealed."""
        return self.variant in _ANNEALING

    @property
    def uses_negative(self) -> bool:
        """Whether the negative branch is evaluated (the UNet batch is then 3B instead of 2B)."""
        return self.variant in _NEGATIVE

    @property
    def num_branches(self) -> int:
        """Number k of UNet branches: the batched UNet input is k * B."""
        return 3 if self.uses_negative else 2

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, for image metadata and manifests."""
        return dataclasses.asdict(self)


def branch_conditions(
    config: GuidanceConfig,
    uncond: Tensor,
    cond: Tensor,
    neg: Tensor | None,
    gamma: float,
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Embeddings of all branches for one step, concatenated for one batched UNet call.

    Args:
        config: The guidance configuration.
        uncond: Clean empty-prompt embeddings u, (B, L, D).
        cond: Clean positive embeddings y+, (B, L, D).
        neg: Clean negative embeddings y-, (B, L, D); required when ``config.uses_negative``,
            ignored otherwise.
        gamma: CADS gamma(t) of this step (unused by variants without annealing).
        generators: One generator per sample, for the annealing noise.

    Returns:
        (k * B, L, D): ``cat([u, pos])`` or ``cat([u, pos, neg])``, annealed as configured.

    Raises:
        ValueError: If the variant needs a negative condition and ``neg`` is None.
    """
    if config.uses_negative and neg is None:
        raise ValueError(
            f"guidance variant {config.variant!r} needs a negative condition, got None"
        )

    def anneal(y: Tensor) -> Tensor:
        return anneal_condition(y, gamma, config.noise_scale, config.psi, generators)

    if config.uses_annealing:
        cond = anneal(cond)
        if config.uses_negative and config.anneal_negative:
            neg = anneal(neg)
        if config.anneal_unconditional:
            uncond = anneal(uncond)
    branches = [uncond, cond, neg] if config.uses_negative else [uncond, cond]
    return torch.cat(branches, dim=0)  # (k * B, L, D)


@dataclass
class GuidedPrediction:
    """One step's guided prediction and the coefficients it applied.

    Every variant's eps has the form (Notation: the module docstring's table)

        eps = eps_u + coef_pos * (eps_pos - eps_u) + coef_neg * (eps_neg - eps_u)

    Attributes:
        eps: The guided prediction, (B, C, H, W).
        coef_pos: Effective coefficient of the positive direction, (B,) float32 (CFG: w;
            DiSC-DS: alpha w + (1 - alpha) w_pos).
        coef_neg: Effective coefficient of the negative direction, (B,) float32 (0 without a
            negative branch; DiSC-DS: (1 - alpha) w_neg).
        tau_hat: The step's CCFG temperature (None without CCFG).
        w_pos: CCFG's w_pos, (B,) (None without CCFG).
        w_neg: CCFG's w_neg, (B,) (None without CCFG).
        sq_pos: ||eps_pos - eps_u||^2 in ``ccfg_norm``, (B,), where CCFG computed it.
        sq_neg: ||eps_neg - eps_u||^2 in ``ccfg_norm``, (B,), where CCFG computed it.
    """

    eps: Tensor
    coef_pos: Tensor
    coef_neg: Tensor
    tau_hat: float | None = None
    w_pos: Tensor | None = None
    w_neg: Tensor | None = None
    sq_pos: Tensor | None = None
    sq_neg: Tensor | None = None


def guide(
    config: GuidanceConfig,
    eps_uncond: Tensor,
    eps_pos: Tensor,
    eps_neg: Tensor | None,
    gamma: float,
) -> GuidedPrediction:
    """Turn the branch predictions of one step into one noise prediction.

    Args:
        config: The guidance configuration (see the table in the module docstring).
        eps_uncond: eps_u, (B, C, H, W).
        eps_pos: eps_pos, (B, C, H, W).
        eps_neg: eps_neg, (B, C, H, W); required when ``config.uses_negative``.
        gamma: CADS gamma(t) of this step (DiSC-DS's dynamic temperature).

    Returns:
        The guided eps (``.eps``, (B, C, H, W)) and the coefficients it applied.
    """
    w = config.guidance_scale
    batch = (eps_uncond.shape[0],)
    device = eps_uncond.device
    if config.variant in ("cfg", "cads"):
        eps = cfg_combine(eps_uncond, eps_pos, w)
        return GuidedPrediction(
            eps, torch.full(batch, float(w), device=device), torch.zeros(batch, device=device)
        )
    if eps_neg is None:
        raise ValueError(f"guidance variant {config.variant!r} needs eps_neg, got None")
    tau_hat = dynamic_tau(config.tau, gamma) if config.variant == "disc_ds" else config.tau
    sq_pos = per_sample_sq_norm(eps_pos - eps_uncond, config.ccfg_norm)  # (B,)
    sq_neg = per_sample_sq_norm(eps_neg - eps_uncond, config.ccfg_norm)  # (B,)
    w_pos, w_neg = weights_from_norms(sq_pos, sq_neg, w, tau_hat)
    eps_ccfg = ccfg_apply(eps_uncond, eps_pos, eps_neg, w_pos, w_neg)
    if config.variant == "ccfg":
        eps, coef_pos, coef_neg = eps_ccfg, w_pos, w_neg
    else:
        a = config.alpha
        eps = disc_ds_mix(cfg_combine(eps_uncond, eps_pos, w), eps_ccfg, a)
        coef_pos, coef_neg = a * w + (1.0 - a) * w_pos, (1.0 - a) * w_neg
    return GuidedPrediction(eps, coef_pos, coef_neg, tau_hat, w_pos, w_neg, sq_pos, sq_neg)
