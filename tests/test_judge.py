"""The judge of synthetic sets: figures that must move when a set is wrong, on the real renderer.

The judge here is a quickly trained oracle of the tiny dataset (weaker than the default one, so
its accuracy bar is not required): the tests compare sets with the real split through the same
judge, so they hold for any judge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SETTINGS

from datamodules.embedded import EmbeddedSettings
from datamodules.manifest import ManifestRow, write_manifest
from experiments.judge import judge_sets
from lightning_modules.judge.oracle import EmbeddedJudge, OracleSettings

SMALL_ORACLE = OracleSettings(per_submode=60, epochs=8)


@pytest.fixture(scope="module")
def small_judge(embedded_cache) -> EmbeddedJudge:
    return EmbeddedJudge(embedded_cache, EmbeddedSettings(**TINY_SETTINGS), SMALL_ORACLE,
                         require_accuracy=False)


def _copies(out: Path, datamodule, relabel=None, negative=None, repeat=False) -> Path:
    """A 'synthetic' set of real test images: each with its own label, or ``relabel[name]``;
    ``repeat``: the first test image of each class, four times."""
    names, rows = datamodule.dataset_info.class_names, []
    for label, name in enumerate(names):
        tests = [s for s in datamodule.index.test if s.label == label]
        if repeat:
            tests = [tests[0]] * len(tests)
        claimed = (relabel or {}).get(name, name)
        for k, sample in enumerate(tests):
            rel = f"images/{claimed}/{name}_{k:03d}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample.path, out / rel)
            rows.append(ManifestRow(path=rel, label=names.index(claimed), class_name=claimed,
                                    seed=len(rows), sampler="copy",
                                    negative_class_name=(negative or {}).get(claimed)))
    return write_manifest(out / "manifest.jsonl", rows)


def _figures(report_dir: Path, name: str) -> dict:
    return json.loads((report_dir / name / "judge.json").read_text())["figures"]


def test_copies_swaps_and_repeats(small_judge, tiny_datamodule, tmp_path):
    swap = {"garlic_bread": "french_toast", "french_toast": "garlic_bread"}
    sets = {
        "copies": _copies(tmp_path / "copies", tiny_datamodule),
        "swapped": _copies(tmp_path / "swapped", tiny_datamodule, relabel=swap,
                           negative=swap),  # each claimed class names its true class as negative
        "repeated": _copies(tmp_path / "repeated", tiny_datamodule, repeat=True),
    }
    out = tmp_path / "report"
    metrics = judge_sets([str(p) for p in sets.values()], tiny_datamodule, small_judge,
                         str(out), names=list(sets), bootstrap=50)
    real = json.loads((out / "judge.json").read_text())["real_test"]
    copies, swapped, repeated = (_figures(out, n) for n in sets)

    # copies of the real test images are judged exactly as the real test images
    for key in ("fidelity", "diversity", "confusion ramen->pho", "submode_tv", "coverage"):
        assert copies[key]["value"] == pytest.approx(real[key]["value"])
    assert copies["frechet"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert copies["c2st"]["value"] <= 0.6  # indistinguishable
    assert copies["copy_rate"] is None  # not an img2img set: no source images

    # two classes' labels swapped: the swap shows as confusion and as lost fidelity
    # (the images claimed as garlic bread are french toast: judged so as often as real ones)
    assert swapped["confusion garlic_bread->french_toast"]["value"] == pytest.approx(
        _judged_as(small_judge, tiny_datamodule, "french_toast", "french_toast"))
    judged = {(a, b): _judged_as(small_judge, tiny_datamodule, a, b)
              for a in swap for b in swap}
    # each class holds 1 / num_classes of the set; a swapped image is right where it is judged
    # as its true class (the claimed one's partner)
    num_classes = len(tiny_datamodule.dataset_info.class_names)
    lost = sum(judged[a, a] - judged[a, swap[a]] for a in swap) / num_classes
    assert lost > 0.05  # the judge tells the pair apart on clearly more than half the images
    assert swapped["fidelity"]["value"] == pytest.approx(copies["fidelity"]["value"] - lost)
    assert swapped["negative_confusion"]["value"] >= 0.5  # judged as their true class

    # one repeated image per class: no diversity, one sub-mode per class covered
    assert repeated["diversity"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert repeated["coverage"]["value"] == pytest.approx(10 / 30, abs=1e-4)
    assert repeated["submode_tv"]["value"] > copies["submode_tv"]["value"]
    assert metrics["repeated/coverage"] == pytest.approx(10 / 30)
    table = (out / "judge.md").read_text()
    assert "| copies | copy |" in table and "real test split (reference)" in table


def _judged_as(judge, datamodule, class_name: str, judged_as: str) -> float:
    """Fraction of a class's real test images the judge puts in class ``judged_as``."""
    import torch

    from lightning_modules.metric_features import extract_features

    names = datamodule.dataset_info.class_names
    samples = [s for s in datamodule.index.test if s.label == names.index(class_name)]
    judged = torch.cat([o.logits.argmax(1) for o, _ in extract_features(judge, samples, 16)])
    return float((judged == names.index(judged_as)).float().mean())


def test_a_real_dataset_needs_a_named_judge(tmp_path):
    from test_datasets import make_food101

    from datamodules import Food101LT

    data = Food101LT(root=str(make_food101(tmp_path / "food")), num_head_classes=1,
                     image_size=16, resize_size=16)
    with pytest.raises(ValueError, match="no judge given for Food101LT"):
        judge_sets([str(tmp_path / "none.jsonl")], data, None, str(tmp_path / "out"))


def test_default_judge_reaches_its_accuracy_bar(tmp_path):
    """The judge of the default embedded dataset, built from scratch: >= 98 % class and >= 97 %
    sub-mode-given-class accuracy on the real test split (EmbeddedJudge refuses less)."""
    judge = EmbeddedJudge(str(tmp_path), EmbeddedSettings())
    assert judge.accuracy["class"] >= 0.98 and judge.accuracy["submode_given_class"] >= 0.97
    assert judge.accuracy["images"] == 400
    assert judge.accuracy["blurred_class"] >= 0.9  # smoothing is not read as another class
    assert len(judge.info["units"]) == 30
    assert judge.info["training_images"] == 2 * 30 * 200  # both styles


def test_judge_training_blurs_a_random_half_of_a_batch():
    """The judge's blur augmentation: about half the images change, the rest stay bit-identical;
    max_sigma 0 leaves the batch untouched."""
    import torch

    from lightning_modules.judge.oracle import _blur_half

    x = torch.rand(200, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    blurred = _blur_half(x, 1.0, torch.Generator().manual_seed(1))
    changed = (blurred != x).flatten(1).any(1)
    assert 0.35 < changed.float().mean() < 0.65
    assert blurred[changed].std() < x[changed].std()  # smoothing lowers pixel variance
    assert torch.equal(_blur_half(x, 0.0, torch.Generator().manual_seed(1)), x)


@pytest.mark.parametrize("named", [False, True], ids=["ids", "names"])
def test_steering_rate_follows_the_prompted_subclass(small_judge, tiny_datamodule, tmp_path,
                                                     named):
    """Sub-classes that are the planted sub-modes (by id, or by name), and a set whose images
    show the sub-mode of their prompted sub-class: steering rate 1; the same images with the
    sub-classes shuffled within their class: the rate falls to about chance."""
    import csv as csv_module

    from datamodules.embedded.spec import DISHES

    planted = tiny_datamodule.planted_submodes()
    mode_id = {(d.name, m.name): m.name if named else k
               for d in DISHES for k, m in enumerate(d.submodes)}
    modes_of = {d.name: [mode_id[(d.name, m.name)] for m in d.submodes] for d in DISHES}
    table = tmp_path / "subclasses.csv"
    with open(table, "w", newline="") as f:
        writer = csv_module.writer(f)
        writer.writerow(["path", "label", "class_name", "subclass", "is_exemplar"])
        for s in tiny_datamodule.index.train:
            name = Path(s.path).parent.name
            mode = planted[f"{name}/{Path(s.path).stem}"]
            writer.writerow([s.path, s.label, name, mode_id[(name, mode)], 0])
    rng = np.random.default_rng(0)
    sets = {}
    for kind in ("steered", "shuffled"):
        rows, out = [], tmp_path / kind
        for sample in tiny_datamodule.index.test:
            name, stem = Path(sample.path).parent.name, Path(sample.path).stem
            subclass = mode_id[(name, planted[f"{name}/{stem}"])]
            if kind == "shuffled":
                subclass = modes_of[name][int(rng.integers(0, 3))]
            rel = f"images/{name}/{stem}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample.path, out / rel)
            rows.append(ManifestRow(path=rel, label=sample.label, class_name=name, seed=len(rows),
                                    sampler="cfg", subclass=subclass))
        sets[kind] = write_manifest(out / "manifest.jsonl", rows)
    report = tmp_path / "report"
    judge_sets([str(p) for p in sets.values()], tiny_datamodule, small_judge, str(report),
               names=list(sets), bootstrap=20, subclasses_csv=str(table))
    steered, shuffled = (_figures(report, k) for k in sets)
    assert steered["steering_rate"]["value"] > 0.9  # sub-mode accuracy of the judge
    assert shuffled["steering_rate"]["value"] < steered["steering_rate"]["value"] - 0.3
    assert steered["steering_ari"]["value"] > shuffled["steering_ari"]["value"]
    assert steered["copy_rate"] is None  # no source images


def test_prompt_separation_measures_the_sub_class_token():
    """World figure: prompts that differ only in the sub-class id, against other classes; a
    template without the id gives exactly 0 between sub-classes."""
    from experiments.world_report import prompt_separation

    names = ["garlic_bread", "pizza", "ramen"]
    sep = prompt_separation("experiments/assets/embedded_sd", names, 3)
    assert 0.0 < sep["subclass"] < sep["class"]
    assert sep["ratio"] == pytest.approx(sep["subclass"] / sep["class"])
    blind = prompt_separation("experiments/assets/embedded_sd", names, 3, "A photo of {class_name}.")
    assert blind["subclass"] == 0.0 and blind["class"] > 0.0


def test_judge_training_is_the_same_at_any_thread_count(tmp_path):
    """A CPU's float sums depend on the thread count: the judge's cache trains at TRAIN_THREADS
    whatever the process uses, so two processes at 1 and 2 threads build the same judge; a
    cached judge that does not record its thread count (an older cache) is trained again."""
    import torch
    from safetensors.torch import load_file

    from lightning_modules.judge.oracle import TRAIN_THREADS, ensure_oracle

    world, oracle = EmbeddedSettings(**TINY_SETTINGS), OracleSettings(per_submode=6, epochs=1)
    previous, weights = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            root = ensure_oracle(tmp_path / f"cache{threads}", world, oracle)
            weights.append(load_file(str(root / "judge.safetensors")))
            assert torch.get_num_threads() == threads  # restored after training
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    info = json.loads((root / "judge.json").read_text())
    assert info["train_threads"] == TRAIN_THREADS
    del info["train_threads"]
    (root / "judge.json").write_text(json.dumps(info))
    assert ensure_oracle(tmp_path / "cache2", world, oracle) == root
    assert json.loads((root / "judge.json").read_text())["train_threads"] == TRAIN_THREADS


def test_judge_agreement_reads_each_set_with_one_judge_per_seed(tiny_datamodule, tmp_path):
    """Each seed's judge reads the sets (its own report, its own cached judge); the agreement
    holds each judge's value of every figure and their range; copies of the real test images are
    read by each judge as that judge reads the real test split."""
    from experiments.judge_agreement import judge_agreement

    swap = {"garlic_bread": "french_toast", "french_toast": "garlic_bread"}
    sets = [str(_copies(tmp_path / "copies", tiny_datamodule)),
            str(_copies(tmp_path / "swapped", tiny_datamodule, relabel=swap))]
    out = tmp_path / "agreement"
    oracle = OracleSettings(per_submode=6, epochs=1)
    metrics = judge_agreement(sets, tiny_datamodule, str(out), seeds=[3, 4], oracle=oracle,
                              bootstrap=20)
    agreement = json.loads((out / "agreement.json").read_text())
    reports = {s: json.loads((out / f"seed{s}" / "judge.json").read_text()) for s in (3, 4)}
    assert [j["judge"] for j in agreement["judges"]] == [reports[3]["judge"], reports[4]["judge"]]
    assert reports[3]["judge"] != reports[4]["judge"]  # a judge per seed, not one judge twice
    rows = {(r["set"], r["figure"]): r for r in agreement["figures"]}
    assert {f for _, f in rows} >= {"fidelity", "submode_tv", "confusion ramen->pho"}
    for (name, figure), row in rows.items():
        values = [reports[s]["sets"][name]["figures"][figure]["value"] for s in (3, 4)]
        assert row["values"] == values
        assert row["range"] == pytest.approx(max(values) - min(values))
        assert metrics[f"{name}/{figure}/range"] == row["range"]
    for s, value in zip((3, 4), rows["copies", "fidelity"]["values"]):
        assert value == pytest.approx(reports[s]["real_test"]["fidelity"]["value"])
    table = (out / "agreement.md").read_text()
    assert "| swapped | confusion garlic_bread->french_toast |" in table


def test_judge_agreement_refuses_bad_input_before_training(tiny_datamodule, tmp_path):
    """Bad seeds, and a missing manifest, are refused before a judge is trained or a report
    written."""
    from experiments.judge_agreement import judge_agreement

    out = tmp_path / "out"
    for seeds in ([0], [1, 1]):
        with pytest.raises(ValueError, match="at least two, all different"):
            judge_agreement([str(tmp_path / "none.jsonl")], tiny_datamodule, str(out),
                            seeds=seeds)
    new_seed = OracleSettings(per_submode=6, epochs=1, seed=97)  # a judge no test has trained
    with pytest.raises(FileNotFoundError, match="none.jsonl"):
        judge_agreement([str(tmp_path / "none.jsonl")], tiny_datamodule, str(out),
                        seeds=[97, 98], oracle=new_seed)
    assert not out.exists()
    judges = [d / "judge.json" for d in Path(tiny_datamodule.cache_dir).glob("judge-*")]
    assert not any(json.loads(j.read_text())["oracle"]["seed"] == 97 for j in judges
                   if j.is_file())
