"""Grid sweeps: `babble sweep cfg.yaml --grid optim.lr=3e-4,4e-4,5e-4 [--grid key=v1,v2 ...]`.

Every combination of the grid values becomes one run (its own run folder under the sweep folder);
a finished run (checkpoints/final present) is not trained again. Runs whose data config is the
same share one data preparation: later runs start from a copy of the first one's data folder. The table holds each final model's
dev loss and perplexity (on the run's dev subset: train.dev_batches x train.dev_batch_size blocks) and,
when `eval.data` is set, its evaluation scores and their average;
it is printed and saved as sweep.md and sweep.csv in the sweep folder.
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
from ..rundir import RunDir
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


def _measure(cfg, final_dir: Path) -> dict[str, float]:
    """The final model's dev loss (the run's dev subset) and the scores (percent) of the evaluation
    tasks that can run here (BLiMP when eval.data is set)."""
    from ..data.blocks import load_blocks
    from ..eval.load import load_model_and_tokenizer
    from .engine import dev_loss

    model, tokenizer = load_model_and_tokenizer(final_dir, device="auto")
    loss = dev_loss(model, load_blocks(cfg.out_dir / "data", "dev"), cfg.train.dev_batch, cfg.train.dev_blocks, model.device)
    scores = {}
    if cfg.eval.data and "blimp" in cfg.eval.tasks:
        from ..eval.blimp import evaluate_blimp

        scores["blimp"] = evaluate_blimp(model, tokenizer, cfg.eval.data, batch_size=cfg.eval.batch_size)["accuracy"]
    return {"dev_loss": loss, "dev_ppl": math.exp(min(loss, 50)), **scores,
            "eval_avg": sum(scores.values()) / len(scores) if scores else None}


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
    rows, prepared = [], {}  # data config hash -> a data folder prepared with it
    for combo, slug, cfg in configs:
        final = cfg.out_dir / "checkpoints" / "final"
        data_hash = config_hash(cfg.data, cfg.tokenizer)
        if not (final / "model.safetensors").exists():
            if data_hash in prepared:
                copy_prepared(prepared[data_hash], cfg.out_dir / "data")
            resume = latest_resumable(RunDir(cfg.out_dir).checkpoints) is not None
            print(f"sweep: {'resuming' if resume else 'training'} {slug} -> {cfg.out_dir}")
            train(cfg, resume=resume, overwrite=not resume, progress=progress)
        prepared.setdefault(data_hash, cfg.out_dir / "data")
        rows.append({"run": slug, **combo, **_measure(cfg, final)})
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
