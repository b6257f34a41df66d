"""Result tables in the papers' shape, from finished classifier runs.

``python -m experiments table --spec experiments/configs/tables/<table>.yaml`` reads each run's
``per_class_accuracy_test.csv`` (written by the classifier at test end), recomputes head / tail /
overall top-1 from the per-class counts, and writes ``<out>.md`` and ``<out>.csv`` with the
paper's numbers alongside where the paper reports them, and each run's W&B id.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from datamodules.atomic import atomic_open, atomic_write_text
from experiments.paper_results import paper_result


@dataclass
class Row:
    """One line of a table: a finished run and what it stands for.

    Attributes:
        method: Label in the table.
        run_dir: The classifier run directory (``trainer.default_root_dir`` of its test).
        dataset: Dataset key (``food101_lt``, ``vfn_lt``, ``embedded``).
        paper: The paper's reported result to show alongside: ``"<method>"`` for the row's own
            dataset or ``"<dataset>/<method>"`` (e.g. ``food101_lt/ce`` next to an embedded run);
            see :mod:`experiments.paper_results`.
    """

    method: str
    run_dir: str
    dataset: str = "embedded"
    paper: str | None = None


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


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def wandb_run_id(run_dir: str | Path) -> str:
    latest = Path(run_dir) / "wandb" / "latest-run"
    if latest.exists():
        return latest.resolve().name.rsplit("-", 1)[-1]
    return ""


def build_table(rows: list[Row]) -> tuple[str, list[dict]]:
    """Markdown text and CSV records of the table."""
    records, lines = [], [
        "| Dataset | Method | Head | Tail | Overall | Paper (H / T / O) | Run |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        acc = run_accuracies(row.run_dir)
        dataset, _, method = (row.paper or "").rpartition("/")
        ref = paper_result(dataset or row.dataset, method or None)
        cells = [_cell(acc[g]) if acc else "not run" for g in ("head", "tail", "overall")]
        paper = " / ".join(_cell(v) for v in ref) if ref else ""
        if ref and dataset:
            paper = f"{dataset}: {paper}"
        run_id = wandb_run_id(row.run_dir) or Path(row.run_dir).name
        lines.append(f"| {row.dataset} | {row.method} | " + " | ".join(cells)
                     + f" | {paper} | {run_id} |")
        records.append({"dataset": row.dataset, "method": row.method,
                        **({f"acc_{g}": None if v is None else round(v, 2)
                            for g, v in acc.items()} if acc else {}),
                        "paper": paper, "run_dir": row.run_dir, "wandb_id": wandb_run_id(row.run_dir)})
    return "\n".join(lines), records


def write_table(rows: list[Row], out: str | Path) -> str:
    """Write ``<out>.md`` and ``<out>.csv``; return the Markdown."""
    markdown, records = build_table(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".md"), markdown + "\n")
    fields = ["dataset", "method", "acc_head", "acc_tail", "acc_overall", "paper", "run_dir",
              "wandb_id"]
    with atomic_open(out.with_suffix(".csv")) as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return markdown


def make_table(rows: list[Row], out: str = "runs/tables/table") -> str:
    """Render a table; ``--config <table.yaml>`` gives ``rows`` (list of :class:`Row`) and
    ``out`` (written as ``<out>.md`` and ``<out>.csv``)."""
    markdown = write_table(rows, out)
    print(markdown)
    return markdown
