"""Tables (Markdown, CSV, plain text) and plots of evaluation results."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .tasks import TIE_WARNING, average


def scores_of(results: dict[str, dict]) -> dict[str, float]:
    """{score name: value} over the task results that succeeded, plus their average."""
    scores = {name: value for result in results.values() if "failed" not in result
              for name, value in result["scores"].items()}
    return {**scores, "average": average(scores)} if scores else {}


def failures(results: dict[str, dict]) -> dict[str, str]:
    """{task: error} for the tasks that failed."""
    return {task: result["failed"] for task, result in results.items() if "failed" in result}


def _cell(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def columns_of(rows: dict[str, dict[str, float]]) -> list[str]:
    names = list(dict.fromkeys(name for row in rows.values() for name in row if name != "average"))
    return [*names, "average"]


def markdown_table(rows: dict[str, dict[str, float]], first: str = "model") -> str:
    columns = columns_of(rows)
    lines = ["| " + " | ".join([first, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += ["| " + " | ".join([label, *(_cell(row.get(c)) for c in columns)]) + " |" for label, row in rows.items()]
    return "\n".join(lines) + "\n"


def csv_table(rows: dict[str, dict[str, float]], first: str = "model") -> str:
    columns = columns_of(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([first, *columns])
    for label, row in rows.items():
        writer.writerow([label, *(_cell(row.get(c)) for c in columns)])
    return out.getvalue()


def ties_table(results: dict[str, dict]) -> str:
    """Markdown: each score as its rules count it (2026: a tie among k options counts 1/k, the expectation
    of the official random draw; 2025: a tie counts as right) beside its two bounds, ties counted right
    and ties counted wrong, the share of items whose gold option ties, and a flag where ties are many."""
    lines = ["| task | score | rules | ties counted right | ties counted wrong | items tied | |",
             "|---|---|---|---|---|---|---|"]
    for task, result in results.items():
        if "failed" in result:
            lines.append(f"| {task} | failed | | | | | {result['failed']} |")
            continue
        right, wrong = result.get("scores_ties_right", {}), result.get("scores_ties_wrong", {})
        for name, value in result["scores"].items():
            fraction = result.get("tie_fraction")
            flag = f"many ties (> {TIE_WARNING:.0%}): the bounds are far apart" if (fraction or 0) > TIE_WARNING else ""
            tied = f"{result['ties']:,} ({fraction:.1%})" if fraction is not None else ""
            lines.append(f"| {name} | {_cell(value)} | {result.get('rules', '')} | {_cell(right.get(name))} | "
                         f"{_cell(wrong.get(name))} | {tied} | {flag} |")
    return "\n".join(lines) + "\n"


def write_run_report(results: dict[str, dict], path: Path) -> Path:
    """The run's report (`babble run`): the final model's scores beside their bounds for ties."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scores = scores_of(results)
    average_line = f"Average of {len(scores) - 1} scores: {scores['average']:.2f}.\n\n" if scores else ""
    path.write_text("# Zero-shot results of the final model\n\n" + average_line + ties_table(results) +
                    "\nAn item whose best options score exactly alike is a tie. The 2026 rules draw one of them at "
                    "random (the score is the expectation: 1/k for a tie of k options that include the gold one); "
                    "the 2025 rules count it as right. The two bound columns count every tie right, then wrong.\n",
                    encoding="utf-8")
    return path


def text_table(result: dict) -> str:
    """One task result as plain text: its scores, then per-UID and per-group breakdowns, two decimals."""
    lines = [f"{result['task']}: {result['n_items']} items in {result['seconds']:.1f} s"]
    for title, values in (("", result["scores"]), ("UID", result.get("by_uid", {})), ("group", result.get("by_group", {}))):
        if values:
            width = max(map(len, values))
            lines += [f"  [{title}]"] if title else []
            lines += [f"  {name:<{width}}  {value:8.2f}" for name, value in values.items()]
    return "\n".join(lines)


def plot_curves(rows: dict[str, dict[str, float]], seen: dict[str, tuple[float, str]], out_dir: Path) -> list[Path]:
    """One learning-curve PNG per score: score against what each checkpoint had seen when it was saved
    (`seen`: checkpoint -> (count, unit), e.g. (51518, "words")), log scale, each point named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    labels = list(rows)
    units = sorted({unit for _, unit in seen.values()})
    for column in columns_of(rows):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        points = [(seen[label][0], rows[label][column], label) for label in labels if rows[label].get(column) is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        for x, y, label in points:
            ax.annotate(label, (x, y), fontsize=6, textcoords="offset points", xytext=(2, 3))
        ax.set_xscale("log")
        ax.set_xlabel(" / ".join(units) + " seen")
        ax.set_ylabel(column)
        ax.set_title(f"{column} over training")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{column}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_comparison(rows: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: one group per score, one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = columns_of(rows)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(columns)), 3.5))
    width = 0.8 / len(rows)
    for k, (label, row) in enumerate(rows.items()):
        values = [row.get(c, math.nan) for c in columns]
        ax.bar(np.arange(len(columns)) + k * width, values, width, label=label)
    ax.set_xticks(np.arange(len(columns)) + 0.4 - width / 2, columns, rotation=30, ha="right")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_results(folder: Path) -> dict[str, dict]:
    """Every `<task>.json` result in a checkpoint's results folder."""
    results = {}
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "scores" in data and "task" in data:
            results[data["task"]] = data
    return results
