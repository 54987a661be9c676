"""BLiMP loading, its scoring through the suite (ties, macro average) and an end-to-end run on BLiMP-format files
(tests/data/blimp: original pairs in the official record layout, all four fields)."""

import json
from pathlib import Path

import pytest
from conftest import BLIMP, SHARED

from babblelm.eval.blimp import EvalDataError, MinimalPair, load_blimp
from babblelm.eval.tasks import Choice, evaluate_task, summarize
from babblelm.eval.scoring import sentence_logprobs

SHARED_BLIMP = SHARED / "eval" / "blimp"  # the 67 official files; only the `slow` test reads them
BLIMP_UIDS = ["anaphor_gender_agreement", "determiner_noun_agreement_1", "existential_there_quantifiers_1",
              "principle_A_c_command", "principle_A_case_2", "wh_questions_object_gap"]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_reads_sorted_files_with_defaults(tmp_path):
    record = {"sentence_good": "G2", "sentence_bad": "B2", "UID": "u2", "field": "syntax_semantics"}
    write_jsonl(tmp_path / "b_file.jsonl", [record])
    supplement = [{"sentence_good": "G1", "sentence_bad": "B1"}, "", {"sentence_good": "G3", "sentence_bad": "B3"}]
    write_jsonl(tmp_path / "a_supp.jsonl", supplement)
    (tmp_path / "notes.txt").write_text("ignored")
    assert load_blimp(tmp_path) == [
        MinimalPair("G1", "B1", uid="a_supp", field="supplement"),
        MinimalPair("G3", "B3", uid="a_supp", field="supplement"),
        MinimalPair("G2", "B2", uid="u2", field="syntax/semantics"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"sentence_good": "a", "sentence_bad": ', r"bad\.jsonl:2: malformed JSON"),
        ('["a", "b"]', r"bad\.jsonl:2: expected a JSON object"),
        ('{"sentence_good": "a"}', r"bad\.jsonl:2: missing field 'sentence_bad'"),
        ('{"sentence_good": 3, "sentence_bad": "b"}', r"bad\.jsonl:2: field 'sentence_good' must be a string, got int"),
        ('{"sentence_good": "a", "sentence_bad": "b", "UID": null}', r"bad\.jsonl:2: field 'UID' must be a string"),
        ('{"sentence_good": "a", "sentence_bad": "b", "field": 1}', r"bad\.jsonl:2: field 'field' must be a string"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, line, expected):
    write_jsonl(tmp_path / "bad.jsonl", [{"sentence_good": "a", "sentence_bad": "b"}, line])
    with pytest.raises(EvalDataError, match=expected):
        load_blimp(tmp_path)


def test_bad_folders_and_files_are_named(tmp_path):
    with pytest.raises(EvalDataError, match="missing.*not found"):
        load_blimp(tmp_path / "missing")
    with pytest.raises(EvalDataError, match=r"no \*\.jsonl files"):
        load_blimp(tmp_path)
    write_jsonl(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(EvalDataError, match=r"empty\.jsonl: empty file"):
        load_blimp(tmp_path)
    (tmp_path / "empty.jsonl").write_bytes(b'{"sentence_good": "\xff"}\n')
    with pytest.raises(EvalDataError, match=r"empty\.jsonl: not UTF-8"):
        load_blimp(tmp_path)


def test_every_data_file_is_read_or_named(tmp_path):
    """`.jsonl` and `.json` files of any case are read as JSON lines; hidden files (macOS `._x.jsonl`)
    and notes are ignored; a file that looks like data but is not read is an error, never skipped."""
    write_jsonl(tmp_path / "A.JSONL", [{"sentence_good": "G1", "sentence_bad": "B1"}])
    write_jsonl(tmp_path / "b.json", [{"sentence_good": "G2", "sentence_bad": "B2", "UID": "u"}])
    (tmp_path / "._A.JSONL").write_bytes(b"\x00\x05\x16\x07\xff")
    (tmp_path / "README.md").write_text("notes")
    assert [(p.uid, p.good) for p in load_blimp(tmp_path)] == [("A", "G1"), ("u", "G2")]
    write_jsonl(tmp_path / "c.tsv", ["G3\tB3"])
    with pytest.raises(EvalDataError, match=r"c\.tsv: looks like data but is not read"):
        load_blimp(tmp_path)


def _choices(pairs):
    return [Choice((("", p.good), ("", p.bad)), p.uid, p.field) for p in pairs]


def test_ties_count_as_the_rules_say():
    pairs = [MinimalPair("a", "b", "u", "f")] * 3
    scores = [[-1.0, -1.0], [-2.0, -1.0], [-3.0, -4.0]]  # a tie, worse, better
    assert summarize("blimp", _choices(pairs), scores, "2025")["by_uid"] == {"u": pytest.approx(200 / 3)}
    assert summarize("blimp", _choices(pairs), scores, "2026")["by_uid"] == {"u": pytest.approx(150 / 3)}


def test_accuracy_is_macro_over_uids():
    pairs = [MinimalPair("g", "b", "small", "morphology")] + [MinimalPair("g", "b", "large", "syntax")] * 3
    scores = [[0.0, -1.0]] + [[-1.0, 0.0]] * 3  # "small" all right, "large" all wrong
    result = summarize("blimp", _choices(pairs), scores, "2026")
    assert result["by_uid"] == {"large": 0.0, "small": 100.0}
    assert result["scores"]["blimp"] == 50.0  # micro over pairs would be 25.0
    assert result["by_group"] == {"morphology": 100.0, "syntax": 0.0}


def test_identical_sentences_tie_end_to_end(model, tokenizer, tmp_path):
    records = [{"sentence_good": s, "sentence_bad": s, "UID": "same"} for s in ["The cat sat.", "Who ran?", "A dog."]]
    write_jsonl(tmp_path / "same.jsonl", records)
    for batch_size in (1, 2):
        result = evaluate_task(model, tokenizer, "blimp", tmp_path, batch_size=batch_size, rules="2025")
        assert result["by_uid"] == {"same": 100.0}


def test_evaluate_on_blimp_files(model, tokenizer):
    # 8 pairs for each of 6 UIDs; fields spelled "syntax_semantics" and "syntax/semantics" both group as the latter
    result = evaluate_task(model, tokenizer, "blimp", BLIMP, batch_size=16)

    assert result["task"] == "blimp" and result["n_items"] == 48 and result["seconds"] > 0
    assert sorted(result["by_uid"]) == BLIMP_UIDS
    assert sorted(result["by_group"]) == ["morphology", "semantics", "syntax", "syntax/semantics"]
    assert result["scores"]["blimp"] == pytest.approx(sum(result["by_uid"].values()) / 6)
    pairs = load_blimp(BLIMP)
    assert [p.uid for p in pairs] == [uid for uid in BLIMP_UIDS for _ in range(8)]
    scores = sentence_logprobs(model, tokenizer, [p.good for p in pairs] + [p.bad for p in pairs], batch_size=7)
    expected = summarize("blimp", _choices(pairs), [list(pair) for pair in zip(scores[:48], scores[48:])])
    assert result["by_uid"] == pytest.approx(expected["by_uid"])  # other batches and order, same verdicts
    assert result["by_group"] == pytest.approx(expected["by_group"])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_BLIMP.is_dir(), reason="shared BLiMP data not present")
def test_shared_blimp_folder_loads():
    pairs = load_blimp(SHARED_BLIMP)
    assert len(pairs) == 67000 and len({p.uid for p in pairs}) == 67
    assert {p.field for p in pairs} == {"morphology", "syntax", "semantics", "syntax/semantics"}
