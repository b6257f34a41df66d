"""Sampling speed-ups for a frozen UNet: channels_last, fused QKV projections, torch.compile.

Each is a standard PyTorch / diffusers switch that keeps the numerics (up to the rounding of a
different kernel order); none changes a weight. They apply to sampling only (``Synthesizer`` and
``benchmarks/sampler_speed.py``), never to a module that is trained or saved: the UNet is
copied first, so the original keeps its attention processors and state-dict keys. The VAE is left
as it is: compiling its decoder too did not speed up the full-size benchmark on an H100.

``compile_mode="reduce-overhead"`` adds CUDA graphs, which pay off when the UNet's launch overhead
is a visible part of a step (small batches, fast GPUs); ``max-autotune`` tunes kernels for minutes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Literal, get_args

import torch
from diffusers import UNet2DConditionModel

from .components import DiffusionComponents

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


@dataclass(frozen=True)
class Acceleration:
    """Which speed-ups the sampling UNet gets (all off: the UNet is used as loaded).

    Attributes:
        channels_last: Store the UNet's weights and activations NHWC (faster convolutions on
            tensor cores).
        fuse_qkv: Fuse each attention's query/key/value projections into one matmul (diffusers'
            ``fuse_qkv_projections``).
        compile: ``torch.compile`` the UNet (``fullgraph=True``); the first call compiles.
        compile_mode: torch.compile's mode, one of ``COMPILE_MODES``.
    """

    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False
    compile_mode: CompileMode = "default"

    def __post_init__(self) -> None:
        for name in ("channels_last", "fuse_qkv", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Acceleration.{name} must be a bool, got {getattr(self, name)!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"Acceleration.compile_mode must be one of {COMPILE_MODES}, "
                f"got {self.compile_mode!r}"
            )

    @property
    def enabled(self) -> bool:
        """Whether any speed-up is on."""
        return self.channels_last or self.fuse_qkv or self.compile


def accelerate_unet(
    unet: UNet2DConditionModel, acceleration: Acceleration
) -> UNet2DConditionModel:
    """A sampling copy of ``unet`` with the requested speed-ups (``unet`` itself is untouched).

    The copy keeps the original's device and dtype; a compiled copy still answers ``.config``,
    ``.device`` and ``.dtype`` (torch.compile forwards attribute access to the module).

    Args:
        unet: The frozen UNet, already on its sampling device and dtype.
        acceleration: Which speed-ups to apply.

    Returns:
        ``unet`` itself when nothing is enabled, else the prepared copy.
    """
    if not acceleration.enabled:
        return unet
    fast = copy.deepcopy(unet).eval().requires_grad_(False)
    if acceleration.fuse_qkv:
        fast.fuse_qkv_projections()
    if acceleration.channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if acceleration.compile:
        fast = torch.compile(fast, mode=acceleration.compile_mode, fullgraph=True)
    return fast


def accelerate(components: DiffusionComponents, acceleration: Acceleration) -> DiffusionComponents:
    """``components`` with the sampling copy of the UNet (the other parts are shared)."""
    return replace(components, unet=accelerate_unet(components.unet, acceleration))
