"""The demo grammar: corpus files, held-out minimal pairs and their grammaticality."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from babblelm.data import synthetic as S

REQUIRED_KEYS = {"sentence_good", "sentence_bad", "field", "linguistics_term", "UID", "pairID"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    info = S.write_demo_corpus(out, 60_000, seed=3)
    return out, info


@pytest.fixture(scope="module")
def pairs(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    counts = S.write_minimal_pairs(out, pairs_per_phenomenon=120, seed=3)
    rows = {uid: [json.loads(line) for line in (out / f"{uid}.jsonl").read_text().splitlines()]
            for uid in counts}
    return counts, rows


def _strip(line):
    return S._TAG_RE.sub("", line, count=1)


def _write_both(out, seed):
    S.write_demo_corpus(out, 5_000, seed=seed)
    S.write_minimal_pairs(out / "pairs", 20, seed=seed)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    _write_both(tmp_path / "a", 7)
    _write_both(tmp_path / "c", 8)
    out_b = str(tmp_path / "b")
    script = f"from pathlib import Path; import test_synthetic as t; t._write_both(Path({out_b!r}), 7)"
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # another process, another string hash
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent, env=env, check=True)
    files = ["demo.train", "demo.dev", "pairs/sv_agreement_simple.jsonl"]
    read = lambda name, f: (tmp_path / name / f).read_bytes()
    assert all(read("a", f) == read("b", f) for f in files)
    assert all(read("a", f) != read("c", f) for f in files)


def test_word_counts_match_files_and_request(corpus):
    out, info = corpus
    lines = {split: (out / f"demo.{split}").read_text().splitlines() for split in ("train", "dev")}
    counted = {split: sum(len(_strip(line).split()) for line in lines[split]) for split in lines}
    assert counted == {"train": info["train_words"], "dev": info["dev_words"]}
    total = info["train_words"] + info["dev_words"]
    assert 60_000 <= total < 60_000 + 40
    assert 0.04 < info["dev_words"] / total < 0.06
    assert sorted(info["files"]) == sorted(str(out / f) for f in ("demo.dev", "demo.train"))


def test_speaker_tags_on_about_a_third_of_lines(corpus):
    lines = (corpus[0] / "demo.train").read_text().splitlines()
    tagged = [line[:6] for line in lines if line.startswith("*")]
    assert {"*MOT:\t", "*CHI:\t"} == set(tagged)
    assert 0.25 < len(tagged) / len(lines) < 0.35


def test_corpus_has_every_construction_the_pairs_test(corpus):
    text = " ".join(S.training_sentences(corpus[0]))
    for marker in (" does not ", " do not ", "yesterday ", " that ", " themselves ", " herself ", " these ",
                   " went ", " ?", " near "):
        assert marker in text, marker


def test_pair_files_shape(pairs):
    counts, rows = pairs
    assert len(counts) >= 6
    for uid, file_rows in rows.items():
        assert counts[uid] == len(file_rows) == 120
        assert [r["pairID"] for r in file_rows] == [str(i) for i in range(120)]
        assert len({r["sentence_good"] for r in file_rows}) == 120
        for r in file_rows:
            assert REQUIRED_KEYS <= set(r) and r["UID"] == uid
            good, bad = r["sentence_good"].split(), r["sentence_bad"].split()
            assert len(good) == len(bad) and sum(g != b for g, b in zip(good, bad)) == 1, r


def test_pair_sentences_never_in_training_text_and_use_its_vocabulary(corpus, pairs):
    seen = S.training_sentences(corpus[0])
    vocab = {word for line in seen for word in line.split()}
    for file_rows in pairs[1].values():
        for r in file_rows:
            assert r["sentence_good"] not in seen and r["sentence_bad"] not in seen
            assert set(r["sentence_good"].split()) <= vocab, r["sentence_good"]


def test_exclude_drops_pairs_and_still_fills_the_count(tmp_path, pairs):
    first = {uid: [r["sentence_good"] for r in file_rows[:30]] for uid, file_rows in pairs[1].items()}
    exclude = {s for goods in first.values() for s in goods}
    counts = S.write_minimal_pairs(tmp_path, pairs_per_phenomenon=120, seed=3, exclude=exclude)
    for uid in counts:
        rows = [json.loads(line) for line in (tmp_path / f"{uid}.jsonl").read_text().splitlines()]
        assert len(rows) == 120
        assert not exclude & {r["sentence_good"] for r in rows}


# --- grammaticality, checked against the lexicon's own features -----------------------------

NOUN_NUMBER = {**{n.sg: "sg" for n in S.NOUNS}, **{n.pl: "pl" for n in S.NOUNS},
               **dict.fromkeys(S.NAMES, "sg"), **{p: f[0] for p, f in S.SUBJECT_PRONOUNS.items()}}
GENDER = {**{n.sg: n.gender for n in S.NOUNS}, **{n.pl: n.gender for n in S.NOUNS}, **S.NAMES,
          **{p: f[1] for p, f in S.SUBJECT_PRONOUNS.items()}}
PRESENT = {**{v.s3: (v.base, "sg") for v in S.VERBS}, **{v.base: (v.base, "pl") for v in S.VERBS},
           "is": ("be", "sg"), "are": ("be", "pl")}
BY_PAST = {v.past: v for v in S.VERBS}
BY_BASE = {v.base: v for v in S.VERBS}


def _nominals(words):
    return [(i, w) for i, w in enumerate(words) if w in NOUN_NUMBER]


def _check_pair(uid, good, bad):
    i = next(k for k, (g, b) in enumerate(zip(good, bad)) if g != b)
    g, b = good[i], bad[i]
    head = _nominals(good)[0][1]
    number, gender = NOUN_NUMBER[head], GENDER[head]
    if uid.startswith("sv_agreement"):
        assert PRESENT[g] == (PRESENT[b][0], number) and PRESENT[b][1] != number
        if uid != "sv_agreement_simple":  # the noun nearest the verb is an attractor of the other number
            assert NOUN_NUMBER[[w for k, w in _nominals(good) if k < i][-1]] != number
    elif uid == "determiner_noun_agreement":
        noun = next(w for w in good[i + 1:] if w in NOUN_NUMBER)
        assert S.DETERMINERS[g] == NOUN_NUMBER[noun] != S.DETERMINERS[b]
    elif uid == "anaphor_number_agreement":
        assert S.REFLEXIVES[g][0] == number != S.REFLEXIVES[b][0]
    elif uid == "anaphor_gender_agreement":
        assert number == "sg" and S.REFLEXIVES[g][1] == gender != S.REFLEXIVES[b][1]
    elif uid == "irregular_past_tense":
        assert good[0] == "yesterday" and BY_PAST[g].irregular and b == BY_PAST[g].base
    elif uid in ("do_support_negation", "do_support_question"):
        aux = good[i - 2] if uid == "do_support_negation" else good[0]
        assert good[i - 1] == "not" or uid == "do_support_question"
        assert aux in ("did", "does" if number == "sg" else "do")
        assert b == (BY_BASE[g].past if aux == "did" else BY_BASE[g].s3)
    else:
        raise AssertionError(f"no grammaticality check for {uid}")


def test_good_sentences_agree_and_bad_ones_do_not(pairs):
    for uid, file_rows in pairs[1].items():
        for r in file_rows:
            _check_pair(uid, r["sentence_good"].split(), r["sentence_bad"].split())


def test_checker_rejects_a_swapped_pair():
    with pytest.raises(AssertionError):
        _check_pair("sv_agreement_simple", ["the", "dog", "run", "."], ["the", "dog", "runs", "."])


def test_lexicon_categories_do_not_overlap():
    nouns, verbs = set(NOUN_NUMBER), {f for v in S.VERBS for f in (v.base, v.s3, v.past, v.ing)}
    assert not nouns & verbs and not nouns & set(S.ADJECTIVES) and not nouns & set(S.DETERMINERS)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="words"):
        S.write_demo_corpus(tmp_path, 0)
    with pytest.raises(ValueError, match="dev_fraction"):
        S.write_demo_corpus(tmp_path, 100, dev_fraction=1.5)
    with pytest.raises(ValueError, match="pairs_per_phenomenon"):
        S.write_minimal_pairs(tmp_path, 0)
    with pytest.raises(FileNotFoundError, match="demo.train"):
        S.training_sentences(tmp_path / "missing")
