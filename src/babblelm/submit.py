"""`babble submit`: the files the BabyLM leaderboard takes, from a run (or a model folder).

Everything a submission needs that is not there yet is computed through the evaluation suite
(`eval.suite`, `eval.finetune`, `eval.lmeval`), reusing every result whose inputs match; then
`eval.submission` writes the official layout and checks it with the official size rules.
"""

from __future__ import annotations

import json
from pathlib import Path

from .export import export_model
from .rundir import (AOA_SURPRISAL, MULTILINGUAL, RunDir, finetune_folder, model_results, resolve_checkpoint,
                     submission_folder)

SOURCE_STAMP = "babble_source.json"  # in an exported revision: which checkpoint (and weights) it came from


def _loads_without_babblelm(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config.get("model_type") == "llama" or "auto_map" in config


def hf_revisions(model, work_dir: Path, log=print, trust_remote_code: bool = False) -> list[tuple[str, Path]]:
    """(revision, Hugging Face folder): `main` (the final model) then every `chck_*` of a run.

    A checkpoint that loads without babblelm (an export, a Llama) is used as it is, unless it would run
    code of an architecture neither babblelm nor transformers implements and `trust_remote_code` is not
    given (modelfolder.runs_own_code); the others are exported into `work_dir/<revision>/` (again only when
    the checkpoint's weights changed)."""
    from .eval.submission import MAIN
    from .eval.suite import model_identity
    from .modelfolder import read_config, runs_own_code

    run = RunDir(model)
    sources = [(MAIN, resolve_checkpoint(model))] + [(folder.name, folder) for folder in run.milestones()]
    revisions = []
    for revision, source in sources:
        if _loads_without_babblelm(source):
            runs_own_code(source, read_config(source), trust_remote_code)
            revisions.append((revision, source))
            continue
        out, identity = work_dir / revision, model_identity(source)
        stamp = out / SOURCE_STAMP
        if not (stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == identity):
            log(f"{revision}: exporting {source} to {out}")
            export_model(source, out, log=log, replace=True)
            stamp.write_text(json.dumps(identity), encoding="utf-8")
        revisions.append((revision, out))
    return revisions


def evaluate_multilingual_model(model, tasks_dir, out_dir=None, trust_remote_code: bool = False, **options) -> dict:
    """`eval.lmeval.evaluate_multilingual` over `model`'s revisions (`hf_revisions`); results go to
    `out_dir`, else `<run>/results/multilingual` (or `results/<model folder>/multilingual`)."""
    from .eval.lmeval import evaluate_multilingual, lm_eval_program

    options["program"] = lm_eval_program(options.get("program"))  # before any export: a missing harness fails first
    run = RunDir(model)
    out = Path(out_dir) if out_dir else (run.multilingual_results if run.is_run() else model_results(run.path) / MULTILINGUAL)
    revisions = hf_revisions(model, out / "models", log=options.get("log", print), trust_remote_code=trust_remote_code)
    return evaluate_multilingual(revisions, tasks_dir, out, **options)


SUBMISSION_RULES = "2026"  # the leaderboard this writes for


def full_evaluation_gaps(data) -> list[str]:
    """The folders a strict-track submission reads that `data` (an evaluation_data or full_eval folder)
    lacks; empty when it is a full evaluation folder."""
    from .eval.submission import TASKS
    from .eval.tasks import TASK_FOLDERS, data_layout

    full = data_layout(data)[0]
    needed = [folder for task in TASKS for folder in TASK_FOLDERS[task]] + ["aoa", "glue_filtered"]
    return [f"{folder}/" for folder in dict.fromkeys(needed) if not (full / folder).is_dir()]


def submit(model, data, track: str = "strict-small", out=None, device: str = "auto", batch_size: int = 64,
           force: bool = False, progress: bool = False, log=print, sizes: dict | None = None):
    """Evaluate what a strict-track submission of `model` (a run, or a model folder: then without
    revisions) lacks, under the 2026 rules, and write it (`eval.submission.write_submission`, checked
    against `sizes`, default the official tables) to `out` (default `<run>/submission`, else
    `submission/`); returns the Report."""
    from .eval.finetune import finetune_tasks
    from .eval.report import read_results
    from .eval.submission import FAST_TASKS, GLUE, TASKS, write_submission
    from .eval.suite import evaluate_all_checkpoints, evaluate_model
    from .eval.tasks import data_layout

    run = RunDir(model)
    options = dict(batch_size=batch_size, force=force, progress=progress, rules=SUBMISSION_RULES)
    log("== full evaluation of the final model")
    final, final_dir = evaluate_model(model, list(TASKS), data, device=device, log=log, **options)
    fast, aoa = {}, {}
    if run.is_run() and run.milestones():
        log("== fast evaluation of every chck_* (and AoA surprisals in context)")
        summary = evaluate_all_checkpoints(run.path, list(FAST_TASKS), data, run.fast_results, device=device, fast=True,
                                           log=log, **options)
        for checkpoint in run.milestones():
            folder = run.fast_results_of(checkpoint.name)
            fast[checkpoint.name] = {**read_results(folder), **{task: {"failed": error} for task, error in
                                                                summary["failed"].get(checkpoint.name, {}).items()}}
            if (folder / AOA_SURPRISAL).is_file():
                aoa[checkpoint.name] = json.loads((folder / AOA_SURPRISAL).read_text(encoding="utf-8"))["surprisal"]
    log("== GLUE fine-tuning of the final model")
    glue = {}
    for task in GLUE:
        try:
            glue |= finetune_tasks(resolve_checkpoint(model), [task], data_layout(data)[0] / "glue_filtered",
                                   finetune_folder(final_dir), device=device, force=force, log=log, progress=progress,
                                   rules=SUBMISSION_RULES)
        except (ValueError, FileNotFoundError) as err:  # e.g. its data files are missing: named in the report
            glue[task] = {"failed": str(err)}
            log(f"{task}: FAILED: {err}")
    out = Path(out) if out else submission_folder(run)
    return write_submission(out, run.path.name, data, final, fast, glue, aoa, track, sizes)


def submit_multilingual(model, tasks_dir, out=None, **options):
    """The multilingual track's submission of `model` (`eval.lmeval.write_submission`), evaluating
    with lm-eval what it lacks (`evaluate_multilingual_model`); `out` defaults as `submit`'s."""
    from .eval.lmeval import write_submission
    from .eval.submission import official_sizes

    run = RunDir(model)
    summary = evaluate_multilingual_model(model, tasks_dir, **options)
    out = Path(out) if out else submission_folder(run)
    return write_submission(summary, out, run.path.name, official_sizes()["revisions"]["multilingual"])
