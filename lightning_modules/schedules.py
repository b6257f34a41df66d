"""Learning-rate schedules stepped per optimizer step."""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

ScheduleName = Literal["cosine", "constant"]


def warmup_then(
    optimizer: Optimizer, name: ScheduleName, total_steps: int, warmup_steps: int = 0
) -> LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 or a constant rate."""
    if name not in ("cosine", "constant"):
        raise ValueError(f"lr schedule {name!r}: expected 'cosine' or 'constant'")
    total_steps = max(int(total_steps), 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
