"""Reading evaluation files: JSON lines and CSV, with errors that name the file, line and field."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


KIND_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list"}


class EvalDataError(ValueError):
    """Evaluation data that cannot be read; the message names the file, line and field."""


def data_files(folder, pattern: str, what: str) -> list[Path]:
    """The files matching `pattern` in `folder`, sorted by name; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalDataError(f"{folder}: {what} data folder not found")
    files = sorted(folder.glob(pattern))
    if not files:
        raise EvalDataError(f"{folder}: no {pattern} files (expected {what} data)")
    return files


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def jsonl_records(path: Path, expected: str) -> list[tuple[str, dict]]:
    """(`file:line`, record) for every non-blank line; `expected` says what a line should hold."""
    records = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalDataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise EvalDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        records.append((where, record))
    if not records:
        raise EvalDataError(f"{path}: empty file; expected one JSON object per line with {expected}")
    return records


def field(record: dict, key: str, where: str, kind=str, default=None):
    """record[key] checked to be of `kind` (a type or tuple of types); `default` when absent, if given."""
    if key not in record:
        if default is None:
            raise EvalDataError(f"{where}: missing field '{key}'")
        return default
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = " or ".join(KIND_NAMES.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise EvalDataError(f"{where}: field '{key}' must be {names}, got {type(value).__name__}")
    return value


def csv_rows(path: Path, required: list[str]) -> list[tuple[str, dict]]:
    """(`file:line`, row) for every data row of a CSV file with a header holding `required` columns."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found")
    lines = _text(path).splitlines()
    reader = csv.DictReader(lines)
    missing = [name for name in required if name not in (reader.fieldnames or [])]
    if missing:
        raise EvalDataError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
    rows = [(f"{path}:{reader.line_num}", row) for row in reader]
    if not rows:
        raise EvalDataError(f"{path}: no data rows after the header")
    return rows


def number(row: dict, key: str, where: str) -> float:
    """A numeric CSV cell; an empty cell (or NA/NaN) is NaN, as pandas reads it."""
    cell = (row.get(key) or "").strip()
    if cell in ("", "NA", "NaN", "nan", "N/A", "null"):
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise EvalDataError(f"{where}: column '{key}' must be a number, got {cell!r}") from None
