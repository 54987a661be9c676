"""BLiMP (and the BabyLM BLiMP supplement): minimal pairs scored as the official BabyLM pipeline does.

Each pair is right when the whole-sentence log-prob of the good sentence is >= that of the bad
one (gold is option 0 and ties go to it). Accuracy is the macro average over UIDs, in percent.
As in the official pipeline, a record without `field` is a supplement pair: field "supplement",
UID the file name; "syntax_semantics" is spelled "syntax/semantics"; per-field accuracy is over
the field's pairs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .metrics import accuracy_by, macro
from .records import EvalDataError, jsonl_records, task_files, text
from .scoring import sentence_logprobs

__all__ = ["EvalDataError", "MinimalPair", "evaluate_blimp", "format_table", "load_blimp", "summarize"]

FIELD_SPELLINGS = {"syntax_semantics": "syntax/semantics"}
SUPPLEMENT_FIELD = "supplement"


@dataclass(frozen=True)
class MinimalPair:
    good: str
    bad: str
    uid: str
    field: str


def load_blimp(data_dir) -> list[MinimalPair]:
    """Read every data file of `data_dir` (`records.task_files`, sorted by name), one pair per non-blank line."""
    return [
        _pair(record, where, path)
        for path in task_files(data_dir, "BLiMP")
        for where, record in jsonl_records(path, "'sentence_good' and 'sentence_bad'")
    ]


def _pair(record: dict, where: str, path: Path) -> MinimalPair:
    field_name = text(record, "field", where, default=SUPPLEMENT_FIELD)
    return MinimalPair(
        good=text(record, "sentence_good", where),
        bad=text(record, "sentence_bad", where),
        uid=text(record, "UID", where, default=path.stem),
        field=FIELD_SPELLINGS.get(field_name, field_name),
    )


def summarize(pairs: list[MinimalPair], good_scores: list[float], bad_scores: list[float]) -> dict:
    """Accuracies in percent: a pair is right when good >= bad (ties count as correct)."""
    hits = [good >= bad for good, bad in zip(good_scores, bad_scores, strict=True)]
    uid_accuracy = accuracy_by([pair.uid for pair in pairs], hits)
    return {
        "accuracy": macro(uid_accuracy.values()),
        "by_uid": uid_accuracy,
        "by_field": accuracy_by([pair.field for pair in pairs], hits),
    }


def evaluate_blimp(model, tokenizer, data_dir, batch_size: int = 64, device=None, progress: bool = False) -> dict:
    """Score every pair under `data_dir` -> {"task", "accuracy", "by_uid", "by_field", "n_pairs", "seconds"}."""
    start = time.perf_counter()
    pairs = load_blimp(data_dir)
    sentences = [sentence for pair in pairs for sentence in (pair.good, pair.bad)]
    scores = sentence_logprobs(model, tokenizer, sentences, batch_size=batch_size, device=device, progress=progress)
    summary = summarize(pairs, scores[0::2], scores[1::2])
    return {"task": "blimp", **summary, "n_pairs": len(pairs), "seconds": time.perf_counter() - start}


def format_table(result: dict) -> str:
    """A plain-text table of an `evaluate_blimp` result, two decimals."""
    rows = [("UID", None), *result["by_uid"].items(), ("", None), ("field", None), *result["by_field"].items()]
    rows += [("", None), (f"average (macro over {len(result['by_uid'])} UIDs)", result["accuracy"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"BLiMP: {result['n_pairs']} pairs in {result['seconds']:.1f} s"]
    for name, value in rows:
        if value is None:  # a heading or a blank line
            lines.append(f"{name:<{width}}  {'accuracy' if name else ''}".rstrip())
        else:
            lines.append(f"{name:<{width}}  {value:8.2f}")
    return "\n".join(lines)
