"""Stable Diffusion components: tiny offline builds, local loading and saving, prompt encoding."""

from .acceleration import COMPILE_MODES, Acceleration, accelerate, accelerate_unet
from .components import (
    SD_V1_SCHEDULER_CONFIG,
    DiffusionComponents,
    TinyDiffusionConfig,
    build_tiny_components,
    encode_prompts,
    load_components,
    resolve_components,
    save_pipeline,
)

__all__ = [
    "COMPILE_MODES",
    "Acceleration",
    "accelerate",
    "accelerate_unet",
    "SD_V1_SCHEDULER_CONFIG",
    "DiffusionComponents",
    "TinyDiffusionConfig",
    "build_tiny_components",
    "encode_prompts",
    "load_components",
    "resolve_components",
    "save_pipeline",
]
