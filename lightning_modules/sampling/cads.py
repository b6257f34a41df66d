"""CADS condition annealing: noise the conditioning embedding, then restore its statistics.

Reference: Sadat et al., "CADS: Unleashing the Diversity of Diffusion Models through
Condition-Annealed Sampling", ICLR 2024, Eqs. 4 and 6. Applied to the CLEAN embedding at every
step with fresh noise (never fed back); the annealed embedding only goes into the UNet call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def randn_per_sample(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise where row b is drawn from ``generators[b]`` only.

    Same draws as diffusers' ``randn_tensor`` with a list of generators: each row is drawn on its
    generator's device with shape ``(1, *shape[1:])``, then moved to ``device``. A sample's noise
    therefore depends only on its own generator, never on the batch it is in.

    Args:
        shape: Full shape ``(B, ...)``.
        generators: One generator per row, ``len(generators) == B``.
        device: Device of the returned tensor.
        dtype: Dtype of the draws.

    Returns:
        Tensor of ``shape`` on ``device``.

    Raises:
        ValueError: If the number of generators is not the batch size.
    """
    if len(generators) != shape[0]:
        raise ValueError(
            f"need one generator per sample: got {len(generators)} generators for batch {shape[0]}"
        )
    rows = [
        torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generators
    ]
    noise = torch.cat(rows, dim=0)
    if noise.device.type == "cpu" and torch.device(device).type == "cuda":
        # Pinned + non_blocking: the copy is queued behind the GPU work instead of waiting for
        # it, so the host keeps launching kernels (one blocking copy per step otherwise).
        return noise.pin_memory().to(device, non_blocking=True)
    return noise.to(device)


def anneal_condition(
    y: Tensor,
    gamma: float,
    noise_scale: float,
    psi: float,
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Anneal a batch of conditioning embeddings (CADS Eqs. 4 and 6).

    Notation (CADS):
        y          -> y, clean condition embedding, shape (B, L, D)
        gamma      -> gamma(t) from ``schedule.cads_gamma``
        noise_scale-> s, the noise scale
        psi        -> psi, the rescale mixing factor
        n          -> n ~ N(0, I), fresh each call, row b drawn from generators[b]

        y_hat       = sqrt(gamma) * y + s * sqrt(1 - gamma) * n                      (Eq. 4)
        y_rescaled  = (y_hat - mean(y_hat)) / std(y_hat) * std(y) + mean(y)          (Eq. 6)
        y_out       = psi * y_rescaled + (1 - psi) * y_hat

    mean and std are taken PER SAMPLE over all of (L, D) and computed in float32; the result is
    cast back to ``y.dtype``. The noise is always drawn (also when s = 0 or gamma = 1) so the
    generators advance by the same amount every step, whatever the schedule.

    Removable singularity: with s = 0 and gamma = 0, y_hat is identically zero and Eq. 6 is 0/0.
    For s = 0 and every gamma > 0 the rescale returns exactly y (up to rounding), so a sample with
    std(y_hat) = 0 takes that limit, y_rescaled = y, instead of NaN.

    Args:
        y: Clean embeddings, shape (B, L, D) (any shape with the batch first works).
        gamma: Annealing coefficient in [0, 1].
        noise_scale: s >= 0.
        psi: Mixing factor in [0, 1].
        generators: One torch.Generator per sample.

    Returns:
        The annealed embeddings, same shape and dtype as ``y``.

    Raises:
        ValueError: On out-of-range gamma, s, psi, or a generator count that is not the batch.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if noise_scale < 0.0:
        raise ValueError(f"noise_scale (s) must be >= 0, got {noise_scale}")
    if not 0.0 <= psi <= 1.0:
        raise ValueError(f"psi must be in [0, 1], got {psi}")

    y32 = y.float()
    n = randn_per_sample(y.shape, generators, device=y.device, dtype=torch.float32)
    y_hat = gamma**0.5 * y32 + noise_scale * (1.0 - gamma) ** 0.5 * n

    dims = tuple(range(1, y.ndim))  # every dim but the batch: statistics per sample
    mean_y, std_y = y32.mean(dims, keepdim=True), y32.std(dims, keepdim=True)
    mean_hat, std_hat = y_hat.mean(dims, keepdim=True), y_hat.std(dims, keepdim=True)
    degenerate = std_hat == 0  # (B, 1, 1): y_hat constant, only with s = 0 and gamma = 0
    y_rescaled = (y_hat - mean_hat) / torch.where(degenerate, 1.0, std_hat) * std_y + mean_y
    y_rescaled = torch.where(degenerate, y32, y_rescaled)

    y_out = psi * y_rescaled + (1.0 - psi) * y_hat
    return y_out.to(y.dtype)
