"""The official BabyLM zero-shot tasks: one loader per data format, one scoring path, one summary.

Every task item is a `Choice`: options as (context, completion) pairs with the gold option first.
Each option's score is `scoring.score_continuations` (sum of the completion's token log-probs).
Accuracy tasks credit an item by the chosen year's rules (`rules.py`: under 2026 a tie among k
options that include gold counts 1/k, the expectation of the official random draw; under 2025 it
counts as right) and macro-average over UIDs; the WUG tasks correlate P(option 0) with the human
ratio. See docs/evaluation.md for each rule and where it comes from.
"""

from __future__ import annotations

import math
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .blimp import load_blimp
from .catalog import ALL_TASKS, TASKS
from .metrics import accuracy_by, macro, spearman
from .reading import READING_FOLDER, evaluate_reading, reading_file
from .records import EvalDataError, field, files_sha256, jsonl_records, task_files, text
from .rules import Rules, credit, gold_tied, picks, rules_of
from .scoring import score_continuations

ENTITY_TRACKING_SPLITS = ("regular", "ambiref", "move_contents")


@dataclass(frozen=True)
class Choice:
    """One task item: `options` (context, completion) with the gold option first."""

    options: tuple[tuple[str, str], ...]
    uid: str
    group: str = ""  # BLiMP field, entity-tracking file: a second breakdown
    ratio: float | None = None  # WUG: the human preference for option 0
    key: str = ""  # the data's own item id, where it has one (Global PIQA's example_id)


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


def load_ewok_contexts(folder) -> list[Choice]:
    """EWoK as the 2026 pipeline reads it: two items per row, each holding a target fixed and comparing
    the contexts, gold first: " " + Target1 after Context1 vs after Context2, then " " + Target2 after
    Context2 vs after Context1; UID = Domain."""
    choices = []
    for path in task_files(folder, "EWoK"):
        for where, record in jsonl_records(path, "'Domain', 'Context1', 'Context2', 'Target1', 'Target2'"):
            c1, c2, t1, t2, domain = (text(record, key, where) for key in
                                      ("Context1", "Context2", "Target1", "Target2", "Domain"))
            choices.append(Choice(((c1, " " + t1), (c2, " " + t1)), domain))
            choices.append(Choice(((c2, " " + t2), (c1, " " + t2)), domain))
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


COMPS_SUBSETS = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before",
                 "comps_wugs_dist-in-between": "wugs_dist_in_between"}  # official file name -> sub-set


def load_comps(folder) -> list[Choice]:
    """COMPS: property_phrase after the acceptable vs the unacceptable prefix and a space; UID = the
    official sub-set of the file (`COMPS_SUBSETS`), else the file name."""
    choices = []
    for path in task_files(folder, "COMPS"):
        uid = COMPS_SUBSETS.get(path.stem, path.stem)
        for where, record in jsonl_records(path, "'prefix_acceptable', 'prefix_unacceptable', 'property_phrase'"):
            good, bad, phrase = (text(record, key, where) for key in
                                 ("prefix_acceptable", "prefix_unacceptable", "property_phrase"))
            choices.append(Choice(((good + " ", phrase), (bad + " ", phrase)), uid))
    return choices


def load_global_piqa(folder) -> list[Choice]:
    """Global PIQA: " " + each `solution<k>` after `prompt`, the one numbered `label` gold (moved first);
    UID = the folder's name (global_piqa_parallel, global_piqa_nonparallel); one item per `example_id`."""
    choices, seen = [], {}
    for path in task_files(folder, "Global PIQA"):
        for where, record in jsonl_records(path, "'example_id', 'prompt', 'solution0', 'solution1', 'label'"):
            key = str(field(record, "example_id", where, (str, int)))
            if key in seen:
                raise EvalDataError(f"{where}: example_id {key!r} appears again (first at {seen[key]}); "
                                    "the official pipeline keeps one prediction per example_id")
            seen[key] = where
            prompt = text(record, "prompt", where)
            count = 2
            while f"solution{count}" in record:
                count += 1
            solutions = [text(record, f"solution{k}", where) for k in range(count)]
            label = field(record, "label", where, int)
            if not 0 <= label < len(solutions):
                raise EvalDataError(f"{where}: field 'label' is {label}; expected 0..{len(solutions) - 1}")
            order = [label, *(k for k in range(len(solutions)) if k != label)]
            choices.append(Choice(tuple((prompt, " " + solutions[k]) for k in order), Path(folder).name, key=key))
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


def loader(name: str) -> Callable[[Path], list[Choice]]:
    """The function that reads one folder of task `name`'s items (named by its catalog entry)."""
    return globals()[TASKS[name].loader]


SCORED_BY_UID = {"global_piqa"}  # tasks reporting one score per sub-folder instead of one for the task

TIE_WARNING = 0.05  # flag a model that ties on more than this fraction of a task's items
TASK_FOLDERS = {**{task.name: task.folders for task in TASKS.values()}, "reading": (READING_FOLDER,)}
OFFICIAL_FOLDERS = (*dict.fromkeys(f for folders in TASK_FOLDERS.values() for f in folders), "aoa",
                    "glue_filtered")  # the sub-folders of `full_eval`
# The official `evaluation_data/fast_eval` sub-folders; the EWoK ones come as a zip with a published password.
FAST_FOLDERS = {"blimp": ("blimp_fast",), "supplement": ("supplement_fast",), "ewok": ("ewok_fast",),
                "entity_tracking": ("entity_tracking_fast",), "global_piqa": TASK_FOLDERS["global_piqa"],
                "reading": (READING_FOLDER,), "wug_adj": TASK_FOLDERS["wug_adj"], "wug_past": TASK_FOLDERS["wug_past"]}
EWOK_FAST_ZIP, EWOK_FAST_PASSWORD = "ewok_fast.zip", b"BabyLM2025"


def data_layout(data_dir) -> tuple[Path, Path | None]:
    """(the full evaluation folder, the fast evaluation folder or None) of `--data DIR`: DIR/full_eval and
    DIR/fast_eval when DIR is the official `evaluation_data`; DIR and its sibling fast_eval/ when DIR is a
    full_eval (or fast_eval) folder; else DIR alone, a full_eval layout without fast data."""
    data_dir = Path(data_dir)
    if (data_dir / "full_eval").is_dir() or (data_dir / "fast_eval").is_dir():
        root = data_dir
    elif data_dir.name in ("full_eval", "fast_eval"):
        root = data_dir.parent
    else:
        return data_dir, None
    return root / "full_eval", (root / "fast_eval" if (root / "fast_eval").is_dir() else None)


def task_folders(name: str, data_dir, alone: bool = True, fast: bool = False) -> list[Path]:
    """Where task `name` reads its data: its official sub-folders (TASK_FOLDERS) of the full evaluation
    folder of `data_dir` (`data_layout`), or with `fast`, of its fast_eval folder when it has one (FAST_FOLDERS).

    `data_dir` itself holds the task's files only when the task is asked for `alone` and `data_dir`
    has none of the OFFICIAL_FOLDERS; any other missing sub-folder is an error naming it and the task,
    so one task is never scored on another task's files. Reading also takes the CSV file itself."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise EvalDataError(f"{data_dir}: evaluation data folder not found")
    if name == "reading" and data_dir.is_file():
        return [data_dir]
    if not data_dir.is_dir():
        raise EvalDataError(f"{data_dir}: not a folder (expected the evaluation data folder)")
    full, fast_dir = data_layout(data_dir)
    if fast and fast_dir is not None:
        if name not in FAST_FOLDERS:
            raise EvalDataError(f"{fast_dir}: task '{name}' has no fast evaluation data")
        return [_fast_folder(name, fast_dir, sub) for sub in FAST_FOLDERS[name]]
    if not full.is_dir():
        raise EvalDataError(f"{full}: evaluation data folder not found (task '{name}')")
    return list(dict.fromkeys(_full_folder(name, full, sub, alone) for sub in TASK_FOLDERS[name]))


def task_folder(name: str, data_dir, alone: bool = True, fast: bool = False) -> Path:
    """The one folder (or reading CSV) of a task that reads one (`task_folders`)."""
    folders = task_folders(name, data_dir, alone, fast)
    if len(folders) != 1:
        raise ValueError(f"task {name!r} reads {len(folders)} folders; use task_folders")
    return folders[0]


def _full_folder(name: str, data_dir: Path, sub: str, alone: bool) -> Path:
    if (data_dir / sub).is_dir():
        return data_dir / sub
    present = [folder for folder in OFFICIAL_FOLDERS if (data_dir / folder).is_dir()]
    if present:
        raise EvalDataError(f"{data_dir}: no {sub}/ folder for task '{name}' (it holds "
                            f"{', '.join(folder + '/' for folder in present)}: the official full_eval layout)")
    if not alone:
        raise EvalDataError(f"{data_dir}: no {sub}/ folder for task '{name}'; a folder holding one task's "
                            "files directly is read only when that task is the only one asked for")
    return data_dir


def _fast_folder(name: str, fast_dir: Path, sub: str) -> Path:
    folder = fast_dir / sub
    if folder.is_dir():
        return folder
    if name == "ewok" and (fast_dir / EWOK_FAST_ZIP).is_file():
        return unzip_ewok_fast(fast_dir / EWOK_FAST_ZIP, folder)
    raise EvalDataError(f"{fast_dir}: no {sub}/ folder for task '{name}' (fast evaluation)")


def unzip_ewok_fast(archive: Path, folder: Path) -> Path:
    """Extract the `*.jsonl` files of the official `ewok_fast.zip` (password from the official README)
    into `folder` (written whole or not at all) and return it."""
    partial = folder.with_name(f".{folder.name}.partial")
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if m.filename.lower().endswith(".jsonl")
                       and not m.is_dir() and "__MACOSX" not in m.filename]
            if not members:
                raise EvalDataError(f"{archive}: holds no *.jsonl files (expected the EWoK fast data)")
            partial.mkdir(exist_ok=True)
            for member in members:
                (partial / os.path.basename(member.filename)).write_bytes(zipped.read(member, EWOK_FAST_PASSWORD))
        partial.rename(folder)
    except (zipfile.BadZipFile, RuntimeError) as err:  # RuntimeError: a wrong password
        raise EvalDataError(f"{archive}: cannot extract ({err}); unzip it into {folder}/") from None
    except OSError as err:
        raise EvalDataError(f"{archive}: cannot extract into {folder}/ ({err.strerror or err}); unzip it there "
                            f"(password {EWOK_FAST_PASSWORD.decode()})") from None
    return folder


def load_task(name: str, folders: list[Path], rules: Rules) -> tuple[list[Choice], int]:
    """(the items of task `name` in `folders` under `rules`, how many items the rules dropped)."""
    load = load_ewok_contexts if name == "ewok" and rules.ewok == "contexts" else loader(name)
    choices = [choice for folder in folders for choice in load(folder)]
    if name == "entity_tracking" and rules.drop_nothing:
        kept = [c for c in choices if not any("nothing" in completion for _, completion in c.options)]
        return kept, len(choices) - len(kept)
    return choices, 0


def has_fast(name: str, rules=None) -> bool:
    """Can task `name` run in the fast evaluation under `rules`? The rules' fast tasks, and every task
    that is not an official one (`Task.about`: scored whole)."""
    return name in rules_of(rules).fast or bool(name in TASKS and TASKS[name].about)


def fast_subset(name: str, choices: list[Choice], rules: Rules) -> list[Choice]:
    """The items of the full data that the official fast evaluation scores under `rules` (`Rules.fast`):
    the first items of each UID (or of the task, or of some groups) in file order, so a subset is the
    same on every run; every item of a task that is not an official one."""
    if name in TASKS and TASKS[name].about:
        return choices
    if name not in rules.fast:
        raise ValueError(f"task {name!r} has no fast subset under the {rules.year} rules; fast tasks: "
                         f"{', '.join(rules.fast)}")
    subset = rules.fast[name]
    if subset.groups is not None:
        choices = [choice for choice in choices if choice.group in subset.groups]
    if subset.total is not None:
        return choices[:subset.total]
    if subset.per_uid is None:
        return choices
    kept, seen = [], {}
    for choice in choices:
        seen[choice.uid] = seen.get(choice.uid, 0) + 1
        if seen[choice.uid] <= subset.per_uid:
            kept.append(choice)
    return kept


def task_inputs(name: str, data_dir, alone: bool = True, shared_prefix: bool = True, fast: bool = False,
                rules=None) -> dict:
    """What task `name`'s scores depend on besides the model: its data (path and a SHA-256 of the files it
    reads) and the options that change scores -> {"data", "data_sha256", "shared_prefix", "fast", "rules"}."""
    folders = task_folders(name, data_dir, alone, fast)
    if name == "reading":
        files, root, shared = [reading_file(folders[0])], None, False
    else:
        files = [path for folder in folders for path in task_files(folder, name)]
        root, shared = Path(os.path.commonpath(folders)), TASKS[name].shared_prefix and shared_prefix
    return {"data": _data_path(name, folders, files), "data_sha256": files_sha256(files, root), "shared_prefix": shared,
            "fast": fast, "rules": rules_of(rules).year}


def task_data(name: str, data_dir, alone: bool = True, fast: bool = False) -> str:
    """The data path a result of task `name` on `data_dir` records (`task_inputs`' "data"), without hashing."""
    folders = task_folders(name, data_dir, alone, fast)
    return _data_path(name, folders, [reading_file(folders[0])] if name == "reading" else [])


def _data_path(name: str, folders: list[Path], files: list[Path]) -> str:
    data = files[0] if name == "reading" else folders[0] if len(folders) == 1 else Path(os.path.commonpath(folders))
    return str(data.resolve())


def score_choices(model, tokenizer, choices: list[Choice], shared_prefix: bool, batch_size=64, progress=False):
    """Scores per choice: a list of per-option log-prob sums."""
    items = [option for choice in choices for option in choice.options]
    groups = [index for index, choice in enumerate(choices) for _ in choice.options] if shared_prefix else None
    flat = iter(score_continuations(model, tokenizer, items, batch_size=batch_size, groups=groups, progress=progress))
    return [[next(flat) for _ in choice.options] for choice in choices]


def summarize(name: str, choices: list[Choice], scores: list[list[float]], rules=None) -> dict:
    """Task score and breakdowns from per-option scores (see module docstring), with the two bounds (ties
    counted right, ties counted wrong) and the items where gold ties for the highest score."""
    rules = rules_of(rules)
    if TASKS[name].metric == "spearman":
        gold_probability = [torch.softmax(torch.tensor(s), dim=0)[0].item() for s in scores]
        rho = spearman(gold_probability, [choice.ratio for choice in choices])
        return {"scores": {name: 100.0 * rho}, "spearman": rho, "by_uid": {}, "rules": rules.year}
    result, accuracy = _accuracy(name, choices, [credit(s, rules.ties) for s in scores])
    bounds = {which: _accuracy(name, choices, [credit(s, which) for s in scores]) for which in ("right", "wrong")}
    ties = sum(map(gold_tied, scores))
    return {"scores": _named(name, result, accuracy), **result, "rules": rules.year, "ties": ties,
            "tie_fraction": ties / len(scores) if scores else 0.0,
            **{f"scores_ties_{which}": _named(name, *bound) for which, bound in bounds.items()}}


def _named(name: str, result: dict, accuracy: float) -> dict[str, float]:
    """The scores a task reports: {task: accuracy}, or one per UID (SCORED_BY_UID)."""
    return dict(result["by_uid"]) if name in SCORED_BY_UID else {name: accuracy}


def _accuracy(name: str, choices: list[Choice], hits: list[float]) -> tuple[dict, float]:
    """({"by_uid", ["by_group"]}, the task's accuracy) for per-item credits `hits` (0..1)."""
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
                  shared_prefix: bool = True, alone: bool = True, fast: bool = False, rules=None) -> dict:
    """Load, score and summarize one task under `rules` (a year; default 2026) -> {"task", "scores",
    "by_uid", ..., "rules", "n_items", "data", "items", "seconds"}; "items" holds, per item of
    `task_choices` in order, the option the official pipeline would predict (`rules.picks`).

    `shared_prefix`: run the options' shared context once (KV cache) on tasks that have one: the
    same scores up to float rounding, and faster (BENCHMARKS.md, "Evaluation speed against the official pipeline").
    `alone`: is this the only task asked for (may `data_dir` itself hold its files; see `task_folders`)?
    `fast`: only the official fast evaluation's items: the fast_eval folder's, else `fast_subset`.
    """
    if name not in ALL_TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(ALL_TASKS)}")
    rules = rules_of(rules)
    if name == "reading":
        folder = task_folders(name, data_dir, alone, fast)[0]
        return {**evaluate_reading(model, tokenizer, folder, batch_size=batch_size, progress=progress),
                "rules": rules.year}
    start = time.perf_counter()
    choices, folders, dropped = task_choices(name, data_dir, alone, fast, rules.year)
    if not choices:
        raise EvalDataError(f"{', '.join(map(str, folders))}: no {name} items left to score under the {rules.year} "
                            f"rules ({dropped} dropped: an option contains \"nothing\")")
    shared = TASKS[name].shared_prefix and shared_prefix
    scores = score_choices(model, tokenizer, choices, shared, batch_size=batch_size, progress=progress)
    summary = summarize(name, choices, scores, rules.year)
    if name == "entity_tracking" and rules.drop_nothing:
        summary["dropped"] = {"items": dropped, "why": 'an option contains "nothing" (2026 entity tracking)'}
    return {"task": name, **summary, "n_items": len(choices), "data": ", ".join(map(str, folders)),
            "items": picks(scores, rules.ties), "seconds": time.perf_counter() - start}


def task_choices(name: str, data_dir, alone: bool = True, fast: bool = False, rules=None):
    """(the items task `name` scores, in order, the folders they come from, how many the rules dropped):
    the full data, or with `fast` the fast_eval folder's items, else the full data's `fast_subset`."""
    rules = rules_of(rules)
    folders = task_folders(name, data_dir, alone, fast)
    choices, dropped = load_task(name, folders, rules)
    if fast and data_layout(data_dir)[1] is None:
        choices = fast_subset(name, choices, rules)
    return choices, folders, dropped


def average(scores: dict[str, float]) -> float:
    """The leaderboard-style average: the mean of every reported task score (NaN-free)."""
    values = [v for v in scores.values() if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan
