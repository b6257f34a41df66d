"""``python -m experiments judge``: what synthetic sets depict, with bootstrap intervals.

    python -m experiments judge --data experiments/configs/data/embedded.yaml \
        --manifest '[runs/embedded/main/synthetic_sd/manifest.jsonl, ...]' --out_dir runs/judge

Each set is judged by a classifier that knows what an image depicts: on the embedded dataset the
oracle of class and planted sub-mode (:class:`~lightning_modules.judge.oracle.EmbeddedJudge`,
built and cached on first use); on Food-101 / VFN-LT any classifier checkpoint
(``--judge.class_path lightning_modules.metric_features.ResNetFeatures
--judge.init_args.weights_path <ckpt>``), which gives the class figures only. The figures are
defined in :mod:`lightning_modules.judge.figures`; the same figures of the real test split are
the reference beside them.

Writes ``<out_dir>/<set>/judge.json`` and ``judge.md`` per set, and ``<out_dir>/judge.json`` and
``judge.md`` (the mechanism table: one row per set).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.atomic import atomic_write_text
from datamodules.diffusion_data import image_key
from datamodules.info import PlantedTruth
from datamodules.layout import Sample
from datamodules.long_tailed import LongTailDataModule
from datamodules.manifest import SyntheticSample, read_manifest
from lightning_modules.judge import figures as F
from lightning_modules.judge.oracle import OracleSettings, submode_given_class
from lightning_modules.metric_features import MetricFeatures, extract_features


def _require_a_judge(data: LongTailDataModule, judge: MetricFeatures | None) -> None:
    """Refuse a real dataset without a named judge (only the embedded one has an oracle)."""
    from datamodules import EmbeddedFoodLT

    if judge is None and not isinstance(data, EmbeddedFoodLT):
        raise ValueError(
            f"judge: no judge given for {type(data).__name__}; name a classifier checkpoint, e.g. "
            "--judge.class_path lightning_modules.metric_features.ResNetFeatures "
            "--judge.init_args.weights_path <classifier .ckpt>"
        )


def _judge_for(
    data: LongTailDataModule, judge: MetricFeatures | None, oracle: OracleSettings,
    require_accuracy: bool,
) -> MetricFeatures:
    """The given judge, or the embedded dataset's oracle (trained first if not cached)."""
    if judge is not None:
        return judge
    from lightning_modules.judge.oracle import EmbeddedJudge

    return EmbeddedJudge(data.cache_dir, data.settings, oracle, require_accuracy)


def _run_judge(
    judge: MetricFeatures, samples: Sequence[Sample], image_size: int, batch_size: int,
    device: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, judged classes, features, unit logits or None) of an image list."""
    labels, classes, features, units = [], [], [], []
    for out, y in extract_features(judge, samples, image_size, batch_size, device=device):
        labels.append(y.cpu())
        classes.append(out.logits.argmax(1).cpu())
        features.append(out.features.cpu())
        if out.submode_logits is not None:
            units.append(out.submode_logits.cpu())
    cat = lambda xs: torch.cat(xs).numpy() if xs else None  # noqa: E731
    return cat(labels), cat(classes), cat(features), cat(units)


def subclass_majorities(
    subclasses_csv: str, planted: dict[str, str], catalog
) -> dict[tuple[str, int], int]:
    """``(class name, sub-class id) -> the planted unit most of its training images have``."""
    from collections import Counter

    from datamodules.diffusion_data import read_subclasses

    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    for key, subclass in read_subclasses(subclasses_csv).items():
        name = key.split("/", 1)[0]
        votes[(name, subclass)][catalog.index(name, planted[key])] += 1
    return {k: v.most_common(1)[0][0] for k, v in votes.items()}


def _subclass_codes(rows: Sequence) -> np.ndarray:
    """Each row's sub-class (id or name) as an integer code, -1 for none: only the steering
    ARI reads them, which compares groupings, never the values."""
    codes: dict = {}
    return np.array([-1 if r.subclass is None else codes.setdefault(r.subclass, len(codes))
                     for r in rows])


def judge_samples(
    judge: MetricFeatures, samples: Sequence[Sample], rows: Sequence | None,
    class_names: Sequence[str], planted: dict[str, str] | None, image_size: int,
    batch_size: int, device: str, majorities: dict[tuple[str, int], int] | None = None,
) -> F.Judged:
    """The judge's view of a set of images (judged class, features, planted sub-mode where known),
    the input of every figure in :mod:`lightning_modules.judge.figures`."""
    labels, classes, features, unit_logits = _run_judge(judge, samples, image_size, batch_size,
                                                        device)
    if unit_logits is not None and classes.size and unit_logits.shape[0] != len(labels):
        raise ValueError("judge: sub-mode logits for only some images")
    catalog = getattr(judge, "catalog", None)
    units = None
    if unit_logits is not None and catalog is not None:
        class_of = torch.tensor(catalog.class_of)
        units = submode_given_class(torch.from_numpy(unit_logits), class_of,
                                    torch.from_numpy(labels)).numpy()
    index = {n: i for i, n in enumerate(class_names)}
    if rows is None:
        return F.Judged(labels, classes, features, units)
    negatives = np.array([index.get(r.negative_class_name, -1) for r in rows])
    subclasses = _subclass_codes(rows)
    sources = np.full(len(rows), -1)
    if planted is not None and catalog is not None:
        for i, r in enumerate(rows):
            if r.source_image is not None:
                key = image_key(r.source_image)
                sources[i] = catalog.index(key.split("/", 1)[0], planted[key])
    targets = None
    if majorities is not None:
        targets = np.array([-1 if r.subclass is None else
                            majorities.get((r.class_name, r.subclass), -1) for r in rows])
    return F.Judged(labels, classes, features, units, negatives, subclasses, sources, targets)


def _take_per_class(samples: list[SyntheticSample], per_class: int | None) -> list:
    if per_class is None:
        return samples
    kept, seen = [], defaultdict(int)
    for s in samples:
        if seen[s.label] < per_class:
            kept.append(s)
            seen[s.label] += 1
    return kept


def set_figures(
    s: F.Judged, real: F.Judged, pairs: Sequence[tuple[int, int]], class_names: Sequence[str],
    catalog=None, reps: int = 1000, seed: int = 0, reference: bool = False,
) -> dict[str, F.Estimate | None]:
    """Every figure of one set (``reference``: the real split itself, no two-sample figures)."""
    out: dict[str, F.Estimate | None] = {
        "fidelity": F.fidelity(s, reps, seed),
        "negative_confusion": None if reference else F.negative_confusion(s, reps, seed),
        "diversity": F.diversity(s, reps, seed),
        "frechet": None if reference else F.frechet(s, real, max(reps // 5, 1), seed),
        "c2st": None if reference else F.c2st(s, real, reps, seed),
    }
    for a, b in pairs:
        out[f"confusion {class_names[a]}->{class_names[b]}"] = F.pair_confusion(s, a, b, reps, seed)
    if catalog is not None:
        out["submode_tv"] = F.submode_tv(s, catalog.class_of, catalog.weights, reps, seed)
        out["coverage"] = F.coverage(s, catalog.class_of, reps, seed)
        out["steering_ari"] = None if reference else F.steering_ari(s, reps, seed)
        copy = None if reference else F.copy_rates(s, reps, seed)
        out["copy_rate"], out["copy_chance"] = copy if copy else (None, None)
        steer = None if reference else F.steering_rates(s, reps, seed)
        out["steering_rate"], out["steering_chance"] = steer if steer else (None, None)
    return out


def judge_sets(
    manifest: list[str],
    data: LongTailDataModule,
    judge: MetricFeatures | None = None,
    out_dir: str = "runs/judge",
    names: list[str] | None = None,
    per_class: int | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
    oracle: OracleSettings = OracleSettings(),
    require_accuracy: bool = True,
    subclasses_csv: str | None = None,
) -> dict[str, float]:
    """Judge synthetic sets; write per-set and combined JSON + Markdown; return flat metrics
    (``"<set>/<figure>"``: value) for the pipeline.

    Args:
        manifest: The sets' ``manifest.jsonl`` files (or their directories).
        data: The real dataset (class names, the real test split, planted truth if any).
        judge: The judging classifier (default on the embedded dataset: its oracle).
        out_dir: Where the reports go.
        names: A name per set (default: the manifest's directory name).
        per_class: Judge at most this many images per class of each set (manifest order).
        bootstrap: Resamples of every interval.
        seed: Seed of the resamples and of the two-sample test's folds.
        batch_size: Images per judge call.
        device: Where the judge runs.
        oracle: How the embedded dataset's judge is trained (when ``judge`` is not given).
        require_accuracy: Refuse an embedded judge below its accuracy bar (98 % class, 97 %
            sub-mode given class, on the real test split).
        subclasses_csv: The clustering stage's sub-classes: sets whose images name their
            prompted sub-class (ClusDiff) then get the steering rate.
    """
    names = names or [Path(m).parent.name if Path(m).suffix else Path(m).name for m in manifest]
    if len(names) != len(manifest) or len(set(names)) != len(names):
        raise ValueError(f"judge: names {names} must be unique, one per manifest ({len(manifest)})")
    _require_a_judge(data, judge)
    class_names = data.index.class_names  # every manifest is checked before a judge trains:
    sets = [_take_per_class(read_manifest(path, class_names), per_class) for path in manifest]
    judge_net = _judge_for(data, judge, oracle, require_accuracy).to(device).eval()
    truth = data if isinstance(data, PlantedTruth) else None
    planted = truth.planted_submodes() if truth is not None else None
    catalog = getattr(judge_net, "catalog", None) if truth is not None else None
    pairs = []
    for a, b in truth.confusable_pairs() if truth is not None else []:
        pairs += [(class_names.index(a), class_names.index(b)), (class_names.index(b),
                                                                 class_names.index(a))]
    majorities = None
    if subclasses_csv is not None and planted is not None and catalog is not None:
        majorities = subclass_majorities(subclasses_csv, planted, catalog)
    size = data.image_size
    real = judge_samples(judge_net, data.index.test, None, class_names, planted, size,
                         batch_size, device)
    report = {"judge": judge_net.identity(), "judge_accuracy": getattr(judge_net, "accuracy", None),
              "per_class_limit": per_class, "bootstrap": bootstrap,
              "real_test": _as_dict(set_figures(real, real, pairs, class_names, catalog,
                                                bootstrap, seed, reference=True)),
              "sets": {}}
    metrics: dict[str, float] = {}
    for name, path, samples in zip(names, manifest, sets):
        judged = judge_samples(judge_net, samples, [s.row for s in samples], class_names,
                               planted, size, batch_size, device, majorities)
        figures = set_figures(judged, real, pairs, class_names, catalog, bootstrap, seed)
        record = {"manifest": str(path), "sampler": samples[0].row.sampler if samples else None,
                  "images": len(samples), "figures": _as_dict(figures)}
        report["sets"][name] = record
        atomic_write_text(Path(out_dir) / name / "judge.json", json.dumps(record, indent=2))
        atomic_write_text(Path(out_dir) / name / "judge.md", set_markdown(name, record, report))
        metrics.update({f"{name}/{k}": v.value for k, v in figures.items() if v is not None})
        rank_zero_info(f"judge: {name}: " + ", ".join(
            f"{k} {v}" for k, v in figures.items() if v is not None))
    atomic_write_text(Path(out_dir) / "judge.json", json.dumps(report, indent=2))
    atomic_write_text(Path(out_dir) / "judge.md", mechanism_table(report) + "\n")
    return metrics


def _as_dict(figures: dict[str, F.Estimate | None]) -> dict[str, dict | None]:
    return {k: None if v is None else v.to_dict() for k, v in figures.items()}


def _cell(figure: dict | None) -> str:
    if figure is None:
        return "-"
    return f"{figure['value']:.2f} [{figure['low']:.2f}, {figure['high']:.2f}]"


CLASS_COLUMNS = ("fidelity", "negative_confusion", "diversity", "frechet", "c2st")
SUBMODE_COLUMNS = ("submode_tv", "coverage", "steering_ari", "steering_rate", "steering_chance",
                   "copy_rate", "copy_chance")


def mechanism_table(report: dict) -> str:
    """Markdown: one row per set (and the real test split), class then sub-mode figures."""
    sets = {"real test split (reference)": {"sampler": "-", "images": None,
                                            "figures": report["real_test"]},
            **report["sets"]}
    first = next(iter(sets.values()))["figures"]
    pairs = [k for k in first if k.startswith("confusion ")]
    lines = [_judge_line(report), "",
             "| Set | Sampler | n | " + " | ".join((*CLASS_COLUMNS, *pairs)) + " |",
             "|---" * (3 + len(CLASS_COLUMNS) + len(pairs)) + "|"]
    for name, record in sets.items():
        cells = [_cell(record["figures"].get(k)) for k in (*CLASS_COLUMNS, *pairs)]
        lines.append(f"| {name} | {record['sampler']} | {record['images'] or ''} | "
                     + " | ".join(cells) + " |")
    if "submode_tv" in first:
        lines += ["", "| Set | " + " | ".join(SUBMODE_COLUMNS) + " |",
                  "|---" * (1 + len(SUBMODE_COLUMNS)) + "|"]
        for name, record in sets.items():
            lines.append(f"| {name} | "
                         + " | ".join(_cell(record["figures"].get(k)) for k in SUBMODE_COLUMNS)
                         + " |")
    return "\n".join(lines)


def _judge_line(report: dict) -> str:
    accuracy = report.get("judge_accuracy")
    line = f"Judge `{report['judge']}`, 95 % bootstrap intervals ({report['bootstrap']} resamples)"
    if accuracy:
        line += (f"; on the real test split it reaches {100 * accuracy['class']:.2f} % class and "
                 f"{100 * accuracy['submode_given_class']:.2f} % sub-mode-given-class accuracy")
        if "blurred_class" in accuracy:
            line += (f" ({100 * accuracy['blurred_class']:.2f} % class on its images blurred by "
                     f"{accuracy['blur_sigma']} px)")
    if report.get("per_class_limit"):
        line += f"; at most {report['per_class_limit']} images per class of each set judged"
    return line + "."


def set_markdown(name: str, record: dict, report: dict) -> str:
    lines = [f"# Judge: {name}", "", f"{record['images']} images of `{record['manifest']}` "
             f"(sampler {record['sampler']}). " + _judge_line(report), "",
             "| Figure | This set | Real test split |", "|---|---|---|"]
    for key, value in record["figures"].items():
        lines.append(f"| {key} | {_cell(value)} | {_cell(report['real_test'].get(key))} |")
    return "\n".join(lines) + "\n"
