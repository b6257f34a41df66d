"""Seconds per image: diffusers' StableDiffusionPipeline (CFG, 2 branches) vs DiSC-DS (3 branches).

Both run on the SAME components with the exact Stable Diffusion v1.4 architecture (UNet, VAE,
CLIP ViT-L/14 text encoder) and random weights (timing does not depend on the weights), the same
DPM-Solver++ scheduler (``from_config`` of SD v1's scheduler config), prompts, batch and seeds,
in one process. The baseline is stock diffusers; the optional speed-ups (``--channels-last``,
``--compile``, ``--fuse-qkv``) apply to this project's sampler only, on its own copy of the UNet
(``lightning_modules.diffusion.acceleration``, the same switches as the generation stage's
``model.init_args.acceleration``). Attention is PyTorch SDPA (diffusers' default
AttnProcessor2_0) for both.

    python benchmarks/sampler_speed.py                   # GPU: 512 px, 50 steps, fp16, batch 8
    python benchmarks/sampler_speed.py --compile --channels-last
    python benchmarks/sampler_speed.py --small           # CPU smoke run (< 60 s)

On a CPU the ratio's floor is about 1.5 (three UNet evaluations per step against two).

The same run also times DiSC-DS with its guidance diagnostics recorded (``GuidanceTrace``, what
the generation stage does by default), alternating the two calls (untraced, traced, untraced,
...): ``diagnostics_overhead`` is the median over the pairs of traced / untraced seconds (target
<= 1.02), so that drifts of the machine's speed hit both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from diffusers import (
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from lightning_modules.diffusion import (
    COMPILE_MODES,
    SD_V1_SCHEDULER_CONFIG,
    Acceleration,
    DiffusionComponents,
    accelerate,
    encode_prompts,
)
from lightning_modules.diffusion.components import _char_level_clip_tokenizer
from lightning_modules.sampling import GuidanceConfig, GuidanceTrace, make_generators, sample

PROMPTS = ("A photo of garlic bread, a type of food.", "A photo of ramen, a type of food.")
NEGATIVES = ("A photo of french toast, a type of food.", "A photo of pho, a type of food.")


@dataclass
class Result:
    """One benchmark run (also printed as JSON)."""

    device: str
    dtype: str
    size: str
    image_size: int
    steps: int
    batch_size: int
    repeats: int
    channels_last: bool
    fuse_qkv: bool
    compile: bool
    compile_mode: str
    diffusers_cfg_s_per_image: float
    disc_ds_s_per_image: float
    ratio: float
    disc_ds_traced_s_per_image: float
    diagnostics_overhead: float


def build_components(small: bool, device: torch.device, dtype: torch.dtype) -> DiffusionComponents:
    """SD v1.4's architecture with random weights (``small``: a scaled-down UNet/VAE/CLIP)."""
    tokenizer = _char_level_clip_tokenizer()
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=tokenizer.model_max_length,
    )
    if small:
        unet_kwargs = dict(
            sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
        )
        vae_kwargs = dict(
            block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
            sample_size=32,
        )
        text = CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, **ids,
        )
    else:  # the configs of CompVis/stable-diffusion-v1-4 (unet/, vae/, text_encoder/)
        unet_kwargs = dict(
            sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
        )
        vae_kwargs = dict(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
            norm_num_groups=32, sample_size=512,
        )
        text = CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768, **ids,
        )
    with device:  # initialise the weights on the device: far faster than on the CPU at full size
        unet = UNet2DConditionModel(**unet_kwargs)
        vae = AutoencoderKL(**vae_kwargs)
        text_encoder = CLIPTextModel(text)
    scheduler = DPMSolverMultistepScheduler.from_config(SD_V1_SCHEDULER_CONFIG)
    return DiffusionComponents(
        unet.to(device, dtype).eval().requires_grad_(False),
        text_encoder.to(device, dtype).eval().requires_grad_(False),
        tokenizer,
        scheduler,
        vae.to(device, dtype).eval().requires_grad_(False),
    )


def seconds_per_image(
    run: Callable[[], object], device: torch.device, repeats: int, batch: int
) -> float:
    """Mean wall time of ``run`` per image, after one warm-up call."""
    run()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / (repeats * batch)


def alternating(
    run_a: Callable[[], object], run_b: Callable[[], object], device: torch.device,
    repeats: int, batch: int,
) -> tuple[float, float]:
    """(median seconds per image of ``run_b``, median of the pairwise ratios b / a), the two
    calls timed alternately (a, b, a, b, ...) after a warm-up of each."""
    times: dict[int, list[float]] = {0: [], 1: []}
    run_a(), run_b()
    for _ in range(repeats):
        for key, run in ((0, run_a), (1, run_b)):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[key].append((time.perf_counter() - start) / batch)
    ratios = [b / a for a, b in zip(times[0], times[1])]
    return statistics.median(times[1]), statistics.median(ratios)


def benchmark(
    small: bool = False,
    steps: int | None = None,
    batch_size: int | None = None,
    repeats: int | None = None,
    device: str = "auto",
    channels_last: bool = False,
    fuse_qkv: bool = False,
    compile_unet: bool = False,
    compile_mode: str = "default",
) -> Result:
    """Time both samplers on the same components; see the module docstring."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    steps = steps or (4 if small else 50)
    batch = batch_size or (2 if small else 8)
    repeats = repeats or (1 if small else 3)
    components = build_components(small, dev, dtype)
    prompts = [PROMPTS[i % 2] for i in range(batch)]
    negatives = [NEGATIVES[i % 2] for i in range(batch)]
    seeds = list(range(batch))
    guidance_scale = 2.0

    pipe = StableDiffusionPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, scheduler=components.scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    def run_diffusers() -> object:
        return pipe(
            prompt=prompts, num_inference_steps=steps, guidance_scale=guidance_scale,
            generator=make_generators(seeds), output_type="pt",
        ).images

    acceleration = Acceleration(channels_last=channels_last, fuse_qkv=fuse_qkv,
                                compile=compile_unet, compile_mode=compile_mode)
    ours = accelerate(components, acceleration)
    guidance = GuidanceConfig(variant="disc_ds", guidance_scale=guidance_scale)

    def run_disc_ds(record: bool = False) -> object:
        with torch.inference_mode():
            cond = encode_prompts(ours, prompts)
            uncond = encode_prompts(ours, [""])
            neg = encode_prompts(ours, negatives)
            trace = GuidanceTrace(guidance.ccfg_norm) if record else None
            images = sample(ours, cond, uncond, guidance, make_generators(seeds), neg=neg,
                            scheduler=components.scheduler, num_inference_steps=steps,
                            trace=trace)
            return images if trace is None else (images, trace.per_image())

    baseline = seconds_per_image(run_diffusers, dev, repeats, batch)
    disc_ds = seconds_per_image(run_disc_ds, dev, repeats, batch)
    traced, overhead = alternating(
        run_disc_ds, lambda: run_disc_ds(record=True), dev, max(repeats, 5), batch
    )
    return Result(
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        dtype=str(dtype).removeprefix("torch."),
        size="small" if small else "sd-v1-4",
        image_size=components.default_image_size,
        steps=steps,
        batch_size=batch,
        repeats=repeats,
        channels_last=channels_last,
        fuse_qkv=fuse_qkv,
        compile=compile_unet,
        compile_mode=compile_mode,
        diffusers_cfg_s_per_image=baseline,
        disc_ds_s_per_image=disc_ds,
        ratio=disc_ds / baseline,
        disc_ds_traced_s_per_image=traced,
        diagnostics_overhead=overhead,
    )


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="scaled-down model, CPU-friendly")
    parser.add_argument("--steps", type=int, help="DPM-Solver++ steps (default 50; small: 4)")
    parser.add_argument("--batch-size", type=int, help="images per call (default 8; small: 2)")
    parser.add_argument("--repeats", type=int, help="timed calls after a warm-up (3; small: 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--channels-last", action="store_true", help="ours: channels_last UNet")
    parser.add_argument("--fuse-qkv", action="store_true", help="ours: fused QKV projections")
    parser.add_argument("--compile", action="store_true", help="ours: torch.compile the UNet")
    parser.add_argument("--compile-mode", default="default",
                        choices=COMPILE_MODES, help="torch.compile mode (reduce-overhead: CUDA graphs)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = benchmark(
        small=args.small, steps=args.steps, batch_size=args.batch_size, repeats=args.repeats,
        device=args.device, channels_last=args.channels_last, fuse_qkv=args.fuse_qkv, compile_unet=args.compile,
        compile_mode=args.compile_mode,
    )
    print(
        f"{result.size} {result.image_size}px, {result.steps} steps, batch {result.batch_size}, "
        f"{result.dtype} on {result.device}\n"
        f"  diffusers StableDiffusionPipeline (CFG, 2 branches): "
        f"{result.diffusers_cfg_s_per_image:.4f} s/image\n"
        f"  DiSC-DS sample() (3 branches, one batched UNet call): "
        f"{result.disc_ds_s_per_image:.4f} s/image\n"
        f"  ratio DiSC-DS / diffusers: {result.ratio:.2f}\n"
        f"  DiSC-DS with guidance diagnostics recorded: {result.disc_ds_traced_s_per_image:.4f} "
        f"s/image, overhead {result.diagnostics_overhead:.3f}x"
    )
    print(json.dumps(asdict(result)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(asdict(result), f, indent=2)
    return result


if __name__ == "__main__":
    main()
