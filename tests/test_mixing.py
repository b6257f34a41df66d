"""Real + synthetic DataModule: manifest validation, per-class options, every Mixup mode in fit."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_data_args

from datamodules.manifest import ManifestError
from datamodules.mixing import RealSyntheticDataModule
from experiments.__main__ import cli_main


def _rows(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def _write(manifest, rows):
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_union_and_per_class_options(tiny_datamodule, synthetic_manifest):
    dm = RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)], mode="none")
    dm.setup("fit")
    n_real = sum(tiny_datamodule.dataset_info.class_counts)
    assert len(dm.train_set) == n_real + 30
    real = tiny_datamodule.dataset_info
    info = dm.dataset_info  # head/tail from the real counts; priors from what training sees
    assert (info.class_counts, info.head_mask) == (real.class_counts, real.head_mask)
    assert info.prior_counts == [n + 3 for n in real.class_counts]
    assert real.prior_counts == real.class_counts

    assert len(RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)],
                                       max_synthetic_per_class=1).select_synthetic()) == 10
    tail = RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)], tail_only=True)
    assert {s.label for s in tail.select_synthetic()} == set(range(3, 10))
    counts = tiny_datamodule.dataset_info.class_counts
    ratio = RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)], synthetic_ratio=0.5)
    assert len(ratio.select_synthetic()) == sum(min(3, int(0.5 * c)) for c in counts)


def test_long_tail_losses_take_the_real_plus_synthetic_prior(tiny_datamodule, synthetic_manifest):
    from lightning_modules.classifier import LongTailClassifier
    from lightning_modules.losses import BalancedSoftmax

    dm = RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)], tail_only=True)
    model = LongTailClassifier(dm.dataset_info, small_input_stem=True, loss=BalancedSoftmax,
                               posthoc_logit_adjustment=1.0)
    counts = torch.tensor(tiny_datamodule.dataset_info.class_counts, dtype=torch.float32)
    counts[3:] += 3  # synthetic images of the tail classes only
    log_prior = torch.log(counts / counts.sum())
    torch.testing.assert_close(model.criterion.log_prior, log_prior)
    torch.testing.assert_close(model.eval_adjustment, log_prior)


def test_resampling_the_real_set_is_refused(tiny_datamodule, synthetic_manifest):
    tiny_datamodule.resample = "oversample"
    with pytest.raises(ValueError, match="real.resample='oversample': class resampling"):
        RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)])
    tiny_datamodule.resample = "none"


@pytest.mark.parametrize(
    "corrupt, error, match",
    [
        (lambda r: r.update(path="images/nope.png"), FileNotFoundError, r"manifest.jsonl:1: image"),
        (lambda r: r.update(class_name="sushi_burrito"), ManifestError, r":1: class 'sushi_burrito'"),
        (lambda r: r.update(label=5), ManifestError, r":1: label 5 disagrees with class"),
    ],
)
def test_bad_manifest_rows_are_named(tiny_datamodule, synthetic_manifest, corrupt, error, match):
    rows = _rows(synthetic_manifest)
    corrupt(rows[0])
    _write(synthetic_manifest, rows)
    with pytest.raises(error, match=match):
        RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)]).select_synthetic()


@pytest.mark.parametrize("input_path", ["decoded_cache", "files"])
def test_mixup_all_loader_yields_soft_targets(tiny_datamodule, synthetic_manifest, tmp_path,
                                              input_path):
    dm = RealSyntheticDataModule(tiny_datamodule, [str(synthetic_manifest)], mode="mixup_all",
                                 input_path=input_path, cache_dir=str(tmp_path))
    dm.setup("fit")
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.train_dataloader()]
    assert sum(x.shape[0] for x, _ in batches) == len(dm.train_set)
    for x, y in batches:
        assert y.shape == (x.shape[0], 10)
        assert torch.allclose(y.sum(dim=1), torch.ones(x.shape[0]))
    assert any((y.max(dim=1).values < 1).any() for _, y in batches)  # some rows were mixed


@pytest.mark.parametrize("mode", ["none", "mixup_random", "mixup_all"])
def test_fit_with_each_mode(mode, tmp_path, embedded_cache, synthetic_manifest):
    cli = cli_main([
        "fit", "--config", "experiments/configs/embedded/classifier_real_synthetic.yaml",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.fast_dev_run=true",
        *tiny_data_args(embedded_cache, "data.init_args.real.init_args"),
        f"--data.init_args.synthetic=[{synthetic_manifest}]", f"--data.init_args.mode={mode}",
    ])
    assert cli.trainer.state.finished
