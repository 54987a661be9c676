"""Condition matrices: `babble matrix CONFIG [CONFIG ...] --seeds 13 42 71 --out runs/taam-matrix`.

Every config is one condition (a multilingual preset such as configs/taam/TAAM.yaml, named by its
`run.name`), trained once per seed in `<out>/<name>-s<seed>`. Every config and seed is checked
before anything trains. A run already finished with the same config is reused, an interrupted one
resumed, and a folder holding a run of another config is refused. Runs whose prepared data would
be the same (the same languages, budget, data and tokenizer settings) share one preparation: the
later ones start from a copy of the first one's data folder.

The table has one row per condition: median (min-max) over the seeds of the loss on each
language's final dev slice, MultiBLiMP accuracy per language (with `eval_data`, a folder holding
one `<language>/` folder of minimal pairs per language scored) and the final pi. It is printed and
saved as matrix.md and matrix.csv in the matrix folder; runs.csv holds every run's own numbers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..config import load_config
from ..configbase import to_dict
from ..data.languages import ML_MANIFEST, multilingual_config_hash
from ..data.prepare import copy_prepared
from ..rundir import RunDir
from . import changes
from .checkpoints import latest_resumable
from .mixedsource import final_losses, read_mixing_records

METRICS = (("dev_loss", "final dev loss", 3), ("multiblimp", "MultiBLiMP", 2), ("pi", "final pi", 3))


def plan(config_paths: list[str | Path], seeds: list[int], out: Path, overrides: list[str] | None = None) -> list[tuple]:
    """[(condition, seed, config)] for every config and seed, all loaded and checked first."""
    if not config_paths or not seeds:
        raise ValueError("babble matrix needs at least one config and one seed (--seeds)")
    jobs, names = [], {}
    for path in config_paths:
        base = load_config(path, overrides)
        if not base.mixing.languages:
            raise ValueError(f"{path}: a matrix condition is a multilingual run; mixing.languages is empty")
        if base.run.name in names:
            raise ValueError(f"{path}: run.name {base.run.name!r} is also the name of {names[base.run.name]}; "
                             "every condition needs its own name")
        names[base.run.name] = path
        for seed in seeds:
            folder = out / f"{base.run.name}-s{seed}"
            cfg = load_config(path, list(overrides or []) + [f"run.seed={seed}", f"run.out_dir={json.dumps(str(folder))}"])
            run = RunDir(folder)
            differ = changes.differences(run, to_dict(cfg)) if run.finished() else {}
            if differ:
                raise ValueError(f"{folder} holds a finished run of another config ({', '.join(differ)} differ); "
                                 "choose another --out")
            jobs.append((base.run.name, seed, cfg))
    return jobs


def run_matrix(config_paths: list[str | Path], seeds: list[int], out: str | Path, overrides: list[str] | None = None,
               eval_data: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Train (or reuse) every condition x seed; return the table's rows (also written to the matrix folder)."""
    from .launch import train

    out = Path(out)
    jobs, prepared, runs = plan(config_paths, seeds, out, overrides), {}, []
    for condition, seed, cfg in jobs:
        run = RunDir(cfg.out_dir)
        data_hash = multilingual_config_hash(cfg.mixing, cfg.data, cfg.tokenizer)
        if not run.finished():
            if data_hash in prepared:
                copy_prepared(prepared[data_hash], run.data, ML_MANIFEST)
            resume = latest_resumable(run.checkpoints) is not None
            print(f"matrix: {'resuming' if resume else 'training'} {condition} seed {seed} -> {run.path}")
            train(cfg, resume=resume, overwrite=not resume, progress=progress)
        prepared.setdefault(data_hash, run.data)
        runs.append({"condition": condition, "seed": seed, "run": str(run.path), **run_numbers(run, eval_data)})
    rows = summarize(runs)
    write_tables(rows, runs, out)
    return rows


def run_numbers(run: RunDir, eval_data: str | Path | None) -> dict[str, float]:
    """One finished run: final dev loss and final pi per language, MultiBLiMP per language with data."""
    last = read_mixing_records(run.metrics)[-1]
    numbers = {f"dev_loss_{lang}": v for lang, v in final_losses(last).items()}
    if eval_data:
        from ..eval.suite import evaluate_model

        for lang in last["pi"]:
            if (Path(eval_data) / lang).is_dir():
                result = evaluate_model(run.path, ["multiblimp"], eval_data, language=lang, progress=False)[0]["multiblimp"]
                if "failed" in result:
                    raise ValueError(f"MultiBLiMP {lang} of {run.path}: {result['failed']}")
                numbers[f"multiblimp_{lang}"] = result["scores"]["multiblimp"]
    return numbers | {f"pi_{lang}": v for lang, v in last["pi"].items()}


def summarize(runs: list[dict]) -> list[dict]:
    """One row per condition (in order): seeds and, per number, its median, min and max over the seeds."""
    rows = {}
    for r in runs:
        rows.setdefault(r["condition"], []).append(r)
    table = []
    for condition, group in rows.items():
        row = {"condition": condition, "seeds": " ".join(str(r["seed"]) for r in group)}
        for key in dict.fromkeys(k for r in group for k in r if k not in ("condition", "seed", "run")):
            values = [r[key] for r in group if key in r]
            row[key] = {"median": float(np.median(values)), "min": min(values), "max": max(values)}
        table.append(row)
    return table


def _split(key: str) -> tuple[str, str]:
    """"dev_loss_eng" -> ("dev_loss", "eng")."""
    metric = next(m for m, _, _ in METRICS if key.startswith(m + "_"))
    return metric, key[len(metric) + 1:]


def _columns(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in ("condition", "seeds")))
    return [k for metric, _, _ in METRICS for k in keys if _split(k)[0] == metric]


def format_markdown(rows: list[dict]) -> str:
    """The table: one row per condition, cells `median (min-max)` over the seeds."""
    style = {metric: (title, digits) for metric, title, digits in METRICS}
    columns = _columns(rows)

    def cell(stat, key):
        d = style[_split(key)[0]][1]
        return "-" if stat is None else f"{stat['median']:.{d}f} ({stat['min']:.{d}f}-{stat['max']:.{d}f})"

    head = ["condition", "seeds"] + [f"{style[_split(k)[0]][0]} {_split(k)[1]}" for k in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([row["condition"], row["seeds"]] + [cell(row.get(k), k) for k in columns]) + " |"
              for row in rows]
    return "\n".join(lines)


def write_tables(rows: list[dict], runs: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.md").write_text(format_markdown(rows) + "\n", encoding="utf-8")
    columns = _columns(rows)
    with (out / "matrix.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "seeds"] + [f"{k}_{stat}" for k in columns for stat in ("median", "min", "max")])
        for row in rows:
            writer.writerow([row["condition"], row["seeds"]]
                            + [row[k][stat] if k in row else "" for k in columns for stat in ("median", "min", "max")])
    with (out / "runs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["condition", "seed", "run"] + columns)
        writer.writeheader()
        writer.writerows(runs)
