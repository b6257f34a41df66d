"""The sampler against diffusers itself, on a tiny random Stable Diffusion built offline (CPU).

Degenerate DiSC-DS (annealing without noise, alpha = 1) and plain CFG must reproduce
StableDiffusionPipeline / StableDiffusionImg2ImgPipeline (docs/algorithms.md, the degenerate case).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
)

from lightning_modules.diffusion import (
    DiffusionComponents,
    TinyDiffusionConfig,
    build_tiny_components,
    encode_prompts,
    load_components,
    save_pipeline,
)
from lightning_modules.sampling import GuidanceConfig, make_generators, sample

PROMPTS = ["a photo of garlic bread, a type of food.", "a photo of french toast, a type of food."]
NEGATIVES = ["a photo of bruschetta, a type of food.", "a photo of waffles, a type of food."]
SEEDS = [0, 1]
CFG = GuidanceConfig(variant="cfg", guidance_scale=2.0)
# Annealing on (default tau1/tau2, gamma goes 0 -> 1) but without noise, and alpha = 1: CFG.
DEGENERATE_DISC_DS = GuidanceConfig(
    variant="disc_ds", guidance_scale=2.0, noise_scale=0.0, alpha=1.0
)


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny models are ~50x slower with 2 contending intra-op threads on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> DiffusionComponents:
    return build_tiny_components(TinyDiffusionConfig(seed=0))


@pytest.fixture(scope="module")
def embeddings(tiny: DiffusionComponents) -> dict[str, torch.Tensor]:
    return {
        "cond": encode_prompts(tiny, PROMPTS),
        "uncond": encode_prompts(tiny, [""]),
        "neg": encode_prompts(tiny, NEGATIVES),
    }


@pytest.fixture(scope="module")
def init_images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(123))


def _pipeline(cls: type, c: DiffusionComponents, scheduler_cls: type) -> StableDiffusionPipeline:
    pipe = cls(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=scheduler_cls.from_config(c.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ours(c: DiffusionComponents, emb: dict, guidance: GuidanceConfig, seeds: list[int], **kw):
    return sample(
        c, emb["cond"], emb["uncond"], guidance, make_generators(seeds), neg=emb["neg"], **kw
    )


@pytest.mark.parametrize("scheduler_cls", [DPMSolverMultistepScheduler, DDIMScheduler])
def test_text_to_image_equals_stable_diffusion_pipeline(tiny, embeddings, scheduler_cls) -> None:
    pipe = _pipeline(StableDiffusionPipeline, tiny, scheduler_cls)
    expected = pipe(
        PROMPTS,
        num_inference_steps=4,
        guidance_scale=2.0,
        generator=make_generators(SEEDS),
        output_type="pt",
    ).images
    assert ((expected > 0) & (expected < 1)).float().mean() > 0.9  # mostly unclamped: informative
    scheduler = scheduler_cls.from_config(tiny.scheduler.config)
    for guidance in (CFG, DEGENERATE_DISC_DS):
        ours = _ours(tiny, embeddings, guidance, SEEDS, scheduler=scheduler, num_inference_steps=4)
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    full = _ours(
        tiny, embeddings, GuidanceConfig(), SEEDS, scheduler=scheduler, num_inference_steps=4
    )
    assert (full - expected).abs().max() > 1e-2  # the real DiSC-DS does differ


def test_img2img_equals_stable_diffusion_img2img_pipeline(tiny, embeddings, init_images) -> None:
    pipe = _pipeline(StableDiffusionImg2ImgPipeline, tiny, DPMSolverMultistepScheduler)
    expected = pipe(
        PROMPTS,
        image=init_images,
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=2.0,
        generator=make_generators(SEEDS),
        output_type="pt",
    ).images
    for guidance in (CFG, DEGENERATE_DISC_DS):
        ours = _ours(
            tiny,
            embeddings,
            guidance,
            SEEDS,
            num_inference_steps=5,
            init_images=init_images,
            strength=0.6,
        )  # default scheduler: DPM-Solver++ from the components' config
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("img2img", [False, True])
def test_image_depends_only_on_its_own_seed(tiny, embeddings, init_images, img2img) -> None:
    """DDPM (noise in every step) + DiSC-DS annealing: every random draw is per sample."""
    emb3 = {k: torch.cat([v[:1], v[-1:], v[:1]]) for k, v in embeddings.items()}
    emb3["uncond"] = embeddings["uncond"]
    kw = {"scheduler": DDPMScheduler.from_config(tiny.scheduler.config), "num_inference_steps": 4}
    if img2img:
        kw |= {"init_images": init_images[[1, 0, 1]], "strength": 0.75}
    batch = _ours(tiny, emb3, GuidanceConfig(), [5, 7, 9], **kw)
    if img2img:
        kw["init_images"] = kw["init_images"][1:2]
    emb1 = {"cond": emb3["cond"][1:2], "uncond": emb3["uncond"], "neg": emb3["neg"][1:2]}
    alone = _ours(tiny, emb1, GuidanceConfig(), [7], **kw)
    torch.testing.assert_close(alone[0], batch[1], atol=1e-5, rtol=0)
    assert (batch[0] - batch[2]).abs().max() > 1e-2  # same inputs, other seed: other image


def test_pixel_space_model_samples_without_vae() -> None:
    c = build_tiny_components(TinyDiffusionConfig(latent=False, sample_size=16))
    assert c.vae is None and c.unet.config.in_channels == 3
    cond, uncond = encode_prompts(c, PROMPTS), encode_prompts(c, [""])
    images = sample(
        c,
        cond,
        uncond,
        GuidanceConfig(variant="cads"),
        make_generators(SEEDS),
        num_inference_steps=3,
    )
    assert images.shape == (2, 3, 16, 16) and images.min() >= 0.0 and images.max() <= 1.0
    init = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    images = sample(
        c,
        cond,
        uncond,
        CFG,
        make_generators(SEEDS),
        num_inference_steps=3,
        init_images=init,
        strength=0.5,
    )
    assert images.shape == (2, 3, 16, 16)


def test_sampler_leaves_scheduler_reusable_and_validates(tiny, embeddings) -> None:
    scheduler = DPMSolverMultistepScheduler.from_config(tiny.scheduler.config)
    kw = {"scheduler": scheduler, "num_inference_steps": 2}
    first = _ours(tiny, embeddings, GuidanceConfig(clock="absolute"), SEEDS, **kw)
    assert scheduler.num_inference_steps is None  # the argument itself was never stepped
    torch.testing.assert_close(
        first, _ours(tiny, embeddings, GuidanceConfig(clock="absolute"), SEEDS, **kw)
    )
    with pytest.raises(ValueError, match="needs neg"):
        sample(
            tiny, embeddings["cond"], embeddings["uncond"], GuidanceConfig(), make_generators(SEEDS)
        )
    with pytest.raises(ValueError, match=r"init_images must be in \[0, 1\]"):
        _ours(tiny, embeddings, CFG, SEEDS, init_images=-torch.ones(2, 3, 32, 32), strength=0.5)
    with pytest.raises(ValueError, match="one generator per image"):
        _ours(tiny, embeddings, CFG, [0])


def test_save_and_load_round_trip(tiny, embeddings, tmp_path: Path) -> None:
    path = save_pipeline(tiny, tmp_path / "tiny-sd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-sd"]  # no partial leftovers
    pipe = StableDiffusionPipeline.from_pretrained(
        path, local_files_only=True
    )  # diffusers reads it
    assert pipe.safety_checker is None
    loaded = load_components(path)
    torch.testing.assert_close(encode_prompts(loaded, PROMPTS), embeddings["cond"])
    for name in ("unet", "vae"):
        ours, theirs = getattr(tiny, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert loaded.scheduler.config.set_alpha_to_one is False
    with pytest.raises(FileExistsError):
        save_pipeline(tiny, path)

    pixel = build_tiny_components(TinyDiffusionConfig(latent=False))
    save_pipeline(pixel, path, overwrite=True)
    reloaded = load_components(path)
    assert reloaded.vae is None and reloaded.unet.config.in_channels == 3


def test_load_components_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing-model.*unet/"):
        load_components(tmp_path / "missing-model")
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"\['text_encoder', 'tokenizer', 'scheduler'\]"):
        load_components(tmp_path / "partial")


@pytest.mark.parametrize("variant", ["disc_ds", "ccfg", "cfg"])
def test_trace_records_the_weights_of_the_branch_predictions(tiny, embeddings, variant) -> None:
    """The recorded w_pos / w_neg are ccfg_weights of the UNet's own branch outputs, step by
    step; recording changes no image."""
    from lightning_modules.sampling import GuidanceTrace, ccfg_weights

    guidance = GuidanceConfig(variant=variant, guidance_scale=2.0, tau=0.8)
    outputs: list[torch.Tensor] = []
    hook = tiny.unet.register_forward_hook(lambda m, a, out: outputs.append(out[0].detach()))
    trace = GuidanceTrace(guidance.ccfg_norm)
    try:
        traced = _ours(tiny, embeddings, guidance, SEEDS, num_inference_steps=4, trace=trace)
    finally:
        hook.remove()
    plain = _ours(tiny, embeddings, guidance, SEEDS, num_inference_steps=4)
    assert torch.equal(traced, plain)

    records = trace.per_image()
    assert len(records) == 2 and len(records[0]["coef_pos"]) == len(outputs) == 4
    for step, eps in enumerate(outputs):
        branches = eps.chunk(guidance.num_branches)
        if variant == "cfg":
            assert records[0]["w_neg"] is None and records[1]["coef_pos"][step] == 2.0
            continue
        tau_hat = records[0]["tau_hat"][step]
        w_pos, w_neg = ccfg_weights(*branches, 2.0, tau_hat)
        for b in range(2):
            assert records[b]["w_pos"][step] == pytest.approx(float(w_pos[b]), rel=1e-6)
            assert records[b]["w_neg"][step] == pytest.approx(float(w_neg[b]), rel=1e-6)
