"""Result tables in the papers' shape, from finished classifier runs.

``python -m experiments table --config <table.yaml>`` (``rows``: method, run_dir, ...) reads each
run's ``per_class_accuracy_test.csv`` (written by the classifier at test end), recomputes head /
tail / overall top-1 from the per-class counts, and writes ``<out>.md`` and ``<out>.csv`` with the
paper's numbers alongside where the paper reports them. In a pipeline a row shows every seed of
its stage (mean +- std) and its paired difference to the baseline rows (``compare_with``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from datamodules.atomic import atomic_open, atomic_write_text
from experiments.paper_results import paper_result
from experiments.seed_stats import paired, summarize


@dataclass
class Row:
    """One line of a table: finished classifier runs and what they stand for.

    Attributes:
        method: Label in the table.
        run_dir: A classifier run directory (``trainer.default_root_dir`` of its test), or
        stage: in a pipeline, the ``fit_test`` stage whose runs (one per seed) the row shows.
        dataset: Dataset key (``food101_lt``, ``vfn_lt``, ``embedded``).
        paper: The paper's reported result to show alongside: ``"<method>"`` for the row's own
            dataset or ``"<dataset>/<method>"`` (e.g. ``food101_lt/ce`` next to an embedded run);
            see :mod:`experiments.paper_results`.
    """

    method: str
    run_dir: str | None = None
    dataset: str = "embedded"
    paper: str | None = None
    stage: str | None = None


GROUPS = ("head", "tail", "overall")


def run_accuracies(run_dir: str | Path) -> dict[str, float | None] | None:
    """Head / tail / overall top-1 (%) from a run's per-class test CSV (``None``: not finished).

    A group with no test image (e.g. no head class) is ``None``, not 0.
    """
    path = Path(run_dir) / "per_class_accuracy_test.csv"
    if not path.is_file():
        return None
    sums = {"head": [0, 0], "tail": [0, 0], "overall": [0, 0]}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            group = "head" if r["is_head"] == "True" else "tail"
            for g in (group, "overall"):
                sums[g][0] += int(r["correct"])
                sums[g][1] += int(r["total"])
    return {g: 100.0 * c / t if t else None for g, (c, t) in sums.items()}


def run_steps(run_dir: str | Path) -> int | None:
    """The optimizer steps a classifier run took (its last checkpoint's ``global_step``)."""
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def _steps_cell(run_dirs: list[str | Path]) -> str:
    steps = sorted({s for s in (run_steps(d) for d in run_dirs) if s is not None})
    if not steps:
        return "-"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"


def wandb_run_id(run_dir: str | Path) -> str:
    """The W&B run id of a run directory ('' without one)."""
    latest = Path(run_dir) / "wandb" / "latest-run"
    if latest.exists():
        return latest.resolve().name.rsplit("-", 1)[-1]
    return ""


def _cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    s = summarize(values)
    return f"{s.mean:.1f}" if s.n == 1 else f"{s.mean:.1f} +- {s.std:.1f}"


def _row_runs(row: Row, runs: dict[str, dict]) -> dict:
    if row.stage is not None:
        return runs.get(row.stage, {})
    if row.run_dir is None:
        raise ValueError(f"table row {row.method!r}: give its run_dir or its stage")
    return {None: row.run_dir}


def build_table(
    rows: list[Row], runs: dict[str, dict] | None = None, compare_with: list[str] = ()
) -> tuple[str, list[dict]]:
    """Markdown text and CSV records (one per row and seed) of the table.

    Args:
        rows: The table's rows.
        runs: ``stage -> {seed: run_dir}`` for rows that name a stage.
        compare_with: Stages of baseline rows: every row gets its paired difference of overall
            accuracy to each of them (over their common seeds).
    """
    runs = runs or {}
    per_row = {}
    for row in rows:
        found = {seed: run_accuracies(d) for seed, d in _row_runs(row, runs).items()}
        per_row[row.method] = {seed: acc for seed, acc in found.items() if acc is not None}
    baselines = [(stage, next((r for r in rows if r.stage == stage), None))
                 for stage in compare_with]
    missing = [stage for stage, row in baselines if row is None]
    if missing:
        raise ValueError(f"compare_with: no table row shows stage(s) {missing}")
    header = ["Method", "Seeds", "Steps", "Head", "Tail", "Overall",
              *(f"vs {row.method}: overall diff [95% CI]" for _, row in baselines),
              "Paper (H / T / O)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    records = []
    for row in rows:
        accs = per_row[row.method]
        dataset, _, method = (row.paper or "").rpartition("/")
        ref = paper_result(dataset or row.dataset, method or None)
        paper = " / ".join("-" if v is None else f"{v:.1f}" for v in ref) if ref else ""
        if ref and dataset:
            paper = f"{dataset}: {paper}"
        steps = _steps_cell([_row_runs(row, runs)[seed] for seed in accs])
        if accs:
            cells = [str(len(accs)), steps] + [_cell([a[g] for a in accs.values()]) for g in GROUPS]
        else:
            cells = ["0", "-", "not run", "not run", "not run"]
        for _, base in baselines:
            if base is row:
                cells.append("-")
                continue
            comparison = paired({s: a["overall"] for s, a in accs.items()},
                                {s: a["overall"] for s, a in per_row[base.method].items()})
            cells.append(str(comparison) if comparison else "n < 2 seeds: no claim")
        lines.append(f"| {row.method} | " + " | ".join(cells) + f" | {paper} |")
        for seed, acc in sorted(accs.items(), key=lambda kv: (kv[0] is None, kv[0])):
            records.append({"dataset": row.dataset, "method": row.method, "seed": seed,
                            **{f"acc_{g}": None if acc[g] is None else round(acc[g], 2)
                               for g in GROUPS},
                            "paper": paper, "run_dir": _row_runs(row, runs)[seed]})
    return "\n".join(lines), records


TABLE_NOTE = (
    "Top-1 accuracy (%) on the test split, mean +- std over the seeds; Steps: the optimizer steps "
    "each run took (its checkpoint's); the diff columns are the "
    "mean paired difference of overall accuracy to that row over the common seeds, with its 95 % "
    "t-interval; 'better' / 'worse' only where a paired t-test over the seeds gives p < 0.05, "
    "else 'n.s.'."
)


def write_table(
    rows: list[Row], runs: dict[str, dict] | None, out: str | Path, compare_with: list[str] = ()
) -> str:
    """Write ``<out>.md`` and ``<out>.csv``; return the Markdown."""
    markdown, records = build_table(rows, runs, compare_with)
    markdown = f"{markdown}\n\n{TABLE_NOTE}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), markdown + "\n")
    fields = ["dataset", "method", "seed", "acc_head", "acc_tail", "acc_overall", "paper",
              "run_dir"]
    with atomic_open(out.with_suffix(".csv")) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return markdown


def make_table(rows: list[Row], out: str = "runs/tables/table") -> str:
    """Render a table; ``--config <table.yaml>`` gives ``rows`` (list of :class:`Row`, each
    with its ``run_dir``) and ``out`` (written as ``<out>.md`` and ``<out>.csv``)."""
    markdown = write_table(rows, None, out)
    print(markdown)
    return markdown
