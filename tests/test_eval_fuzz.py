"""Fuzz: hundreds of malformed evaluation inputs, generated from a seed, across every data format.

Each case writes one task's data with one defect and runs the task (or its loader) in-process. It
must either score (like the clean data, where the defect is harmless) or fail with a one-line
EvalDataError/ValueError naming the file (and the line and field where there is one); no other
exception may escape and no input file may change. Whether a defect must fail or must score is
decided from the field's kind (a text to score, a name, a count, a number, ...), not by the code.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from eval_fixtures import write_reading

from babblelm.eval.aoa import load_cdi, load_words
from babblelm.eval.finetune import load_split
from babblelm.eval.records import EvalDataError
from babblelm.eval.tasks import evaluate_task

SEED = 2025
FIELD_MUTATIONS_PER_FIELD = 10  # sampled (seeded) from VALUES, plus the ones every field gets


@dataclass(frozen=True)
class Format:
    folder: str
    file: str
    records: tuple[dict, ...]
    kinds: dict[str, str]  # field -> text | name | free | int | number | options | tabbed | label | ignored


def _pairs(good, bad, **extra):
    return {"sentence_good": good, "sentence_bad": bad, **extra}


def _ewok(domain, target):
    return {"Domain": domain, "Context1": "The cat is on the mat.", "Context2": "The cat is under the mat.",
            "Target1": "The mat is below the cat.", "Target2": target, "ContextType": "x"}


def _entity(numops):
    return {"input_prefix": "Box A has the cat. Box B has the dog. Box A contains", "options": [" the cat.", " the dog."],
            "numops": numops, "sample_id": numops}


def _comps(good, bad):
    return {"prefix_acceptable": good, "prefix_unacceptable": bad, "property_phrase": "can run."}


def _wug(folder, name):
    records = tuple({"sentences": f"The cat {a}.\tThe cat {b}.", "ratio": r}
                    for a, b, r in (("sat", "sit", 0.9), ("ran", "runned", 0.5), ("went", "goed", 0.2)))
    return Format(folder, f"{name}.jsonl", records, {"sentences": "tabbed", "ratio": "number"})


def _rte(k, first, second, label):
    return {"sentence1": first, "sentence2": second, "label": label, "idx": k}


FORMATS = {
    "blimp": Format("blimp_filtered", "agreement.jsonl", (
        _pairs("The cat sat.", "The cat sit.", UID="agreement", field="morphology"),
        _pairs("The cats sat.", "The cats sits.", UID="agreement", field="morphology"),
        _pairs("Who ran?", "Who runned?", UID="question", field="syntax"),
    ), {"sentence_good": "text", "sentence_bad": "text", "UID": "name", "field": "name"}),
    "supplement": Format("supplement_filtered", "hypernym.jsonl", (
        _pairs("A dog is an animal.", "An animal is a dog."), _pairs("The cat sat.", "The sat cat."),
        _pairs("A ball is red.", "A red is ball."),
    ), {"sentence_good": "text", "sentence_bad": "text"}),
    "multiblimp": Format("multiblimp", "nld.jsonl", (
        {"sen": "The cat sat.", "wrong_sen": "The cat sit.", "phenomenon": "SV-#"},
        {"sen": "The dogs ran.", "wrong_sen": "The dogs runs.", "phenomenon": "SV-#"},
        {"sen": "A cat is.", "wrong_sen": "A cat are.", "phenomenon": "SV-P"},
    ), {"sen": "text", "wrong_sen": "text", "phenomenon": "name"}),
    "ewok": Format("ewok_filtered", "spatial.jsonl", (
        _ewok("spatial", "The mat is above the cat."), _ewok("social", "Who ran?"), _ewok("spatial", "A dog."),
    ), {"Domain": "text", "Context1": "text", "Context2": "text", "Target1": "text", "Target2": "text",
        "ContextType": "ignored"}),
    "entity_tracking": Format("entity_tracking", "regular.jsonl", (_entity(0), _entity(1), _entity(1)),
                              {"input_prefix": "text", "options": "options", "numops": "int", "sample_id": "ignored"}),
    "comps": Format("comps", "comps_base.jsonl", (_comps("A cat", "A mat"), _comps("The dog", "The house"),
                                                  _comps("A child", "A ball")),
                    {"prefix_acceptable": "text", "prefix_unacceptable": "text", "property_phrase": "text"}),
    "wug_adj": _wug("wug_adj_nominalization", "wug_adj"),
    "wug_past": _wug("wug_past_tense", "wug_past"),
    "glue": Format("glue_filtered", "rte.train.jsonl", (
        _rte(0, "The cat sat.", "A cat sat.", 0), _rte(1, "The dog ran.", "Who ran?", 1), _rte(2, "A ball.", "A red ball.", 0),
    ), {"sentence1": "free", "sentence2": "free", "label": "label", "idx": "ignored"}),
}
MISSING = object()
UNREADABLE = object()  # JSON Python cannot hold: the line is an error, no field to name
VALUES = {  # tag -> raw JSON text of the value (MISSING: the field is left out)
    "missing": MISSING, "null": "null", "true": "true", "int": "7", "zero": "0", "negative": "-3", "float": "1.5",
    "huge_int": "1" + "0" * 30, "giant_int": "9" * 5000, "overflow": "1e999", "nan": "NaN", "inf": "Infinity",
    "-inf": "-Infinity", "empty": '""', "blank": '"  \\t "', "text": '"a word"', "numeric_text": '"0.5"',
    "nan_text": '"NaN"', "inf_text": '"inf"', "surrogate": '"\\ud800x"', "nul": '"a\\u0000b"', "newline": '"a\\nb"',
    "tabbed": '"one\\ttwo"', "tab_empty": '"one\\t"', "line_separator": '"a\u2028b"', "long": json.dumps("the cat " * 60),
    "list": '[" a", " b"]', "list_one": '["a"]', "list_blank": '["a", " "]', "list_ints": "[1, 2]", "empty_list": "[]",
    "object": '{"a": 1}', "nested_nan": '{"a": [NaN]}', "deep": "[" * 5000 + "]" * 5000,
}
ALWAYS = ("missing", "empty", "nan", "int", "surrogate")


@dataclass
class Case:
    id: str
    fmt: str
    files: dict[str, bytes | None]  # path under the data root -> content (None: a folder)
    expect: str  # "error", "score" or "same" (scores exactly as the clean data)
    names: tuple[str, ...] = ()  # each must appear in the error message
    target: str = ""  # data path given to the task, relative to the root (default: the root)

    def __post_init__(self):
        self.id = f"{self.fmt}-{self.id}"


def _lines(records) -> list[str]:
    return [json.dumps(record) for record in records]


def _jsonl(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _valid(kind: str, raw) -> bool:
    """Does a field of `kind` holding the JSON `raw` (MISSING: absent) make a usable item?"""
    if raw is MISSING:
        return kind in ("name", "ignored")
    value = json.loads(raw)
    if _has_bad_number_or_text(value):
        return False
    if kind == "ignored":
        return True
    if kind in ("text", "name"):
        return isinstance(value, str) and bool(value.strip())
    if kind == "free":
        return isinstance(value, str)
    if kind in ("int", "label"):
        return isinstance(value, int) and not isinstance(value, bool) and (kind == "int" or value in (0, 1))
    if kind == "number":
        return _finite_number(value)
    if kind == "options":
        return isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) and v.strip() for v in value)
    if kind == "tabbed":
        return isinstance(value, str) and len(value.split("\t")) >= 2 and all(v.strip() for v in value.split("\t"))
    raise AssertionError(kind)


def _has_bad_number_or_text(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(map(_has_bad_number_or_text, value))
    if isinstance(value, dict):
        return any(map(_has_bad_number_or_text, value.values()))
    return False


def _finite_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _readable(raw) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def field_cases(rng: random.Random) -> list[Case]:
    """Line 2 of each JSON-lines format with one field replaced, left out or given a bad value."""
    cases = []
    for fmt, spec in FORMATS.items():
        for key, kind in spec.kinds.items():
            optional = [tag for tag in VALUES if tag not in ALWAYS]
            for tag in (*ALWAYS, *rng.sample(optional, FIELD_MUTATIONS_PER_FIELD - len(ALWAYS))):
                raw = VALUES[tag]
                record = dict(spec.records[1])
                record.pop(key) if raw is MISSING else record.update({key: "\0RAW\0"})
                line = json.dumps(record).replace('"\\u0000RAW\\u0000"', raw if raw is not MISSING else "")
                lines = _lines(spec.records)
                lines[1] = line
                readable = raw is MISSING or _readable(raw)
                valid = readable and _valid(kind, raw)
                names = (spec.file,) if valid else (f"{spec.file}:2:", *((f"'{key}",) if readable else ()))
                if fmt == "multiblimp" and key == "sen" and raw is MISSING:
                    names = (f"{spec.file}:2:", "'sen'")
                cases.append(Case(f"{key}-{tag}", fmt, {f"{spec.folder}/{spec.file}": _jsonl(lines)},
                                  "score" if valid else "error", names))
    return cases


def line_cases(rng: random.Random) -> list[Case]:
    """Whole-line and whole-file defects of every JSON-lines format."""
    cases = []
    for fmt, spec in FORMATS.items():
        path = f"{spec.folder}/{spec.file}"
        lines = _lines(spec.records)
        first_key = next(iter(spec.records[0]))

        def with_line(text: str) -> bytes:
            return _jsonl([lines[0], text, lines[2]])

        cut = rng.randrange(1, len(lines[1]) - 1)
        duplicate = lines[1][:-1] + f', "{first_key}": "again"' + "}"
        bad_utf8 = lines[1].encode()[:-3] + bytes([rng.randrange(0x80, 0xC0)]) + lines[1].encode()[-3:]
        error_on_line_2 = {"truncated": with_line(lines[1][:cut]), "trailing_comma": with_line(lines[1][:-1] + ",}"),
                           "array_line": with_line("[1, 2]"), "string_line": with_line('"text"'),
                           "number_line": with_line("3"), "null_line": with_line("null"),
                           "duplicate_key": with_line(duplicate)}
        cases += [Case(tag, fmt, {path: content}, "error", (f"{spec.file}:2:",)) for tag, content in error_on_line_2.items()]
        cases.append(Case("duplicate_key_named", fmt, {path: with_line(duplicate)}, "error", (f"'{first_key}' appears twice",)))
        file_errors = {
            "invalid_utf8": _jsonl([lines[0]]) + bad_utf8 + b"\n",
            "latin1": _jsonl([lines[0]]) + json.dumps({**spec.records[1], "note": "caf\u00e9"},
                                                      ensure_ascii=False).encode("latin-1") + b"\n",
            "pretty_printed": json.dumps(list(spec.records), indent=2).encode(),
            "empty_file": b"", "blank_file": b"\n  \n\t\n",
        }
        cases += [Case(tag, fmt, {path: content}, "error", (spec.file,)) for tag, content in file_errors.items()]
        cases.append(Case("one_line_array", fmt, {path: json.dumps(list(spec.records)).encode()}, "error", (f"{spec.file}:1:",)))
        same = {"bom": b"\xef\xbb\xbf" + _jsonl(lines), "crlf": _jsonl(lines).replace(b"\n", b"\r\n"),
                "blank_lines": b"\n" + _jsonl([lines[0], "", "   ", lines[1], lines[2]]) + b"\n\n",
                "extra_field": _jsonl([json.dumps({**r, "extra": [1, {"x": None}]}) for r in spec.records])}
        cases += [Case(tag, fmt, {path: content}, "same") for tag, content in same.items()]
        if fmt != "glue":
            cases += folder_cases(fmt, spec, lines, rng)
    return cases


def folder_cases(fmt: str, spec: Format, lines: list[str], rng: random.Random) -> list[Case]:
    """Defects of a task folder: file names and extensions, missing or empty folders."""
    folder, stem, data = spec.folder, spec.file.removesuffix(".jsonl"), _jsonl(lines)
    other = "comps" if folder != "comps" else "blimp_filtered"
    garbage = bytes(rng.randrange(256) for _ in range(64))
    return [
        Case("json_file", fmt, {f"{folder}/{stem}.json": data}, "same"),
        Case("upper_case", fmt, {f"{folder}/{stem}.JSONL": data}, "same"),
        Case("notes_and_hidden", fmt, {f"{folder}/{spec.file}": data, f"{folder}/README.md": b"# notes",
                                       f"{folder}/notes.txt": b"x", f"{folder}/._{spec.file}": garbage}, "same"),
        Case("same_stem", fmt, {f"{folder}/{spec.file}": data, f"{folder}/{stem}.json": data}, "error",
             (f"{stem}.json and {stem}.jsonl",)),
        *(Case(f"data_like_{suffix}", fmt, {f"{folder}/{spec.file}": data, f"{folder}/{stem}_more{suffix}": data},
               "error", (f"{stem}_more{suffix}",)) for suffix in (".csv", ".tsv", ".ndjson", ".jsonl.gz", ".json.bak")),
        Case("folder_named_jsonl", fmt, {f"{folder}/{spec.file}": data, f"{folder}/more.jsonl": None}, "error",
             ("more.jsonl",)),
        Case("only_text_file", fmt, {f"{folder}/{stem}.txt": data}, "error", (folder, "no *.jsonl files")),
        Case("empty_folder", fmt, {folder: None}, "error", (folder,)),
        Case("missing_folder", fmt, {f"{other}/x.jsonl": data}, "error", (f"no {folder}/ folder",)),
        Case("files_at_root", fmt, {spec.file: data}, "error", (f"no {folder}/ folder",)),
        Case("missing_data_dir", fmt, {}, "error", ("nowhere",), target="nowhere"),
        Case("data_dir_is_a_file", fmt, {"file.jsonl": data}, "error", ("file.jsonl",), target="file.jsonl"),
    ]


def format_specific_cases() -> list[Case]:
    et, wug = FORMATS["entity_tracking"], FORMATS["wug_adj"]
    equal = [json.dumps({**r, "ratio": 0.5}) for r in wug.records]
    return [
        Case("unknown_split_file", "entity_tracking", {f"{et.folder}/other.jsonl": _jsonl(_lines(et.records))}, "error",
             ("other.jsonl",)),
        Case("equal_ratios", "wug_adj", {f"{wug.folder}/{wug.file}": _jsonl(equal)}, "error", (wug.file, "'ratio'")),
        Case("one_item", "wug_adj", {f"{wug.folder}/{wug.file}": _jsonl(_lines(wug.records)[:1])}, "error", (wug.file,)),
        Case("glue_missing_file", "glue", {"glue_filtered/rte.valid.jsonl": _jsonl(_lines(FORMATS["glue"].records))},
             "error", ("rte.train.jsonl",)),
        Case("glue_label_out_of_range", "glue", {"glue_filtered/rte.train.jsonl": _jsonl(
            [json.dumps({**r, "label": 2}) for r in FORMATS["glue"].records])}, "error", ("rte.train.jsonl:1:", "'label'")),
    ]


READING = "reading/reading_data.csv"
NUMERIC = ("Subtlex_log10", "length", "context_length", "prev_length", "RTfirstfix", "RTfirstpass", "RTgopast",
           "RTrightbound", "self_paced_reading_time")


def _reading_rows(tmp: Path) -> list[list[str]]:
    path = write_reading(tmp / "reading_data.csv")  # the fixture's row count (READING_ROWS)
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def _csv(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def reading_cases(rows: list[list[str]]) -> list[Case]:
    """The reading CSV: columns, cells, row shapes, encodings and regressions that cannot be fitted."""
    header = rows[0]

    def cell(column: str, value: str, line: int = 4) -> bytes:
        changed = [list(row) for row in rows]
        changed[line - 1][header.index(column)] = value
        return _csv(changed)

    def case(tag, content, expect="error", names=("reading_data.csv",)):
        return Case(tag, "reading", {READING: content}, expect, names)

    cases = [case(f"no_{c}", _csv([[v for k, v in zip(header, row) if k != c] for row in rows]), names=(":1:", c))
             for c in header]
    for column in NUMERIC:
        cases += [case(f"{column}_{tag}", cell(column, value), names=("reading_data.csv:4:", f"'{column}'"))
                  for tag, value in (("text", "fast"), ("inf", "inf"), ("-inf", "-Infinity"), ("overflow", "1e999"))]
        cases += [case(f"{column}_missing", cell(column, "NA"), "score"), case(f"{column}_padded", cell(column, " 3.5 "), "score")]
    constant = [rows[0], *([*row[:8], "200", *row[9:]] for row in rows[1:])]
    cases += [
        case("empty_word", cell("word", ""), names=("reading_data.csv:4:", "'word'")),
        case("blank_word", cell("word", "  "), names=("reading_data.csv:4:", "'word'")),
        case("empty_prev_word", cell("prev_word", ""), names=("reading_data.csv:4:", "'prev_word'")),
        case("empty_item", cell("item", ""), "score"),
        case("quoted_item", cell("item", 'the "cat",\nand '), "score"),
        case("nul_in_word", cell("word", "s\0at"), "score"),
        case("short_row", _csv([*rows[:3], rows[3][:-1], *rows[4:]]), names=("reading_data.csv:4:",)),
        case("long_row", _csv([*rows[:3], [*rows[3], "1"], *rows[4:]]), names=("reading_data.csv:4:",)),
        case("repeated_column", _csv([[*row, row[1]] for row in rows]), names=("reading_data.csv:1:", "word")),
        case("extra_column", _csv([[*row, "n"] for row in rows]), "same"),
        case("header_only", _csv(rows[:1])), case("empty_file", b""), case("newline_only", b"\n"),
        case("invalid_utf8", _csv(rows).replace(b"cat", b"c\xffat", 1)),
        case("bom", b"\xef\xbb\xbf" + _csv(rows), "same"),
        case("crlf", _csv(rows).replace(b"\n", b"\r\n"), "same"),
        case("few_rows", _csv(rows[:9]), names=("reading_data.csv", "complete row")),
        case("constant_measure", _csv(constant), names=("reading_data.csv", "'RTfirstfix'")),
        case("no_self_paced_times", _csv([rows[0], *([*row[:-1], ""] for row in rows[1:])]),
             names=("reading_data.csv", "'self_paced_reading_time'")),
        Case("missing_folder", "reading", {"comps/x.jsonl": b"{}\n"}, "error", ("no reading/ folder",)),
        Case("misnamed_file", "reading", {"reading/Reading_Data.CSV": _csv(rows)}, "error", ("reading_data.csv",)),
        Case("csv_path", "reading", {READING: _csv(rows)}, "same", target=READING),
    ]
    return cases


def aoa_cases(rows) -> list[Case]:
    words = {w: [{"context": "x"}] for w in ("cat", "dog", "mat", "house", "ball")}
    ages = [str(a) for a in range(16, 31)]
    cdi = [["word", *ages], *([w, *(f"{1 / (1 + math.exp(-(a - c))):.4f}" for a in range(16, 31))]
                              for w, c in zip(words, (18, 20, 22, 24, 26)))]

    def cdi_cell(value):
        changed = [list(row) for row in cdi]
        changed[2][3] = value
        return _csv(changed)

    json_path, csv_path = "aoa/cdi_childes.json", "aoa/cdi.csv"
    return [
        Case("words_ok", "aoa_words", {json_path: json.dumps(words).encode()}, "score"),
        Case("words_malformed", "aoa_words", {json_path: json.dumps(words).encode()[:-5]}, "error", ("cdi_childes.json",)),
        Case("words_list", "aoa_words", {json_path: b'["cat", "dog"]'}, "error", ("cdi_childes.json",)),
        Case("words_empty", "aoa_words", {json_path: b"{}"}, "error", ("cdi_childes.json",)),
        Case("words_empty_file", "aoa_words", {json_path: b""}, "error", ("cdi_childes.json",)),
        Case("words_missing", "aoa_words", {}, "error", ("cdi_childes.json",)),
        Case("words_invalid_utf8", "aoa_words", {json_path: b'{"c\xffat": []}'}, "error", ("cdi_childes.json",)),
        Case("words_latin1", "aoa_words", {json_path: '{"caf\u00e9": []}'.encode("latin-1")}, "error",
             ("cdi_childes.json", "UTF-8")),
        Case("words_bom", "aoa_words", {json_path: b"\xef\xbb\xbf" + json.dumps(words).encode()}, "score"),
        Case("words_deep", "aoa_words", {json_path: b'{"cat": ' + b"[" * 5000 + b"]" * 5000 + b"}"}, "error",
             ("cdi_childes.json",)),
        Case("words_giant_int", "aoa_words", {json_path: b'{"cat": [], "dog": ' + b"9" * 5000 + b"}"}, "error",
             ("cdi_childes.json",)),
        Case("words_json_lines", "aoa_words", {json_path: b'{"cat": []}\n{"dog": []}\n'}, "error",
             ("cdi_childes.json:2:",)),
        Case("words_blank_word", "aoa_words", {json_path: b'{"cat": [], "  ": []}'}, "error", ("cdi_childes.json", "'  '")),
        Case("words_surrogate", "aoa_words", {json_path: b'{"cat": [], "\\ud800x": []}'}, "error",
             ("cdi_childes.json", "surrogate")),
        Case("words_contexts_not_a_list", "aoa_words", {json_path: b'{"cat": [], "dog": 3}'}, "error",
             ("cdi_childes.json", "'dog'")),
        Case("words_one_letter_only", "aoa_words", {json_path: b'{"a": [], "I": []}'}, "error", ("cdi_childes.json",)),
        Case("words_a_folder", "aoa_words", {json_path: None}, "error", ("cdi_childes.json",)),
        Case("cdi_ok", "aoa_cdi", {csv_path: _csv(cdi)}, "score"),
        Case("cdi_text", "aoa_cdi", {csv_path: cdi_cell("often")}, "error", ("cdi.csv:3:", "'18'")),
        Case("cdi_inf", "aoa_cdi", {csv_path: cdi_cell("inf")}, "error", ("cdi.csv:3:", "'18'")),
        Case("cdi_missing_age", "aoa_cdi", {csv_path: _csv([row[:-1] for row in cdi])}, "error", ("cdi.csv:1:", "30")),
        Case("cdi_short_row", "aoa_cdi", {csv_path: _csv([*cdi[:2], cdi[2][:-1], *cdi[3:]])}, "error", ("cdi.csv:3:",)),
        Case("cdi_upper_case", "aoa_cdi", {"aoa/CDI.CSV": _csv(cdi)}, "score"),
        Case("cdi_none", "aoa_cdi", {json_path: json.dumps(words).encode()}, "error", ("aoa", "*.csv")),
        Case("cdi_invalid_utf8", "aoa_cdi", {csv_path: _csv(cdi).replace(b"cat", b"c\xffat")}, "error", ("cdi.csv",)),
        Case("cdi_bom", "aoa_cdi", {csv_path: b"\xef\xbb\xbf" + _csv(cdi)}, "score"),
        Case("cdi_missing_value", "aoa_cdi", {csv_path: cdi_cell("NA")}, "score"),
        Case("cdi_two_files", "aoa_cdi", {csv_path: _csv(cdi), "aoa/cdi_human.csv": _csv(cdi)}, "error",
             ("cdi.csv", "cdi_human.csv")),
        Case("cdi_repeated_word", "aoa_cdi", {csv_path: _csv([*cdi, cdi[2]])}, "error", ("cdi.csv:7:", "'dog'", "line 3")),
        Case("cdi_blank_word", "aoa_cdi", {csv_path: _csv([*cdi[:2], [" ", *cdi[2][1:]], *cdi[3:]])}, "error",
             ("cdi.csv:3:", "'word'")),
        Case("cdi_above_one", "aoa_cdi", {csv_path: cdi_cell("1.5")}, "error", ("cdi.csv:3:", "'18'")),
        Case("cdi_negative", "aoa_cdi", {csv_path: cdi_cell("-0.1")}, "error", ("cdi.csv:3:", "'18'")),
        Case("cdi_header_only", "aoa_cdi", {csv_path: _csv(cdi[:1])}, "error", ("cdi.csv",)),
    ]


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = _reading_rows(Path(tmp))
    cases = field_cases(rng) + line_cases(rng) + format_specific_cases() + reading_cases(rows) + aoa_cases(rows)
    assert len({case.id for case in cases}) == len(cases)
    return cases


CASES = all_cases()
TASK_OF = {"reading": "reading", **{fmt: fmt for fmt in FORMATS if fmt != "glue"}}


def run(fmt: str, data: Path, model, tokenizer):
    if fmt == "glue":
        return load_split(data / "glue_filtered" if data.is_dir() else data, "rte", "train")
    if fmt == "aoa_words":
        return load_words(data / "aoa" / "cdi_childes.json")
    if fmt == "aoa_cdi":
        return load_cdi(data / "aoa")
    return evaluate_task(model, tokenizer, TASK_OF[fmt], data, alone=False, batch_size=16)


def write(root: Path, files: dict[str, bytes | None]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def clean_files(fmt: str, rows) -> dict[str, bytes]:
    if fmt == "reading":
        return {READING: _csv(rows)}
    spec = FORMATS[fmt]
    return {f"{spec.folder}/{spec.file}": _jsonl(_lines(spec.records))}


@pytest.fixture(scope="module")
def clean(model, tokenizer, tmp_path_factory):
    """Each format's result on its clean data."""
    rows = _reading_rows(tmp_path_factory.mktemp("rows"))
    results = {}
    for fmt in (*FORMATS, "reading"):
        root = tmp_path_factory.mktemp(fmt)
        write(root, clean_files(fmt, rows))
        results[fmt] = run(fmt, root, model, tokenizer)
    return results


def comparable(result):
    if isinstance(result, dict):
        return {key: result[key] for key in ("scores", "by_uid", "by_group", "n_items") if key in result}
    return result


def scored(result) -> bool:
    if isinstance(result, dict) and "scores" in result:
        return all(math.isfinite(v) for v in result["scores"].values()) and result["n_items"] > 0
    return bool(result)


PARAMS = [pytest.param(case, id=case.id) for case in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_data_scores_or_fails_with_a_named_one_line_error(case, model, tokenizer, clean, tmp_path):
    root = tmp_path / "data"
    write(root, case.files)
    before = snapshot(root)
    try:
        result = run(case.fmt, root / case.target if case.target else root, model, tokenizer)
    except (EvalDataError, ValueError) as err:
        message = str(err)
        assert case.expect == "error", f"valid data was refused: {message}"
        assert "\n" not in message and all(name in message for name in case.names), message
    else:
        assert case.expect != "error", f"bad data was accepted: {comparable(result)}"
        assert scored(result), result
        if case.expect == "same":
            assert comparable(result) == comparable(clean[case.fmt])
    assert snapshot(root) == before


def test_the_fuzz_covers_every_format_and_hundreds_of_inputs():
    formats = {case.fmt for case in CASES}
    assert formats == {*FORMATS, "reading", "aoa_words", "aoa_cdi"}
    assert len(CASES) >= 500 and sum(case.expect == "error" for case in CASES) >= 400
