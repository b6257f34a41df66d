"""EMA of the UNet's trained parameters (diffusers ``EMAModel``), checkpointable and swappable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers.training_utils import EMAModel
from torch import nn


class UNetEMA:
    """Exponential moving average of the trainable parameters of one module.

    Only parameters with ``requires_grad`` are averaged (all of the UNet for a full fine-tune,
    the LoRA matrices with LoRA); frozen VAE and text encoder are never copied (unlike Lightning's
    whole-module weight averaging). The state goes into the Lightning checkpoint so resume works.

    Args:
        module: The trained module (the UNet).
        decay: Maximum decay; diffusers' warm-up ``(1 + step) / (10 + step)`` caps it early on.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.module = module
        self.ema = EMAModel(self._params(), decay=decay)

    def _params(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    @property
    def optimization_step(self) -> int:
        return int(self.ema.optimization_step)

    def to(self, device: torch.device) -> UNetEMA:
        self.ema.to(device=device)
        return self

    @torch.no_grad()
    def step(self) -> None:
        """Update the average after an optimizer step."""
        self.ema.step(self._params())

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)

    @contextmanager
    def applied(self) -> Iterator[nn.Module]:
        """Temporarily put the averaged weights into the module (restored on exit)."""
        params = self._params()
        self.ema.store(params)
        self.ema.copy_to(params)
        try:
            yield self.module
        finally:
            self.ema.restore(params)
