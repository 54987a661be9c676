"""The official BabyLM zero-shot tasks: one loader per data format, one scoring path, one summary.

Every task item is a `Choice`: options as (context, completion) pairs with the gold option first.
Each option's score is `scoring.score_continuations` (sum of the completion's token log-probs).
Accuracy tasks count an item right when option 0 scores at least as high as every other option
(ties go to the gold option) and macro-average over UIDs; the WUG tasks correlate P(option 0)
with the human ratio. See docs/evaluation.md for each rule and where it comes from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .blimp import load_blimp
from .metrics import accuracy_by, macro, spearman
from .reading import READING_FOLDER, evaluate_reading, reading_file
from .records import EvalDataError, field, files_sha256, jsonl_records, task_files, text
from .scoring import score_continuations

ENTITY_TRACKING_SPLITS = ("regular", "ambiref", "move_contents")


@dataclass(frozen=True)
class Choice:
    """One task item: `options` (context, completion) with the gold option first."""

    options: tuple[tuple[str, str], ...]
    uid: str
    group: str = ""  # BLiMP field, entity-tracking file: a second breakdown
    ratio: float | None = None  # WUG: the human preference for option 0


def load_minimal_pairs(folder) -> list[Choice]:
    """BLiMP and its supplement: whole sentences (empty context); UID and field as in `blimp.py`."""
    return [Choice((("", p.good), ("", p.bad)), p.uid, p.field) for p in load_blimp(folder)]


def load_multilingual_pairs(folder) -> list[Choice]:
    """Per-language minimal pairs: BLiMP's `sentence_good`/`sentence_bad` or MultiBLiMP's `sen`/`wrong_sen`;
    UID = `phenomenon` (MultiBLiMP) or `UID`, else the file name."""
    choices = []
    for path in task_files(folder, "minimal pairs"):
        for where, record in jsonl_records(path, "'sentence_good'/'sentence_bad' or 'sen'/'wrong_sen'"):
            multiblimp = "sen" in record or "wrong_sen" in record
            good, bad = ("sen", "wrong_sen") if multiblimp else ("sentence_good", "sentence_bad")
            uid_key = next((key for key in ("phenomenon", "UID") if key in record), None)
            uid = text(record, uid_key, where) if uid_key else path.stem
            choices.append(Choice((("", text(record, good, where)), ("", text(record, bad, where))), uid))
    return choices


def load_ewok(folder, add_swapped: bool = False) -> list[Choice]:
    """EWoK: " " + Target1 vs " " + Target2 after Context1; UID = Domain.

    The official `ewok_filtered` files already hold both directions of every item; for raw
    EWoK-core rows, `add_swapped=True` adds the mirrored item (Target2 gold after Context2).
    """
    choices = []
    for path in task_files(folder, "EWoK"):
        for where, record in jsonl_records(path, "'Domain', 'Context1', 'Context2', 'Target1', 'Target2'"):
            c1, c2, t1, t2, domain = (text(record, key, where) for key in
                                      ("Context1", "Context2", "Target1", "Target2", "Domain"))
            choices.append(Choice(((c1, " " + t1), (c1, " " + t2)), domain))
            if add_swapped:
                choices.append(Choice(((c2, " " + t2), (c2, " " + t1)), domain))
    return choices


def load_entity_tracking(folder) -> list[Choice]:
    """Entity tracking: each option right after `input_prefix`; UID = `<file>_<numops>_ops`.

    A file must be named after one of ENTITY_TRACKING_SPLITS (the official average would drop it)."""
    choices = []
    for path in task_files(folder, "entity tracking"):
        if not path.stem.startswith(ENTITY_TRACKING_SPLITS):
            raise EvalDataError(f"{path}: entity tracking file names must start with "
                                f"{', '.join(ENTITY_TRACKING_SPLITS)}")
        for where, record in jsonl_records(path, "'input_prefix', 'options', 'numops'"):
            prefix = text(record, "input_prefix", where)
            options = _strings(record, "options", where, at_least=2)
            numops = field(record, "numops", where, int)
            choices.append(Choice(tuple((prefix, option) for option in options), f"{path.stem}_{numops}_ops", path.stem))
    return choices


def load_comps(folder) -> list[Choice]:
    """COMPS: " " + property_phrase after the acceptable vs the unacceptable prefix; UID = file name."""
    choices = []
    for path in task_files(folder, "COMPS"):
        for where, record in jsonl_records(path, "'prefix_acceptable', 'prefix_unacceptable', 'property_phrase'"):
            good, bad, phrase = (text(record, key, where) for key in
                                 ("prefix_acceptable", "prefix_unacceptable", "property_phrase"))
            choices.append(Choice(((good, " " + phrase), (bad, " " + phrase)), path.stem))
    return choices


def load_wug(folder) -> list[Choice]:
    """WUG: tab-separated whole-sentence options (gold first) and the human `ratio` (at least two
    different ratios, or Spearman's rho is undefined)."""
    choices = []
    files = task_files(folder, "WUG")
    for path in files:
        for where, record in jsonl_records(path, "'sentences' (tab-separated) and 'ratio'"):
            options = _options(record, where)
            choices.append(Choice(tuple(("", option) for option in options), path.stem, ratio=_ratio(record, where)))
    if len({choice.ratio for choice in choices}) < 2:
        names = ", ".join(str(path) for path in files)
        raise EvalDataError(f"{names}: field 'ratio' is all equal over {len(choices)} item(s); "
                            "Spearman's rho needs at least two different ratios")
    return choices


def _options(record: dict, where: str) -> list[str]:
    options = text(record, "sentences", where).split("\t")
    if len(options) < 2:
        raise EvalDataError(f"{where}: field 'sentences' must hold at least 2 tab-separated options")
    for k, option in enumerate(options):
        if not option.strip():
            raise EvalDataError(f"{where}: field 'sentences' option {k} is empty (options are tab-separated)")
    return options


def _strings(record: dict, key: str, where: str, at_least: int) -> list[str]:
    values = field(record, key, where, list)
    if len(values) < at_least:
        raise EvalDataError(f"{where}: field '{key}' must be a list of at least {at_least} strings, got {len(values)}")
    for k, value in enumerate(values):
        if not isinstance(value, str):
            raise EvalDataError(f"{where}: field '{key}' item {k} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise EvalDataError(f"{where}: field '{key}' item {k} must not be empty")
    return values


def _ratio(record: dict, where: str) -> float:
    value = field(record, "ratio", where, (int, float, str))
    try:
        ratio = float(value)
    except (ValueError, OverflowError):
        raise EvalDataError(f"{where}: field 'ratio' must be a number, got {value!r}") from None
    if not math.isfinite(ratio):
        raise EvalDataError(f"{where}: field 'ratio' must be a finite number, got {value!r}")
    return ratio


@dataclass(frozen=True)
class Task:
    name: str
    folder: str  # the sub-folder of the official `evaluation_data/full_eval`
    load: Callable[[Path], list[Choice]]
    metric: str  # "accuracy" or "spearman"
    shared_prefix: bool  # do the options share their context (run it once)?


TASKS = {
    task.name: task
    for task in (
        Task("blimp", "blimp_filtered", load_minimal_pairs, "accuracy", False),
        Task("supplement", "supplement_filtered", load_minimal_pairs, "accuracy", False),
        Task("multiblimp", "multiblimp", load_multilingual_pairs, "accuracy", False),
        Task("ewok", "ewok_filtered", load_ewok, "accuracy", True),
        Task("entity_tracking", "entity_tracking", load_entity_tracking, "accuracy", True),
        Task("comps", "comps", load_comps, "accuracy", False),
        Task("wug_adj", "wug_adj_nominalization", load_wug, "spearman", True),
        Task("wug_past", "wug_past_tense", load_wug, "spearman", True),
    )
}
ALL_TASKS = [*TASKS, "reading"]  # reading lives in reading.py (a regression, not a choice task)

# The official "fast" evaluation's sizes for intermediate checkpoints (EVAL_NOTES: BLiMP 200 items per
# UID, supplement 50, EWoK 100, WUG 200, WUG past 50): (items, per UID or in total). The first items
# of each UID (or of the task) in file order, so a subset is the same on every run.
FAST_ITEMS = {"blimp": (200, "per_uid"), "supplement": (50, "per_uid"), "ewok": (100, "per_uid"),
              "wug_adj": (200, "total"), "wug_past": (50, "total")}
TIE_WARNING = 0.05  # flag a model that ties on more than this fraction of a task's items
TASK_FOLDERS = {**{task.name: task.folder for task in TASKS.values()}, "reading": READING_FOLDER}
OFFICIAL_FOLDERS = (*TASK_FOLDERS.values(), "aoa", "glue_filtered")  # the sub-folders of `full_eval`


def task_folder(name: str, data_dir, alone: bool = True) -> Path:
    """Where task `name` reads its data: its official sub-folder of `data_dir` (see TASK_FOLDERS).

    `data_dir` itself holds the task's files only when the task is asked for `alone` and `data_dir`
    has none of the OFFICIAL_FOLDERS; any other missing sub-folder is an error, so one task is
    never scored on another task's files. Reading also takes the CSV file itself."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise EvalDataError(f"{data_dir}: evaluation data folder not found")
    if name == "reading" and data_dir.is_file():
        return data_dir
    if not data_dir.is_dir():
        raise EvalDataError(f"{data_dir}: not a folder (expected the evaluation data folder)")
    sub = data_dir / TASK_FOLDERS[name]
    if sub.is_dir():
        return sub
    present = [folder for folder in OFFICIAL_FOLDERS if (data_dir / folder).is_dir()]
    if present:
        raise EvalDataError(f"{data_dir}: no {sub.name}/ folder for task '{name}' (it holds "
                            f"{', '.join(folder + '/' for folder in present)}: the official full_eval layout)")
    if not alone:
        raise EvalDataError(f"{data_dir}: no {sub.name}/ folder for task '{name}'; a folder holding one task's "
                            "files directly is read only when that task is the only one asked for")
    return data_dir


def fast_subset(name: str, choices: list[Choice]) -> list[Choice]:
    """The items the official fast evaluation scores (`FAST_ITEMS`); all of them for other tasks."""
    if name not in FAST_ITEMS:
        raise ValueError(f"task {name!r} has no fast subset; fast tasks: {', '.join(FAST_ITEMS)}")
    limit, how = FAST_ITEMS[name]
    if how == "total":
        return choices[:limit]
    kept, seen = [], {}
    for choice in choices:
        seen[choice.uid] = seen.get(choice.uid, 0) + 1
        if seen[choice.uid] <= limit:
            kept.append(choice)
    return kept


def task_inputs(name: str, data_dir, alone: bool = True, shared_prefix: bool = True, fast: bool = False) -> dict:
    """What task `name`'s scores depend on besides the model: its data (path and a SHA-256 of the files it
    reads) and the options that change scores -> {"data", "data_sha256", "shared_prefix", "fast"}."""
    folder = task_folder(name, data_dir, alone)
    if name == "reading":
        files, root, shared = [reading_file(folder)], None, False
    else:
        files, root, shared = task_files(folder, name), folder, TASKS[name].shared_prefix and shared_prefix
    data = files[0] if name == "reading" else folder
    return {"data": str(data.resolve()), "data_sha256": files_sha256(files, root), "shared_prefix": shared,
            "fast": fast}


def parse_task_list(spec: str) -> list[str]:
    """Task names from "a,b,c" (each once, in order); an error naming any unknown one."""
    names = list(dict.fromkeys(name.strip() for name in spec.split(",") if name.strip()))
    unknown = [name for name in names if name not in ALL_TASKS]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ALL_TASKS)}")
    return names


def score_choices(model, tokenizer, choices: list[Choice], shared_prefix: bool, batch_size=64, progress=False):
    """Scores per choice: a list of per-option log-prob sums."""
    items = [option for choice in choices for option in choice.options]
    groups = [index for index, choice in enumerate(choices) for _ in choice.options] if shared_prefix else None
    flat = iter(score_continuations(model, tokenizer, items, batch_size=batch_size, groups=groups, progress=progress))
    return [[next(flat) for _ in choice.options] for choice in choices]


def summarize(name: str, choices: list[Choice], scores: list[list[float]]) -> dict:
    """Task score and breakdowns from per-option scores (see module docstring)."""
    if TASKS[name].metric == "spearman":
        gold_probability = [torch.softmax(torch.tensor(s), dim=0)[0].item() for s in scores]
        rho = spearman(gold_probability, [choice.ratio for choice in choices])
        return {"scores": {name: 100.0 * rho}, "spearman": rho, "by_uid": {}}
    hits = [s[0] >= max(s[1:]) for s in scores]
    result, accuracy = _accuracy(name, choices, hits)
    _, strict = _accuracy(name, choices, [s[0] > max(s[1:]) for s in scores])
    ties = sum(s[0] == max(s[1:]) for s in scores)
    return {"scores": {name: accuracy}, **result, "ties": ties, "tie_fraction": ties / len(scores) if scores else 0.0,
            "scores_ties_wrong": {name: strict}}


def _accuracy(name: str, choices: list[Choice], hits: list[bool]) -> tuple[dict, float]:
    """({"by_uid", ["by_group"]}, the task's accuracy) for per-item verdicts `hits`."""
    by_uid = accuracy_by([choice.uid for choice in choices], hits)
    result = {"by_uid": by_uid}
    if name == "entity_tracking":  # within each file over its numops UIDs, then over the files
        by_file = {split: macro(v for uid, v in by_uid.items() if uid.startswith(split))
                   for split in ENTITY_TRACKING_SPLITS if any(uid.startswith(split) for uid in by_uid)}
        result["by_group"], accuracy = by_file, macro(by_file.values())
    else:
        accuracy = macro(by_uid.values())
        if any(choice.group for choice in choices):
            result["by_group"] = accuracy_by([choice.group for choice in choices], hits)
    return result, accuracy


def evaluate_task(model, tokenizer, name: str, data_dir, batch_size: int = 64, progress: bool = False,
                  shared_prefix: bool = True, alone: bool = True, fast: bool = False) -> dict:
    """Load, score and summarize one task -> {"task", "scores", "by_uid", ..., "n_items", "data", "seconds"}.

    `shared_prefix`: run the options' shared context once (KV cache) on tasks that have one: the
    same scores up to float rounding, and faster (BENCHMARKS.md, "Evaluation speed against the official pipeline").
    `alone`: is this the only task asked for (may `data_dir` itself hold its files; see `task_folder`)?
    `fast`: only the official fast evaluation's items (`FAST_ITEMS`).
    """
    if name not in ALL_TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(ALL_TASKS)}")
    folder = task_folder(name, data_dir, alone)
    if name == "reading":
        return evaluate_reading(model, tokenizer, folder, batch_size=batch_size, progress=progress)
    task = TASKS[name]
    start = time.perf_counter()
    choices = fast_subset(name, task.load(folder)) if fast else task.load(folder)
    shared = task.shared_prefix and shared_prefix
    scores = score_choices(model, tokenizer, choices, shared, batch_size=batch_size, progress=progress)
    summary = summarize(name, choices, scores)
    return {"task": name, **summary, "n_items": len(choices), "data": str(folder),
            "seconds": time.perf_counter() - start}


def average(scores: dict[str, float]) -> float:
    """The leaderboard-style average: the mean of every reported task score (NaN-free)."""
    values = [v for v in scores.values() if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan
