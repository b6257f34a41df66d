"""Stable Diffusion components: build a tiny random model offline, load and save local ones.

Everything here is offline by construction: tiny models are built from configs (the tokenizer
from a generated character-level vocabulary), real models are read from a LOCAL diffusers-format
directory with ``local_files_only=True``. Nothing here downloads.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch import Tensor
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

# Scheduler config of Stable Diffusion v1.x (its scheduler_config.json, minus the PNDM-only keys);
# samplers are built from it, e.g. DPMSolverMultistepScheduler.from_config(scheduler.config).
SD_V1_SCHEDULER_CONFIG: dict[str, object] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
}
REQUIRED_SUBFOLDERS: tuple[str, ...] = ("unet", "text_encoder", "tokenizer", "scheduler")
_LAYOUT_HINT = (
    "a diffusers Stable Diffusion directory must contain the subfolders unet/ (config.json + "
    "weights), text_encoder/ (config.json + weights), tokenizer/ (vocab.json + merges.txt or "
    "tokenizer.json), scheduler/ (scheduler_config.json) and, for latent models, vae/; e.g. "
    "download CompVis/stable-diffusion-v1-4 on a machine with internet "
    "(`hf download CompVis/stable-diffusion-v1-4 --local-dir DIR`) and pass DIR"
)


@dataclass
class DiffusionComponents:
    """The parts of a text-to-image diffusion model.

    Attributes:
        unet: Noise predictor eps(x_t, t, y).
        text_encoder: CLIP text encoder producing the conditions y.
        tokenizer: Its tokenizer (``model_max_length`` set: prompts are padded to it).
        scheduler: The model's own scheduler; samplers and training schedulers are built
            ``from_config`` of it, it is not stepped directly.
        vae: Latent autoencoder, or None for a pixel-space model (the UNet then works on images in
            [-1, 1] directly).
    """

    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: SchedulerMixin
    vae: AutoencoderKL | None = None

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per UNet pixel: 2 ** (number of VAE blocks - 1), 1 in pixel space."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_image_size(self) -> int:
        """Default image height/width: the UNet's sample size times the VAE scale factor."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor


@dataclass
class TinyDiffusionConfig:
    """A tiny random Stable Diffusion for CPU tests (the shapes of diffusers' own tests).

    Attributes:
        sample_size: UNet spatial size (latent size; image size in pixel space).
        block_out_channels: UNet channels per resolution.
        cross_attention_levels: Which resolutions (highest first) get cross-attention blocks;
            ``None``: all but the lowest (diffusers' tiny test models). Attention at the highest
            resolution dominates the cost of small pixel-space models.
        layers_per_block: ResNet layers per UNet block.
        cross_attention_dim: UNet cross-attention width, which is also the text encoder's hidden
            size (they must agree, so it is declared once).
        attention_head_dim: UNet attention heads (diffusers' legacy name for the head count).
        text_layers: Transformer layers of the CLIP text encoder.
        text_heads: Attention heads of the CLIP text encoder.
        text_intermediate_size: MLP width of the CLIP text encoder.
        latent: True: with a tiny AutoencoderKL; False: pixel space (UNet in/out channels 3).
        vae_block_out_channels: VAE channels per resolution (only with ``latent``).
        latent_channels: VAE latent channels (only with ``latent``).
        norm_num_groups: GroupNorm groups of the UNet and VAE.
        seed: Seed of the random initialisation.
        words: Words the tokenizer keeps whole (one token each); everything else is spelt out
            character by character, except an ending it shares with one of the words.
    """

    sample_size: int = 16
    block_out_channels: tuple[int, ...] = (4, 8)
    cross_attention_levels: tuple[bool, ...] | None = None
    layers_per_block: int = 1
    cross_attention_dim: int = 8
    attention_head_dim: int = 2
    text_layers: int = 2
    text_heads: int = 2
    text_intermediate_size: int = 16
    latent: bool = True
    vae_block_out_channels: tuple[int, ...] = (4, 8)
    latent_channels: int = 4
    norm_num_groups: int = 2
    seed: int = 0
    words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        levels = self.cross_attention_levels
        if levels is not None and len(levels) != len(self.block_out_channels):
            raise ValueError(
                f"TinyDiffusionConfig.cross_attention_levels={levels}: expected one flag per "
                f"entry of block_out_channels={self.block_out_channels}"
            )
        downsample = 2 ** (len(self.block_out_channels) - 1)
        if self.sample_size % downsample:
            raise ValueError(
                f"TinyDiffusionConfig.sample_size must be a multiple of {downsample} for "
                f"block_out_channels={self.block_out_channels}, got {self.sample_size}"
            )
        for name in ("block_out_channels",) + (("vae_block_out_channels",) if self.latent else ()):
            bad = [c for c in getattr(self, name) if c % self.norm_num_groups]
            if bad:
                raise ValueError(
                    f"TinyDiffusionConfig.{name} must be multiples of norm_num_groups="
                    f"{self.norm_num_groups}, got {getattr(self, name)}"
                )
        if self.cross_attention_dim % self.text_heads:
            raise ValueError(
                f"TinyDiffusionConfig.cross_attention_dim={self.cross_attention_dim} must be a "
                f"multiple of text_heads={self.text_heads}"
            )


def _word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges that join each word, right to left, into one ``word</w>`` token.

    Every merge joins one character to a word's end (a token ending in ``</w>``), and a word
    holds one such token, so at each step at most one merge applies to it (until a configured
    word is whole, exactly one): the chains of different words never break each other (words
    sharing an ending share its merges).
    """
    merges: dict[tuple[str, str], None] = {}
    for word in words:
        suffix = word[-1] + "</w>"
        for char in reversed(word[:-1]):
            merges[(char, suffix)] = None
            suffix = char + suffix
    return list(merges)


def _clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]],
                    model_max_length: int) -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "vocab.json").write_text(json.dumps(vocab))
        Path(tmp, "merges.txt").write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
        )
        return CLIPTokenizer.from_pretrained(
            tmp, model_max_length=model_max_length, local_files_only=True
        )


def _char_level_clip_tokenizer(
    words: Sequence[str] = (), model_max_length: int = 77
) -> CLIPTokenizer:
    """A character-level CLIP tokenizer from a generated vocab.json and merges.txt.

    Each of ``words`` (lower-case letters) is one token, as CLIP's own BPE gives a common word
    one token; every other string is spelt out one token per character, except an ending it
    shares with one of the words (``raspberry`` -> ``r a s p berry</w>``).

    Raises:
        ValueError: A word is not lower-case ASCII letters.
        RuntimeError: A word is not one token (a guard against a change of the BPE library).
    """
    bad = [w for w in words if not (w.isascii() and w.isalpha() and w.islower())]
    if bad:
        raise ValueError(f"tokenizer words {bad}: expected lower-case ASCII letters only")
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):  # "</w>" marks the last character of a word
        for char in chars:
            vocab[char + suffix] = len(vocab)
    merges = _word_merges(list(dict.fromkeys(words)))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    tokenizer = _clip_tokenizer(vocab, merges, model_max_length)
    broken = [w for w in words if len(tokenizer.tokenize(w)) != 1]
    if broken:  # cannot happen with right-to-left chains; a guard against a tokenizer change
        raise RuntimeError(f"tokenizer words {broken} are not one token each")
    return tokenizer


def build_tiny_components(cfg: TinyDiffusionConfig | None = None) -> DiffusionComponents:
    """Build a tiny random Stable Diffusion, fully offline and deterministic in ``cfg.seed``.

    Args:
        cfg: Sizes and seed; defaults to :class:`TinyDiffusionConfig`'s defaults.

    Returns:
        Components in float32, eval mode, on the CPU; the scheduler is a DDPMScheduler with SD
        v1's config. The global RNG state is left untouched.
    """
    cfg = cfg or TinyDiffusionConfig()
    tokenizer = _char_level_clip_tokenizer(cfg.words)
    n_blocks = len(cfg.block_out_channels)
    attend = cfg.cross_attention_levels or (True,) * (n_blocks - 1) + (False,)
    image_channels = 3
    unet_channels = cfg.latent_channels if cfg.latent else image_channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = UNet2DConditionModel(
            sample_size=cfg.sample_size,
            in_channels=unet_channels,
            out_channels=unet_channels,
            block_out_channels=cfg.block_out_channels,
            layers_per_block=cfg.layers_per_block,
            down_block_types=tuple(
                "CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attend
            ),
            up_block_types=tuple(
                "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attend)
            ),
            cross_attention_dim=cfg.cross_attention_dim,
            attention_head_dim=cfg.attention_head_dim,
            norm_num_groups=cfg.norm_num_groups,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=cfg.cross_attention_dim,
                intermediate_size=cfg.text_intermediate_size,
                num_attention_heads=cfg.text_heads,
                num_hidden_layers=cfg.text_layers,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        vae = None
        if cfg.latent:
            n_vae = len(cfg.vae_block_out_channels)
            vae = AutoencoderKL(
                in_channels=image_channels,
                out_channels=image_channels,
                down_block_types=("DownEncoderBlock2D",) * n_vae,
                up_block_types=("UpDecoderBlock2D",) * n_vae,
                block_out_channels=cfg.vae_block_out_channels,
                latent_channels=cfg.latent_channels,
                norm_num_groups=cfg.norm_num_groups,
                sample_size=cfg.sample_size * 2 ** (n_vae - 1),
            ).eval()
    scheduler = DDPMScheduler.from_config(SD_V1_SCHEDULER_CONFIG)
    return DiffusionComponents(unet.eval(), text_encoder.eval(), tokenizer, scheduler, vae)


def _load_scheduler(folder: Path) -> SchedulerMixin:
    """Instantiate the scheduler class named in ``scheduler_config.json`` (e.g. PNDM for SD v1)."""
    config = json.loads((folder / "scheduler_config.json").read_text())
    name = config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not issubclass(cls, SchedulerMixin):
        raise ValueError(f"{folder / 'scheduler_config.json'}: unknown scheduler class {name!r}")
    return cls.from_config(config)


def resolve_components(
    pretrained_model_name_or_path: str | Path | None, tiny: TinyDiffusionConfig | None
) -> DiffusionComponents:
    """Components from a local diffusers directory or a tiny config; exactly one must be given."""
    if (pretrained_model_name_or_path is None) == (tiny is None):
        raise ValueError(
            "set exactly one of pretrained_model_name_or_path (a local diffusers directory) and "
            f"tiny (a TinyDiffusionConfig), got pretrained_model_name_or_path="
            f"{pretrained_model_name_or_path!r}, tiny={tiny!r}"
        )
    if tiny is not None:
        return build_tiny_components(tiny)
    return load_components(pretrained_model_name_or_path)


def load_components(path: str | Path) -> DiffusionComponents:
    """Load components from a LOCAL diffusers-format directory (never from the hub).

    Args:
        path: Directory with subfolders unet, text_encoder, tokenizer, scheduler and optional vae
            (absent: a pixel-space model, as written by :func:`save_pipeline`).

    Returns:
        The components, as stored (dtype included), in eval mode.

    Raises:
        FileNotFoundError: If the directory or a required subfolder is missing.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no local model directory at {str(path)!r}: {_LAYOUT_HINT}")
    missing = [name for name in REQUIRED_SUBFOLDERS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} lacks subfolder(s) {missing}: {_LAYOUT_HINT}")
    unet = UNet2DConditionModel.from_pretrained(root / "unet", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    vae = None
    if (root / "vae").is_dir():
        vae = AutoencoderKL.from_pretrained(root / "vae", local_files_only=True).eval()
    scheduler = _load_scheduler(root / "scheduler")
    return DiffusionComponents(unet.eval(), text_encoder.eval(), tokenizer, scheduler, vae)


def save_pipeline(
    components: DiffusionComponents, path: str | Path, overwrite: bool = False
) -> Path:
    """Save components as a diffusers directory, atomically.

    Latent models are saved through ``StableDiffusionPipeline.save_pretrained`` (no safety
    checker), so ``StableDiffusionPipeline.from_pretrained(path)`` loads them. Pixel-space models
    get the same subfolders without vae (and no model_index.json: no diffusers pipeline fits them);
    :func:`load_components` reads both. The directory is written to a hidden sibling first and
    renamed into place, so ``path`` is never half-written.

    Args:
        components: What to save.
        path: Target directory.
        overwrite: Replace an existing ``path``; otherwise an existing one is an error.

    Returns:
        ``path`` as a Path.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        if components.vae is not None:
            StableDiffusionPipeline(
                vae=components.vae,
                text_encoder=components.text_encoder,
                tokenizer=components.tokenizer,
                unet=components.unet,
                scheduler=components.scheduler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            ).save_pretrained(partial)
        else:
            components.unet.save_pretrained(partial / "unet")
            components.text_encoder.save_pretrained(partial / "text_encoder")
            components.tokenizer.save_pretrained(partial / "tokenizer")
            components.scheduler.save_pretrained(partial / "scheduler")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(partial, target)
            shutil.rmtree(old)
        else:
            os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


@torch.no_grad()
def encode_prompts(components: DiffusionComponents, prompts: list[str]) -> Tensor:
    """Text-encoder embeddings of prompts, as diffusers' StableDiffusionPipeline computes them.

    Prompts are padded (and truncated) to ``tokenizer.model_max_length``; no attention mask
    (SD v1 conditions on the padded sequence). Runs without autograd: the text encoder is frozen
    in every use in this project.

    Args:
        components: Model components.
        prompts: B prompts ("" for the unconditional embedding).

    Returns:
        last_hidden_state, (B, model_max_length, hidden_size), on the text encoder's device/dtype.
    """
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a non-empty list of str, got {prompts!r}")
    tokenizer = components.tokenizer
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids  # (B, L)
    return components.text_encoder(ids.to(components.text_encoder.device))[0]  # (B, L, D)
