"""``python -m experiments world``: the strength of every problem planted in the embedded world,
measured with its judge, before any classifier of a synthetic-data method is trained on it.

    python -m experiments world --data experiments/configs/data/embedded.yaml --out_dir runs/world

Figures on the real data (no model needed):

- the judge's own accuracy on the real test split (class; sub-mode given the class);
- ``style_c2st``: the domain gap, a two-sample test between the photo-style test split and the
  web-style pre-training corpus in judge features (target 0.75-0.85);
- ``real_confusion``: each planted pair, each direction, on the real test split (target <= 5 %);
- ``caption_noise``: the measured fraction of the partners' pre-training images that show the
  other partner (equals the setting);
- ``coverage``: per class, the fraction of real test images whose nearest training image of the
  class (judge features) lies within the class's median within-class distance (pairwise among
  its test images): low for tail classes whose few images cover little of the class;
- ``missing_submodes``: planted sub-modes with no training image, per class.
- ``pair_texture``: per class of a planted pair, the texture energy (:func:`texture_energy`) of
  its photo test images and of the corpus images that show it: the pairs differ by their
  texture's frequency, so a web style that flattens texture erases what tells them apart.

With generated sets of the pre-trained model (same requests, ``per_class`` of every class):
``noise_w1`` / ``noise_w3`` (from pure noise, CFG scale 1 and 3) and ``img2img`` (plain CFG at the
generation stage's default scale and strength):

- ``fidelity_w1``: class fidelity from noise without guidance (target >= 0.80);
- ``fidelity_w1_per_class`` and ``noise_w1_confusion``: the same set per class and per planted
  pair direction (where the fidelity goes);
- ``mode_seeking``: submode_tv(w=3) - submode_tv(w=1), bootstrap interval (target >= 0.05,
  interval excluding 0);
- ``img2img_c2st``: generated vs real test split (target >= 0.6);
- ``img2img_confusion``: each planted pair, each direction (target >= 0.25).
- ``ideal_img2img`` (with ``model`` too): the same directions for the ideal denoiser of the
  pre-training corpus from the set's own sources and start timestep
  (:mod:`experiments.ideal_img2img`): what the corpus allows. Without the set, given
  ``generation`` (a generation config), the same from the training images at its steps and
  strength: a reading before any model is trained.
- ``pair_texture`` (with ``noise_w1``): also the texture energy of each pair class's images
  from noise judged as their own class and as the partner: a judge that reads a flat image as
  one partner shows there, as a gap between the two.

With the pre-trained model itself (``model``): ``prompt_separation``, how far apart its text
encoder puts the ClusDiff prompts of two sub-classes of one class, against two classes at the
same sub-class (mean pairwise L2 over the encoder's hidden states): a fine-tune can only bind a
sub-class its encoder tells apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datamodules import EmbeddedFoodLT
from datamodules.atomic import atomic_write_text
from datamodules.layout import Sample
from datamodules.manifest import read_manifest
from datamodules.subclass_draws import CLUSDIFF_PROMPT
from experiments.ideal_img2img import (
    captioned_corpus,
    ideal_from_training,
    ideal_img2img_confusion,
)
from experiments.judge import judge_samples
from lightning_modules.judge import figures as F
from lightning_modules.judge.oracle import EmbeddedJudge, OracleSettings

TARGETS = {
    "style_c2st": "0.75-0.85", "real_confusion": "<= 0.05", "fidelity_w1": ">= 0.80",
    "mode_seeking": ">= 0.05, interval above 0", "img2img_c2st": ">= 0.6",
    "img2img_confusion": ">= 0.25",
}


def _corpus(data: EmbeddedFoodLT) -> list[Sample]:
    names = data.index.class_names
    lines = (Path(data.root) / "meta" / "pretrain.txt").read_text().split()
    return [Sample(str(Path(data.root) / "images" / f"{k}.jpg"), names.index(k.split("/")[0]))
            for k in lines]


def measured_caption_noise(data: EmbeddedFoodLT) -> dict[str, float]:
    """Per confusable partner: the fraction of its pre-training images rendered as the other."""
    corpus = captioned_corpus(data)
    pairs = {c for pair in data.confusable_pairs() for c in pair}
    return {c: float(np.mean([shown != c for _, shown in corpus[c]]))
            for c in sorted(pairs) if corpus.get(c)}


def texture_energy(path: str | Path) -> float:
    """Mean absolute 4-neighbour Laplacian of an image's grey level (in [0, 1]) over its central
    square of 3/8 of the side, where the food is: how much fine texture it shows."""
    from datamodules.dataset import load_rgb

    g = np.asarray(load_rgb(path), dtype=np.float64).mean(axis=2) / 255.0
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    lo = (g.shape[0] * 5) // 16
    return float(lap[lo - 1:g.shape[0] - lo - 1, lo - 1:g.shape[1] - lo - 1].mean())


def _mean_energy(paths: list) -> float | None:
    return float(np.mean([texture_energy(p) for p in paths])) if paths else None


def pair_texture(
    data: EmbeddedFoodLT, noise_w1: tuple[list, F.Judged] | None = None
) -> dict[str, dict[str, float | None]]:
    """Per class of a planted pair: the mean texture energy of its photo test images
    (``photo``), of the corpus images that show it (``web``), and, given the set from noise at
    w = 1 with its judgement, of that class's images judged as itself (``noise_own``) and as
    its partner (``noise_partner``)."""
    names = data.index.class_names
    shows: dict[str, list] = {}
    for images in captioned_corpus(data).values():
        for path, shown in images:
            shows.setdefault(shown, []).append(path)
    out = {}
    for a, b in data.confusable_pairs():
        for c, partner in ((a, b), (b, a)):
            k = names.index(c)
            entry = {"photo": _mean_energy([s.path for s in data.index.test if s.label == k]),
                     "web": _mean_energy(shows.get(c, []))}
            if noise_w1 is not None:
                samples, s = noise_w1
                for key, judged_as in (("noise_own", k), ("noise_partner", names.index(partner))):
                    entry[key] = _mean_energy([x.path for x, y, j in zip(samples, s.labels, s.judged)
                                               if y == k and j == judged_as])
            out[c] = entry
    return out


def _mean_pairwise(x) -> float:
    """Mean L2 distance between the n rows of ``x`` (n, ...), over the n (n - 1) ordered pairs."""
    import torch

    n = x.shape[0]
    return float(torch.cdist(x.flatten(1), x.flatten(1)).sum() / (n * (n - 1)))


def prompt_separation(
    model: str, class_names: list[str], subclasses: int, template: str = CLUSDIFF_PROMPT
) -> dict[str, float]:
    """Mean pairwise L2 distance between the text encoder's hidden states of the prompts of
    ``subclasses`` sub-classes of one class (mean over classes), and of the classes' prompts at
    one sub-class (mean over sub-classes); ``ratio`` = sub-class / class."""
    import torch

    from lightning_modules.diffusion.components import encode_prompts, load_components

    prompts = [template.format(class_name=name.replace("_", " "), subclass=k)
               for name in class_names for k in range(subclasses)]
    with torch.no_grad():
        states = encode_prompts(load_components(model), prompts).float()  # (C * K, L, D)
    grid = states.reshape(len(class_names), subclasses, *states.shape[1:])
    within = float(np.mean([_mean_pairwise(grid[c]) for c in range(len(class_names))]))
    between = float(np.mean([_mean_pairwise(grid[:, k]) for k in range(subclasses)]))
    return {"subclass": within, "class": between, "ratio": within / between}


def coverage_by_class(train: F.Judged, test: F.Judged) -> list[float]:
    """Per class: fraction of test images whose nearest training image of the class lies within
    the class's median pairwise distance among its test images."""
    out = []
    for c in np.unique(test.labels):
        t, r = test.features[test.labels == c], train.features[train.labels == c]
        pairwise = np.linalg.norm(t[:, None] - t[None], axis=-1)[np.triu_indices(len(t), 1)]
        nearest = np.linalg.norm(t[:, None] - r[None], axis=-1).min(axis=1)
        out.append(float((nearest <= np.median(pairwise)).mean()))
    return out


def world_report(
    data: EmbeddedFoodLT,
    out_dir: str = "runs/embedded/world",
    oracle: OracleSettings = OracleSettings(),
    noise_w1: str | None = None,
    noise_w3: str | None = None,
    img2img: str | None = None,
    model: str | None = None,
    generation: str | None = None,
    prompt_template: str = CLUSDIFF_PROMPT,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Measure the planted problems; write ``world.json`` and ``world.md``; return flat metrics.

    Args:
        data: The embedded dataset.
        out_dir: Where the report goes.
        oracle: How its judge is trained.
        noise_w1: Manifest of a pre-trained-model set from noise at CFG scale 1 (optional).
        noise_w3: The same requests at CFG scale 3 (optional).
        img2img: Manifest of a plain-CFG img2img set (optional).
        model: The pre-trained model's directory, for ``prompt_separation`` and the ideal
            denoiser's start (optional).
        generation: A generation config whose steps and strength the ideal denoiser starts
            from when there is no img2img set (optional).
        prompt_template: The ClusDiff prompt ``prompt_separation`` encodes.
        bootstrap: Resamples of every interval.
        seed: Seed of the resamples.
    """
    judge = EmbeddedJudge(data.cache_dir, data.settings, oracle, require_accuracy=True)
    names, info = data.index.class_names, data.dataset_info
    planted = data.planted_submodes()

    def judged(samples, rows=None) -> F.Judged:
        return judge_samples(judge, samples, rows, names, planted, data.image_size, 256, "cpu")

    test, train, corpus = judged(data.index.test), judged(data.index.train), judged(_corpus(data))
    pairs = [(names.index(a), names.index(b)) for x, y in data.confusable_pairs()
             for a, b in ((x, y), (y, x))]
    coverage = coverage_by_class(train, test)
    head = [v for v, h in zip(coverage, info.head_mask) if h]
    tail = [v for v, h in zip(coverage, info.head_mask) if not h]
    missing = {}
    for c, name in enumerate(names):
        seen = set(train.units[train.labels == c].tolist())
        missing[name] = [judge.catalog.pairs[u][1] for u in judge.catalog.units_of(c)
                         if u not in seen]
    report: dict = {
        "settings": json.loads(json.dumps(data.settings.__dict__)),
        "judge_accuracy": judge.accuracy,
        "style_c2st": F.c2st(corpus, test, bootstrap, seed).to_dict(),
        "real_confusion": {f"{names[a]}->{names[b]}": F.pair_confusion(test, a, b, bootstrap,
                                                                       seed).to_dict()
                           for a, b in pairs},
        "caption_noise": measured_caption_noise(data),
        "coverage": {"per_class": dict(zip(names, coverage)), "head_mean": float(np.mean(head)),
                     "tail_mean": float(np.mean(tail))},
        "missing_submodes": missing,
        "training_counts": dict(zip(names, info.class_counts)),
    }
    generated, sets = {"test": test}, {}
    for key, path in (("noise_w1", noise_w1), ("noise_w3", noise_w3), ("img2img", img2img)):
        if path is not None:
            sets[key] = read_manifest(path, names)
            generated[key] = judged(sets[key], [s.row for s in sets[key]])
    noise = (sets["noise_w1"], generated["noise_w1"]) if "noise_w1" in sets else None
    report["pair_texture"] = pair_texture(data, noise)
    catalog = judge.catalog
    report.update(generated_figures(generated, names, pairs, catalog, bootstrap, seed))
    if "img2img" in sets and model is not None:
        report["ideal_img2img"] = ideal_img2img_confusion(
            data, sets["img2img"], model, pairs, bootstrap=bootstrap, seed=seed)
    elif generation is not None:
        report["ideal_img2img"] = ideal_from_training(
            data, generation, pairs, bootstrap=bootstrap, seed=seed)
    if model is not None:
        per_class = max(len(catalog.units_of(c)) for c in range(len(names)))
        report["prompt_separation"] = {
            **prompt_separation(model, list(names), per_class, prompt_template),
            "prompt_template": prompt_template}
    out = Path(out_dir)
    atomic_write_text(out / "world.json", json.dumps(report, indent=2))
    atomic_write_text(out / "world.md", world_markdown(report))
    return _flat(report)


def generated_figures(
    generated: dict[str, F.Judged], names, pairs, catalog, bootstrap: int = 1000, seed: int = 0,
) -> dict:
    """The figures of the pre-trained model's sets that are present (keys as in
    ``world_report``): fidelity and pair confusion from noise at w = 1, mode-seeking from w = 1
    to w = 3, img2img's C2ST against ``generated["test"]`` and its pair confusion."""
    report: dict = {}
    if "noise_w1" in generated:
        s = generated["noise_w1"]
        report["fidelity_w1"] = F.fidelity(s, bootstrap, seed).to_dict()
        report["fidelity_w1_per_class"] = {
            name: float(np.mean(s.judged[s.labels == c] == c)) for c, name in enumerate(names)
            if np.any(s.labels == c)}
        report["noise_w1_confusion"] = {
            f"{names[a]}->{names[b]}": _or_none(F.pair_confusion(s, a, b, bootstrap, seed))
            for a, b in pairs}
    if "noise_w1" in generated and "noise_w3" in generated:
        def tv(s):
            return F.submode_tv(s, catalog.class_of, catalog.weights, 0).value

        report["mode_seeking"] = F.bootstrap_difference(
            tv, generated["noise_w1"], generated["noise_w3"], bootstrap, seed).to_dict()
    if "img2img" in generated:
        s = generated["img2img"]
        report["img2img_c2st"] = F.c2st(s, generated["test"], bootstrap, seed).to_dict()
        report["img2img_confusion"] = {
            f"{names[a]}->{names[b]}": _or_none(F.pair_confusion(s, a, b, bootstrap, seed))
            for a, b in pairs}
    return report


def _or_none(estimate: F.Estimate | None) -> dict | None:
    return None if estimate is None else estimate.to_dict()


def _flat(report: dict) -> dict[str, float]:
    out = {"world/judge_class_accuracy": report["judge_accuracy"]["class"],
           "world/style_c2st": report["style_c2st"]["value"],
           "world/coverage_tail": report["coverage"]["tail_mean"],
           "world/coverage_head": report["coverage"]["head_mean"]}
    for key in ("fidelity_w1", "mode_seeking", "img2img_c2st"):
        if key in report:
            out[f"world/{key}"] = report[key]["value"]
    if "prompt_separation" in report:
        out["world/prompt_separation_ratio"] = report["prompt_separation"]["ratio"]
    return out


def _noise_setting(setting: float | dict[str, float], class_name: str) -> float:
    return setting[class_name] if isinstance(setting, dict) else setting


def _cell(e: dict | None) -> str:
    return "-" if e is None else f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def _energy(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def world_markdown(report: dict) -> str:
    a = report["judge_accuracy"]
    lines = [
        "| Planted problem | Figure | Measured (95 % interval) | Target |", "|---|---|---|---|",
        (f"| (judge) | class / sub-mode-given-class accuracy, real test split | "
         f"{a['class']:.4f} / {a['submode_given_class']:.4f} | >= 0.98 / >= 0.97 |"),
        (f"| (judge) | class accuracy, real test split blurred by {a['blur_sigma']} px | "
         f"{a['blurred_class']:.4f} | >= 0.9 |"),
        (f"| domain gap | style_c2st: web corpus vs photo test split | "
         f"{_cell(report['style_c2st'])} | {TARGETS['style_c2st']} |"),
    ]
    for pair, e in report["real_confusion"].items():
        lines.append(f"| confusion | real test split, {pair} | {_cell(e)} | "
                     f"{TARGETS['real_confusion']} |")
    for c, rate in report["caption_noise"].items():
        lines.append(f"| confusion | caption noise of {c}'s corpus (measured) | {rate:.3f} | "
                     f"{_noise_setting(report['settings']['caption_noise'], c)} (the setting) |")
    cov = report["coverage"]
    lines.append(f"| tail coverage | coverage, head / tail mean | {cov['head_mean']:.3f} / "
                 f"{cov['tail_mean']:.3f} | low for tail |")
    missing = {c: m for c, m in report["missing_submodes"].items() if m}
    lines.append(f"| tail coverage | sub-modes without a training image | "
                 f"{'; '.join(f'{c}: {m}' for c, m in missing.items()) or 'none'} | - |")
    if "fidelity_w1" in report:
        lines.append(f"| pre-trained model | class fidelity from noise, w = 1 | "
                     f"{_cell(report['fidelity_w1'])} | {TARGETS['fidelity_w1']} |")
    for pair, e in report.get("noise_w1_confusion", {}).items():
        lines.append(f"| confusion | from noise, w = 1, {pair} | {_cell(e)} | - |")
    if "mode_seeking" in report:
        lines.append(f"| mode-seeking | submode_tv(w=3) - submode_tv(w=1), from noise | "
                     f"{_cell(report['mode_seeking'])} | {TARGETS['mode_seeking']} |")
    if "img2img_c2st" in report:
        lines.append(f"| domain gap | img2img (plain CFG) vs real test split, C2ST | "
                     f"{_cell(report['img2img_c2st'])} | {TARGETS['img2img_c2st']} |")
        for pair, e in report["img2img_confusion"].items():
            lines.append(f"| confusion | img2img plain CFG, {pair} | {_cell(e)} | "
                         f"{TARGETS['img2img_confusion']} |")
    if "ideal_img2img" in report:
        ideal = report["ideal_img2img"]
        for pair, e in ideal["confusion"].items():
            lines.append(f"| confusion | ideal denoiser of the corpus, img2img from "
                         f"{ideal['sources']} (t = {ideal['timestep']}), {pair} | "
                         f"{_cell(e)} | - |")
    if "prompt_separation" in report:
        sep = report["prompt_separation"]
        lines.append(f"| sub-modes ClusDiff can learn | text encoder: prompt distance, two "
                     f"sub-classes / two classes of `{sep['prompt_template']}` | "
                     f"{sep['subclass']:.2f} / {sep['class']:.2f} "
                     f"(ratio {sep['ratio']:.3f}) | - |")
    for c, e in report.get("pair_texture", {}).items():
        lines.append(f"| confusion | texture energy of {c}: photo test / web corpus | "
                     f"{_energy(e['photo'])} / {_energy(e['web'])} | - |")
        if "noise_own" in e:
            lines.append(f"| confusion | texture energy of {c} from noise, w = 1: judged "
                         f"{c} / judged its partner | {_energy(e['noise_own'])} / "
                         f"{_energy(e['noise_partner'])} | - |")
    per_class = ", ".join(f"{c} {v:.2f} ({report['training_counts'][c]})"
                          for c, v in cov["per_class"].items())
    lines += ["", f"Coverage per class (training images in brackets): {per_class}."]
    if "fidelity_w1_per_class" in report:
        fidelities = ", ".join(f"{c} {v:.2f}" for c, v in report["fidelity_w1_per_class"].items())
        lines += ["", f"Class fidelity from noise at w = 1, per class: {fidelities}."]
    return "\n".join(lines) + "\n"
