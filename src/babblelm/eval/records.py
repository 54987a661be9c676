"""Reading evaluation files: JSON lines and CSV, with errors that name the file, line and field.

A task folder's data files are its `*.jsonl` and `*.json` files (any case), each read as JSON lines;
any other file that looks like data (`.csv`, `.tsv`, `.ndjson`, a compressed or backed-up `.json*`,
...) is an error rather than silently skipped. Hidden files, sub-folders and notes (`README.md`,
`*.txt`) are ignored. Every text that is scored must be non-blank and every number finite.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from fnmatch import fnmatch
from pathlib import Path


KIND_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list"}
JSON_SUFFIXES = (".jsonl", ".json")
DATA_LIKE_SUFFIXES = (".csv", ".tsv", ".ndjson", ".parquet", ".arrow", ".gz", ".bz2", ".xz", ".zip", ".bak")
MISSING_CELLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                           "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})  # pandas' na_values


class EvalDataError(ValueError):
    """Evaluation data that cannot be read; the message names the file, line and field."""


def data_files(folder, pattern: str, what: str) -> list[Path]:
    """The files matching `pattern` (any case) in `folder`, sorted by name; an error if there are none."""
    folder = _folder(folder, what)
    files = sorted(p for p in folder.iterdir() if p.is_file() and fnmatch(p.name.lower(), pattern.lower()))
    if not files:
        raise EvalDataError(f"{folder}: no {pattern} files (expected {what} data)")
    return files


def task_files(folder, what: str) -> list[Path]:
    """A task folder's JSON-lines files (`*.jsonl`, `*.json`, any case), sorted by name.

    An error if there are none, if another file looks like data, or if two files share a name
    (`x.json` and `x.jsonl` would both count as UID `x`)."""
    folder = _folder(folder, what)
    files = []
    for path in sorted(folder.iterdir()):
        kind = _file_kind(path)
        if kind == "data" and not path.is_file():
            raise EvalDataError(f"{path}: not a file (expected {what} data, one JSON object per line)")
        if kind == "data-like":
            raise EvalDataError(f"{path}: looks like data but is not read ({what} data is read from *.jsonl "
                                f"and *.json files holding one JSON object per line); convert or move it")
        if kind == "data":
            files.append(path)
    if not files:
        raise EvalDataError(f"{folder}: no *.jsonl files (expected {what} data, one JSON object per line)")
    _check_unique_stems(files)
    return files


def _folder(folder, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalDataError(f"{folder}: {what} data folder not found")
    return folder


def _file_kind(path: Path) -> str:
    """"data" (read), "data-like" (an error) or "other" (ignored)."""
    name = path.name.lower()
    if name.startswith("."):
        return "other"
    if name.endswith(JSON_SUFFIXES):
        return "data"
    if path.is_file() and (".json" in name or name.endswith(DATA_LIKE_SUFFIXES)):
        return "data-like"
    return "other"


def _check_unique_stems(files: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise EvalDataError(f"{path.parent}: {seen[path.stem].name} and {path.name} hold the same name "
                                f"{path.stem!r} (their items would count twice under one UID); keep one")
        seen[path.stem] = path


def utf8_text(path: Path) -> str:
    """The file's UTF-8 text (a leading byte-order mark dropped); an EvalDataError naming the file if it
    cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise EvalDataError(f"{path}: cannot read ({err.strerror or err})") from None


def jsonl_records(path: Path, expected: str) -> list[tuple[str, dict]]:
    """(`file:line`, record) for every non-blank line; `expected` says what a line should hold."""
    text = utf8_text(path)
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            where = f"{path}:{number}"
            records.append((where, _record(line, where, path, text)))
    if not records:
        raise EvalDataError(f"{path}: empty file; expected one JSON object per line with {expected}")
    return records


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _record(line: str, where: str, path: Path, text: str) -> dict:
    """One line's JSON object, checked: no repeated field, finite numbers, valid Unicode."""
    try:
        record = json.loads(line, object_pairs_hook=_unique_keys)
    except _DuplicateKey as err:
        raise EvalDataError(f"{where}: field '{err.args[0]}' appears twice") from None
    except json.JSONDecodeError as err:
        if _is_one_document(text):
            raise EvalDataError(f"{path}: holds one JSON document, not JSON lines (one object per line)") from None
        raise EvalDataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise EvalDataError(f"{where}: malformed JSON (nested too deeply)") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise EvalDataError(f"{where}: cannot read JSON ({err})") from None
    if not isinstance(record, dict):
        raise EvalDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    _check_values(record, where)
    return record


def _is_one_document(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return "\n" in text.strip()


def _check_values(record: dict, where: str) -> None:
    """Every number finite and every string valid Unicode, anywhere in the record."""
    stack = [(f"'{key}'", value) for key, value in record.items()]
    while stack:
        name, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise EvalDataError(f"{where}: field {name} is {value}; NaN and infinite numbers are not allowed")
        if isinstance(value, str) and not valid_unicode(value):
            raise EvalDataError(f"{where}: field {name} holds an unpaired surrogate (\\ud800-\\udfff), not text")
        if isinstance(value, dict):
            stack += [(f"{name[:-1]}.{key}'", item) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(f"{name[:-1]}[{k}]'", item) for k, item in enumerate(value)]


def valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def text(record: dict, key: str, where: str, default: str | None = None) -> str:
    """A string field that is not blank (a text to score, or a name)."""
    value = field(record, key, where, str, default)
    if not value.strip():
        raise EvalDataError(f"{where}: field '{key}' must not be empty")
    return value


def csv_rows(path: Path, required: list[str]) -> list[tuple[str, dict]]:
    """(`file:line`, row) for every data row of a CSV file with a header holding `required` columns."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found")
    reader = csv.reader(io.StringIO(utf8_text(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise EvalDataError(f"{path}: empty file; expected a CSV header with {', '.join(required)}")
        _check_header(path, header, required)
        rows = [(f"{path}:{reader.line_num}", _row(path, reader.line_num, header, cells)) for cells in reader if cells]
    except csv.Error as err:
        raise EvalDataError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None
    if not rows:
        raise EvalDataError(f"{path}: no data rows after the header")
    return rows


def _check_header(path: Path, header: list[str], required: list[str]) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise EvalDataError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise EvalDataError(f"{path}:1: header repeats column(s) {', '.join(repeated)}")


def _row(path: Path, line: int, header: list[str], cells: list[str]) -> dict:
    if len(cells) != len(header):
        raise EvalDataError(f"{path}:{line}: {len(cells)} cells; the header has {len(header)} columns")
    return dict(zip(header, cells))


def number(row: dict, key: str, where: str) -> float:
    """A finite numeric CSV cell; an empty cell (or NA/NaN, as pandas reads them) is a missing value, NaN."""
    cell = (row.get(key) or "").strip()
    if cell in MISSING_CELLS:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise EvalDataError(f"{where}: column '{key}' must be a number, got {cell!r}") from None
    if not math.isfinite(value):
        raise EvalDataError(f"{where}: column '{key}' must be a finite number, got {cell!r}")
    return value


def files_sha256(paths, root=None) -> str:
    """One SHA-256 over the files' names (relative to `root`, else their names) and contents."""
    total = hashlib.sha256()
    for path in map(Path, paths):
        name = path.relative_to(root).as_posix() if root else path.name
        total.update(f"{name}\0{_digest(path)}\0".encode())
    return total.hexdigest()


def _digest(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
