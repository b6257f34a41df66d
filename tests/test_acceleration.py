"""Sampling speed-ups keep the sampler's output and never touch the module they were made from."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules.generation import GenerationRequests
from lightning_modules.diffusion import (
    Acceleration,
    TinyDiffusionConfig,
    accelerate,
    accelerate_unet,
    build_tiny_components,
    encode_prompts,
)
from lightning_modules.sampling import GuidanceConfig, make_generators, sample
from lightning_modules.synthesis import Synthesizer

GUIDANCE = GuidanceConfig(variant="disc_ds", guidance_scale=2.0)


def _disc_ds(components, seeds=(0, 1)) -> torch.Tensor:
    cond = encode_prompts(components, ["a photo of ramen", "a photo of pho"])
    neg = encode_prompts(components, ["a photo of pho", "a photo of ramen"])
    uncond = encode_prompts(components, [""])
    return sample(components, cond, uncond, GUIDANCE, make_generators(seeds), neg=neg,
                  num_inference_steps=3)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("compile", 1, "must be a bool"), ("compile_mode", "fast", "must be one of")],
)
def test_acceleration_validates(field, value, expected) -> None:
    with pytest.raises(ValueError, match=f"Acceleration.{field} {expected}"):
        Acceleration(**{field: value})


def test_nothing_enabled_is_the_unet_itself() -> None:
    unet = build_tiny_components().unet
    assert accelerate_unet(unet, Acceleration()) is unet


def test_channels_last_and_fused_qkv_keep_the_images_and_the_original() -> None:
    tiny = build_tiny_components(TinyDiffusionConfig(seed=0))
    keys = sorted(tiny.unet.state_dict())
    processors = {type(p).__name__ for p in tiny.unet.attn_processors.values()}
    fast = accelerate(tiny, Acceleration(channels_last=True, fuse_qkv=True))

    assert fast.unet is not tiny.unet and fast.vae is tiny.vae
    assert any("Fused" in type(p).__name__ for p in fast.unet.attn_processors.values())
    torch.testing.assert_close(_disc_ds(fast), _disc_ds(tiny), atol=1e-5, rtol=0)
    assert sorted(tiny.unet.state_dict()) == keys  # the original is neither fused nor copied
    assert {type(p).__name__ for p in tiny.unet.attn_processors.values()} == processors


class ChecksTheSamplingCopy(L.Callback):
    """Looks at the module while it predicts: the copy is in use and stays out of the state dict."""

    def __init__(self) -> None:
        self.checked = 0

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        fast = pl_module._sampling.unet
        assert fast is not pl_module.unet
        assert any("Fused" in type(p).__name__ for p in fast.attn_processors.values())
        assert fast.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert not any(k.startswith("_sampling") for k in pl_module.state_dict())
        self.checked += 1


def _predict(real, acceleration: Acceleration, callbacks=()) -> tuple[Synthesizer, torch.Tensor]:
    model = Synthesizer(tiny=TinyDiffusionConfig(), num_inference_steps=2,
                        guidance=GuidanceConfig(variant="cads"), acceleration=acceleration)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=list(callbacks))
    data = GenerationRequests(real, per_class=1, image_size=32, batch_size=5)
    outputs = trainer.predict(model, datamodule=data)
    return model, torch.cat([o.images for o in outputs])


def test_synthesizer_predicts_with_the_accelerated_copy(tiny_datamodule) -> None:
    plain_model, plain = _predict(tiny_datamodule, Acceleration())
    check = ChecksTheSamplingCopy()
    model, images = _predict(
        tiny_datamodule, Acceleration(channels_last=True, fuse_qkv=True), [check]
    )
    assert check.checked == 2  # 10 requests in batches of 5
    torch.testing.assert_close(images, plain, atol=1e-5, rtol=0)
    assert sorted(model.state_dict()) == sorted(plain_model.state_dict())
    assert model._sampling is None  # released when prediction ends


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile check runs on a GPU")
def test_compiled_unet_matches_eager_on_gpu() -> None:
    tiny = build_tiny_components(TinyDiffusionConfig(seed=0))
    tiny.unet.cuda(), tiny.text_encoder.cuda(), tiny.vae.cuda()
    fast = accelerate(tiny, Acceleration(channels_last=True, compile=True))
    # Inductor reorders float32 sums: an H100 measured 4.0e-4 at most (0.1 of an 8-bit level).
    torch.testing.assert_close(_disc_ds(fast), _disc_ds(tiny), atol=1e-3, rtol=0)
