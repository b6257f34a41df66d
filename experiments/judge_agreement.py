"""``python -m experiments judge-agreement``: the same sets read by judges trained from other seeds.

    python -m experiments judge-agreement --data experiments/configs/data/embedded.yaml \
        --manifest '[runs/embedded/world/noise_w1/manifest.jsonl, ...]' --seeds '[0, 1, 2]' \
        --out_dir runs/embedded/world/judge_agreement

A figure of a generated set says something about the generator only where it does not hinge on
which judge read it. This command trains one embedded judge per seed (the seed of its
initialisation, order and augmentation; every other setting of ``oracle`` kept), judges every set
with each (:func:`experiments.judge.judge_sets`, written under ``<out_dir>/seed<k>/``) and writes
``agreement.json`` and ``agreement.md``: each judge's own accuracy on the real test split, and for
every set and figure the value under each judge, their range and the first judge's interval. A
range well inside the interval says the reading is the generator's; a range as wide as the
interval, or a judge that reads the real test split differently, says the judge decides it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from datamodules.atomic import atomic_write_text
from datamodules.long_tailed import LongTailDataModule
from experiments.judge import judge_sets
from lightning_modules.judge.oracle import OracleSettings

FIGURES = ("fidelity", "submode_tv", "coverage", "steering_ari")  # and every pair confusion


def judge_agreement(
    manifest: list[str],
    data: LongTailDataModule,
    out_dir: str = "runs/judge_agreement",
    seeds: list[int] = [0, 1, 2],  # noqa: B006 (jsonargparse reads the default)
    names: list[str] | None = None,
    oracle: OracleSettings = OracleSettings(),
    per_class: int | None = None,
    bootstrap: int = 1000,
    subclasses_csv: str | None = None,
) -> dict[str, float]:
    """Judge the sets with one embedded judge per seed; return ``"<set>/<figure>/range"``.

    Args:
        manifest: The sets' ``manifest.jsonl`` files (or their directories).
        data: The embedded dataset (its judges are trained on its renderer).
        out_dir: Where each judge's reports and the agreement go.
        seeds: The judges' seeds (``oracle.seed`` of each), at least two, all different.
        names: A name per set (default: the manifest's directory name).
        oracle: Every other setting of the judges.
        per_class: Judge at most this many images per class of each set.
        bootstrap: Resamples of every interval.
        subclasses_csv: The clustering stage's sub-classes (the steering figures).
    """
    from datamodules import EmbeddedFoodLT

    if not isinstance(data, EmbeddedFoodLT):
        raise ValueError(f"judge-agreement: judges are trained for the embedded dataset only, "
                         f"got {type(data).__name__}")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"judge-agreement: seeds {seeds} must be at least two, all different")
    reports = {}
    for seed in seeds:
        sub = Path(out_dir) / f"seed{seed}"
        judge_sets(manifest, data, out_dir=str(sub), names=names, per_class=per_class,
                   bootstrap=bootstrap, oracle=replace(oracle, seed=seed),
                   require_accuracy=False, subclasses_csv=subclasses_csv)
        reports[seed] = json.loads((sub / "judge.json").read_text())
    agreement = _agreement(reports)
    atomic_write_text(Path(out_dir) / "agreement.json", json.dumps(agreement, indent=2))
    atomic_write_text(Path(out_dir) / "agreement.md", agreement_markdown(agreement) + "\n")
    return {f"{row['set']}/{row['figure']}/range": row["range"] for row in agreement["figures"]}


def _agreement(reports: dict[int, dict]) -> dict:
    """Each judge's real-test accuracy and every set figure's value under each judge."""
    first = next(iter(reports.values()))
    judges = [{"seed": seed, "judge": r["judge"], "accuracy": r["judge_accuracy"],
               "real_pair_confusion": {k: v["value"] for k, v in r["real_test"].items()
                                       if k.startswith("confusion ") and v is not None}}
              for seed, r in reports.items()]
    rows = []
    for name, record in first["sets"].items():
        for key, figure in record["figures"].items():
            if figure is None or not (key in FIGURES or key.startswith("confusion ")):
                continue
            values = [r["sets"][name]["figures"][key]["value"] for r in reports.values()]
            rows.append({"set": name, "figure": key, "values": values,
                         "range": max(values) - min(values),
                         "interval": [figure["low"], figure["high"]]})
    return {"seeds": list(reports), "judges": judges, "figures": rows}


def agreement_markdown(agreement: dict) -> str:
    """Two tables: the judges on the real test split, then every set figure under each judge."""
    seeds = agreement["seeds"]
    pairs = list(agreement["judges"][0]["real_pair_confusion"])
    lines = ["| Judge seed | Judge | Class / sub-mode-given-class accuracy, real test split | "
             "Class accuracy, blurred | " + " | ".join(f"real {p}" for p in pairs) + " |",
             "|---" * (4 + len(pairs)) + "|"]
    for j in agreement["judges"]:
        a = j["accuracy"]
        lines.append(f"| {j['seed']} | `{j['judge']}` | {a['class']:.4f} / "
                     f"{a['submode_given_class']:.4f} | {a['blurred_class']:.4f} | "
                     + " | ".join(f"{j['real_pair_confusion'][p]:.3f}" for p in pairs) + " |")
    lines += ["", "| Set | Figure | " + " | ".join(f"judge {s}" for s in seeds)
              + f" | Range | Judge {seeds[0]}'s 95 % interval |",
              "|---" * (4 + len(seeds)) + "|"]
    for row in agreement["figures"]:
        low, high = row["interval"]
        lines.append(f"| {row['set']} | {row['figure']} | "
                     + " | ".join(f"{v:.3f}" for v in row["values"])
                     + f" | {row['range']:.3f} | [{low:.3f}, {high:.3f}] |")
    return "\n".join(lines)
