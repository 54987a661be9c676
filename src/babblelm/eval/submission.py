"""The BabyLM leaderboard's submission files, written from babblelm's results as the official pipeline
writes them, and checked with the official size rules.

Reference: babylm-org/babylm-eval `strict/evaluation_pipeline/collate_preds.py` at 6f825c2 (the
collation, its size checks and its fast scores; the sizes are in `leaderboard_sizes.json`) and the
prediction files its scripts write (sentence_zero_shot, reading, AoA_word, finetune `run.py`).
Layout under the submission folder OUT for model NAME (the run's folder name), backend `causal`:

    OUT/NAME/main/zero_shot/causal/<task>/<dataset>/predictions.json       the final model, full data
    OUT/NAME/main/zero_shot/causal/reading/predictions.json
    OUT/NAME/main/zero_shot/causal/AoA_word/surprisal.json                 every revision's AoA surprisals
    OUT/NAME/main/finetune/<glue task>/predictions.json
    OUT/NAME/<chck_*>/zero_shot/causal/<task>/<fast dataset>/predictions.json   each revision, fast data
    OUT/NAME/all_full_preds_and_fast_scores_causal.json                    the collation: what is uploaded

A zero-shot prediction file is {key: {"predictions": [{"id": "<key>_<n>", "pred": text}]}}: key the
item's UID (Global PIQA: its example_id), items in data order, text the chosen option's (its
completion; EWoK and COMPS: context and completion, the sentence), chosen as the result's "items"
say (`rules.picks`: under 2026 a tie is drawn at random among the tied options, seeded). EWoK: the
2026 rules score two comparisons per row; the collation counts one prediction per row and compares
it with Context1 + Target1, so the first comparison of each row (Target1 after Context1 vs after
Context2) is submitted. The collation holds every full prediction file (a file failing its size
check as null, as the official script writes it) and, per revision, the fast scores it computes
from the fast predictions: per key the fraction of predictions equal to the gold text (reading:
the R2 gains as fractions). `aoa_score.json` is not written (its format is not public; the
collation reads it without a check, so it is null there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..rundir import milestone_count
from .aoa import load_contexts
from .rules import rules_of
from .tasks import Choice, data_layout, task_choices

BACKEND = "causal"
MAIN = "main"
GLUE_FOLDER = "finetune"  # the official layout's, inside each revision
COLLATED = f"all_full_preds_and_fast_scores_{BACKEND}.json"
GLUE = ("boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc")  # the collation's order


@dataclass(frozen=True)
class Entry:
    """One zero-shot task of the collation: its key, babblelm's task, where its predictions go (under
    zero_shot/causal/, full and fast), the text a prediction holds, and (Global PIQA) the sub-folder."""

    key: str
    task: str
    path: tuple[str, ...]
    fast_path: tuple[str, ...] | None
    pred: str = "completion"  # or "sentence": context + completion
    uid: str | None = None


ENTRIES = (
    Entry("blimp", "blimp", ("blimp", "blimp_filtered"), ("blimp", "blimp_fast")),
    Entry("blimp_supplement", "supplement", ("blimp", "supplement_filtered"), ("blimp", "supplement_fast")),
    Entry("ewok", "ewok", ("ewok", "ewok_filtered"), ("ewok", "ewok_fast"), "sentence"),
    Entry("entity_tracking_filtered", "entity_tracking", ("entity_tracking", "entity_tracking"),
          ("entity_tracking", "entity_tracking_fast")),
    Entry("comps", "comps", ("comps", "comps"), None, "sentence"),
    *(Entry(name, "global_piqa", (name, name), (name, name), uid=name)
      for name in ("global_piqa_parallel", "global_piqa_nonparallel")),
)
TASKS = tuple(dict.fromkeys([*(e.task for e in ENTRIES), "reading"]))  # what a submission scores
FAST_TASKS = tuple(dict.fromkeys([*(e.task for e in ENTRIES if e.fast_path), "reading"]))


def official_sizes() -> dict:
    """The official size tables and revision lists (`leaderboard_sizes.json`, numbers read from 6f825c2)."""
    return json.loads(resources.files(__package__).joinpath("leaderboard_sizes.json").read_text(encoding="utf-8"))


@dataclass
class Report:
    """What was written and what the size rules found: one line per missing or short task or revision."""

    folder: Path
    collated: Path
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def pred_text(entry: Entry, choice: Choice, option: int) -> str:
    context, completion = choice.options[option]
    return context + completion if entry.pred == "sentence" else completion


def _submitted(entry: Entry, choices: list[Choice], picks: list[int], rules: str):
    """The (choice, pick) pairs a prediction file holds (Global PIQA: its sub-folder's; EWoK under the
    two-comparison rules: the first comparison of each row)."""
    pairs = list(zip(choices, picks))
    if entry.uid is not None:
        pairs = [(c, p) for c, p in pairs if c.uid == entry.uid]
    if entry.task == "ewok" and rules_of(rules).ewok == "contexts":
        pairs = pairs[0::2]
    return pairs


def prediction_file(entry: Entry, choices: list[Choice], picks: list[int], rules: str) -> dict:
    predictions: dict[str, dict] = {}
    for choice, pick in _submitted(entry, choices, picks, rules):
        key = choice.key or choice.uid
        rows = predictions.setdefault(key, {"predictions": []})["predictions"]
        rows.append({"id": f"{key}_{len(rows)}", "pred": pred_text(entry, choice, pick)})
    return predictions


def fast_scores(entry: Entry, choices: list[Choice], picks: list[int], rules: str) -> dict[str, float]:
    """The collation's fast score: per key, the fraction of predictions equal to the gold text (Global
    PIQA: one fraction under the entry's key)."""
    hits: dict[str, list[bool]] = {}
    for choice, pick in _submitted(entry, choices, picks, rules):
        key = entry.key if entry.uid is not None else choice.uid
        hits.setdefault(key, []).append(pred_text(entry, choice, pick).strip() == pred_text(entry, choice, 0).strip())
    return {key: sum(h) / len(h) for key, h in hits.items()}


def reading_file(result: dict) -> dict:
    return {"reading": {"predictions": [{"id": k, "pred": pred, "prev_pred": prev}
                                        for k, (pred, prev) in enumerate(result["items"])]}}


def glue_file(task: str, result: dict) -> dict:
    return {task: {"predictions": [{"id": f"{task}_{k}", "pred": int(p)} for k, p in enumerate(result["predictions"])]}}


def aoa_file(name: str, contexts: dict[str, list[str]], surprisals: dict[str, dict[str, list[float]]]) -> dict:
    """The official AoA `surprisal.json`: one entry per revision, word and context, in that order."""
    rows = [{"step": revision, "word_count": int(milestone_count(revision)), "target_word": word, "context_id": k,
             "context": context, "surprisal": by_word[word][k]}
            for revision, by_word in surprisals.items() for word, texts in contexts.items()
            for k, context in enumerate(texts)]
    return {"metadata": {"model_name": name, "use_bos_only": False, "total_steps": len(surprisals),
                         "completed_steps": len(surprisals)}, "results": rows}


def size_problems(key: str, predictions: dict, expected) -> list[str]:
    """The official size rule for one prediction file: per key `expected[key]` predictions (a table), or
    `expected` in the one key (a number); Global PIQA: `expected` keys of one prediction each. Stricter
    than the official check, a key of the table with no predictions is named too."""
    if key.startswith("global_piqa"):
        many = [k for k, v in predictions.items() if len(v["predictions"]) != 1]
        found = [f"{len(predictions)} examples of {expected}"] if len(predictions) != expected else []
        return found + [f"example {k} has {len(predictions[k]['predictions'])} predictions, not 1" for k in many[:3]]
    if not isinstance(expected, dict):
        return [f"{k} has {len(v['predictions'])} predictions of {expected}" for k, v in predictions.items()
                if len(v["predictions"]) != expected]
    counts = {k.lower(): len(v["predictions"]) for k, v in predictions.items()}
    return ([f"{k} has {n} predictions of {expected[k]}" if k in expected else f"{k} is not a key of the leaderboard's"
             for k, n in counts.items() if expected.get(k) != n]
            + [f"{k} has none of {n}" for k, n in expected.items() if k not in counts])


def _line(what: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return f"{what}: short: {shown}"


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_submission(out: Path, name: str, data_dir, final: dict[str, dict], fast: dict[str, dict[str, dict]],
                     glue: dict[str, dict], aoa: dict[str, dict], track: str = "strict-small",
                     sizes: dict | None = None) -> Report:
    """Write the official layout and collation under `out/name` from babblelm's results.

    `final`: {task: result} of the final model (full data); `fast`: {revision: {task: result}} (fast
    data); `glue`: {task: fine-tuning result}; `aoa`: {revision: {word: [surprisal per context]}}
    (`aoa.context_surprisals`). A result that failed or is absent is missing; `sizes` defaults to the
    official tables. The report names every missing or short task and every missing revision."""
    sizes = sizes or official_sizes()
    revisions = sizes["revisions"][track]
    root, problems = Path(out) / name, []
    main = root / MAIN / "zero_shot" / BACKEND
    collated: dict = {}

    def checked(key: str, contents, expected) -> object:
        found = size_problems(key, contents, expected)
        if found:
            problems.append(_line(key, found))
        return None if found else contents

    for entry in ENTRIES:
        picked = _picked(entry.task, final.get(entry.task), data_dir, fast=False)
        if isinstance(picked, str):
            problems.append(f"{entry.key}: missing: {picked}")
            collated[entry.key] = None
            continue
        contents = prediction_file(entry, *picked, final[entry.task]["rules"])
        _write(main.joinpath(*entry.path, "predictions.json"), contents)
        collated[entry.key] = checked(entry.key, contents, sizes["full"][entry.key])
    if "failed" in final.get("reading", {"failed": "not evaluated"}):
        problems.append(f"reading: missing: {final.get('reading', {}).get('failed', 'not evaluated')}")
        collated["reading"] = None
    else:
        contents = reading_file(final["reading"])
        _write(main / "reading" / "predictions.json", contents)
        collated["reading"] = checked("reading", contents, sizes["full"]["reading"])
    collated["aoa_surprisals"] = _aoa(name, data_dir, aoa, revisions, sizes, main, problems)
    collated["aoa"] = None
    collated["glue"] = {}
    for task in GLUE:
        if "predictions" not in glue.get(task, {}):
            problems.append(f"{task}: missing: {glue.get(task, {}).get('failed', 'not fine-tuned')}")
            continue
        contents = glue_file(task, glue[task])
        _write(root / MAIN / GLUE_FOLDER / task / "predictions.json", contents)
        collated["glue"] |= checked(task, contents, sizes["full"][task]) or {}
    collated["fast_eval_results"] = _fast(root, fast, data_dir, revisions, sizes, problems)
    _write(root / COLLATED, collated)
    return Report(root, root / COLLATED, problems)


def _picked(task: str, result: dict | None, data_dir, fast: bool):
    """(the items of a task's result in data order, the option picked on each), or why there are none."""
    if result is None:
        return "not evaluated"
    if "failed" in result:
        return result["failed"]
    choices = task_choices(task, data_dir, alone=False, fast=fast, rules=result["rules"])[0]
    if len(choices) != len(result.get("items", ())):
        return (f"its result holds {len(result.get('items', ()))} predictions for {len(choices)} items of the data: "
                "score it again")
    return choices, result["items"]


def _aoa(name, data_dir, aoa, revisions, sizes, main: Path, problems: list[str]):
    absent = [r for r in revisions if r not in aoa]
    if absent:
        problems.append(f"AoA_word: missing: no surprisals for {', '.join(absent)}")
    present = {r: aoa[r] for r in revisions if r in aoa}
    if not present:
        return None
    contents = aoa_file(name, load_contexts(data_layout(data_dir)[0] / "aoa" / "cdi_childes.json"), present)
    _write(main / "AoA_word" / "surprisal.json", contents)
    counts = {r: sum(1 for row in contents["results"] if row["step"] == r) for r in present}
    short = [f"{r} has {n} of {sizes['aoa_per_revision']}" for r, n in counts.items() if n != sizes["aoa_per_revision"]]
    if short:
        problems.append(_line("AoA_word", short))
    return None if absent or short else contents


def _fast(root: Path, fast: dict, data_dir, revisions, sizes, problems: list[str]) -> dict:
    """Each revision's fast prediction files and the collation's fast scores (None where missing or short)."""
    scores: dict[str, list] = {key: [] for key in [*(e.key for e in ENTRIES if e.fast_path), "reading"]}
    for revision in revisions:
        results, found = fast.get(revision), []
        if results is None:
            problems.append(f"{revision}: missing: no checkpoint {revision} (or no fast results for it)")
            for values in scores.values():
                values.append(None)
            continue
        folder = root / revision / "zero_shot" / BACKEND
        for entry in (e for e in ENTRIES if e.fast_path):
            picked = _picked(entry.task, results.get(entry.task), data_dir, fast=True)
            if isinstance(picked, str):
                found.append(f"{entry.key} missing ({picked})")
                scores[entry.key].append(None)
                continue
            rules = results[entry.task]["rules"]
            contents = prediction_file(entry, *picked, rules)
            _write(folder.joinpath(*entry.fast_path, "predictions.json"), contents)
            short = size_problems(entry.key, contents, sizes["fast"][entry.key])
            found += [f"{entry.key} short ({'; '.join(short[:2])})"] if short else []
            scores[entry.key].append(None if short else fast_scores(entry, *picked, rules))
        reading = results.get("reading")
        if reading is None or "failed" in reading:
            found.append("reading missing")
            scores["reading"].append(None)
        else:
            _write(folder / "reading" / "predictions.json", reading_file(reading))
            short = size_problems("reading", reading_file(reading), sizes["fast"]["reading"])
            found += [f"reading short ({short[0]})"] if short else []
            scores["reading"].append(None if short else {"spr": reading["scores"]["reading_spr"] / 100,
                                                         "rt": reading["scores"]["reading_et"] / 100})
        if found:
            problems.append(f"{revision}: fast: {'; '.join(found)}")
    return scores
