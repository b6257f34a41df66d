"""FID / IS: invariants, per-class FID, the real-statistics cache, DDP equality, offline
Inception."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from callbacks.fid import GenerativeMetricsCallback
from lightning_modules.image_metrics import (
    ClasswiseFID,
    fid_metric,
    inception_score,
    is_metric,
    real_statistics,
)
from lightning_modules.metric_features import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_NAME,
    InceptionFeatures,
    MetricFeatures,
    MetricFeaturesOutput,
    default_inception_weights_path,
)


class TinyFeatures(MetricFeatures):
    """A fixed random conv net: 6 features, 5 logits (a dummy extractor for FID/IS)."""

    name = "dummy"
    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 6, 3)
            self.head = nn.Linear(6, 5)
        self.calls = 0

    def identity(self) -> str:
        return "tiny-features-v1"

    def forward(self, images: torch.Tensor) -> MetricFeaturesOutput:
        self.calls += 1
        features = self.conv(images * 2 - 1).tanh().mean(dim=(2, 3))  # (B, 6)
        return MetricFeaturesOutput(features, self.head(features) * 4)


def _images(n: int, seed: int, size: int = 12) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _fid(extractor: MetricFeatures, real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = fid_metric(extractor.num_features)
    with torch.no_grad():
        metric.update(extractor(real).features, real=True)
        metric.update(extractor(fake).features, real=False)
    return float(metric.compute())


def test_fid_of_a_set_with_itself_is_zero():
    extractor, x = TinyFeatures(), _images(64, 0)
    assert abs(_fid(extractor, x, x)) < 1e-6


def test_fid_grows_as_one_set_is_perturbed():
    extractor, x = TinyFeatures(), _images(64, 0)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    fids = [_fid(extractor, x, (x + s * noise).clamp(0, 1)) for s in (0.0, 0.05, 0.15, 0.4, 1.0)]
    assert fids[0] < 1e-6
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_inception_score_of_a_constant_set_is_one():
    extractor, metric = TinyFeatures(), is_metric()
    with torch.no_grad():
        metric.update(extractor(torch.full((16, 3, 12, 12), 0.3)).logits)
    mean, std = inception_score(metric)
    assert mean == pytest.approx(1.0, abs=1e-5) and std == 0.0
    varied = is_metric()
    with torch.no_grad():
        varied.update(extractor(_images(32, 0)).logits)
    assert inception_score(varied)[0] > mean


def test_per_class_fid_over_a_union_equals_separate_computations():
    gen = torch.Generator().manual_seed(0)
    labels_real, labels_fake = torch.arange(60) % 3, torch.arange(45) % 3
    real = torch.randn(60, 4, generator=gen) + labels_real[:, None]
    fake = torch.randn(45, 4, generator=gen) * 1.3 + labels_fake[:, None] * 0.8
    union = ClasswiseFID(4, classes=[0, 1, 2])
    union.update(real[:30], labels_real[:30], real=True)  # in pieces, classes mixed
    union.update(real[30:], labels_real[30:], real=True)
    union.update(fake, labels_fake, real=False)
    result = union.compute()
    for c in range(3):
        alone = fid_metric(4)
        alone.update(real[labels_real == c], real=True)
        alone.update(fake[labels_fake == c], real=False)
        assert result[str(c)] == pytest.approx(float(alone.compute()), rel=1e-9, abs=1e-9)
    overall = fid_metric(4)
    overall.update(real, real=True)
    overall.update(fake, real=False)
    assert result["all"] == pytest.approx(float(overall.compute()), rel=1e-9)


def test_real_statistics_are_cached_and_reused(tiny_datamodule, tmp_path):
    extractor, samples = TinyFeatures(), tiny_datamodule.index.test
    first = real_statistics(extractor, samples, "tiny:test", 16, [0, 3], str(tmp_path))
    assert len(list(tmp_path.glob("*.safetensors"))) == 3  # all, class 0, class 3
    calls = extractor.calls
    again = real_statistics(extractor, samples, "tiny:test", 16, [0, 3], str(tmp_path))
    assert extractor.calls == calls  # nothing recomputed
    for group in ("all", "0", "3"):
        assert torch.equal(first[group].features_cov_sum, again[group].features_cov_sum)
    assert int(first["0"].num_samples) == sum(s.label == 0 for s in samples)
    real_statistics(extractor, samples, "tiny:test", 12, [0], str(tmp_path))  # other size
    assert len(list(tmp_path.glob("*.safetensors"))) == 5


# ---- the callback under DDP ---------------------------------------------------------------------
class SeededGenerator(L.LightningModule):
    """A dummy model implementing the generate protocol: image i depends on its seed only."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, _ = batch
        return self.layer(images.mean(dim=(1, 2, 3))[:, None]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def generate(self, labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        images = [_images(1, s, 20)[0] * 0.6 + 0.04 * c for c, s in zip(labels.tolist(), seeds)]
        return torch.stack(images).to(self.device)


def _fit(datamodule, run_dir: Path, cache: Path, **trainer_kwargs) -> dict[str, float]:
    callback = GenerativeMetricsCallback(
        TinyFeatures(), num_samples=10, batch_size=3, stats_cache_dir=str(cache), is_splits=1,
    )
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(run_dir), callbacks=[callback], **trainer_kwargs,
    )
    try:
        trainer.fit(SeededGenerator(), datamodule=datamodule)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    with open(run_dir / "generative_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert logged["val/fid_dummy"] == pytest.approx(float(rows[0]["fid_dummy"]), abs=1e-5)
    return logged


def test_two_process_ddp_fork_equals_one_process(tiny_datamodule, tmp_path):
    one = _fit(tiny_datamodule, tmp_path / "one", tmp_path / "cache", devices=1)
    assert one["val/fid_dummy"] > 0 and one["val/is_dummy"] > 1
    two = _fit(tiny_datamodule, tmp_path / "two", tmp_path / "cache2", devices=2,
               strategy="ddp_fork")
    assert two["val/fid_dummy"] == pytest.approx(one["val/fid_dummy"], rel=1e-6)
    assert two["val/is_dummy"] == pytest.approx(one["val/is_dummy"], rel=1e-5)


# ---- Inception, offline -------------------------------------------------------------------------
def test_missing_inception_weights_name_the_file(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS_NAME) as err:
        InceptionFeatures(str(missing))
    assert str(missing) in str(err.value) and INCEPTION_WEIGHTS_ENV in str(err.value)
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match="weights_path"):
        InceptionFeatures()


def test_inception_fid_with_the_local_weights_file():
    path = default_inception_weights_path()
    if not path.is_file():
        pytest.skip(f"Inception weights absent: put {INCEPTION_WEIGHTS_NAME} at {path} "
                    f"or set {INCEPTION_WEIGHTS_ENV}")
    extractor = InceptionFeatures(str(path))
    x = _images(4, 0, 64)
    with torch.no_grad():
        out = extractor(x)
    assert out.features.shape == (4, 2048) and out.logits.shape == (4, 1008)
    assert abs(_fid(extractor, x, x)) < 1e-3
    assert _fid(extractor, x, _images(4, 1, 64)) > 1.0
    assert math.isfinite(inception_score(_is_of(out.logits))[0])


def _is_of(logits: torch.Tensor):
    metric = is_metric()
    metric.update(logits)
    return metric


# ---- the standalone evaluation ----------------------------------------------------------------
def test_evaluate_synthetic_writes_overall_and_per_class(
    tiny_datamodule, synthetic_manifest, tmp_path
):
    from jsonargparse import CLI

    from experiments.evaluate_synthetic import evaluate_synthetic

    results = evaluate_synthetic(
        str(synthetic_manifest), tiny_datamodule, TinyFeatures(), str(tmp_path / "eval"),
        stats_cache_dir=str(tmp_path / "cache"), device="cpu",
    )
    names = tiny_datamodule.index.class_names
    assert math.isfinite(results["fid_dummy"]) and results["is_dummy"] >= 1.0
    assert all(f"fid_dummy/{n}" in results for n in names)
    with open(tmp_path / "eval" / "fid.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class_name"] for r in rows] == ["all", *names]
    assert int(rows[0]["num_synthetic"]) == sum(int(r["num_synthetic"]) for r in rows[1:])

    from conftest import TINY_SETTINGS  # the same call through the tool's CLI schema

    args = ["--manifest", str(synthetic_manifest), "--out_dir", str(tmp_path / "cli"),
            "--data.class_path", "datamodules.EmbeddedFoodLT",
            f"--data.init_args.cache_dir={Path(tiny_datamodule.cache_dir)}",
            *[f"--data.init_args.settings.{k}={v}" for k, v in TINY_SETTINGS.items()],
            "--extractor.class_path", "lightning_modules.metric_features.ResNetFeatures",
            "--extractor.init_args.num_classes=10", "--per_class=false",
            f"--stats_cache_dir={tmp_path / 'cache'}", "--device=cpu"]
    cli = CLI(evaluate_synthetic, args=args, as_positional=False)
    assert set(cli) == {"fid_resnet18", "is_resnet18"}
    assert (tmp_path / "cli" / "fid.csv").stat().st_size > 0
    assert os.listdir(tmp_path / "cache")
