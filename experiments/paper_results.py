"""Top-1 accuracies (%) the papers report, ResNet-18, as (head, tail, overall); None = not given.

Sources: DiSC-DS (arXiv 2506.01368) Table 1-3, ClusDiff (arXiv 2309.00199); see
docs/algorithms.md.
"""

from __future__ import annotations

Triple = tuple[float | None, float | None, float | None]

PAPER_RESULTS: dict[str, dict[str, Triple]] = {
    "food101_lt": {
        "ce": (65.8, 20.9, 33.4),
        "synaug": (57.0, 45.7, 48.9),
        "food1stage": (65.7, 42.9, 49.3),
        "disc_ds": (68.5, 45.2, 51.6),
        "sd_no_mixup": (None, None, 41.6),
        "sd_mixup_random": (None, None, 47.0),
        "sd_mixup_all": (None, None, 46.4),
        "cads": (None, None, 50.1),
        "fixed_tau_0.2": (None, None, 51.0),
        "fixed_tau_0.5": (None, None, 50.2),
        "fixed_tau_0.8": (None, None, 50.6),
    },
    "vfn_lt": {
        "ce": (62.3, 24.4, 35.8),
        "clusdiff": (68.7, 42.4, 49.5),
        "synaug": (44.4, 40.5, 41.7),
        "food1stage": (66.0, 45.1, 51.2),
        "disc_ds": (73.8, 52.9, 59.1),
        "sd_no_mixup": (None, None, 53.6),
        "sd_mixup_random": (None, None, 51.1),
        "sd_mixup_all": (None, None, 55.8),
        "cads": (None, None, 57.4),
        "fixed_tau_0.2": (None, None, 57.6),
        "fixed_tau_0.5": (None, None, 58.3),
        "fixed_tau_0.8": (None, None, 56.7),
    },
}


KNOWN_METHODS = frozenset(m for results in PAPER_RESULTS.values() for m in results)


def paper_result(dataset: str, method: str | None) -> Triple | None:
    """The paper's numbers for a (dataset, method) pair, if it reports them.

    Raises:
        ValueError: ``method`` is no method of either paper (a typo would otherwise show as
            "not reported").
    """
    if method is None:
        return None
    if method not in KNOWN_METHODS:
        raise ValueError(
            f"paper result {dataset}/{method}: unknown method {method!r}; "
            f"known: {sorted(KNOWN_METHODS)}"
        )
    return PAPER_RESULTS.get(dataset, {}).get(method)
