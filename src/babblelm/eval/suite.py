"""Run the task suite on one model or on every `chck_*` checkpoint of a run, writing results.

Layout: `<results>/<checkpoint>/<task>.json` (one file per checkpoint and task; an existing file
is reused on re-run unless `force`), and for a whole run `<results>/learning_curves.{md,csv}`,
`<results>/curves/<score>.png`, `<results>/aoa.json` and `<results>/best_checkpoint.json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import AutoModelForCausalLM

from ..models.registry import hf_progress_bars_off, register_auto_classes
from ..device import resolve_device
from ..rundir import RunDir, milestone_count, resolve_checkpoint
from . import report
from .aoa import curve_fitness, load_cdi, load_words, word_surprisals
from .tasks import evaluate_task


def evaluate_tasks(model, tokenizer, tasks: list[str], data_dir, out_dir: Path, batch_size: int = 64,
                   force: bool = False, progress: bool = False, log=print, shared_prefix: bool = True) -> dict[str, dict]:
    """Results per task for one loaded model; each written to `out_dir/<task>.json` (reused unless `force`).

    A task that fails (bad data, a text longer than the model can take, ...) is reported as
    {"task": name, "failed": "<error>"}, written nowhere, and the other tasks still run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for task in tasks:
        path = out_dir / f"{task}.json"
        if path.exists() and not force:
            results[task] = json.loads(path.read_text(encoding="utf-8"))
            log(f"{task}: reusing {path}")
            continue
        try:
            results[task] = evaluate_task(model, tokenizer, task, data_dir, batch_size=batch_size, progress=progress,
                                          shared_prefix=shared_prefix)
        except Exception as err:  # noqa: BLE001 (one task's failure must not cost the others; it is reported)
            results[task] = {"task": task, "failed": f"{type(err).__name__}: {err}"}
            log(f"{task}: FAILED: {results[task]['failed']}")
            continue
        path.write_text(json.dumps(results[task], indent=2), encoding="utf-8")
        log(report.text_table(results[task]))
    return results


def evaluate_model(model_path, tasks: list[str], data_dir, checkpoint: str | None = None, out_dir=None,
                   language: str | None = None, device: str = "auto", **options) -> tuple[dict[str, dict], Path]:
    """Score a run's checkpoint (default `final`) or a model folder; (results per task, results folder).

    Results go to `out_dir`, else `<run>/results/<checkpoint>` for a run, else `results/<folder name>`.
    With `language`, data comes from `DATA/<language>/` when that folder exists and results go to
    `<results>/<language>/`."""
    from .load import load_model_and_tokenizer

    model_dir = resolve_checkpoint(model_path, checkpoint)
    run = RunDir.of(model_dir)
    out = Path(out_dir) if out_dir else (run.results if run else Path("results")) / model_dir.name
    if language:
        data_dir = Path(data_dir) / language if (Path(data_dir) / language).is_dir() else data_dir
        out = out / language
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device)
    return evaluate_tasks(model, tokenizer, tasks, data_dir, out, **options), out


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's `chck_*` checkpoints in milestone order; an error if it has none."""
    run = RunDir(run_dir)
    if not run.milestones():
        raise FileNotFoundError(f"{run.checkpoints}: no chck_* checkpoints (expected e.g. chck_1M with config.json)")
    return run.milestones()


def evaluate_all_checkpoints(run_dir, tasks: list[str], data_dir, out_dir: Path | None = None,
                             batch_size: int = 64, device: str = "auto", force: bool = False,
                             progress: bool = False, log=print, shared_prefix: bool = True) -> dict:
    """Score every checkpoint (with the first one's tokenizer), then learning curves, AoA and the best
    checkpoint; the summary also says which tasks failed where."""
    from .load import load_tokenizer

    register_auto_classes()
    out_dir = Path(out_dir) if out_dir else RunDir(run_dir).results
    checkpoints = run_checkpoints(run_dir)
    tokenizer = load_tokenizer(checkpoints[0])
    device = resolve_device(device)
    aoa_dir = Path(data_dir) / "aoa"
    aoa_words = load_words(aoa_dir / "cdi_childes.json") if (aoa_dir / "cdi_childes.json").exists() else None
    rows, words, surprisal_curves, failed = {}, {}, {}, {}
    for checkpoint in checkpoints:
        folder = out_dir / checkpoint.name
        todo = [t for t in tasks if force or not (folder / f"{t}.json").exists()]
        aoa_path = folder / "aoa_surprisal.json"
        need_aoa = aoa_words is not None and (force or not aoa_path.exists())
        model = None
        if todo or need_aoa:
            log(f"== {checkpoint.name}")
            with hf_progress_bars_off():
                model = AutoModelForCausalLM.from_pretrained(checkpoint, trust_remote_code=True).to(device).eval()
        results = evaluate_tasks(model, tokenizer, tasks, data_dir, folder, batch_size, force, progress,
                                 log=lambda _: None, shared_prefix=shared_prefix) if todo else {t: json.loads((folder / f"{t}.json").read_text())
                                                                   for t in tasks}
        if need_aoa:
            aoa_path.write_text(json.dumps(word_surprisals(model, tokenizer, aoa_words, batch_size)), encoding="utf-8")
        if aoa_words is not None:
            surprisal_curves[checkpoint.name] = json.loads(aoa_path.read_text(encoding="utf-8"))
        del model
        rows[checkpoint.name] = report.scores_of(results)
        if report.failures(results):
            failed[checkpoint.name] = report.failures(results)
        words[checkpoint.name] = milestone_count(checkpoint.name)
    summary = {"checkpoints": rows, "failed": failed}
    if surprisal_curves:
        aoa = curve_fitness(surprisal_curves, load_cdi(aoa_dir))
        (out_dir / "aoa.json").write_text(json.dumps(aoa, indent=2), encoding="utf-8")
        summary["aoa"] = aoa["scores"]["aoa"]
    best = max(rows, key=lambda name: -math.inf if math.isnan(rows[name].get("average", math.nan)) else rows[name]["average"])
    summary["best_checkpoint"] = {"name": best, **rows[best]}
    (out_dir / "best_checkpoint.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out_dir / "learning_curves.md").write_text(report.markdown_table(rows, "checkpoint"), encoding="utf-8")
    (out_dir / "learning_curves.csv").write_text(report.csv_table(rows, "checkpoint"), encoding="utf-8")
    report.plot_curves(rows, words, out_dir / "curves")
    return summary


def compare_runs(run_dirs: list[Path], out_dir: Path) -> dict[str, dict[str, float]]:
    """One row per run (its best checkpoint by average, else its final results): Markdown, CSV, plot, card section."""
    rows = {}
    for run in map(Path, run_dirs):
        results_dir = run / "results" if (run / "results").is_dir() else run
        best = results_dir / "best_checkpoint.json"
        if best.exists():
            chosen = json.loads(best.read_text(encoding="utf-8"))["best_checkpoint"]["name"]
        else:
            candidates = [d for d in results_dir.iterdir() if d.is_dir() and report.read_results(d)]
            if not candidates:
                raise FileNotFoundError(f"{results_dir}: no results (run `babble eval` first)")
            chosen = next((d.name for d in candidates if d.name == "final"), sorted(d.name for d in candidates)[-1])
        rows[f"{run.name} ({chosen})"] = report.scores_of(report.read_results(results_dir / chosen))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(report.markdown_table(rows, "run"), encoding="utf-8")
    (out_dir / "comparison.csv").write_text(report.csv_table(rows, "run"), encoding="utf-8")
    report.plot_comparison(rows, out_dir / "comparison.png")
    card = "## Evaluation\n\nBabyLM zero-shot tasks, scored like the official pipeline (babblelm).\n\n"
    (out_dir / "model_card_results.md").write_text(card + report.markdown_table(rows, "run"), encoding="utf-8")
    return rows
