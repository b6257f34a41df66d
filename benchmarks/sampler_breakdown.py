"""Where a DiSC-DS sampling step spends its time on a GPU: UNet, VAE decode, CADS annealing.

Components of the exact SD v1.4 architecture with random weights (``sampler_speed.py``), fp16.
Prints and writes (``--json``) mean seconds per call of:

- the UNet at batch 16 (diffusers' CFG, 8 images x 2 branches) and 24 (DiSC-DS, 8 x 3), eager
  and with ``Acceleration(channels_last, fuse_qkv, compile)``;
- the VAE decoder at batch 8: eager, channels_last, channels_last + compiled;
- one step's CADS annealing of 8 positive and 8 negative conditions: host time of the call and
  the time until the GPU is done.

    python benchmarks/sampler_breakdown.py --json breakdown.json     # needs a CUDA GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_speed import build_components  # noqa: E402

from lightning_modules.diffusion import Acceleration, accelerate_unet, encode_prompts  # noqa: E402
from lightning_modules.sampling import GuidanceConfig, make_generators  # noqa: E402
from lightning_modules.sampling.guidance import branch_conditions  # noqa: E402


def seconds_per_call(fn: Callable[[], object], repeats: int = 10) -> float:
    """Mean time of ``fn`` until the GPU is done, after two warm-up calls."""
    fn(), fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


@torch.inference_mode()
def breakdown() -> dict[str, float]:
    device, dtype = torch.device("cuda"), torch.float16
    c = build_components(False, device, dtype)
    emb = encode_prompts(c, ["a photo of ramen"] * 24)
    t = torch.tensor(500, device=device)
    res: dict[str, float] = {}

    cond, generators = emb[:8], make_generators(range(8))

    def cads() -> torch.Tensor:
        return branch_conditions(GuidanceConfig(), cond, cond, cond, 0.5, generators)

    start = time.perf_counter()
    for _ in range(20):
        cads()
    res["cads_host_s_per_step"] = (time.perf_counter() - start) / 20
    res["cads_total_s_per_step"] = seconds_per_call(cads, 20)

    def unet_call(unet: torch.nn.Module, batch: int) -> Callable[[], object]:
        x = torch.randn(batch, 4, 64, 64, device=device, dtype=dtype)
        return lambda: unet(x, t, encoder_hidden_states=emb[:batch], return_dict=False)

    fast = accelerate_unet(c.unet, Acceleration(channels_last=True, fuse_qkv=True, compile=True))
    for name, unet in (("eager", c.unet), ("clfuse_compiled", fast)):
        for batch in (16, 24):
            res[f"unet_{name}_B{batch}"] = seconds_per_call(unet_call(unet, batch))

    latents = torch.randn(8, 4, 64, 64, device=device, dtype=dtype)

    def decode() -> torch.Tensor:
        return c.vae.decode(latents).sample

    res["vae_decode_eager_B8"] = seconds_per_call(decode, 3)
    c.vae.to(memory_format=torch.channels_last)
    res["vae_decode_cl_B8"] = seconds_per_call(decode, 3)
    c.vae.decoder = torch.compile(c.vae.decoder)
    res["vae_decode_cl_compiled_B8"] = seconds_per_call(decode, 3)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = {"device": torch.cuda.get_device_name(), **breakdown()}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
