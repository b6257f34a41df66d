"""The diffusion fine-tune: shipped configs, resume with EMA, pipelines diffusers can load."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_SETTINGS

CONFIGS = Path("experiments/configs")
# Shrink the embedded pixel-space model (pre-training config) to diffusers' test shapes.
TINY_PIXEL = [
    "--model.init_args.tiny.sample_size=8",
    "--model.init_args.tiny.block_out_channels=[4,8]",
    "--model.init_args.tiny.cross_attention_dim=8",
    "--model.init_args.tiny.attention_head_dim=2",
    "--model.init_args.tiny.text_heads=2",
    "--model.init_args.tiny.text_intermediate_size=16",
    "--model.init_args.tiny.norm_num_groups=2",
    "--data.init_args.resolution=8",
]
# The last callback of the shipped fine-tune configs is the SampleGrid: keep its grid small.
FAST_GRID = [
    "--trainer.callbacks.init_args.per_class=1",
    "--trainer.callbacks.init_args.max_classes=3",
    "--trainer.callbacks.init_args.num_inference_steps=2",
    "--trainer.enable_progress_bar=false",
]


def real_data_args(cache: str, batch_size: int = 8) -> list[str]:
    """Point the wrapped real datamodule at the tiny embedded dataset."""
    prefix = "--data.init_args.real.init_args"
    args = [f"{prefix}.cache_dir={cache}"]
    args += [f"{prefix}.settings.{k}={v}" for k, v in TINY_SETTINGS.items()]
    return args + [f"--data.init_args.batch_size={batch_size}"]


def write_subclasses_csv(datamodule, path: Path) -> Path:
    """A subclasses.csv for the tiny dataset: sub-class = image number modulo 2."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "class_name", "subclass", "is_exemplar"])
        for i, s in enumerate(datamodule.index.train):
            writer.writerow([s.path, s.label, datamodule.index.class_names[s.label], i % 2, 0])
    return path


def _run(args: list[str]) -> None:
    from experiments.__main__ import cli_main

    cli_main(args)


NO_CLUSTER = ["--config", str(CONFIGS / "variants" / "no_cluster.yaml")]


def test_the_no_cluster_variant_gives_class_prompts(capsys) -> None:
    from experiments.__main__ import cli_main

    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "embedded" / "finetune_clusdiff.yaml"),
                  *NO_CLUSTER, "--print_config"])
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert data["prompt_template"] == "A photo of {class_name}, a type of food."
    assert data["subclasses_csv"] is None


@pytest.mark.parametrize("config", ["no_cluster", "finetune_clusdiff.yaml"])
def test_embedded_finetune_fast_dev_run_pixel_space(
    config, embedded_cache, tiny_datamodule, tmp_path
) -> None:
    from lightning_modules.diffusion import load_components

    run_dir = tmp_path / "run"
    args = ["fit", "--config", str(CONFIGS / "embedded" / "finetune_clusdiff.yaml"),
            *(NO_CLUSTER if config == "no_cluster" else []), *real_data_args(embedded_cache)]
    # The shipped configs fine-tune the shipped pre-trained model (experiments/assets).
    args += [*FAST_GRID, "--trainer.fast_dev_run=true"]
    args.append(f"--trainer.default_root_dir={run_dir}")
    if config != "no_cluster":
        csv_path = write_subclasses_csv(tiny_datamodule, tmp_path / "subclasses.csv")
        args.append(f"--data.init_args.subclasses_csv={csv_path}")
    _run(args)
    components = load_components(run_dir / "pipeline")
    assert components.vae is None and components.unet.config.in_channels == 3
    grids = list((run_dir / "samples").glob("step*.png"))
    from PIL import Image

    width, height = Image.open(grids[0]).size  # labelled rows, tiles drawn large
    assert len(grids) >= 1 and width >= 200 and height >= 80


def test_latent_fit_resume_ema_and_diffusers_loading(embedded_cache, tmp_path) -> None:
    from diffusers import StableDiffusionPipeline

    from lightning_modules.diffusion import load_components

    run_dir = tmp_path / "run"
    base = ["--config", str(CONFIGS / "embedded" / "finetune_clusdiff.yaml"), *NO_CLUSTER,
            "--model", str(Path(__file__).parent / "configs" / "diffusion_tiny_latent.yaml"),
            "--model.init_args.pretrained_model_name_or_path=null",
            *real_data_args(embedded_cache, batch_size=16), "--data.init_args.resolution=32",
            f"--trainer.default_root_dir={run_dir}", *FAST_GRID]
    _run(["fit", *base, "--trainer.max_epochs=1"])
    last = run_dir / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=True)
    steps = first["global_step"]  # 53 images / 16 = 4 steps
    assert steps == 4 and first["unet_ema"]["optimization_step"] == steps
    assert all(k.startswith("unet.") for k in first["state_dict"])  # frozen parts left out

    _run(["fit", *base, "--trainer.max_epochs=2", "--ckpt_path=last"])
    second = torch.load(last, map_location="cpu", weights_only=True)
    assert second["global_step"] == 2 * steps and second["epoch"] == first["epoch"] + 1
    assert second["unet_ema"]["optimization_step"] == 2 * steps  # EMA state was restored

    # The saved pipeline holds the EMA weights and loads in diffusers and in load_components.
    pipe = StableDiffusionPipeline.from_pretrained(run_dir / "pipeline", local_files_only=True)
    for saved, shadow in zip(pipe.unet.parameters(), second["unet_ema"]["shadow_params"]):
        torch.testing.assert_close(saved.detach(), shadow)
    images = pipe(
        "A photo of pizza, a type of food.", num_inference_steps=2, output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
    assert load_components(run_dir / "pipeline").vae is not None


@pytest.mark.parametrize("config", ["no_cluster", "finetune_clusdiff.yaml"])
def test_food101_lt_finetune_configs_on_a_local_tiny_sd(
    config, embedded_cache, tiny_datamodule, tmp_path
) -> None:
    """The real-SD configs, pointed at a local tiny SD and the tiny data, on a CPU, fp32."""
    from lightning_modules.diffusion import (
        TinyDiffusionConfig,
        build_tiny_components,
        load_components,
        save_pipeline,
    )

    sd_dir = save_pipeline(build_tiny_components(TinyDiffusionConfig()), tmp_path / "sd")
    run_dir = tmp_path / "run"
    args = ["fit", "--config", str(CONFIGS / "sd14" / "finetune_clusdiff.yaml"),
            *(NO_CLUSTER if config == "no_cluster" else []),
            f"--model.init_args.pretrained_model_name_or_path={sd_dir}",
            f"--data.init_args.real={CONFIGS / 'data' / 'embedded.yaml'}",
            *real_data_args(embedded_cache, batch_size=2), "--data.init_args.resolution=32",
            "--data.init_args.num_workers=0", "--trainer.accelerator=cpu",
            "--trainer.precision=32", "--trainer.fast_dev_run=true", *FAST_GRID,
            f"--trainer.default_root_dir={run_dir}"]
    if config != "no_cluster":
        csv_path = write_subclasses_csv(tiny_datamodule, tmp_path / "subclasses.csv")
        args.append(f"--data.init_args.subclasses_csv={csv_path}")
    else:  # the LoRA path: only adapters train; the saved pipeline has them fused
        args.append("--model.init_args.lora_rank=2")
    _run(args)
    saved = load_components(run_dir / "pipeline").unet
    assert not any("lora" in k for k in saved.state_dict())


def test_errors_name_the_argument(tiny_datamodule, tmp_path) -> None:
    from datamodules.diffusion_data import DiffusionFineTuneData
    from lightning_modules.diffusion.finetune import DiffusionFineTune

    with pytest.raises(ValueError, match="exactly one of"):
        DiffusionFineTune()
    with pytest.raises(FileNotFoundError, match="no-such-sd"):
        DiffusionFineTune(pretrained_model_name_or_path=str(tmp_path / "no-such-sd"))
    with pytest.raises(ValueError, match="subclass"):
        DiffusionFineTuneData(tiny_datamodule, subclasses_csv=str(tmp_path / "s.csv"))
    data = DiffusionFineTuneData(
        tiny_datamodule, prompt_template="{class_name} {subclass}",
        subclasses_csv=str(tmp_path / "missing.csv"),
    )
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        data.setup("fit")


def test_datamodule_batches_and_pretrain_split(tiny_datamodule, tmp_path) -> None:
    from datamodules.diffusion_data import DiffusionFineTuneData

    csv_path = write_subclasses_csv(tiny_datamodule, tmp_path / "subclasses.csv")
    data = DiffusionFineTuneData(
        tiny_datamodule, resolution=16, prompt_template="{class_name} style {subclass}",
        subclasses_csv=str(csv_path), batch_size=4,
    )
    data.setup("fit")
    images, prompts = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert all(" style " in p for p in prompts)
    grid = data.grid_prompts(per_class=3)
    assert len(grid) == 10 and all(len(row) == 3 for row in grid)
    assert grid[0][0] != grid[0][1]  # ClusDiff grids show different sub-classes
    pretrain = DiffusionFineTuneData(tiny_datamodule, resolution=16, split="pretrain")
    pretrain.setup("fit")
    assert len(pretrain.dataset) == 10 * TINY_SETTINGS["num_pretrain"]
    assert pretrain.dataset.prompts[0] == "A photo of garlic bread, a type of food."


def test_submode_prompts_name_the_planted_sub_mode_at_the_set_rate(tiny_datamodule) -> None:
    """A share of the corpus prompts (exactly the rate, the same images every run) name the
    image's planted sub-mode in ClusDiff's slot; a bad rate or template is refused first."""
    from datamodules.diffusion_data import DiffusionFineTuneData, image_key

    planted = tiny_datamodule.planted_submodes()

    def prompts(rate: float) -> tuple[list[str], list]:
        data = DiffusionFineTuneData(tiny_datamodule, split="pretrain", submode_prompt_rate=rate)
        data.setup("fit")
        return data.dataset.prompts, data.dataset.paths

    texts, paths = prompts(0.5)
    named = [(t, p) for t, p in zip(texts, paths) if " style " in t]
    assert len(named) == len(texts) // 2 == 20
    for text, path in named:
        name = Path(path).parent.name.replace("_", " ")
        assert text == f"A photo of {name}, style {planted[image_key(path)]}, a type of food."
    assert all(t.endswith(", a type of food.") and t.count(",") == 1
               for t in texts if " style " not in t)
    assert prompts(0.5) == (texts, paths)
    assert not any(" style " in t for t in prompts(0.0)[0])
    with pytest.raises(ValueError, match="submode_prompt_rate=1.5"):
        DiffusionFineTuneData(tiny_datamodule, split="pretrain", submode_prompt_rate=1.5)
    with pytest.raises(ValueError, match="submode_prompt_template"):
        DiffusionFineTuneData(tiny_datamodule, split="pretrain", submode_prompt_rate=0.5,
                              submode_prompt_template="A photo of {class_name}.")
    with pytest.raises(ValueError, match="format string"):
        DiffusionFineTuneData(tiny_datamodule, split="pretrain", submode_prompt_rate=0.5,
                              submode_prompt_template="{class_name}, {submode}, {subclass}")
    with pytest.raises(ValueError, match="split='pretrain' only"):  # the planted answer
        DiffusionFineTuneData(tiny_datamodule, split="train", submode_prompt_rate=0.5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_training_step_trains_only_the_unet(prediction_type: str) -> None:
    from diffusers import DDPMScheduler

    from lightning_modules.diffusion import TinyDiffusionConfig
    from lightning_modules.diffusion.finetune import DiffusionFineTune

    module = DiffusionFineTune(tiny=TinyDiffusionConfig(sample_size=8), prompt_dropout=0.5)
    config = {**module.noise_scheduler.config, "prediction_type": prediction_type}
    module.noise_scheduler = DDPMScheduler.from_config(config)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    loss = module.training_step((images, ["a photo of pizza", "a photo of pho"]), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in module.unet.parameters() if p.requires_grad)
    frozen = [*module.vae.parameters(), *module.text_encoder.parameters()]
    assert all(not p.requires_grad and p.grad is None for p in frozen)


def test_pretraining_config_trains_a_pixel_model_from_scratch(embedded_cache, tmp_path) -> None:
    from experiments.__main__ import cli_main
    from lightning_modules.diffusion import load_components

    run_dir = tmp_path / "pretrain"
    cli = cli_main(["fit", "--config", str(CONFIGS / "embedded" / "pretrain_diffusion.yaml"),
                    *real_data_args(embedded_cache), *TINY_PIXEL, "--trainer.max_steps=2",
                    "--model.init_args.tiny.cross_attention_levels=[true,false]",
                    "--model.init_args.warmup_steps=0", f"--trainer.default_root_dir={run_dir}"])
    assert load_components(run_dir / "pipeline").vae is None
    # The shipped config's cosine schedule ends at 0 after the fit's last step.
    assert cli.model.hparams.lr_schedule == "cosine"
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_finetune_logs_fid_and_is_through_the_callback(tiny_datamodule, tmp_path) -> None:
    import csv as csv_module

    import lightning as L

    from callbacks.fid import GenerativeMetricsCallback
    from datamodules.diffusion_data import DiffusionFineTuneData
    from lightning_modules.diffusion.components import TinyDiffusionConfig
    from lightning_modules.diffusion.finetune import DiffusionFineTune
    from lightning_modules.metric_features import ResNetFeatures

    data = DiffusionFineTuneData(real=tiny_datamodule, resolution=8, batch_size=16)
    model = DiffusionFineTune(
        dataset_info=data.dataset_info, save_pipeline_dir=None,
        tiny=TinyDiffusionConfig(sample_size=8, latent=False, block_out_channels=(4, 8)))
    callback = GenerativeMetricsCallback(
        ResNetFeatures(num_classes=10, name="resnet18_random"), every_n_epochs=1, num_samples=6,
        batch_size=6, stats_cache_dir=str(tmp_path / "stats"))
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert float(trainer.callback_metrics["val/fid_resnet18_random"]) > 0
    rows = list(csv_module.DictReader(open(tmp_path / "generative_metrics.csv")))
    assert len(rows) == 1 and float(rows[0]["is_resnet18_random"]) >= 1.0 - 1e-6


def test_tokenizer_keeps_the_configured_words_whole_and_spells_out_the_rest() -> None:
    from lightning_modules.diffusion.components import _char_level_clip_tokenizer

    config = yaml.safe_load((CONFIGS / "embedded" / "pretrain_diffusion.yaml").read_text())
    words = config["model"]["init_args"]["tiny"]["words"]
    tokenizer = _char_level_clip_tokenizer(words)
    # Words whose merges could break each other: "t y" of "type" inside "style", a repeated
    # first pair ("cu" in "cucumber", "pe" in "pepperoni"), shared endings ("berry").
    for word in ("type", "style", "berry", "strawberry", "cucumber", "pepperoni"):
        assert word in words
    assert all(tokenizer.tokenize(w) == [f"{w}</w>"] for w in words)
    # every word of the world's prompts is one: class names, sub-mode names, the templates
    from datamodules.embedded.spec import DISHES

    prompt_words = {m.name for d in DISHES for m in d.submodes}
    prompt_words |= {w for d in DISHES for w in d.name.split("_")}
    prompt_words |= {"a", "photo", "of", "style", "type", "food"}
    assert prompt_words <= set(words), sorted(prompt_words - set(words))
    prompt = "A photo of garlic bread, style 12, a type of food."
    assert tokenizer.tokenize(prompt) == [
        "a</w>", "photo</w>", "of</w>", "garlic</w>", "bread</w>", ",</w>", "style</w>",
        "1</w>", "2</w>", ",</w>", "a</w>", "type</w>", "of</w>", "food</w>", ".</w>"]
    assert tokenizer.tokenize("ab") == ["a", "b</w>"]  # not a word: one token per character
    assert _char_level_clip_tokenizer().tokenize("pho") == ["p", "h", "o</w>"]
    with pytest.raises(ValueError, match="Pizza"):
        _char_level_clip_tokenizer(["Pizza"])


def test_the_text_encoder_separates_sub_class_prompts_better_with_word_tokens(tmp_path) -> None:
    """The world report's prompt separation at initialisation (the shipped encoder is frozen
    there): one-token class words make a one-token sub-class id weigh as much as a class word."""
    from datamodules.embedded.spec import DISHES
    from experiments.world_report import prompt_separation
    from lightning_modules.diffusion.components import (
        TinyDiffusionConfig,
        build_tiny_components,
        save_pipeline,
    )

    tiny = yaml.safe_load((CONFIGS / "embedded" / "pretrain_diffusion.yaml").read_text())
    tiny = {k: tuple(v) if isinstance(v, list) else v
            for k, v in tiny["model"]["init_args"]["tiny"].items()}
    names = [d.name for d in DISHES]
    ratios = {}
    for label, words in (("chars", ()), ("words", tiny["words"])):
        components = build_tiny_components(TinyDiffusionConfig(**{**tiny, "words": words}))
        path = save_pipeline(components, tmp_path / label)
        ratios[label] = prompt_separation(str(path), names, 3)["ratio"]
    assert ratios["words"] > 2 * ratios["chars"]


def test_train_only_trains_the_named_parameters_and_freezes_the_rest(
    embedded_cache, tiny_datamodule, tmp_path
) -> None:
    """Cross-attention K/V only (Custom Diffusion's choice): after a step, exactly those
    weights differ from the shipped model; a name that matches nothing is refused first."""
    from lightning_modules.diffusion import load_components
    from lightning_modules.diffusion.finetune import DiffusionFineTune

    shipped = "experiments/assets/embedded_sd"
    with pytest.raises(ValueError, match="no-such-layer"):
        DiffusionFineTune(pretrained_model_name_or_path=shipped, train_only=["no-such-layer"])
    with pytest.raises(ValueError, match="train_only"):
        DiffusionFineTune(pretrained_model_name_or_path=shipped, train_only=["attn2"], lora_rank=2)

    run_dir = tmp_path / "run"
    csv_path = write_subclasses_csv(tiny_datamodule, tmp_path / "subclasses.csv")
    _run(["fit", "--config", str(CONFIGS / "embedded" / "finetune_clusdiff.yaml"),
          *real_data_args(embedded_cache), *FAST_GRID, "--trainer.fast_dev_run=true",
          "--model.init_args.train_only=[attn2.to_k,attn2.to_v]", "--model.init_args.warmup_steps=0",
          f"--data.init_args.subclasses_csv={csv_path}", f"--trainer.default_root_dir={run_dir}"])
    before = load_components(shipped).unet.state_dict()
    after = load_components(run_dir / "pipeline").unet.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    kv = {k for k in before if "attn2.to_k" in k or "attn2.to_v" in k}
    assert kv and changed == kv


def test_the_metric_and_grid_callbacks_leave_the_training_rng_alone(tiny_datamodule, tmp_path):
    """A fine-tune that measures FID / IS and draws sample grids every epoch ends with the same
    weights as one that never does: the callbacks' sampling draws from its own generators only,
    so how often they run never changes what is trained."""
    import lightning as L

    from callbacks.fid import GenerativeMetricsCallback
    from callbacks.sample_grid import SampleGrid
    from datamodules.diffusion_data import DiffusionFineTuneData
    from lightning_modules.diffusion.components import TinyDiffusionConfig
    from lightning_modules.diffusion.finetune import DiffusionFineTune
    from lightning_modules.metric_features import ResNetFeatures

    def fit(callbacks: list) -> dict:
        L.seed_everything(0, verbose=False)
        data = DiffusionFineTuneData(real=tiny_datamodule, resolution=8, batch_size=8)
        model = DiffusionFineTune(
            dataset_info=data.dataset_info, save_pipeline_dir=None, prompt_dropout=0.5,
            tiny=TinyDiffusionConfig(sample_size=8, latent=False, block_out_channels=(4, 8)))
        trainer = L.Trainer(max_epochs=3, limit_train_batches=2, accelerator="cpu", logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            callbacks=callbacks, default_root_dir=tmp_path)
        trainer.fit(model, data)
        return {k: v.clone() for k, v in model.unet.state_dict().items()}

    measured = fit([
        GenerativeMetricsCallback(ResNetFeatures(num_classes=10, name="resnet18_random"),
                                  every_n_epochs=1, num_samples=4, batch_size=4,
                                  stats_cache_dir=str(tmp_path / "stats")),
        SampleGrid(every_n_steps=1, per_class=1, max_classes=2, num_inference_steps=2,
                   output_dir=str(tmp_path / "grids")),
    ])
    assert len(list((tmp_path / "grids").glob("*.png"))) >= 3  # the callbacks did run
    plain = fit([])
    assert measured.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(measured[name], plain[name], rtol=0, atol=0, msg=name)
