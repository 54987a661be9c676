"""BLiMP (and the BabyLM BLiMP supplement): minimal pairs scored as the official BabyLM pipeline does.

Each pair is right when the whole-sentence log-prob of the good sentence is >= that of the bad
one (gold is option 0 and ties go to it). Accuracy is the macro average over UIDs, in percent.
As in the official pipeline, a record without `field` is a supplement pair: field "supplement",
UID the file name; "syntax_semantics" is spelled "syntax/semantics"; per-field accuracy is over
the field's pairs.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .scoring import sentence_logprobs

FIELD_SPELLINGS = {"syntax_semantics": "syntax/semantics"}
SUPPLEMENT_FIELD = "supplement"


class EvalDataError(ValueError):
    """Evaluation data that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True)
class MinimalPair:
    good: str
    bad: str
    uid: str
    field: str


def load_blimp(data_dir) -> list[MinimalPair]:
    """Read every `*.jsonl` in `data_dir` (sorted by name), one pair per non-blank line."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise EvalDataError(f"{folder}: BLiMP data folder not found")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise EvalDataError(f"{folder}: no *.jsonl files (expected one BLiMP file per UID)")
    return [pair for path in files for pair in _read_file(path)]


def _read_file(path: Path) -> list[MinimalPair]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    pairs = [_parse_line(line, path, number) for number, line in enumerate(lines, start=1) if line.strip()]
    if not pairs:
        raise EvalDataError(
            f"{path}: empty file; expected one JSON object per line with 'sentence_good' and 'sentence_bad'"
        )
    return pairs


def _parse_line(line: str, path: Path, number: int) -> MinimalPair:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise EvalDataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(record, dict):
        raise EvalDataError(f"{where}: expected a JSON object, got {type(record).__name__}")

    def text(key: str, default: str | None = None) -> str:
        if key not in record:
            if default is None:
                raise EvalDataError(f"{where}: missing field '{key}'")
            return default
        if not isinstance(record[key], str):
            raise EvalDataError(f"{where}: field '{key}' must be a string, got {type(record[key]).__name__}")
        return record[key]

    field = text("field", SUPPLEMENT_FIELD)
    return MinimalPair(
        good=text("sentence_good"),
        bad=text("sentence_bad"),
        uid=text("UID", path.stem),
        field=FIELD_SPELLINGS.get(field, field),
    )


def summarize(pairs: list[MinimalPair], good_scores: list[float], bad_scores: list[float]) -> dict:
    """Accuracies in percent: a pair is right when good >= bad (ties count as correct)."""
    by_uid, by_field = defaultdict(list), defaultdict(list)
    for pair, good, bad in zip(pairs, good_scores, bad_scores, strict=True):
        by_uid[pair.uid].append(good >= bad)
        by_field[pair.field].append(good >= bad)
    uid_accuracy = {uid: _percent(hits) for uid, hits in sorted(by_uid.items())}
    return {
        "accuracy": sum(uid_accuracy.values()) / len(uid_accuracy),
        "by_uid": uid_accuracy,
        "by_field": {field: _percent(hits) for field, hits in sorted(by_field.items())},
    }


def _percent(hits: list[bool]) -> float:
    return 100.0 * sum(hits) / len(hits)


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
