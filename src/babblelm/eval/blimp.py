"""BLiMP (and the BabyLM BLiMP supplement) files: the reader of minimal pairs.

A record without `field` is a supplement pair (field "supplement", UID the file name), as in the
official pipeline; "syntax_semantics" is spelled "syntax/semantics". Scoring is the evaluation
suite's (eval/tasks.py, task `blimp`/`supplement`: one scorer for every task, under the chosen
year's rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .records import EvalDataError, jsonl_records, task_files, text

__all__ = ["EvalDataError", "MinimalPair", "load_blimp"]

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
