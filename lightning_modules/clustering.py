"""ClusDiff sub-classes: per-class affinity propagation on image features (no Lightning here).

Notation (docs/algorithms.md, ClusDiff step 2):

- ``x_i``: the feature of image i, L2-normalised; ``S[i, k] = x_i . x_k`` the cosine similarity.
- ``p``: the preference, the diagonal of S (the "self-similarity"): the higher p, the more
  exemplars (sub-classes). scikit-learn's default is the median of S, which gives many more
  sub-classes than the paper's cap; :func:`cluster_class` lowers p by bisection until the number
  of sub-classes is at most ``max_subclasses`` (labels are never truncated or merged by hand).

A run of affinity propagation that does not converge yields no labels (scikit-learn returns -1);
it is retried with more damping, counted, never used, and a class where no tried preference
converged falls back to a single sub-class with ``converged=False`` so the caller can report it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import AffinityPropagation
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score


@dataclass
class ClassClustering:
    """The sub-classes of one class.

    Attributes:
        labels: Sub-class id per image, ``(n,)``, ids 0..k-1 in order of first appearance.
        exemplars: Index (into the class's images) of each sub-class's exemplar, ``(k,)``.
        preference: The preference p of the accepted run (NaN for a single image).
        converged: Whether the accepted run converged (False only in the fallback case).
        runs: Affinity-propagation runs made (1 when the default preference is accepted).
        nonconverged_runs: How many of those runs did not converge.
    """

    labels: np.ndarray
    exemplars: np.ndarray
    preference: float
    converged: bool = True
    runs: int = 0
    nonconverged_runs: int = 0

    @property
    def num_subclasses(self) -> int:
        return len(self.exemplars)


@dataclass
class _Run:
    labels: np.ndarray
    exemplars: np.ndarray
    preference: float
    converged: bool
    num: int = field(init=False)

    def __post_init__(self) -> None:
        self.num = len(self.exemplars) if self.converged else -1


def cosine_similarity(features: np.ndarray) -> np.ndarray:
    """``S = X_n X_n^T`` for the L2-normalised rows X_n of ``features`` ``(n, d)`` -> ``(n, n)``."""
    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def _relabel(labels: np.ndarray, exemplars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber sub-classes 0..k-1 in order of first appearance (stable ids across runs)."""
    order: dict[int, int] = {}
    for label in labels.tolist():
        order.setdefault(label, len(order))
    new_labels = np.array([order[v] for v in labels.tolist()], dtype=np.int64)
    new_exemplars = np.empty(len(order), dtype=np.int64)
    for old, new in order.items():
        new_exemplars[new] = exemplars[old]
    return new_labels, new_exemplars


def _run_ap(
    similarity: np.ndarray, preference: float, random_state: int, damping: float, max_iter: int
) -> _Run:
    ap = AffinityPropagation(
        affinity="precomputed",
        preference=preference,
        damping=damping,
        max_iter=max_iter,
        random_state=random_state,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        labels = ap.fit_predict(similarity)
    exemplars = np.asarray(ap.cluster_centers_indices_, dtype=np.int64)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = converged and len(exemplars) > 0 and (labels >= 0).all()
    if converged:
        labels, exemplars = _relabel(np.asarray(labels), exemplars)
    return _Run(np.asarray(labels), exemplars, preference, converged)


def cluster_class(
    features: np.ndarray,
    max_subclasses: int = 10,
    random_state: int = 0,
    damping: float = 0.5,
    max_iter: int = 1000,
    preference_quantile: float = 0.5,
    bisection_steps: int = 30,
) -> ClassClustering:
    """Affinity propagation on one class's features with at most ``max_subclasses`` sub-classes.

    Starting preference: the ``preference_quantile`` of the off-diagonal similarities (0.5: the
    median, scikit-learn's default). If that gives too many sub-classes, a lower bound with at most
    ``max_subclasses`` is found by stepping down (doubling the step), then bisection between it
    and the too-high preference keeps the HIGHEST preference found that satisfies the cap (the
    most sub-classes allowed), stopping early when exactly ``max_subclasses`` is reached.

    Args:
        features: ``(n, d)`` features of the class's n images.
        max_subclasses: Cap on the number of sub-classes (the paper's is 10).
        random_state: scikit-learn's random_state (it adds tiny noise to break ties).
        damping: Affinity-propagation damping in [0.5, 1).
        max_iter: Maximum iterations per run.
        preference_quantile: Quantile in [0, 1] of the similarities used as the first preference.
        bisection_steps: Maximum runs spent on the search after the first one.

    Returns:
        The accepted clustering; a single image is its own sub-class.

    Raises:
        ValueError: On an empty or non-2-D ``features`` or out-of-range arguments.
    """
    features = np.asarray(features)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty (n, d) array, got shape {features.shape}")
    if max_subclasses < 1:
        raise ValueError(f"max_subclasses must be >= 1, got {max_subclasses}")
    if not 0.0 <= preference_quantile <= 1.0:
        raise ValueError(f"preference_quantile must be in [0, 1], got {preference_quantile}")
    n = len(features)
    if n == 1:
        return ClassClustering(np.zeros(1, np.int64), np.zeros(1, np.int64), float("nan"))
    similarity = cosine_similarity(features)
    off_diagonal = similarity[~np.eye(n, dtype=bool)]
    span = max(float(off_diagonal.max() - off_diagonal.min()), 1e-6)
    runs: list[_Run] = []

    def run(p: float) -> _Run:
        # A run that oscillates is retried at the same preference with more damping (up to
        # 0.9), as scikit-learn's documentation suggests; every failed run is counted.
        d = damping
        runs.append(_run_ap(similarity, p, random_state, d, max_iter))
        while not runs[-1].converged and d < 0.9:
            d = min(0.9, 0.5 * (d + 1.0))
            runs.append(_run_ap(similarity, p, random_state, d, max_iter))
        return runs[-1]

    def ok(r: _Run) -> bool:
        return r.converged and r.num <= max_subclasses

    high = float(np.quantile(off_diagonal, preference_quantile))
    best = run(high)
    if not ok(best):
        # 1. Step down until the cap holds: high stays "too many", low satisfies the cap.
        step, low, best = span, None, None
        while len(runs) <= bisection_steps:
            candidate = run(high - step)
            if ok(candidate):
                low, best = high - step, candidate
                break
            if candidate.converged:  # still too many: move the upper end down
                high -= step
            step *= 2.0
        # 2. Bisect between low (ok) and high (too many or not converged).
        while low is not None and best.num < max_subclasses and len(runs) <= bisection_steps:
            mid = 0.5 * (low + high)
            candidate = run(mid)
            if ok(candidate):
                low, best = mid, candidate
            else:
                high = mid
    nonconverged = sum(not r.converged for r in runs)
    if best is None or not ok(best):  # nothing converged within the cap: report, don't hide
        medoid = int(np.argmax(similarity.sum(axis=1)))
        return ClassClustering(
            np.zeros(n, np.int64), np.array([medoid]), float("nan"), False, len(runs), nonconverged
        )
    return ClassClustering(
        best.labels, best.exemplars, best.preference, True, len(runs), nonconverged
    )


@dataclass
class DatasetClustering:
    """The sub-classes of every class of a dataset (:func:`cluster_classes`).

    Attributes:
        subclass: Sub-class id per image (within its class), ``(N,)``.
        exemplar: Whether each image is its sub-class's exemplar, ``(N,)``.
        summary: One row per class: label, class_name, num_images, num_subclasses,
            subclass_sizes (``;``-joined), preference, converged, runs, nonconverged_runs.
    """

    subclass: np.ndarray
    exemplar: np.ndarray
    summary: list[dict]


def cluster_classes(
    features: np.ndarray, labels: np.ndarray, class_names: list[str], **settings
) -> DatasetClustering:
    """:func:`cluster_class` on the images of each class (``settings`` go to it)."""
    labels = np.asarray(labels)
    subclass = np.zeros(len(labels), np.int64)
    exemplar = np.zeros(len(labels), bool)
    summary: list[dict] = []
    for c in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == c)
        result = cluster_class(features[members], **settings)
        subclass[members] = result.labels
        exemplar[members[result.exemplars]] = True
        sizes = np.bincount(result.labels, minlength=result.num_subclasses)
        summary.append({
            "label": c, "class_name": class_names[c], "num_images": len(members),
            "num_subclasses": result.num_subclasses,
            "subclass_sizes": ";".join(str(int(k)) for k in sizes),
            "preference": result.preference, "converged": result.converged,
            "runs": result.runs, "nonconverged_runs": result.nonconverged_runs,
        })
    return DatasetClustering(subclass, exemplar, summary)


@dataclass
class AriReport:
    """Adjusted Rand index of the sub-classes against planted sub-modes.

    Attributes:
        per_class: Class name -> ARI, for the classes where it is defined.
        skipped: Class name -> why it was skipped (fewer than 2 images, or a single planted
            mode: ARI is then 1 or 0 depending only on whether the clustering also found one
            cluster, which says nothing about recovering sub-modes).
    """

    per_class: dict[str, float]
    skipped: dict[str, str]

    @property
    def mean(self) -> float:
        """Unweighted mean over the scored classes (NaN if none)."""
        return float(np.mean(list(self.per_class.values()))) if self.per_class else float("nan")


def adjusted_rand_per_class(
    class_names: list[str], labels: np.ndarray, subclasses: np.ndarray, planted: list[str]
) -> AriReport:
    """ARI between found sub-classes and planted sub-modes, per class.

    Args:
        class_names: Name of each class index.
        labels: Class index per image, ``(N,)``.
        subclasses: Found sub-class id per image, ``(N,)``.
        planted: Planted sub-mode name per image, ``N`` strings.
    """
    labels, subclasses = np.asarray(labels), np.asarray(subclasses)
    planted_arr = np.asarray(planted, dtype=object)
    if not len(labels) == len(subclasses) == len(planted_arr):
        raise ValueError(
            f"labels, subclasses and planted must have one entry per image, got lengths "
            f"{len(labels)}, {len(subclasses)}, {len(planted_arr)}"
        )
    per_class: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for c in sorted(set(labels.tolist())):
        mask = labels == c
        name = class_names[c]
        modes = set(planted_arr[mask].tolist())
        if mask.sum() < 2:
            skipped[name] = "fewer than 2 images"
        elif len(modes) < 2:
            skipped[name] = "a single planted sub-mode among its images"
        else:
            per_class[name] = float(adjusted_rand_score(planted_arr[mask], subclasses[mask]))
    return AriReport(per_class, skipped)


def draw_subclasses(
    sizes: list[int], num: int, seed: int = 0, uniform: bool = False
) -> np.ndarray:
    """Sub-class ids for ``num`` generated images of one class (ClusDiff generation, step 4).

    Args:
        sizes: Training images per sub-class (``subclass_sizes`` of the summary), all > 0.
        num: How many ids to draw.
        seed: Seed of the draw (numpy ``default_rng``).
        uniform: Draw sub-classes uniformly instead of in proportion to their sizes.

    Returns:
        ``(num,)`` int64 ids in ``[0, len(sizes))``.
    """
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    if sizes_arr.ndim != 1 or len(sizes_arr) == 0 or (sizes_arr <= 0).any():
        raise ValueError(f"sizes must be a non-empty list of positive counts, got {sizes}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    probs = np.ones_like(sizes_arr) if uniform else sizes_arr
    probs = probs / probs.sum()
    return np.random.default_rng(seed).choice(len(sizes_arr), size=num, p=probs).astype(np.int64)
