"""Data preparation: corpus reading, cleaning filters, word budget, tokenizer, token blocks, manifest."""

import hashlib
import json
import logging

import numpy as np
import pytest
from transformers import AutoTokenizer

from babblelm.config import TRACK_WORDS, DataSection, TokenizerSection
from babblelm.data.blocks import load_blocks, token_dtype, write_blocks
from babblelm.data.corpus import DataError, ReadStats, read_lines
from babblelm.data.readers import discover
from babblelm.data.filters import FILTERS, FilterChain
from babblelm.data.prepare import DEV_EVERY, file_sha256, prepare_data
from babblelm.data.tokenizer import train_tokenizer
from conftest import BABYLIKE, demo_childes_lines

CHILDES = BABYLIKE / "childes.train"
N_CHILDES = 3000


@pytest.fixture(scope="module")
def childes_raw():
    """3000 CHILDES lines, each with a speaker tag: the shipped transcripts (with CHAT codes), then
    demo-grammar utterances."""
    shipped = list(read_lines(CHILDES))
    lines = shipped + demo_childes_lines(N_CHILDES - len(shipped), seed=3)
    assert len(lines) == N_CHILDES and len(shipped) > 200
    return lines


@pytest.fixture(scope="module")
def childes_clean(childes_raw):
    chain = FilterChain(["childes_speaker_tags"])
    return [out for line in childes_raw if (out := chain(line)) is not None]


@pytest.fixture(scope="module")
def tokenizer(childes_clean, tmp_path_factory):
    return train_tokenizer(childes_clean, vocab_size=800, min_frequency=2, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def corpus(childes_raw, tmp_path_factory):
    """A small BabyLM folder: two training sources (one with blank lines) and a dev file."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "childes.train").write_text("\n".join(childes_raw[:2500]) + "\n", encoding="utf-8")
    (folder / "childes.dev").write_text("\n".join(childes_raw[2500:]) + "\n", encoding="utf-8")
    wiki = ["= = = Cats = = =", "", "Cats are small animals .", "  ", "They like to sleep in the sun ."] * 40
    (folder / "wiki.train").write_text("\n".join(wiki) + "\n", encoding="utf-8")
    (folder / "wiki.test").write_text("not used\n", encoding="utf-8")
    return folder


def _prepare(folder, out_dir, **data):
    cfg = DataSection(corpus=str(folder), **{"seq_len": 64, **data})
    return prepare_data(cfg, TokenizerSection(vocab_size=600), out_dir, progress=False)


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    return out, _prepare(corpus, out)


# --- reading ---------------------------------------------------------------------------------


def test_read_lines_skips_and_counts_blank_lines(tmp_path):
    path = tmp_path / "a.train"
    path.write_bytes(b"\xef\xbb\xbfone two\n\n   \r\nthree\r\nfour")
    stats = ReadStats()
    assert list(read_lines(path, stats)) == ["one two", "three", "four"]
    assert (stats.lines, stats.empty_lines, stats.bytes) == (3, 2, path.stat().st_size)
    assert stats.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_find_sources_splits_by_suffix(corpus):
    files = {(f.split, f.path.name) for f in discover(corpus)}
    assert files == {("train", "childes.train"), ("train", "wiki.train"), ("dev", "childes.dev")}


def test_invalid_utf8_names_file_line_and_offset(tmp_path):
    path = tmp_path / "bad.train"
    path.write_bytes(b"fine line\nsecond \xff line\n")
    with pytest.raises(DataError, match=r"bad\.train:2: invalid UTF-8 at byte offset 17"):
        list(read_lines(path))


def test_binary_file_is_rejected(tmp_path):
    path = tmp_path / "blob.train"
    path.write_bytes(b"text\nab\x00\x01\x02\n")
    with pytest.raises(DataError, match=r"blob\.train:2: NUL byte at byte offset 7.*binary"):
        list(read_lines(path))


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="corpus folder not found"):
        discover(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no training files .*childes\.train.*empty folder"):
        discover(tmp_path)
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(DataError, match=r"no training files.*notes\.md"):
        discover(tmp_path)


# --- filters ---------------------------------------------------------------------------------


def test_speaker_tags_on_childes_lines(childes_raw, childes_clean):
    chain = FilterChain(["childes_speaker_tags"])
    cleaned = [chain(line) for line in childes_raw]
    report = chain.reports()["childes_speaker_tags"]
    # every CHILDES line carries exactly one tag word such as `*MOT:`
    assert report == {"lines_changed": N_CHILDES, "lines_removed": 0, "words_removed": N_CHILDES}
    assert cleaned == childes_clean
    for raw, out in zip(childes_raw, cleaned):
        assert raw.startswith("*") and not out.startswith("*")
        assert raw.split()[1:] == out.split()


def test_speaker_tags_forms_and_report():
    chain = FilterChain(["childes_speaker_tags"])
    lines = ["*FAT: look .", "A:\tuh , yes .", "B:\t", "*** Alice by Lewis Carroll ***", "A: ratio", "plain text"]
    assert [chain(line) for line in lines] == ["look .", "uh , yes .", None, *lines[3:]]
    assert chain.reports()["childes_speaker_tags"] == {"lines_changed": 2, "lines_removed": 1, "words_removed": 3}


def test_unknown_filter_lists_known_names():
    with pytest.raises(DataError, match="unknown data filter.*'nope'.*known filters.*childes_speaker_tags"):
        FilterChain(["childes_speaker_tags", "nope"])
    assert "childes_speaker_tags" in FILTERS


# --- tokenizer -------------------------------------------------------------------------------


def test_tokenizer_prepends_bos_and_round_trips(tokenizer, childes_clean):
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<bos>", "<eos>", "<pad>")] == [0, 1, 2]
    enc = tokenizer("what is that ?")
    assert enc.input_ids[0] == tokenizer.bos_token_id == 0
    assert list(enc) == ["input_ids", "attention_mask"]
    first = tokenizer.convert_ids_to_tokens(enc.input_ids[1])
    assert first.startswith("w") and not first.startswith("\u0120")  # no leading space (Ġ) on the first word
    for line in childes_clean[:300] + ["héllo wörld \U0001f600 text  with  spaces"]:
        ids = tokenizer(line).input_ids
        assert ids.count(0) == 1 and tokenizer.decode(ids, skip_special_tokens=True) == line


def test_tokenizer_reloads_with_autotokenizer(tokenizer, childes_clean, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = childes_clean[:50]
    assert loaded(texts).input_ids == tokenizer(texts).input_ids
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (0, 1, 2)
    assert loaded.model_input_names == ["input_ids", "attention_mask"]


# --- blocks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def letters_tokenizer(tmp_path_factory):
    return train_tokenizer(["a b c d e f"] * 50, 300, 2, tmp_path_factory.mktemp("letters"))


@pytest.mark.parametrize(
    "seq_len, words, dropped",
    [(4, [1, 2, 3], (0, 0)), (5, [1, 2], (2, 3)), (6, [1, 5], (0, 0)), (13, [], (12, 6))],
)
def test_block_word_credit_by_hand(letters_tokenizer, tmp_path, seq_len, words, dropped):
    # streams: [B a E] [B b c E] [B d e f E] -> 12 tokens, EOS at positions 2, 6 and 11
    lines = ["a", "b c", "d e f"]
    assert [len(e.ids) for e in letters_tokenizer.backend_tokenizer.encode_batch(lines, add_special_tokens=False)] == [1, 2, 3]
    stats = write_blocks(lines, letters_tokenizer, seq_len, tmp_path, "train")
    assert np.load(tmp_path / "train.words.npy").tolist() == words
    assert (stats.dropped_tokens, stats.dropped_words) == dropped
    assert (stats.tokens, stats.words, stats.blocks) == (12, 6, len(words))


@pytest.mark.parametrize("batch_lines", [1, 7, 100_000])
def test_blocks_match_reference_stream(tokenizer, childes_clean, tmp_path, batch_lines):
    lines, seq_len = childes_clean[:1000], 50
    stats = write_blocks(lines, tokenizer, seq_len, tmp_path, "dev", batch_lines=batch_lines)
    stream, credit = [], []
    for line in lines:  # reference: one line at a time
        stream += [0] + tokenizer(line, add_special_tokens=False).input_ids + [1]
        credit.append(((len(stream) - 1) // seq_len, len(line.split())))
    n_blocks = len(stream) // seq_len
    tokens = np.fromfile(tmp_path / "dev.bin", dtype=np.uint16).reshape(-1, seq_len)
    assert tokens.ravel().tolist() == stream[: n_blocks * seq_len]
    expected = np.zeros(n_blocks + 1, dtype=np.int64)
    for block, words in credit:
        expected[block] += words
    assert np.load(tmp_path / "dev.words.npy").tolist() == expected[:n_blocks].tolist()
    assert (stats.blocks, stats.dropped_tokens, stats.dropped_words) == (n_blocks, len(stream) % seq_len, expected[-1])


def test_token_dtype_boundary():
    assert token_dtype(16_000) == np.uint16 and token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.uint32


# --- prepare: accounting, budget, manifest, cache --------------------------------------------


def test_prepare_word_accounting(prepared, corpus):
    out, manifest = prepared
    train_in = {i["source"]: i for i in manifest["inputs"]["train"]}
    assert train_in["wiki"]["empty_lines"] == 80 and train_in["wiki"]["lines"] == 120
    assert train_in["wiki"]["words_raw"] == train_in["wiki"]["words_clean"]
    assert train_in["childes"]["words_raw"] - train_in["childes"]["words_clean"] == 2500  # one tag word per line
    clean_words = sum(i["words_clean"] for i in manifest["inputs"]["train"])
    for split in ("train", "dev"):
        blocks, stats = load_blocks(out, split), manifest["splits"][split]
        assert blocks.tokens.shape == (stats["blocks"], 64) and blocks.tokens.dtype == np.uint16
        assert int(blocks.words.sum()) + stats["dropped_words"] == stats["words"]
        assert blocks.tokens.size + stats["dropped_tokens"] == stats["tokens"]
        assert blocks.tokens[0, 0] == manifest["specials"]["<bos>"]
    assert manifest["splits"]["train"]["words"] == manifest["budget"]["words_used"] == clean_words
    assert manifest["splits"]["dev"]["words"] == manifest["inputs"]["dev"][0]["words_clean"]
    assert manifest["dev_source"] == "dev files" and manifest["dtype"] == "uint16"


def test_manifest_hashes_verify(prepared, corpus):
    out, manifest = prepared
    assert set(manifest["outputs"]) >= {"train.bin", "train.words.npy", "dev.bin", "dev.words.npy", "tokenizer/tokenizer.json"}
    for name, sha in manifest["outputs"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
    for record in manifest["inputs"]["train"] + manifest["inputs"]["dev"]:
        assert file_sha256(record["file"]) == record["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert AutoTokenizer.from_pretrained(out / "tokenizer")("hi").input_ids[0] == 0


def test_prepare_reuses_cache_and_rebuilds_on_change(corpus, tmp_path, caplog):
    first = _prepare(corpus, tmp_path)
    with caplog.at_level(logging.INFO, logger="babblelm.data.prepare"):
        assert _prepare(corpus, tmp_path) == first
    assert "reusing" in caplog.text
    (tmp_path / "train.words.npy").write_bytes(b"tampered")
    rebuilt = _prepare(corpus, tmp_path)
    assert rebuilt["outputs"] == first["outputs"]  # same data, deterministic outputs
    assert file_sha256(tmp_path / "train.words.npy") == first["outputs"]["train.words.npy"]
    assert _prepare(corpus, tmp_path, seq_len=32)["config_hash"] != first["config_hash"]


def test_budget_over_cap_errors(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(TRACK_WORDS, "strict-small", 1000)
    with pytest.raises(DataError, match=r"words, [\d,]+ over the strict-small budget of 1,000.*data\.max_words"):
        _prepare(corpus, tmp_path)
    manifest = _prepare(corpus, tmp_path, max_words=1000)  # a prefix within the cap is accepted
    assert manifest["budget"]["words_used"] <= 1000


def test_max_words_keeps_whole_lines_in_order(corpus, childes_clean, tmp_path):
    manifest = _prepare(corpus, tmp_path, max_words=5000, track="none", allocation="corpus_order")
    budget = manifest["budget"]
    cum = np.cumsum([len(line.split()) for line in childes_clean[:2500]])
    n_lines = int(np.searchsorted(cum, 5000, side="right"))  # childes.train comes first in corpus order
    assert (budget["lines_selected"], budget["words_selected"]) == (n_lines, cum[n_lines - 1])
    assert budget["words_left_out"] == budget["words_clean"] - budget["words_selected"] > 0
    assert budget["lines_left_out"] == budget["lines_clean"] - n_lines
    assert manifest["splits"]["train"]["lines"] == n_lines and budget["cap"] is None


def test_max_words_is_shared_by_the_sources_in_proportion_by_default(corpus, tmp_path):
    """The default allocation keeps the corpus's mix: every source gives its share of the budget."""
    from babblelm.data.prepare import format_allocation

    manifest = _prepare(corpus, tmp_path, max_words=5000, track="none")
    allocations = manifest["allocations"]
    assert manifest["budget"]["allocation"] == "proportional" and len(allocations) > 1
    available = sum(a["available"] for a in allocations.values())
    for name, a in allocations.items():
        assert a["quota"] == int(5000 * a["available"] / available) and 0 < a["words"] <= a["quota"], name
    assert 4500 < sum(a["words"] for a in allocations.values()) <= 5000
    text = format_allocation(manifest)
    assert text.startswith("sources (proportional allocation of 5,000 words):")
    assert all(f"{a['words']:,} words" in text for a in allocations.values())


def test_dev_carved_from_train_without_dev_files(childes_clean, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "kids.train").write_text("\n".join(childes_clean[:1234]) + "\n", encoding="utf-8")
    manifest = _prepare(folder, tmp_path / "out", filters=[])
    splits = manifest["splits"]
    assert splits["dev"]["lines"] == 1234 // DEV_EVERY and splits["train"]["lines"] == 1234 - 1234 // DEV_EVERY
    dev_lines = childes_clean[DEV_EVERY - 1 : 1234 : DEV_EVERY]
    assert splits["dev"]["words"] == sum(len(line.split()) for line in dev_lines)
    assert splits["train"]["words"] + splits["dev"]["words"] == manifest["budget"]["words_selected"]
    assert "every 100th" in manifest["dev_source"] and manifest["inputs"]["dev"] == []


def test_load_blocks_rejects_truncated_file(prepared, tmp_path):
    out, _ = prepared
    for name in ("manifest.json", "dev.bin", "dev.words.npy"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    with open(tmp_path / "dev.bin", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(DataError, match=r"dev\.bin: expected \d+ bytes .* found 100 bytes"):
        load_blocks(tmp_path, "dev")
    with pytest.raises(DataError, match="no split 'test'"):
        load_blocks(tmp_path, "test")
