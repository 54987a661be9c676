"""Grid sweeps: `babble sweep cfg.yaml --grid optim.lr=3e-4,4e-4,5e-4 [--grid key=v1,v2 ...]`.

Every combination of the grid values becomes one run (its own run folder under the sweep folder);
a finished run (`RunDir.finished`) is not trained again. Runs whose data config is the same share
one data preparation: later runs start from a copy of the first one's data folder. The table holds
each final model's dev loss and perplexity (on the run's dev subset: train.dev_batches x
train.dev_batch_size blocks) and, when `eval.data` is set, its scores on `eval.tasks` under `eval.rules`
(default: the 2026 rules, as `babble run` and `babble eval` score) and their average (`eval_avg`).
Scoring goes through the evaluation suite (eval/suite.py), as `babble run`'s full stage does: the
same task loaders and scorers, the same data layouts (a full evaluation folder, its parent, or one
task's folder), and the results land in the run's `results/final/`, reused when their inputs match.
The table is printed and saved as sweep.md and sweep.csv in the sweep folder; a task that fails is
named (FAILED lines) and left out of its run's row.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import yaml

from ..config import load_config
from ..configbase import ConfigError
from ..data.prepare import config_hash, copy_prepared
from ..rundir import FINAL, RunDir
from .checkpoints import latest_resumable


def parse_grid(items: list[str]) -> dict[str, list]:
    """["optim.lr=3e-4,4e-4"] -> {"optim.lr": [0.0003, 0.0004]} (values read as YAML)."""
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError([(item, "a grid entry looks like key.path=value1,value2,...")])
        grid[key.strip()] = [_value(v) for v in values.split(",")]
    return grid


def _slug(combo: dict) -> str:
    return "_".join(f"{key.split('.')[-1]}={value}" for key, value in combo.items())


def _value(text: str):
    """A grid value read as YAML; numbers like 3e-4 (a string to YAML 1.1) become floats."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _measure(cfg, run: RunDir, log=print) -> dict[str, float]:
    """The final model's dev loss (the run's dev subset) and, when eval.data is set, its scores (percent)
    on eval.tasks through the evaluation suite, with their average; a failed task is logged."""
    from ..data.blocks import load_blocks
    from ..eval.load import load_model_and_tokenizer
    from ..eval.report import failures, scores_of
    from ..eval.suite import evaluate_tasks, results_folder
    from ..eval.catalog import parse_task_list
    from .engine import dev_loss

    final = run.checkpoint(FINAL)
    model, tokenizer = load_model_and_tokenizer(final, device=cfg.run.device)
    loss = dev_loss(model, load_blocks(run.data, "dev"), cfg.train.dev_batch, cfg.train.dev_blocks, model.device)
    scores = {}
    if cfg.eval.data:
        tasks = parse_task_list(",".join(cfg.eval.tasks), cfg.eval.rules)
        out = results_folder(run.results_of(FINAL), run, cfg.eval.data, tasks)
        results = evaluate_tasks(model, tokenizer, tasks, cfg.eval.data, out, batch_size=cfg.eval.batch_size,
                                 model_dir=final, rules=cfg.eval.rules, log=lambda _: None)
        for task, error in failures(results).items():
            log(f"FAILED {run.path.name}/{task}: {error}")
        scores = scores_of(results)
    average = scores.pop("average", None)
    return {"dev_loss": loss, "dev_ppl": math.exp(min(loss, 50)), **scores, "eval_avg": average}


def run_sweep(config_path: str | Path, grid: dict[str, list], overrides: list[str] | None = None,
              out_dir: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Train every combination; return one row per run (also written to sweep.md / sweep.csv)."""
    from .launch import train

    base = load_config(config_path, overrides)
    out = Path(out_dir) if out_dir else Path("runs") / f"sweep-{base.run.name}"
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    configs = []
    for combo in combos:  # validate every combination before training any
        slug = _slug(combo)
        sets = list(overrides or []) + [f"{k}={json.dumps(v)}" for k, v in combo.items()]
        sets += [f"run.name={base.run.name}-{slug}", f"run.out_dir={json.dumps(str(out / slug))}"]
        configs.append((combo, slug, load_config(config_path, sets)))
    if base.eval.data:  # the task names, before any training
        from ..eval.catalog import parse_task_list

        parse_task_list(",".join(base.eval.tasks), base.eval.rules)
    rows, prepared = [], {}  # data config hash -> a data folder prepared with it
    for combo, slug, cfg in configs:
        run = RunDir(cfg.out_dir)
        data_hash = config_hash(cfg.data, cfg.tokenizer)
        if not run.finished():
            if data_hash in prepared:
                copy_prepared(prepared[data_hash], run.data)
            resume = latest_resumable(run.checkpoints) is not None
            print(f"sweep: {'resuming' if resume else 'training'} {slug} -> {cfg.out_dir}")
            train(cfg, resume=resume, overwrite=not resume, progress=progress)
        prepared.setdefault(data_hash, run.data)
        rows.append({"run": slug, **combo, **_measure(cfg, run)})
    write_table(rows, out)
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) and abs(value) >= 0.01 else str(value)


def format_markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_table(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(format_markdown(rows) + "\n", encoding="utf-8")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
