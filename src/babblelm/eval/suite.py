"""Run the task suite on one model or on every `chck_*` checkpoint of a run, writing results.

Layout: `<results>/<checkpoint>/<task>.json` (one file per checkpoint and task), and for a whole
run `<results>/learning_curves.{md,csv}`, `<results>/curves/<score>.png`, `<results>/aoa.json` and
`<results>/best_checkpoint.json`. `<results>` holds the results of the run's own evaluation data
(its `eval.data`; for a model without one, the data first scored there); results of other data go
beside them, in `data-<folder name>-<hash of its path>/` (`results_folder`), so that results of
different data never replace each other and the report and model card read the run's own.

Each result records its `inputs` (data folder and a SHA-256 of the files read, model folder and a
SHA-256 of its weights, config and tokenizer files, the options that change scores); a result on disk is reused only when those match, unless `force`. A result
that no longer matches its inputs and has no new result to replace it (the new scoring failed) is
renamed `<task>.json.stale`, which nothing reads; it is renamed back when its inputs match again.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from ..device import resolve_device
from ..errors import NotUsable
from ..modelfolder import load_model
from ..models.registry import register_auto_classes
from ..rundir import (AOA, AOA_SURPRISAL, BEST_CHECKPOINT, CURVES, FINAL, RunDir, learning_curves, milestone_count, model_results,
                      plain_name, resolve_checkpoint)
from ..train.checkpoints import exposure
from . import report
from .aoa import context_surprisals, curve_fitness, load_cdi, load_contexts
from .. import __version__
from .records import files_sha256
from .tasks import TASKS, data_layout, evaluate_task, task_data, task_inputs

MODEL_FILES = ("*.safetensors", "pytorch_model*.bin", "config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model")


def model_identity(model_dir) -> dict:
    """{"model": its folder, "model_sha256": one hash over its weights, config and tokenizer files}."""
    folder = Path(model_dir).resolve()
    files = sorted({path for pattern in MODEL_FILES for path in folder.glob(pattern) if path.is_file()})
    if not files:
        raise FileNotFoundError(f"{folder}: no model files ({', '.join(MODEL_FILES)})")
    return {"model": str(folder), "model_sha256": files_sha256(files, folder)}


def loaded_model_identity(model) -> dict:
    """The identity of a model that may not come from a folder: its folder's, else a hash of its tensors."""
    folder = getattr(model, "name_or_path", "") or ""
    if folder and Path(folder).is_dir():
        return model_identity(folder)
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return {"model": None, "model_sha256": digest.hexdigest()}


def what_changed(stored: dict | None, inputs: dict) -> str | None:
    """None when a stored result's inputs equal `inputs`, else what differs, in words."""
    if not isinstance(stored, dict) or not isinstance(stored.get("inputs"), dict):
        return "its result records no inputs (written before they were recorded, or unreadable)"
    old, changes = stored["inputs"], []
    if old.get("data") != inputs["data"]:
        changes.append(f"data {old.get('data')} -> {inputs['data']}")
    elif old.get("data_sha256") != inputs["data_sha256"]:
        changes.append(f"the data files in {inputs['data']} changed")
    if old.get("model") != inputs["model"]:
        changes.append(f"model {old.get('model')} -> {inputs['model']}")
    elif old.get("model_sha256") != inputs["model_sha256"]:
        changes.append("model weights changed")
    changes += [f"{key} {old.get(key)} -> {inputs[key]}" for key in sorted(inputs)
                if key not in ("data", "data_sha256", "model", "model_sha256") and old.get(key) != inputs[key]]
    return "; ".join(changes) or None


OTHER_DATA = "data-"  # the prefix of a results folder holding results of data other than the run's own


def data_label(data_dir) -> str:
    """The results folder of `data_dir` beside the run's own: `data-<folder name>-<8 hex of its path>`."""
    path = data_layout(data_dir)[0].resolve()
    return f"{OTHER_DATA}{path.name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def own_data(run: RunDir | None) -> Path | None:
    """The run's own evaluation data (`eval.data` of its config.yaml), if it names one."""
    import yaml

    try:
        data = ((yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}).get("eval") or {}).get("data")
    except (AttributeError, OSError, ValueError, yaml.YAMLError):
        return None
    return data_layout(data)[0].resolve() if isinstance(data, str) and data else None


def results_folder(base: Path, run: RunDir | None, data_dir, tasks: list[str], fast: bool = False) -> Path:
    """Where results of `data_dir` go when no folder is given: `base` for the run's own data (`own_data`;
    for a model without one: unless `base` holds a result of one of `tasks` computed from other data),
    else `base/<data_label>`."""
    own = own_data(run)
    if own is not None:
        return base if data_layout(data_dir)[0].resolve() == own else base / data_label(data_dir)
    for task in tasks:
        stored = _stored(base / f"{task}.json")
        recorded = stored.get("inputs", {}).get("data") if isinstance(stored, dict) else None
        try:
            other = recorded is not None and recorded != task_data(task, data_dir, len(tasks) == 1, fast)
        except Exception:  # noqa: BLE001 (unreadable data: the task fails on it and says why)
            other = False
        if other:
            return base / data_label(data_dir)
    return base


def _stored(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stale_path(path: Path) -> Path:
    """Where a result that no longer matches its inputs is set aside: `<name>.stale` (not `*.json`, so
    `babble report` and every other reader of a results folder pass it by)."""
    return path.with_name(path.name + ".stale")


def _set_aside(name: str, path: Path, why: str, log) -> None:
    stale = stale_path(path)
    try:
        path.replace(stale)
    except OSError as err:
        log(f"{name}: WARNING: could not set aside {path} ({err.strerror or err}); it no longer matches its "
            f"inputs: delete it")
        return
    log(f"{name}: set aside {path} as {stale.name}: {why}; nothing reads it")


def plan_tasks(tasks: list[str], data_dir, out_dir: Path, identity: dict, shared_prefix: bool = True,
               force: bool = False, log=print, fast: bool = False, rules=None) -> tuple[dict[str, dict], dict[str, dict]]:
    """(results settled without scoring: reused or failed on their data, {task: inputs} to score).

    A result in `out_dir/<task>.json` is reused when its recorded inputs equal this run's (`identity`
    is the model's: `model_identity`); `log` says which are reused and why the others are re-scored."""
    settled, todo = {}, {}
    for task in tasks:
        path = out_dir / f"{task}.json"
        try:
            inputs = {**task_inputs(task, data_dir, len(tasks) == 1, shared_prefix, fast, rules), **identity,
                      "babblelm": __version__}  # a new release may score differently: never reuse across
        except Exception as err:  # noqa: BLE001 (reported as the task's failure)
            settled[task] = _failed(task, err)
            if path.exists():
                _set_aside(task, path, "the task's inputs could not be read in this run, so nothing shows it "
                                       "matches them", log)
            continue
        stale = stale_path(path)
        if not path.exists() and not force and stale.exists() and what_changed(_stored(stale), inputs) is None:
            try:
                stale.replace(path)
                log(f"restored {path} from {stale.name} (its inputs match again)")
            except OSError:
                pass  # then it is scored again
        if path.exists():
            change = "--force" if force else what_changed(_stored(path), inputs) or _lacks_items(_stored(path))
            if change is None:
                settled[task] = _stored(path)
                log(f"reusing {path} (same data, model and options)")
                continue
            log(f"re-scoring {task}: {change}")
        todo[task] = inputs
    return settled, todo


def _lacks_items(stored: dict) -> str | None:
    if "items" not in stored:
        return "its result records no per-item predictions (written by an older babblelm)"
    return None


def _failed(task: str, err: Exception) -> dict:
    return {"task": task, "failed": f"{type(err).__name__}: {err}"}  # the caller reports it, once


def score_task(model, tokenizer, task: str, data_dir, out_dir: Path, inputs: dict, alone: bool,
               batch_size: int = 64, progress: bool = False, log=print, tables: bool = True) -> dict:
    """Score one task and write `out_dir/<task>.json` with its `inputs` (and log its table, if `tables`).

    A failure is returned, not written; a result already there from other inputs is then set aside
    (`<task>.json.stale`), one from these same inputs (a `--force` re-score) is kept."""
    path = out_dir / f"{task}.json"
    try:
        result = evaluate_task(model, tokenizer, task, data_dir, batch_size=batch_size, progress=progress,
                               shared_prefix=inputs["shared_prefix"], alone=alone, fast=inputs["fast"],
                               rules=inputs["rules"])
    except Exception as err:  # noqa: BLE001 (one task's failure must not cost the others; it is reported)
        failed = _failed(task, err)
        if path.exists() and what_changed(_stored(path), inputs) is None:
            log(f"{task}: kept {path}: it was computed from this run's inputs (re-scored for --force)")
        elif path.exists():
            _set_aside(task, path, "it was computed from other inputs and this run's scoring failed", log)
        return failed
    result["inputs"] = inputs
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    stale_path(path).unlink(missing_ok=True)  # superseded
    if tables:
        log(report.text_table(result))
    return result


def evaluate_tasks(model, tokenizer, tasks: list[str], data_dir, out_dir: Path, batch_size: int = 64,
                   force: bool = False, progress: bool = False, log=print, shared_prefix: bool = True,
                   model_dir=None, rules=None) -> dict[str, dict]:
    """Results per task for one loaded model (from `model_dir`, if given), under `rules` (a year; default
    2026); each written to
    `out_dir/<task>.json`, or reused from there when computed from the same inputs (`plan_tasks`).

    A task that fails (bad data, a text longer than the model can take, ...) is reported as
    {"task": name, "failed": "<error>"}, written nowhere, and the other tasks still run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(tasks))
    identity = model_identity(model_dir) if model_dir else loaded_model_identity(model)
    results, todo = plan_tasks(tasks, data_dir, out_dir, identity, shared_prefix, force, log, rules=rules)
    for task, inputs in todo.items():
        results[task] = score_task(model, tokenizer, task, data_dir, out_dir, inputs, len(tasks) == 1,
                                   batch_size, progress, log)
    return {task: results[task] for task in tasks}


def evaluate_model(model_path, tasks: list[str], data_dir, checkpoint: str | None = None, out_dir=None,
                   language: str | None = None, device: str = "auto", trust_remote_code: bool = False,
                   **options) -> tuple[dict[str, dict], Path]:
    """Score a run's checkpoint (default `final`) or a model folder; (results per task, results folder).

    Results go to `out_dir`, else `<run>/results/<checkpoint>` for a run, else `results/<folder name>`
    (for data other than the run's own, a folder inside it named by the data: `results_folder`).
    With `language`, data comes from `DATA/<language>/` when that folder exists and results go to
    `<results>/<language>/`."""
    from .load import load_model_and_tokenizer

    model_dir = resolve_checkpoint(model_path, checkpoint)
    run = RunDir.of(model_dir)
    base = model_results(model_dir)
    out = Path(out_dir) if out_dir else results_folder(base, run, data_dir, tasks)
    if language:
        plain_name(language, "--language", "a language tag such as nld")
        data_dir = Path(data_dir) / language if (Path(data_dir) / language).is_dir() else data_dir
        out = out / language
    model, tokenizer = load_model_and_tokenizer(model_dir, device=device, trust_remote_code=trust_remote_code)
    return evaluate_tasks(model, tokenizer, tasks, data_dir, out, model_dir=model_dir, **options), out


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's `chck_*` checkpoints in milestone order; an error if it has none."""
    run = RunDir(run_dir)
    if not run.milestones():
        raise FileNotFoundError(f"{run.checkpoints}: no chck_* checkpoints (expected e.g. chck_1M with config.json)")
    return run.milestones()


def evaluate_all_checkpoints(run_dir, tasks: list[str], data_dir, out_dir: Path | None = None,
                             batch_size: int = 64, device: str = "auto", force: bool = False,
                             progress: bool = False, log=print, shared_prefix: bool = True, fast: bool = False,
                             rules=None, trust_remote_code: bool = False) -> dict:
    """Score every checkpoint (with the first one's tokenizer), then learning curves, AoA and the best
    checkpoint; the summary also says which tasks failed where. Results (and AoA surprisals) already
    on disk are reused when computed from the same inputs (`plan_tasks`). A checkpoint that does not
    load (a damaged file) fails its tasks and the AoA curve; the other checkpoints are still scored.

    AoA runs when `data_dir/aoa/` exists and fails on its own, like a task: its files are read first
    (a bad one costs no scoring), and any AoA error (bad data, surprisals a checkpoint cannot score,
    the fit) is summary["failed"]["all_checkpoints"]["aoa"]; the tasks, learning curves and best
    checkpoint are still written, and an earlier `aoa.json` is set aside (`aoa.json.stale`). Each
    checkpoint's `aoa_surprisal.json` holds every word's surprisal after each of its contexts
    (`aoa.context_surprisals`): the AoA score fits them, and a submission carries them."""
    from .load import load_tokenizer

    register_auto_classes()
    checkpoints = run_checkpoints(run_dir)
    if out_dir is None:
        run = RunDir(run_dir)
        first = run.results_of(checkpoints[0].name)
        home = results_folder(first, run, data_dir, tasks, fast)  # other data: <results>/data-.../<checkpoint>/
        out_dir = run.results if home == first else run.results / home.name
    out_dir = Path(out_dir)
    tokenizer = load_tokenizer(checkpoints[0], trust_remote_code)
    device = resolve_device(device)
    aoa_dir = data_layout(data_dir)[0] / "aoa"
    aoa_cdi = aoa_data = aoa_failed = word_contexts = None
    if aoa_dir.is_dir():
        words_file = aoa_dir / "cdi_childes.json"
        try:
            word_contexts, aoa_cdi = load_contexts(words_file), load_cdi(aoa_dir)
            aoa_data = {"data": str(words_file.resolve()), "data_sha256": files_sha256([words_file]),
                        "scored": "after each context"}  # a file scored after BOS alone (older babblelm) lacks it
        except Exception as err:  # noqa: BLE001 (AoA fails on its own, like a task)
            aoa_failed = f"{type(err).__name__}: {err}"
    rows, words, surprisal_curves, failed = {}, {}, {}, {}
    for checkpoint in checkpoints:
        folder = out_dir / checkpoint.name
        folder.mkdir(parents=True, exist_ok=True)
        identity = model_identity(checkpoint)
        results, todo = plan_tasks(tasks, data_dir, folder, identity, shared_prefix, force,
                                   log=lambda line, name=checkpoint.name: log(f"{name}: {line}"), fast=fast, rules=rules)
        aoa_path = folder / AOA_SURPRISAL
        aoa_inputs = {**aoa_data, **identity} if aoa_data is not None and aoa_failed is None else None
        need_aoa = aoa_inputs is not None and (force or what_changed(_stored(aoa_path), aoa_inputs) is not None)
        model = None
        if todo or need_aoa:
            log(f"== {checkpoint.name}")
            try:
                model = load_model(checkpoint, trust_remote_code=trust_remote_code).to(device).eval()
            except (NotUsable, OSError) as err:  # one damaged checkpoint costs its own scores only
                def say(line, name=checkpoint.name):
                    log(f"{name}: {line}")

                for task, inputs in todo.items():
                    results[task] = _failed(task, err)
                    if (folder / f"{task}.json").exists() and what_changed(_stored(folder / f"{task}.json"), inputs):
                        _set_aside(task, folder / f"{task}.json", "its checkpoint no longer loads", say)
                todo, need_aoa = {}, False
                if aoa_inputs is not None:
                    aoa_failed, aoa_inputs = f"{checkpoint.name}: {type(err).__name__}: {err}", None
        for task, inputs in todo.items():
            results[task] = score_task(model, tokenizer, task, data_dir, folder, inputs, len(tasks) == 1,
                                       batch_size, progress, tables=False,
                                       log=lambda line, name=checkpoint.name: log(f"{name}: {line}"))
        if aoa_inputs is not None:
            try:
                if need_aoa:
                    surprisal = context_surprisals(model, tokenizer, word_contexts, batch_size)
                    aoa_path.write_text(json.dumps({"inputs": aoa_inputs, "surprisal": surprisal}), encoding="utf-8")
                surprisal_curves[checkpoint.name] = _stored(aoa_path)["surprisal"]
            except Exception as err:  # noqa: BLE001 (the other checkpoints' tasks still run; AoA is not scored on)
                aoa_failed = f"{checkpoint.name}: {type(err).__name__}: {err}"
        del model
        results = {task: results[task] for task in tasks}
        rows[checkpoint.name] = report.scores_of(results)
        if report.failures(results):
            failed[checkpoint.name] = report.failures(results)
        words[checkpoint.name] = exposure(checkpoint) or (milestone_count(checkpoint.name), "words (milestone)")
    summary = {"checkpoints": rows, "failed": failed, "folder": str(out_dir)}
    aoa_json = out_dir / AOA
    if aoa_failed is None and surprisal_curves:
        try:
            aoa = curve_fitness(surprisal_curves, aoa_cdi)
        except Exception as err:  # noqa: BLE001 (e.g. scipy missing)
            aoa_failed = f"{type(err).__name__}: {err}"
        else:
            aoa_json.write_text(json.dumps(aoa, indent=2), encoding="utf-8")
            stale_path(aoa_json).unlink(missing_ok=True)
            summary["aoa"] = aoa["scores"]["aoa"]
    if aoa_failed is not None:
        failed["all_checkpoints"] = {"aoa": aoa_failed}
        if aoa_json.exists():
            _set_aside("aoa", aoa_json, "AoA failed in this run", log)
    best = max(rows, key=lambda name: -math.inf if math.isnan(rows[name].get("average", math.nan)) else rows[name]["average"])
    summary["best_checkpoint"] = {"name": best, **rows[best]}
    (out_dir / BEST_CHECKPOINT).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    learning_curves(out_dir).write_text(report.markdown_table(rows, "checkpoint"), encoding="utf-8")
    learning_curves(out_dir, ".csv").write_text(report.csv_table(rows, "checkpoint"), encoding="utf-8")
    report.plot_curves(rows, words, out_dir / CURVES)
    return summary


def compare_runs(run_dirs: list[Path], out_dir: Path) -> dict[str, dict[str, float]]:
    """One row per run (its best checkpoint by average, else its final results) or per folder of one model's
    results (`babble eval`'s output folder): Markdown, CSV, plot, card section."""
    rows = {}
    for run in map(Path, run_dirs):
        results_dir = RunDir(run).results if RunDir(run).results.is_dir() else run
        best = results_dir / BEST_CHECKPOINT
        if not best.exists() and results_dir == run and report.read_results(run):  # one model's results folder
            rows[run.name] = report.scores_of(report.read_results(run))
            continue
        if best.exists():
            chosen = json.loads(best.read_text(encoding="utf-8"))["best_checkpoint"]["name"]
        else:
            candidates = [d for d in results_dir.iterdir() if d.is_dir() and report.read_results(d)]
            if not candidates:
                raise FileNotFoundError(f"{results_dir}: no results (run `babble eval` first)")
            chosen = next((d.name for d in candidates if d.name == FINAL), sorted(d.name for d in candidates)[-1])
        rows[f"{run.name} ({chosen})"] = report.scores_of(report.read_results(results_dir / chosen))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(report.markdown_table(rows, "run"), encoding="utf-8")
    (out_dir / "comparison.csv").write_text(report.csv_table(rows, "run"), encoding="utf-8")
    report.plot_comparison(rows, out_dir / "comparison.png")
    card = "## Evaluation\n\nZero-shot tasks, scored as the official BabyLM pipeline scores causal models (babblelm).\n\n"
    notes = "".join(f"\n`{name}`: {TASKS[name].about}.\n" for name in report.columns_of(rows)
                    if name in TASKS and TASKS[name].about)
    (out_dir / "model_card_results.md").write_text(card + report.markdown_table(rows, "run") + notes, encoding="utf-8")
    return rows
