"""The pictures of a finished run, rendered by one command into ``<run_dir>/plots/``.

    python -m experiments plots --run_dir runs/embedded/disc_ds \
        [--data.class_path datamodules.EmbeddedFoodLT --manifest .../manifest.jsonl \
         --extractor.class_path lightning_modules.metric_features.ResNetFeatures \
         --extractor.init_args.weights_path .../last.ckpt --class_pairs '[[pizza, garlic_bread]]']

Whatever is present is drawn (matplotlib, Agg):

- ``per_class_accuracy_<stage>.csv`` (classifier runs) -> bar chart, head and tail coloured;
- ``similarity.csv`` (DiSC-DS negatives) -> the confusing-class similarity heatmap;
- ``fid.csv`` (``evaluate-synthetic``) -> per-class FID bars;
- ``guidance_summary.json`` (generation) -> the effective coefficients of the positive and the
  negative direction against the sampler step, one line per synthetic set (median over the
  images, 10-90 % band);
- a manifest and ``data`` -> per-class sample grids, real images next to synthetic ones;
- ... and ``extractor`` -> t-SNE of real and synthetic features for class pairs (the DiSC-DS
  paper's Figure 4), each class's Inception Score (with that extractor) in the legend.

Each PNG is also logged as a W&B image when a W&B run is active.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.utilities import rank_zero_info  # noqa: E402

from datamodules.dataset import load_rgb  # noqa: E402
from datamodules.layout import Sample  # noqa: E402
from datamodules.long_tailed import LongTailDataModule  # noqa: E402
from datamodules.manifest import GUIDANCE_SUMMARY_NAME, MANIFEST_NAME, read_manifest  # noqa: E402
from lightning_modules.image_metrics import inception_score, is_metric  # noqa: E402
from lightning_modules.metric_features import (  # noqa: E402
    MetricFeatures,
    extract_features,
    metric_image_transform,
)

HEAD, TAIL, SYNTHETIC = "tab:blue", "tab:orange", "tab:red"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- tables -------------------------------------------------------------------------------------
def plot_per_class_accuracy(csv_path: str | Path, out_path: str | Path) -> Path:
    """Per-class accuracy bars in long-tail order (most training images first), head vs tail."""
    rows = sorted(_read_rows(Path(csv_path)), key=lambda r: -int(r["train_count"]))
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    head = [r["is_head"] == "True" for r in rows]
    accuracy = [float(r["accuracy"]) for r in rows]

    def mean(group: list[bool]) -> float:
        correct = sum(int(r["correct"]) for r, g in zip(rows, group) if g)
        total = sum(int(r["total"]) for r, g in zip(rows, group) if g)
        return 100.0 * correct / max(total, 1)

    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(rows)), 4))
    ax.bar(range(len(rows)), accuracy, color=[HEAD if h else TAIL for h in head])
    ax.set_xticks(range(len(rows)), [r["class_name"] for r in rows], rotation=90,
                  fontsize=7 if len(rows) <= 40 else 4)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 115)
    ax.bar(0, 0, color=HEAD, label=f"head ({mean(head):.1f}%)")
    ax.bar(0, 0, color=TAIL, label=f"tail ({mean([not h for h in head]):.1f}%)")
    ax.legend(loc="upper center", ncol=2)
    ax.set_title(f"{Path(csv_path).stem}: overall {mean([True] * len(rows)):.1f}%")
    return _save(fig, Path(out_path))


def read_square_csv(csv_path: str | Path) -> tuple[list[str], np.ndarray]:
    """A square matrix with class names as header and index (first column)."""
    with open(csv_path, newline="") as f:
        table = [row for row in csv.reader(f) if row]
    names = table[0][1:]
    index = [row[0] for row in table[1:]]
    matrix = np.array([[float(v) for v in row[1:]] for row in table[1:]])
    if index != names or matrix.shape != (len(names), len(names)):
        raise ValueError(f"{csv_path}: expected a square matrix whose first column repeats the "
                         f"header's class names, got {len(index)} rows x {matrix.shape[1]} columns")
    return names, matrix


def plot_similarity(csv_path: str | Path, out_path: str | Path) -> Path:
    """Heatmap of the confusing-class similarity matrix, each row's top other class boxed."""
    names, sim = read_square_csv(csv_path)
    size = max(4.0, 0.35 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(sim, cmap="viridis")
    if len(names) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    others = sim.copy()
    np.fill_diagonal(others, -np.inf)
    for i, j in enumerate(others.argmax(axis=1)):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1))
    ax.set_title("class similarity (red: most confusing other class)")
    fig.colorbar(image, ax=ax, label="cosine similarity of class-mean features")
    return _save(fig, Path(out_path))


def plot_per_class_fid(csv_path: str | Path, out_path: str | Path) -> Path:
    """Per-class FID bars from ``fid.csv`` (the overall value as a dashed line)."""
    rows = _read_rows(Path(csv_path))
    key = next(k for k in rows[0] if k.startswith("fid_"))
    overall = [float(r[key]) for r in rows if r["class_index"] == "-1"]
    rows = [r for r in rows if r["class_index"] != "-1"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(rows)), 4))
    ax.bar(range(len(rows)), [float(r[key]) for r in rows], color=SYNTHETIC)
    ax.set_xticks(range(len(rows)), [r["class_name"] for r in rows], rotation=90, fontsize=7)
    if overall:
        ax.axhline(overall[0], ls="--", color="k", label=f"all classes {overall[0]:.3g}")
        ax.legend()
    ax.set_ylabel(key)
    ax.set_title(f"{key} per class, synthetic vs real")
    return _save(fig, Path(out_path))


# ---- images -------------------------------------------------------------------------------------
def plot_guidance(summaries: dict[str, dict], out_path: str | Path) -> Path:
    """Coefficient of (eps_pos - eps_u) and of (eps_neg - eps_u) against the step, per set."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for label, summary in summaries.items():
        steps = np.arange(summary["steps"])
        for ax, name in zip(axes, ("coef_pos", "coef_neg")):
            median = summary.get(f"{name}_median")
            if median is None:
                continue
            (line,) = ax.plot(steps, median, marker=".", label=f"{label} ({summary['sampler']})")
            ax.fill_between(steps, summary[f"{name}_p10"], summary[f"{name}_p90"],
                            color=line.get_color(), alpha=0.15)
    titles = ("positive direction: coef of (eps_pos - eps_u)",
              "negative direction: coef of (eps_neg - eps_u)")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("sampler step (0 = first, noisiest)")
        ax.axhline(0.0, color="grey", lw=0.6)
    axes[0].set_ylabel("effective coefficient (median, 10-90 %)")
    axes[0].legend(fontsize=7)
    return _save(fig, Path(out_path))


def plot_sample_grid(
    real: Sequence[Sample], synthetic: Sequence[Sample], class_names: Sequence[str],
    out_path: str | Path, per_class: int = 4, classes: Sequence[int] | None = None,
    image_size: int = 64,
) -> Path:
    """One row per class: ``per_class`` real images, then ``per_class`` synthetic ones."""
    transform = metric_image_transform(image_size)
    if classes is None:
        classes = sorted({s.label for s in synthetic})

    def strip(samples: Sequence[Sample], label: int) -> np.ndarray:
        picked = [s for s in samples if s.label == label][:per_class]
        tiles = [transform(load_rgb(s.path)) for s in picked]
        tiles += [torch.ones(3, image_size, image_size)] * (per_class - len(tiles))  # blanks
        return torch.cat(tiles, dim=2).permute(1, 2, 0).numpy()  # (S, k*S, 3)

    fig, axes = plt.subplots(len(classes), 2, squeeze=False,
                             figsize=(2 * 0.9 * per_class + 1.5, 0.95 * len(classes) + 0.6))
    for row, label in enumerate(classes):
        for col, (samples, what) in enumerate(((real, "real"), (synthetic, "synthetic"))):
            ax = axes[row, col]
            ax.imshow(strip(samples, label))
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(what)
        axes[row, 0].set_ylabel(class_names[label], rotation=0, ha="right", va="center",
                                fontsize=8)
    return _save(fig, Path(out_path))


def plot_prompt_grid(images: torch.Tensor, row_labels: Sequence[str], out_path: str | Path,
                     tile_inches: float = 0.9) -> Path:
    """Images ``(rows * k, 3, H, W)`` in [0, 1] as one labelled row per prompt row, each tile
    shown at ``tile_inches`` (pixels kept sharp: nearest-neighbour)."""
    rows = len(row_labels)
    per_row = images.shape[0] // rows
    fig, axes = plt.subplots(rows, 1, squeeze=False,
                             figsize=(tile_inches * per_row + 2.2, tile_inches * rows + 0.3))
    for r, label in enumerate(row_labels):
        strip = torch.cat(list(images[r * per_row:(r + 1) * per_row].float().cpu()), dim=2)
        ax = axes[r, 0]
        ax.imshow(strip.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    return _save(fig, Path(out_path))


def plot_tsne(
    features: np.ndarray, labels: np.ndarray, synthetic: np.ndarray, class_names: Sequence[str],
    scores: dict[int, float], out_path: str | Path, title: str = "", seed: int = 0,
) -> Path:
    """t-SNE of ``(N, D)`` features; colour = class, marker = real (o) / synthetic (x).

    Args:
        scores: Per-class IS of the synthetic images, shown in the legend.
    """
    from sklearn.manifold import TSNE

    n = len(features)
    perplexity = float(max(1.0, min(30.0, (n - 1) / 3)))
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, c in enumerate(sorted(set(labels.tolist()))):
        color = plt.get_cmap("tab10")(k % 10)
        for syn, marker, what in ((False, "o", "real"), (True, "x", "synthetic")):
            mask = (labels == c) & (synthetic == syn)
            if mask.any():
                extra = f", IS {scores[c]:.2f}" if syn and c in scores else ""
                ax.scatter(xy[mask, 0], xy[mask, 1], s=18, marker=marker, color=color,
                           label=f"{class_names[c]} {what}{extra}")
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, Path(out_path))


@torch.no_grad()
def tsne_of_pair(
    extractor: MetricFeatures, real: Sequence[Sample], synthetic: Sequence[Sample],
    pair: Sequence[int], class_names: Sequence[str], out_path: str | Path, image_size: int,
    max_per_class: int = 200,
) -> Path:
    """Features of a class pair's real and synthetic images and per-class IS, then
    :func:`plot_tsne`."""
    feats, labels, flags, scores = [], [], [], {}
    for samples, syn in ((real, False), (synthetic, True)):
        for c in pair:
            chosen = [s for s in samples if s.label == c][:max_per_class]
            metric = is_metric()
            for output, y in extract_features(extractor, chosen, image_size,
                                              device=next(extractor.parameters()).device):
                feats.append(output.features.cpu()), labels.append(y.cpu())
                flags.append(torch.full_like(y.cpu(), syn, dtype=torch.bool))
                metric.update(output.logits)
            if syn and chosen:
                scores[c] = inception_score(metric)[0]
    features = torch.cat(feats).numpy()
    if len(features) < 3:
        raise ValueError(f"t-SNE of classes {list(pair)}: {len(features)} images, need >= 3")
    names = " vs ".join(class_names[c] for c in pair)
    return plot_tsne(features, torch.cat(labels).numpy(), torch.cat(flags).numpy(), class_names,
                     scores, out_path,
                     f"{names}: t-SNE of {extractor.name} features, IS of its logits")


# ---- the command --------------------------------------------------------------------------------
def _log_wandb(paths: Sequence[Path]) -> None:
    import wandb

    if wandb.run is not None and paths:
        wandb.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in paths})


def _most_similar_pairs(run_dir: Path, names: Sequence[str], k: int) -> list[list[str]]:
    found = sorted(run_dir.rglob("similarity.csv"))
    if not found:
        return []
    sim_names, sim = read_square_csv(found[0])
    np.fill_diagonal(sim, -np.inf)
    order = np.dstack(np.unravel_index(np.argsort(-sim, axis=None), sim.shape))[0]
    pairs: list[list[str]] = []
    for i, j in order:
        pair = sorted((sim_names[i], sim_names[j]))
        if pair not in pairs and all(n in names for n in pair):
            pairs.append(pair)
        if len(pairs) == k:
            break
    return pairs


def render_plots(
    run_dir: str,
    data: LongTailDataModule | None = None,
    manifest: str | None = None,
    extractor: MetricFeatures | None = None,
    class_pairs: list[list[str]] | None = None,
    num_pairs: int = 2,
    per_class: int = 4,
    max_classes: int | None = 20,
    split: str = "train",
    image_size: int | None = None,
) -> list[Path]:
    """Render every picture the files of ``run_dir`` allow into ``<run_dir>/plots/``.

    Args:
        run_dir: A finished run directory.
        data: The real dataset (needed for sample grids and t-SNE).
        manifest: A synthetic set (default: the first ``manifest.jsonl`` under ``run_dir``).
        extractor: Feature network for the t-SNE (none: no t-SNE).
        class_pairs: Class-name pairs for the t-SNE (default: the ``num_pairs`` most similar
            pairs of ``similarity.csv``, else the first two classes of the manifest).
        num_pairs: How many default pairs.
        per_class: Images per class and per side in the sample grid.
        max_classes: At most this many classes in the sample grid (None: all).
        split: Real split shown next to the synthetic images.
        image_size: Size of the images in grids and for the features (default ``data``'s).

    Returns:
        The PNG files written.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run_dir={run_dir!r} is not a directory")
    out, written = root / "plots", []
    for path in sorted(root.glob("per_class_accuracy_*.csv")):
        written.append(plot_per_class_accuracy(path, out / f"{path.stem}.png"))
    for path in sorted(root.rglob("similarity.csv")):
        written.append(plot_similarity(path, out / f"similarity_{path.parent.name}.png"))
    for path in sorted(root.rglob("fid.csv")):
        written.append(plot_per_class_fid(path, out / f"fid_{path.parent.name}.png"))
    guidance = {str(p.parent.relative_to(root)) or root.name: json.loads(p.read_text())
                for p in sorted(root.rglob(GUIDANCE_SUMMARY_NAME))}
    if guidance:
        written.append(plot_guidance(guidance, out / "guidance_coefficients.png"))

    if manifest is None:
        found = sorted(root.rglob(MANIFEST_NAME))
        manifest = str(found[0]) if found else None
    if data is not None and manifest is not None:
        names = data.index.class_names
        real, synthetic = getattr(data.index, split), read_manifest(manifest, names)
        size = image_size or data.image_size
        classes = sorted({s.label for s in synthetic})[:max_classes]
        grid = out / "samples_real_vs_synthetic.png"
        written.append(plot_sample_grid(real, synthetic, names, grid, per_class, classes,
                                        max(size, 32)))
        if extractor is not None:
            extractor = extractor.requires_grad_(False).eval()
            pairs = class_pairs or _most_similar_pairs(root, names, num_pairs) or \
                [[names[c] for c in sorted({s.label for s in synthetic})[:2]]]
            for pair in pairs:
                unknown = [n for n in pair if n not in names]
                if unknown or len(pair) != 2:
                    raise ValueError(f"class_pairs: {pair} must be 2 of the dataset's class names"
                                     f" (unknown: {unknown})")
                written.append(tsne_of_pair(
                    extractor, real, synthetic, [names.index(n) for n in pair], names,
                    out / f"tsne_{pair[0]}_vs_{pair[1]}.png", size,
                ))
    rank_zero_info(f"plots: wrote {len(written)} PNG file(s) to {out}" +
                   ("" if written else " (nothing to draw: no CSVs, manifest or data)"))
    _log_wandb(written)
    return written

