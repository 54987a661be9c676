"""The multilingual track: lm-evaluation-harness over the final model and every `chck_*` checkpoint.

As the official scripts [multilingual/scripts/zeroshot_model.sh]: `lm_eval --model hf --model_args
pretrained=<model>,trust_remote_code=True --tasks zeroshot_<lang> --include_path <tasks> --num_fewshot
0 --log_samples`, one group per language (`zeroshot_eng`, `zeroshot_nld`, `zeroshot_zho`, each defined
in the task folder with metric `acc` aggregated by size). We run one lm-eval process per checkpoint
with every asked language's group; each task is scored on its own, so the numbers are those of one
process per language. The official all-revisions script cannot run as written (it calls
`zeroshot_model.sh` relative to `multilingual/` while that script finds `tasks/` only from there and
itself only from `scripts/`); we call lm-eval on each checkpoint folder with the task folder's
absolute path instead.

lm-eval runs as a subprocess (`--lm-eval PROGRAM`, default `lm_eval` on the PATH), not as a library:
the track runs the harness's own command in its own environment, with its own pins (transformers,
datasets, accelerate ...), which babblelm neither needs nor should constrain, and a harness crash
costs one checkpoint, not the run. Its `results_*.json` is the interface we read. The environment is
passed on (PYTHONPATH aside), so Hugging Face datasets it has cached load offline with
`HF_DATASETS_OFFLINE=1`.

Models are Hugging Face folders (a run's checkpoints are exported first, by `babblelm.submit`).
The table is the leaderboard's [print_results_table.py, collate_results.py]: per language, every
direct member of its group (`group_subtasks`: a task, or a nested group such as the BLiMP one, whose
`acc` lm-eval aggregates by size) and their plain mean; lm-eval's own size-weighted group `acc`
beside it; overall = the mean of the languages' means (our reading: the scripts stop at the language).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

from .. import __version__
from ..device import resolve_device
from ..rundir import milestone_count
from .records import files_sha256
from .submission import MAIN, Report  # MAIN: the final model, named as the official scripts name it

LANGUAGES = ("eng", "nld", "zho")


def group_name(language: str) -> str:
    return f"zeroshot_{language}"


def parse_languages(spec: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    unknown = [name for name in names if name not in LANGUAGES]
    if unknown or not names:
        raise ValueError(f"--languages: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(LANGUAGES)}")
    return names


def lm_eval_program(program: str | None = None) -> str:
    """The lm-eval executable: `program` (a path or a name on the PATH), else `lm_eval` on the PATH."""
    found = shutil.which(program or "lm_eval")
    if found is None:
        raise FileNotFoundError(f"{program or 'lm_eval'}: lm-eval executable not found; install it "
                                f"(pip install 'lm-eval[hf]') or give --lm-eval /path/to/env/bin/lm_eval")
    return found


def task_folder_inputs(tasks_dir) -> dict:
    """{"data": the task folder, "data_sha256": one SHA-256 over every file in it} (its YAMLs and any local data)."""
    folder = Path(tasks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: task folder not found (expected lm-eval task YAMLs defining "
                                f"{', '.join(map(group_name, LANGUAGES))})")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return {"data": str(folder.resolve()), "data_sha256": files_sha256(files, folder)}


def run_lm_eval(program: str, model_dir: Path, languages: list[str], tasks_dir, out_dir: Path, device: str,
                batch_size) -> dict:
    """One lm-eval process on `model_dir` over the languages' groups; its results JSON."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    argv = [program, "--model", "hf", "--model_args", f"pretrained={model_dir},trust_remote_code=True",
            "--tasks", ",".join(map(group_name, languages)), "--include_path", str(Path(tasks_dir).resolve()),
            "--num_fewshot", "0", "--device", device, "--batch_size", str(batch_size),
            "--output_path", str(out_dir), "--log_samples"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its own environment, not ours
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"lm_eval exited with {proc.returncode} on {model_dir}: {tail}")
    found = sorted(out_dir.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise RuntimeError(f"lm_eval wrote no results_*.json under {out_dir}")
    return json.loads(found[-1].read_text(encoding="utf-8"))


def language_scores(results: dict, languages: list[str]) -> dict[str, dict]:
    """Per language: {"tasks": {member: acc}, "average": their mean, "group_acc": lm-eval's size-weighted acc}."""
    scores = {}
    for language in languages:
        group = group_name(language)
        members = results.get("group_subtasks", {}).get(group)
        if members is None:
            raise ValueError(f"lm-eval's results hold no group {group!r}; the task folder must define it "
                             f"(as the official multilingual/tasks/zeroshot_babybabellm/{group}.yaml)")
        rows = results["results"]
        tasks = {task: rows[task]["acc,none"] for task in members if rows.get(task, {}).get("acc,none") is not None}
        scores[language] = {"tasks": tasks, "average": sum(tasks.values()) / len(tasks) if tasks else math.nan,
                            "group_acc": rows.get(group, {}).get("acc,none")}
    return scores


def evaluate_multilingual(revisions: list[tuple[str, Path]], tasks_dir, out_dir, languages=LANGUAGES,
                          program: str | None = None, device: str = "auto", batch_size=8, force: bool = False,
                          log=print) -> dict:
    """Score each (revision, Hugging Face model folder) with lm-eval: `main` is the final model.

    Each revision's result goes to `<out>/<revision>/zeroshot.json` with its inputs (task folder and a
    SHA-256 of its files, model folder and weights, languages) and is reused when they match, unless
    `force`. A revision lm-eval fails on is reported in the summary's "failed" and the others still
    run. Writes `<out>/multilingual.{md,json}`; returns {"revisions", "overall", "failed", "out"}."""
    from .suite import model_identity, what_changed

    languages, out = list(languages), Path(out_dir)
    folder_inputs, program_path, device = task_folder_inputs(tasks_dir), None, str(resolve_device(device))
    table, failed = {}, {}
    for revision, model_dir in revisions:
        path = out / revision / "zeroshot.json"
        inputs = {**folder_inputs, **model_identity(model_dir), "languages": languages, "num_fewshot": 0,
                  "babblelm": __version__}
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        change = "--force" if force else what_changed(stored, inputs)
        if change is None:
            log(f"{revision}: reusing {path} (same task folder, model and languages)")
        else:
            log(f"{revision}: lm-eval on {model_dir}" + (f" ({change})" if stored else ""))
            try:
                program_path = program_path or lm_eval_program(program)
                results = run_lm_eval(program_path, model_dir, languages, tasks_dir, out / revision / "lm_eval",
                                      device, batch_size)
                stored = {"inputs": inputs, "languages": language_scores(results, languages), "results": results}
            except (RuntimeError, ValueError) as err:
                failed[revision] = str(err)
                log(f"{revision}: FAILED: {err}")
                continue
            path.write_text(json.dumps(stored, indent=2), encoding="utf-8")
        table[revision] = stored["languages"]
    summary = {"revisions": table, "overall": {r: overall(s) for r, s in table.items()}, "failed": failed,
               "out": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "multilingual.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "multilingual.md").write_text(markdown_table(table), encoding="utf-8")
    return summary


def overall(scores: dict[str, dict]) -> float:
    """The mean of the languages' means."""
    means = [s["average"] for s in scores.values() if not math.isnan(s["average"])]
    return sum(means) / len(means) if means else math.nan


def _ordered(revisions) -> list[str]:
    return sorted(revisions, key=lambda r: -1.0 if r == MAIN else milestone_count(r) or math.inf)


def _cells(values) -> str:
    return " | ".join("" if v is None or math.isnan(v) else f"{100 * v:.2f}" for v in values)


def markdown_table(table: dict[str, dict[str, dict]]) -> str:
    """Tasks (rows, grouped by language) x revisions (columns), accuracy in percent, two decimals."""
    revisions = _ordered(table)
    lines = ["| task | " + " | ".join(revisions) + " |", "|---|" + "---|" * len(revisions)]
    languages = list(dict.fromkeys(lang for scores in table.values() for lang in scores))
    for language in languages:
        lines.append(f"| **{group_name(language)}** |" + " |" * len(revisions))
        tasks = list(dict.fromkeys(t for scores in table.values() for t in scores.get(language, {}).get("tasks", {})))
        for task in tasks:
            lines.append(f"| {task} | " + _cells(table[r].get(language, {}).get("tasks", {}).get(task) for r in revisions) + " |")
        lines.append("| *avg* | " + _cells(table[r].get(language, {}).get("average") for r in revisions) + " |")
        lines.append("| *size-weighted (lm-eval)* | " +
                     _cells(table[r].get(language, {}).get("group_acc") for r in revisions) + " |")
    lines.append("| **overall** (mean of the languages' averages) | " + _cells(overall(table[r]) for r in revisions) + " |")
    return "\n".join(lines) + "\n"


def write_submission(summary: dict, out, name: str, revisions: list[str]):
    """The multilingual track's submission files, as its `collate_results.py` writes them, under `out`:
    `<name>_submission.json` ({task: {task: accuracy}} of the final model, every direct member of the
    language groups) and `<name>_predictions.json` (lm-eval's raw results of the final model, no
    fine-tuning predictions, and per revision {task: accuracy} as `fast_eval_results`). The report names
    a missing final model, a language group member without an accuracy, and each missing revision."""
    out, problems = Path(out), []
    table = summary["revisions"]
    main = table.get(MAIN)
    if main is None:
        problems.append(f"{MAIN}: missing: {summary['failed'].get(MAIN, 'not evaluated')}")
    stored = json.loads((Path(summary["out"]) / MAIN / "zeroshot.json").read_text(encoding="utf-8")) if main else {}
    groups = stored.get("results", {}).get("group_subtasks", {})
    for language, scores in (main or {}).items():
        absent = [task for task in groups.get(group_name(language), []) if task not in scores["tasks"]]
        if absent:
            problems.append(f"{group_name(language)}: missing: no accuracy for {', '.join(absent)}")
    fast = []
    for revision in revisions:
        if revision not in table:
            problems.append(f"{revision}: missing: {summary['failed'].get(revision, 'no checkpoint ' + revision)}")
        fast.append({task: acc for scores in table.get(revision, {}).values() for task, acc in scores["tasks"].items()})
    accuracies = {task: {task: acc} for scores in (main or {}).values() for task, acc in scores["tasks"].items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}_submission.json").write_text(json.dumps(accuracies, indent=2), encoding="utf-8")
    predictions = {"zeroshot": stored.get("results", {}).get("results", {}), "finetune": {}, "fast_eval_results": fast}
    (out / f"{name}_predictions.json").write_text(json.dumps(predictions, indent=2), encoding="utf-8")
    return Report(out, out / f"{name}_submission.json", problems)
