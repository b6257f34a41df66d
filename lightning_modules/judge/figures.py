"""The judge's figures of a synthetic set, as pure functions of judged arrays (no Trainer, no I/O).

A set is described by :class:`Judged` (what was asked for, what the judge saw). Every figure is an
:class:`Estimate` with a bootstrap 95 % interval: images are resampled with replacement within
their class (class sizes fixed), ``reps`` times, and the interval is the 2.5 / 97.5 percentiles
of the statistic over the resamples.

Figures (``None`` where a set or a judge does not allow one):

- ``fidelity``: fraction of images judged as their intended class;
- ``negative_confusion``: fraction judged as the request's negative class (sets that name one);
- ``pair_confusion[a->b]``: among images intended as a, the fraction judged b (planted pairs);
- ``diversity``: mean pairwise distance of judge features within a class, averaged over classes;
- ``frechet``: Frechet distance of the set's judge features to the real test split's;
- ``c2st``: accuracy of a logistic regression telling the set from the real test split (judge
  features, 5-fold cross-validated, classes balanced; 0.5 = indistinguishable);
- sub-mode figures where the judge knows the planted sub-modes, over the images judged as their
  intended class (the sub-mode of an image that shows another class means nothing):
  ``submode_tv`` (total-variation
  distance of the judged sub-mode mix of a class to the planted weights, mean over classes),
  ``coverage`` (fraction of planted sub-modes with at least 5 % of their class's images),
  ``steering_ari`` (adjusted Rand index between the prompted sub-class and the judged sub-mode,
  mean over classes; ClusDiff sets), ``steering_rate`` and ``steering_chance`` (ClusDiff sets with
  the clustering's sub-classes: the fraction of images judged in the planted sub-mode most of
  their prompted sub-class's training images have, and the rate without steering), ``copy_rate``
  and ``copy_chance`` (img2img sets: the fraction of images judged in their source image's
  sub-mode, and what independent draws from the source and the generated sub-mode mixes give).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

COVERAGE_SHARE = 0.05
C2ST_FOLDS = 5


@dataclass(frozen=True)
class Estimate:
    """A figure and its bootstrap 95 % interval over ``n`` images."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Judged:
    """What a set asked for and what the judge saw, one entry per image (``-1``: none).

    Attributes:
        labels: Intended class, (N,).
        judged: The judge's class, (N,).
        features: Judge features, (N, D).
        units: The judged (class, sub-mode) unit given the intended class, (N,), or None when the
            judge knows no sub-modes.
        negatives: The request's negative class, (N,).
        subclasses: The prompted sub-class (ClusDiff), (N,).
        source_units: The planted unit of the image's source image (img2img), (N,).
        subclass_units: The planted unit most training images of the image's prompted sub-class
            have (ClusDiff), (N,).
    """

    labels: np.ndarray
    judged: np.ndarray
    features: np.ndarray
    units: np.ndarray | None = None
    negatives: np.ndarray | None = None
    subclasses: np.ndarray | None = None
    source_units: np.ndarray | None = None
    subclass_units: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Judged:
        """The images at ``indices`` (with repeats, for resampling)."""
        pick = lambda a: None if a is None else a[indices]  # noqa: E731
        return Judged(*(pick(getattr(self, f)) for f in (
            "labels", "judged", "features", "units", "negatives", "subclasses", "source_units",
            "subclass_units")))


def bootstrap(
    statistic: Callable[[np.ndarray], float], strata: np.ndarray, reps: int = 1000, seed: int = 0
) -> Estimate:
    """``statistic(indices)`` on all images and its percentile interval over ``reps`` resamples
    drawn with replacement within each stratum."""
    everything = np.arange(len(strata))
    value = float(statistic(everything))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    draws = []
    for _ in range(reps):
        sample = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
        draws.append(statistic(sample))
    low, high = np.percentile(draws, [2.5, 97.5]) if reps else (value, value)
    return Estimate(value, float(low), float(high), len(strata))


def bootstrap_difference(
    statistic: Callable[[Judged], float], a: Judged, b: Judged, reps: int = 1000, seed: int = 0
) -> Estimate:
    """``statistic(b) - statistic(a)`` of two sets and its percentile interval, each set
    resampled within its classes, independently of the other."""
    rng = np.random.default_rng(seed)
    groups = [[np.flatnonzero(s.labels == c) for c in np.unique(s.labels)] for s in (a, b)]
    draws = []
    for _ in range(reps):
        picks = [np.concatenate([rng.choice(g, size=len(g)) for g in gs]) for gs in groups]
        draws.append(statistic(b.take(picks[1])) - statistic(a.take(picks[0])))
    low, high = np.percentile(draws, [2.5, 97.5])
    return Estimate(statistic(b) - statistic(a), float(low), float(high), len(a) + len(b))


def _rate(hit: np.ndarray, strata: np.ndarray, reps: int, seed: int) -> Estimate | None:
    if len(hit) == 0:
        return None
    return bootstrap(lambda i: float(hit[i].mean()), strata, reps, seed)


def fidelity(s: Judged, reps: int = 1000, seed: int = 0) -> Estimate | None:
    return _rate(s.judged == s.labels, s.labels, reps, seed)


def negative_confusion(s: Judged, reps: int = 1000, seed: int = 0) -> Estimate | None:
    if s.negatives is None:
        return None
    named = s.negatives >= 0
    return _rate((s.judged == s.negatives)[named], s.labels[named], reps, seed)


def pair_confusion(s: Judged, a: int, b: int, reps: int = 1000, seed: int = 0) -> Estimate | None:
    """Among the images intended as class ``a``, the fraction judged ``b``."""
    of_a = s.labels == a
    return _rate((s.judged == b)[of_a], s.labels[of_a], reps, seed)


def _mean_distance_to_classmates(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, its mean feature distance to the other images of its class (NaN if alone)."""
    out = np.full(len(labels), np.nan)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        d = linalg.norm(features[idx, None, :] - features[None, idx, :], axis=-1)
        out[idx] = d.sum(1) / (len(idx) - 1)
    return out


def diversity(s: Judged, reps: int = 1000, seed: int = 0) -> Estimate | None:
    """Mean within-class pairwise distance, averaged over classes (each image's mean distance to
    its classmates is resampled, so repeated draws add no zero distances)."""
    per_image = _mean_distance_to_classmates(s.features, s.labels)
    keep = ~np.isnan(per_image)
    if not keep.any():
        return None
    d, labels = per_image[keep], s.labels[keep]

    def stat(i: np.ndarray) -> float:
        return float(np.mean([d[i][labels[i] == c].mean() for c in np.unique(labels[i])]))

    return bootstrap(stat, labels, reps, seed)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # a singular product (fewer images than dimensions)
        warnings.simplefilter("ignore")
        root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root))


def frechet(s: Judged, real: Judged, reps: int = 200, seed: int = 0) -> Estimate | None:
    """Frechet distance to the real set; the interval resamples the synthetic images."""
    if len(s) < 2:
        return None
    return bootstrap(lambda i: frechet_distance(s.features[i], real.features), s.labels,
                     reps, seed)


def c2st(s: Judged, real: Judged, reps: int = 1000, seed: int = 0) -> Estimate | None:
    """Classifier two-sample test: cross-validated accuracy of telling ``s`` from ``real``.

    Each class contributes as many synthetic as real images (the larger side is subsampled with
    ``seed``); the interval resamples the out-of-fold predictions.
    """
    rng = np.random.default_rng(seed)
    picked_s, picked_r = [], []
    for c in np.intersect1d(np.unique(s.labels), np.unique(real.labels)):
        i_s, i_r = np.flatnonzero(s.labels == c), np.flatnonzero(real.labels == c)
        k = min(len(i_s), len(i_r))
        picked_s.append(rng.choice(i_s, k, replace=False))
        picked_r.append(rng.choice(i_r, k, replace=False))
    if not picked_s or sum(map(len, picked_s)) < C2ST_FOLDS:
        return None
    i_s, i_r = np.concatenate(picked_s), np.concatenate(picked_r)
    x = np.concatenate([s.features[i_s], real.features[i_r]])
    y = np.concatenate([np.ones(len(i_s), int), np.zeros(len(i_r), int)])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(C2ST_FOLDS, shuffle=True, random_state=seed)
    correct = cross_val_predict(model, x, y, cv=folds) == y
    strata = np.concatenate([s.labels[i_s], real.labels[i_r] + 10_000])
    return _rate(correct, strata, reps, seed)


# ---- sub-mode figures --------------------------------------------------------------------------
def of_its_class(s: Judged) -> Judged | None:
    """The images judged as their intended class (None: no such image, or no sub-modes)."""
    if s.units is None:
        return None
    keep = np.flatnonzero(s.judged == s.labels)
    return s.take(keep) if len(keep) else None


def _shares(units: np.ndarray, catalog_class_of: np.ndarray, c: int) -> np.ndarray:
    own = np.flatnonzero(catalog_class_of == c)
    return np.array([(units == u).mean() for u in own]) if len(units) else np.zeros(len(own))


def submode_tv(
    s: Judged, class_of: Sequence[int], weights: Sequence[float], reps: int = 1000, seed: int = 0
) -> Estimate | None:
    """Mean over classes of 0.5 * sum_k |judged share of sub-mode k - planted weight of k|."""
    s = of_its_class(s)
    if s is None:
        return None
    class_of, weights = np.asarray(class_of), np.asarray(weights)

    def stat(i: np.ndarray) -> float:
        labels, units = s.labels[i], s.units[i]
        tv = [0.5 * np.abs(_shares(units[labels == c], class_of, c) - weights[class_of == c]).sum()
              for c in np.unique(labels)]
        return float(np.mean(tv))

    return bootstrap(stat, s.labels, reps, seed)


def coverage(
    s: Judged, class_of: Sequence[int], reps: int = 1000, seed: int = 0
) -> Estimate | None:
    """Fraction of the planted sub-modes (of the classes in the set) with >= 5 % of their
    class's images."""
    s = of_its_class(s)
    if s is None:
        return None
    class_of = np.asarray(class_of)

    def stat(i: np.ndarray) -> float:
        labels, units = s.labels[i], s.units[i]
        covered = [(_shares(units[labels == c], class_of, c) >= COVERAGE_SHARE)
                   for c in np.unique(labels)]
        return float(np.concatenate(covered).mean())

    return bootstrap(stat, s.labels, reps, seed)


def steering_ari(s: Judged, reps: int = 1000, seed: int = 0) -> Estimate | None:
    """Adjusted Rand index between the prompted sub-class and the judged sub-mode, per class
    (classes with >= 2 images), averaged over classes."""
    s = of_its_class(s)
    if s is None or s.subclasses is None or (s.subclasses < 0).all():
        return None

    def stat(i: np.ndarray) -> float:
        labels = s.labels[i]
        scores = [adjusted_rand_score(s.subclasses[i][labels == c], s.units[i][labels == c])
                  for c in np.unique(labels) if (labels == c).sum() >= 2]
        return float(np.mean(scores)) if scores else float("nan")

    return bootstrap(stat, s.labels, reps, seed)


def copy_rates(s: Judged, reps: int = 1000, seed: int = 0) -> tuple[Estimate, Estimate] | None:
    """(copy rate, chance rate) of an img2img set.

    Copy rate: fraction of images judged in their source image's planted sub-mode. Chance: per
    class sum_k p_source(k) p_generated(k), weighted by the class's image count: what the rate
    would be if the generated sub-mode were drawn independently of the source's.
    """
    s = of_its_class(s)
    if s is None or s.source_units is None or (s.source_units < 0).all():
        return None
    has = s.source_units >= 0
    labels, units, sources = s.labels[has], s.units[has], s.source_units[has]

    def chance(i: np.ndarray) -> float:
        total = 0.0
        for c in np.unique(labels[i]):
            mine = i[labels[i] == c]
            ids = np.union1d(units[mine], sources[mine])
            p_gen = np.array([(units[mine] == u).mean() for u in ids])
            p_src = np.array([(sources[mine] == u).mean() for u in ids])
            total += len(mine) * float(p_gen @ p_src)
        return total / len(i)

    rate = bootstrap(lambda i: float((units[i] == sources[i]).mean()), labels, reps, seed)
    return rate, bootstrap(chance, labels, reps, seed)


def steering_rates(s: Judged, reps: int = 1000, seed: int = 0) -> tuple[Estimate, Estimate] | None:
    """(steering rate, chance rate) of a ClusDiff set: :func:`copy_rates` with each image's
    prompted sub-class standing for its source (the planted sub-mode most of that sub-class's
    training images have)."""
    if s.subclass_units is None or (s.subclass_units < 0).all():
        return None
    return copy_rates(replace(s, source_units=s.subclass_units), reps, seed)
