"""Guidance diagnostics: what the combine step did at every sampler step, for every image.

The sampler hands each step's :class:`~lightning_modules.sampling.guidance.GuidedPrediction` to a
:class:`GuidanceTrace`, which keeps the per-sample tensors on the device (no synchronisation per
step) and moves them to the host once, when the images are done. Fields, per step (and per image
where marked (B,)):

==============  ========================================================================
``timestep``    the scheduler timestep
``gamma``       CADS gamma(t) (1 for variants without annealing)
``tau_hat``     CCFG temperature (None without CCFG; DiSC-DS: tau sqrt(gamma))
``sq_pos``      (B,) ||eps_pos - eps_u||^2, reduced as ``ccfg_norm`` says (sum or mean)
``sq_neg``      (B,) ||eps_neg - eps_u||^2 (None without a negative branch)
``w_pos``       (B,) CCFG's w_pos (None without CCFG)
``w_neg``       (B,) CCFG's w_neg (None without CCFG)
``coef_pos``    (B,) effective coefficient of (eps_pos - eps_u) in the final eps
``coef_neg``    (B,) effective coefficient of (eps_neg - eps_u) (DiSC-DS: (1 - alpha) w_neg)
==============  ========================================================================
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from torch import Tensor

from .ccfg import NormReduction, per_sample_sq_norm
from .guidance import GuidedPrediction

STEP_FIELDS = ("timestep", "gamma", "tau_hat")
IMAGE_FIELDS = ("sq_pos", "sq_neg", "w_pos", "w_neg", "coef_pos", "coef_neg")


class GuidanceTrace:
    """Recorder of one :func:`~lightning_modules.sampling.sample` call (pass it as ``trace=``).

    Args:
        norm: Reduction of the squared norms the trace computes itself (variants without CCFG
            compute none): the guidance's ``ccfg_norm``.
    """

    def __init__(self, norm: NormReduction = "sum") -> None:
        self.norm = norm
        self._steps: list[dict] = []

    def record(
        self,
        timestep: float,
        gamma: float,
        guided: GuidedPrediction,
        eps_uncond: Tensor,
        eps_pos: Tensor,
        eps_neg: Tensor | None,
    ) -> None:
        """Keep one step (tensors stay where they are: no device synchronisation)."""
        sq_pos = guided.sq_pos
        if sq_pos is None:  # CFG variants: the norm is not part of their combine step
            sq_pos = per_sample_sq_norm(eps_pos - eps_uncond, self.norm)
        sq_neg = guided.sq_neg
        if sq_neg is None and eps_neg is not None:
            sq_neg = per_sample_sq_norm(eps_neg - eps_uncond, self.norm)
        self._steps.append({
            "timestep": float(timestep), "gamma": float(gamma), "tau_hat": guided.tau_hat,
            "sq_pos": sq_pos, "sq_neg": sq_neg, "w_pos": guided.w_pos, "w_neg": guided.w_neg,
            "coef_pos": guided.coef_pos, "coef_neg": guided.coef_neg,
        })

    def __len__(self) -> int:
        return len(self._steps)

    def per_image(self) -> list[dict[str, list]]:
        """One record per image: every field as a list over the steps (None where absent)."""
        if not self._steps:
            return []
        columns: dict[str, Tensor | None] = {}
        for name in IMAGE_FIELDS:
            values = [step[name] for step in self._steps]
            columns[name] = None if values[0] is None else torch.stack(values).float().cpu()
        batch = next(c.shape[1] for c in columns.values() if c is not None)
        shared = {name: [step[name] for step in self._steps] for name in STEP_FIELDS}
        return [
            {**shared, **{name: None if c is None else c[:, b].tolist()
                          for name, c in columns.items()}}
            for b in range(batch)
        ]


def summarize(records: Sequence[dict[str, list]]) -> dict[str, list]:
    """Per step, over images: the median and the 10th / 90th percentiles of every field.

    Returns:
        ``{"steps": n, "images": m, "<field>": [per-step shared values]}`` for the step fields
        and ``{"<field>_median" | "_p10" | "_p90": [...]}`` for the per-image ones (None where the
        variant has no such quantity).
    """
    if not records:
        return {"steps": 0, "images": 0}
    steps = len(records[0]["timestep"])
    out: dict = {"steps": steps, "images": len(records)}
    out.update({name: records[0][name] for name in STEP_FIELDS})
    for name in IMAGE_FIELDS:
        if records[0][name] is None:
            out.update({f"{name}_{q}": None for q in ("median", "p10", "p90")})
            continue
        per_step = torch.tensor([r[name] for r in records], dtype=torch.float64).T  # (steps, m)
        quantiles = torch.quantile(per_step, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64),
                                   dim=1)
        out[f"{name}_p10"], out[f"{name}_median"], out[f"{name}_p90"] = (
            [round(float(v), 6) for v in row] for row in quantiles
        )
    return out


def summary_line(summary: dict) -> str:
    """One line for a log: the coefficients at the first and last step, and their median."""
    parts = []
    for name in ("coef_pos", "coef_neg", "w_neg"):
        values = summary.get(f"{name}_median")
        if values:
            parts.append(f"{name} {values[0]:+.3f} -> {values[-1]:+.3f} "
                         f"(median over steps {statistics.median(values):+.3f})")
    size = f"{summary.get('images', 0)} images x {summary.get('steps', 0)} steps"
    return f"{size}: " + "; ".join(parts)
