"""The world report's figures of the pre-trained model's sets, on hand-made judged sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.world_report import generated_figures, world_markdown
from lightning_modules.judge.figures import Judged


def _judged(labels, judged) -> Judged:
    labels, judged = np.asarray(labels), np.asarray(judged)
    return Judged(labels=labels, judged=judged, features=np.zeros((len(labels), 2)))


def test_noise_w1_figures_say_where_the_fidelity_goes():
    # class a: 7 of 10 right, 3 judged b; class b: 9 of 10 right, 1 judged c; class c: all right
    labels = [0] * 10 + [1] * 10 + [2] * 10
    judged = [0] * 7 + [1] * 3 + [1] * 9 + [2] + [2] * 10
    names, pairs = ["a", "b", "c"], [(0, 1), (1, 0)]
    figures = generated_figures({"noise_w1": _judged(labels, judged)}, names, pairs, None, 200)
    assert figures["fidelity_w1"]["value"] == pytest.approx(26 / 30, abs=1e-4)
    assert figures["fidelity_w1_per_class"] == pytest.approx({"a": 0.7, "b": 0.9, "c": 1.0})
    assert figures["noise_w1_confusion"]["a->b"]["value"] == pytest.approx(0.3)
    assert figures["noise_w1_confusion"]["b->a"]["value"] == pytest.approx(0.0)
    assert "mode_seeking" not in figures and "img2img_c2st" not in figures


def test_world_markdown_names_each_partner_its_own_caption_noise_setting():
    estimate = {"value": 0.3, "low": 0.2, "high": 0.4}
    report = {
        "judge_accuracy": {"class": 1.0, "submode_given_class": 1.0, "blurred_class": 0.95,
                           "blur_sigma": 0.8},
        "style_c2st": estimate, "real_confusion": {"a->b": estimate},
        "caption_noise": {"a": 0.2, "b": 0.4}, "settings": {"caption_noise": {"a": 0.2, "b": 0.4}},
        "coverage": {"head_mean": 1.0, "tail_mean": 0.5, "per_class": {"a": 1.0, "b": 0.5}},
        "missing_submodes": {"a": [], "b": ["x"]}, "training_counts": {"a": 10, "b": 2},
        "fidelity_w1": estimate, "fidelity_w1_per_class": {"a": 0.7, "b": 0.9},
        "noise_w1_confusion": {"a->b": estimate},
    }
    text = world_markdown(report)
    assert "caption noise of a's corpus (measured) | 0.200 | 0.2 (the setting)" in text
    assert "caption noise of b's corpus (measured) | 0.400 | 0.4 (the setting)" in text
    assert "| confusion | from noise, w = 1, a->b | 0.300 [0.200, 0.400] | - |" in text
    assert "per class: a 0.70, b 0.90." in text


def _png(path, grey):
    from PIL import Image

    Image.fromarray((np.asarray(grey) * 255).astype(np.uint8)).convert("RGB").save(path)
    return path


def test_texture_energy_reads_fine_texture_and_not_a_flat_image(tmp_path):
    from experiments.world_report import texture_energy

    y, x = np.mgrid[0:16, 0:16]
    assert texture_energy(_png(tmp_path / "flat.png", np.full((16, 16), 0.5))) == 0.0
    checker = (x + y) % 2
    assert texture_energy(_png(tmp_path / "checker.png", checker)) == pytest.approx(4.0)
    coarse = 0.5 + 0.5 * np.sin(2 * np.pi * x / 8)
    fine = 0.5 + 0.5 * np.sin(2 * np.pi * x / 4)
    assert (texture_energy(_png(tmp_path / "fine.png", fine))
            > 2 * texture_energy(_png(tmp_path / "coarse.png", coarse)) > 0)


def test_world_markdown_reports_each_pair_class_texture_energy():
    estimate = {"value": 0.3, "low": 0.2, "high": 0.4}
    report = {
        "judge_accuracy": {"class": 1.0, "submode_given_class": 1.0, "blurred_class": 0.95,
                           "blur_sigma": 0.8},
        "style_c2st": estimate, "real_confusion": {}, "caption_noise": {},
        "settings": {"caption_noise": 0.3},
        "coverage": {"head_mean": 1.0, "tail_mean": 0.5, "per_class": {"a": 1.0}},
        "missing_submodes": {"a": []}, "training_counts": {"a": 10},
        "pair_texture": {"a": {"photo": 0.32, "web": 0.1, "noise_own": 0.105,
                               "noise_partner": None}},
        "pair_cue_energy": {"a": {"photo": {"signal": 14.0, "texture": 0.5},
                                  "web": {"signal": 36.3, "texture": 0.144}}},
    }
    text = world_markdown(report)
    assert "| texture energy of a: photo test / web corpus | 0.320 / 0.100 | - |" in text
    assert "judged a / judged its partner | 0.105 / - | - |" in text
    assert "| topping energy of a, renders: signal photo / web; fine texture photo / web | " \
        "14.00 / 36.30; 0.500 / 0.144 | - |" in text


def _img2img_set(data, strength, scheduler="DPMSolverMultistepScheduler"):
    from datamodules.manifest import ManifestRow, SyntheticSample

    names = data.index.class_names
    params = {"scheduler": scheduler, "num_inference_steps": 25, "strength": strength}
    return [SyntheticSample(s.path, s.label, ManifestRow(
        path=f"{k}.png", label=s.label, class_name=names[s.label], seed=k, sampler="cfg",
        source_image=s.path, params=params)) for k, s in enumerate(data.index.train)]


@pytest.fixture()
def sd_scheduler_dir(tmp_path):
    from lightning_modules.diffusion.components import SD_V1_SCHEDULER_CONFIG

    (tmp_path / "scheduler").mkdir()
    config = {"_class_name": "DDPMScheduler", **SD_V1_SCHEDULER_CONFIG}
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    return tmp_path


def test_ideal_img2img_from_near_pure_noise_reads_the_caption_noise(tiny_datamodule,
                                                                    sd_scheduler_dir):
    from experiments.ideal_img2img import captioned_corpus, ideal_img2img_confusion
    from experiments.world_report import measured_caption_noise

    data = tiny_datamodule
    names = data.index.class_names
    pairs = [(names.index(a), names.index(b)) for x, y in data.confusable_pairs()
             for a, b in ((x, y), (y, x))]
    report = ideal_img2img_confusion(data, _img2img_set(data, 1.0), sd_scheduler_dir, pairs,
                                     draws=16, bootstrap=50)
    assert report["timestep"] > 900 and report["alpha_bar"] < 0.01
    noise = measured_caption_noise(data)
    assert 0 < min(noise.values()) and set(captioned_corpus(data)) == set(names)
    for a, b in pairs:
        e = report["confusion"][f"{names[a]}->{names[b]}"]
        assert e["low"] <= e["value"] <= e["high"]
        assert e["value"] == pytest.approx(noise[names[a]], abs=0.1)


@pytest.mark.parametrize("strengths, scheduler, message", [
    ((0.8, 0.6), "DPMSolverMultistepScheduler", "mixes sampler settings"),
    ((0.8,), "EulerDiscreteScheduler", "sampled with EulerDiscreteScheduler"),
])
def test_ideal_img2img_refuses_a_set_it_cannot_start_like_the_sampler(
        tiny_datamodule, sd_scheduler_dir, strengths, scheduler, message):
    from experiments.ideal_img2img import ideal_img2img_confusion

    samples = [s for st in strengths for s in _img2img_set(tiny_datamodule, st, scheduler)]
    with pytest.raises(ValueError, match=message):
        ideal_img2img_confusion(tiny_datamodule, samples, sd_scheduler_dir, [(0, 5)])
