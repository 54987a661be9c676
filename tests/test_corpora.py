"""Real corpora: readers, cleaning filters on lines in the babylike corpus's formats, mixing, budgets,
recipes, audit and stats (on tests/data/babylike, a miniature corpus in the babylike_10M layout)."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from babblelm.cli import main
from babblelm.config import load_config
from babblelm.data.audit import audit
from babblelm.data import corpus
from babblelm.data.corpus import DataError, ReadStats, read_lines
from babblelm.data.filters import FilterChain, chain_names
from babblelm.data.quotas import allocate, round_robin, take_within
from babblelm.data.prepare import prepare_data
from babblelm.data.readers import CorpusFile, discover, read_text, scan_corpus
from babblelm.data.stats import format_stats, source_stats

from conftest import BABYLIKE

REPO = Path(__file__).resolve().parents[1]


def clean(names, lines, **params):
    chain = FilterChain(chain_names(names, params.get("min_words", 0), params.get("max_per_book")), params)
    return [chain(line) for line in lines], chain.reports()


# --- filters, on lines as they appear in babylike_10M (SOURCES.md) and BabyLM releases ---------


def test_chat_annotations_on_childes_lines():
    lines = {
        "*MOT:\tyou like that one (.) don't cha [: you] ?": "you like that one don't you ?",
        "*CHI:\towie@c [: orange] .": "orange .",
        "*MOT:\t<should we put> [//] should we make a bed+room ?": "should we put should we make a bedroom ?",
        "*CHI:\the [<] [/] he 0is [*] dirty .": "he he dirty .",
        "*MOT:\tdo you know &+wh +...": "do you know",
        "*MOT:\toh [% thinking] (.) everybody's asleep ?": "oh everybody's asleep ?",
        "*CHI:\tye(a)h .": "yeah .",
        "*CHI:\t&-uh .": "uh .",
        "*MOT:\thm: (.) try again .": "hm try again .",
        "*MOT:\tthank_you .": "thank you .",
        "*MOT:\tcrash@o (.) crash@o .": "crash crash .",
        "*CHI:\twhat does doggie <s(ay)> [/] says [*] ?": "what does doggie say says ?",
        "*CHI:\txxx .": None,
        "*CHI:\t0 [=! sighs] .": None,
        "*MOT:\t&=laughs .": None,
        "*MOT:\tthere you go .": "there you go .",
        "B:\t+≈ °that's not ⁎good⁎°→": "that's not good",  # CallFriend CA transcript in switchboard
    }
    out, report = clean(["childes_speaker_tags", "chat_annotations"], list(lines))
    assert out == list(lines.values())
    assert report["chat_annotations"]["lines_removed"] == 3
    assert report["childes_speaker_tags"] == {"lines_changed": len(lines), "lines_removed": 0, "words_removed": len(lines)}


def test_wiki_headers_and_doc_markup():
    lines = ['<doc id="20373314" url="http://en.wikipedia.org/wiki?curid=20373314" title="Immigration to Barbados">',
             "Immigration to Barbados", "In more recent history Barbados is experiencing immigration.", "</doc>",
             "= = = Lower Savage Islands = = =", "The Lower Savage Islands are an island group.", "== History ==",
             "Biography."]  # fmt: skip
    out, report = clean(["wiki_doc_markup", "wiki_headers"], lines)
    assert [x for x in out if x] == [lines[2], lines[5], "Biography."]
    assert report["wiki_doc_markup"]["lines_removed"] == 3 and report["wiki_headers"]["lines_removed"] == 2


def test_html_tags_keep_chat_scopes():
    lines = ["Edited by <sc>SIDNEY LANIER</sc>, and richly illustrated.", "Tom &amp; Jerry<br/>ran.",
             "<should we put> it here", '<font color="#ffffff">Hello</font>', "<p></p>"]  # fmt: skip
    out, report = clean(["html_tags"], lines)
    assert out == ["Edited by SIDNEY LANIER , and richly illustrated.", "Tom & Jerry ran.", lines[2], "Hello", None]
    assert report["html_tags"]["lines_changed"] == 3 and report["html_tags"]["lines_removed"] == 1


def test_subtitle_format():
    lines = ["- Are you okay? - Yeah.", "00:01:02,345 --> 00:01:04,000", "1523", "[MUSIC PLAYING]",
             "♪ Happy birthday to you ♪", "(DOOR SLAMS) Who's there?", "{\\an8}Previously on...", "Well - maybe."]  # fmt: skip
    out, _ = clean(["subtitle_format"], lines)
    assert out == ["Are you okay? Yeah.", None, None, None, "Happy birthday to you", "Who's there?", "Previously on...", "Well - maybe."]


def test_tinystories_openers():
    lines = ["Once upon a time, there was a little girl named Lily.", "One day, she saw a big red ball.",
             "<|endoftext|>", "The dog ran home."]  # fmt: skip
    out, report = clean(["tinystories_openers"], lines)
    assert out == ["A little girl named Lily.", "She saw a big red ball.", None, "The dog ran home."]
    assert report["tinystories_openers"] == {"lines_changed": 2, "lines_removed": 1, "words_removed": 9}


def test_min_words_max_per_book_and_headers():
    book = ["*** The Blue Fairy Book by Andrew Lang ***", "THE BLUE FAIRY BOOK", "Once upon a time a king lived.",
            "He was sad.", "*** Peter Pan by J. M. Barrie ***", "All children, except one, grow up."]  # fmt: skip
    out, report = clean(["book_headers"], book, max_per_book=2, min_words=5)
    assert out == [None, None, "Once upon a time a king lived.", None, None, "All children, except one, grow up."]
    assert list(report) == ["max_per_book", "book_headers", "min_words"]
    assert report["max_per_book"]["lines_removed"] == 1 and report["book_headers"]["lines_removed"] == 2
    assert report["min_words"]["lines_removed"] == 1  # "THE BLUE FAIRY BOOK"


def test_normalize_and_dedup():
    out, report = clean(["normalize", "exact_dedup"], ["ﬁne\u200b  day\t!", "fine day !", "  ", "fine day ."])
    assert out == ["fine day !", None, None, "fine day ."]
    assert report["exact_dedup"]["lines_removed"] == 1


def test_filters_on_childes_corpus_lines():
    raw = list(read_lines(BABYLIKE / "childes.train"))  # transcripts with CHAT codes, as in babylike_10M
    out, report = clean(["childes_speaker_tags", "chat_annotations"], raw)
    kept = [x for x in out if x]
    assert report["chat_annotations"]["lines_changed"] > 0 and report["chat_annotations"]["lines_removed"] > 0
    assert not any(code in x for x in kept for code in ("[", "(.)", "&-", "xxx", "@", "+..."))
    assert sum(len(x.split()) for x in kept) == sum(len(x.split()) for x in raw) - sum(r["words_removed"] for r in report.values())


# --- readers and bad input -------------------------------------------------------------------


def test_discover_formats_and_babylm_names(tmp_path):
    (tmp_path / "aochildes.train").write_text("*MOT:\thi .\n")
    (tmp_path / "simple_wikipedia.dev").write_text("x\n")
    (tmp_path / "stories.jsonl").write_text('{"text": "a b"}\n')
    (tmp_path / "extra.test").write_text("never read\n")
    (tmp_path / "wiki" / "AA").mkdir(parents=True)
    (tmp_path / "wiki" / "AA" / "wiki_00").write_text('<doc id="1" url="u" title="T">\nT\n\nBody text.\n</doc>\n')
    (tmp_path / "eve").mkdir()
    (tmp_path / "eve" / "eve01.cha").write_text("@Begin\n*MOT:\tlook at\n\tthat .\n%mor:\tv|look\n@End\n")
    found = {(f.source, f.split, f.fmt, f.path.name) for f in discover(tmp_path)}
    assert found == {("childes", "train", "lines", "aochildes.train"), ("simple_wiki", "dev", "lines", "simple_wikipedia.dev"),
                     ("stories", "train", "jsonl", "stories.jsonl"), ("wiki", "train", "wikiextractor", "wiki_00"),
                     ("eve", "train", "chat", "eve01.cha")}  # fmt: skip
    texts = {f.fmt: list(read_text(f, ReadStats())) for f in discover(tmp_path)}
    assert texts["chat"] == ["*MOT:\tlook at that ."] and texts["wikiextractor"] == ["Body text."]


def test_chat_reader_on_cha_transcript(tmp_path):
    cha = tmp_path / "t.cha"
    cha.write_text("@UTF8\n@Begin\n@Participants:\tCHI Eve Target_Child\n*CHI:\tmore cookie .\x1512_15\x15\n"
                   "%mor:\tqn|more n|cookie .\n*MOT:\tyou <want> [/] want\n\tanother cookie ?\n%com:\tlaughs\n@End\n")  # fmt: skip
    assert list(read_text(CorpusFile(cha, "c", "train", "chat"), ReadStats())) == ["*CHI:\tmore cookie .", "*MOT:\tyou <want> [/] want another cookie ?"]


def test_jsonl_field_and_bad_json(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"story": "One day.\\n\\nThe end."}\n\n{"story": "x"\n')
    lines = read_text(CorpusFile(path, "s", "train", "jsonl"), ReadStats(), text_field="story")
    assert next(lines) == "One day." and next(lines) == "The end."
    with pytest.raises(DataError, match=r"s\.jsonl:3: not valid JSON .*'story'"):
        next(lines)
    path.write_text('{"content": "x"}\n')
    with pytest.raises(DataError, match=r"s\.jsonl:1: expected a string field 'text'.*\['content'\]"):
        list(read_text(CorpusFile(path, "s", "train", "jsonl"), ReadStats()))


def test_long_line_skipped_and_counted(tmp_path):
    path = tmp_path / "a.train"
    path.write_bytes(b"short one\n" + b"w " * 3_000_000 + b"\nlast line\n")
    stats = ReadStats()
    assert list(read_lines(path, stats, max_line_bytes=10_000)) == ["short one", "last line"]
    assert (stats.long_lines, stats.long_line_numbers, stats.bytes) == (1, [2], path.stat().st_size)


def _corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "childes.train").write_text("*MOT:\tlook at the big dog now .\n*CHI:\txxx .\n" * 150)
    (folder / "wiki.train").write_text("= = = Dogs = = =\nDogs are animals that many people keep at home .\n" * 150)
    (folder / "empty.train").write_text("")
    (folder / "long.train").write_bytes(b"a " * 20_000 + b"\nshort but fine line here .\n")
    return folder


def test_prepare_records_skips_and_warnings(tmp_path):
    folder = _corpus(tmp_path)
    raw = {"data": {"corpus": str(folder), "seq_len": 16, "max_line_bytes": 1000,
                    "filters": ["childes_speaker_tags", "chat_annotations", "wiki_headers"]}, "tokenizer": {"vocab_size": 300}}  # fmt: skip
    cfg = load_config(raw=raw)
    m = prepare_data(cfg.data, cfg.tokenizer, tmp_path / "out", progress=False)
    inputs = {r["source"]: r for r in m["inputs"]["train"]}
    assert inputs["long"]["long_lines"] == 1 and inputs["long"]["lines_clean"] == 1
    assert inputs["empty"]["bytes"] == 0
    assert any("empty file" in w for w in m["warnings"]) and any("line(s) [1]" in w for w in m["warnings"])
    assert inputs["childes"]["filters"]["chat_annotations"]["lines_removed"] == 150
    assert audit(tmp_path / "out")["ok"]


# --- every file and line accounted for ------------------------------------------------------


def _prepare_small(folder, out, **data):
    raw = {"data": {"corpus": str(folder), "seq_len": 16, "filters": ["childes_speaker_tags"], **data},
           "tokenizer": {"vocab_size": 300}}  # fmt: skip
    cfg = load_config(raw=raw)
    return prepare_data(cfg.data, cfg.tokenizer, out, progress=False)


def test_every_corpus_file_is_used_or_listed_with_a_reason(tmp_path, caplog):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "Gutenberg.TXT").write_text("The cat sat on the mat .\n" * 60)
    (folder / "childes.valid").write_text("*MOT:\tlook at that .\n" * 20)
    (folder / "stories.JSONL").write_text('{"text": "a dog ran"}\n')
    (folder / "notes.md").write_text("about this corpus\n")
    (folder / "childes.test").write_text("never read\n")
    (folder / "blank.train").write_text("  \n\t\n")
    (folder / "headers.cha").write_text("@UTF8\n@Begin\n@Participants:\tCHI Eve Target_Child\n@End\n")
    (folder / "gone.train").symlink_to(folder / "missing.train")
    (folder / "._childes.train").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (folder / "old").mkdir()
    with caplog.at_level(logging.WARNING, logger="babblelm.data.prepare"):
        m = _prepare_small(folder, tmp_path / "out")
    used = {(r["source"], r["split"], Path(r["file"]).name) for split in m["inputs"].values() for r in split}
    assert {("gutenberg", "train", "Gutenberg.TXT"), ("childes", "dev", "childes.valid"), ("stories", "train", "stories.JSONL")} <= used
    skipped = {Path(s["file"]).name: s["reason"] for s in m["skipped_files"]}
    assert set(skipped) == {"notes.md", "childes.test", "blank.train", "headers.cha", "gone.train", "._childes.train", "old"}
    assert "unrecognised" in skipped["notes.md"] and "test split" in skipped["childes.test"]
    assert "only blank lines" in skipped["blank.train"] and "dangling symbolic link" in skipped["gone.train"]
    assert "no text" in skipped["headers.cha"] and "4 chat_headers" in skipped["headers.cha"]
    assert "hidden" in skipped["._childes.train"] and "empty folder" in skipped["old"]
    assert "5 file(s) under" in caplog.text and "; notes.md (unrecognised" in caplog.text
    assert "blank.train: not used: only blank lines" in caplog.text
    with caplog.at_level(logging.WARNING, logger="babblelm.data.prepare"):
        _prepare_small(folder, tmp_path / "out")  # reused, as a command that prepares twice does: said once
    assert caplog.text.count("5 file(s) under") == caplog.text.count("blank.train: not used") == 1
    assert audit(tmp_path / "out")["ok"]
    (folder / "later.csv").write_text("a,b\n")
    report = audit(tmp_path / "out")
    assert not report["ok"] and any(name == "corpus files accounted for" and not ok and "later.csv" in detail
                                    for name, ok, detail in report["checks"])  # fmt: skip
    again = _prepare_small(folder, tmp_path / "out")  # a new entry: prepared again, and listed
    assert "later.csv" in {Path(s["file"]).name for s in again["skipped_files"]} and audit(tmp_path / "out")["ok"]


def test_fifo_and_symlink_loop_are_listed_not_read(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "books").mkdir(parents=True)
    (folder / "books" / "a.txt").write_text("one two three four five six .\n" * 50)
    (folder / "books" / "again").symlink_to(folder / "books")  # a loop
    (folder / "books" / "root").symlink_to("/")  # holds the corpus folder: a loop too
    (folder / "books" / "copy.txt").symlink_to(folder / "books" / "a.txt")  # the same file twice
    (folder / "self.train").symlink_to(folder / "self.train")
    os.mkfifo(folder / "pipe.train")
    found, skipped = scan_corpus(folder)
    assert [f.path.name for f in found] == ["a.txt"]
    reasons = {p.name: r for p, r in skipped}
    assert all("symbolic link loop" in reasons[name] for name in ("again", "root", "self.train"))
    assert "same file as" in reasons["copy.txt"] and "not a regular file" in reasons["pipe.train"]


def test_links_leading_outside_the_corpus_are_listed_with_their_target(tmp_path, caplog):
    outside = tmp_path / "elsewhere"
    (outside / "more").mkdir(parents=True)
    (outside / "secret.txt").write_text("one two three four five six .\n" * 40)
    (outside / "more" / "b.txt").write_text("seven eight nine ten .\n" * 40)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.train").write_text("one two three four five six .\n" * 50)
    (folder / "linked.train").symlink_to(outside / "secret.txt")
    (folder / "books").symlink_to(outside / "more")  # a folder link leading out
    with caplog.at_level(logging.WARNING, logger="babblelm.data.prepare"):
        m = _prepare_small(folder, tmp_path / "out")
    real = os.path.realpath
    assert m["outside_links"] == [{"file": str(folder / "books" / "b.txt"), "target": real(outside / "more" / "b.txt")},
                                  {"file": str(folder / "linked.train"), "target": real(outside / "secret.txt")}]
    targets = {Path(r["file"]).name: r.get("target") for r in m["inputs"]["train"]}
    assert targets == {"a.train": None, "b.txt": real(outside / "more" / "b.txt"), "linked.train": real(outside / "secret.txt")}
    assert f"2 corpus file(s) are links to files outside {folder}" in caplog.text
    assert f"{folder / 'linked.train'} -> {real(outside / 'secret.txt')}" in caplog.text


def test_output_folder_inside_the_corpus_is_not_read(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.train").write_text("one two three four five six .\n" * 50)
    _prepare_small(folder, folder / "prepared")
    m = _prepare_small(folder, folder / "prepared", seq_len=32)
    assert [r["file"] for r in m["inputs"]["train"]] == [str(folder / "a.train")]
    assert {Path(s["file"]).name: s["reason"] for s in m["skipped_files"]} == {"prepared": "the output folder of this preparation"}
    with pytest.raises(DataError, match="must not contain the corpus folder"):
        _prepare_small(folder, tmp_path)


def test_chat_reader_drops_and_counts_malformed_tiers(tmp_path):
    cha = tmp_path / "t.cha"
    cha.write_text("@Begin\n*MOT look at that .\n*CHI:\tmore cookie .\n*CHI:nope .\n\tstill nope\nplain text\n"
                   "%mor:\tqn|more\n*FAT:\tgood .\n@End\n")  # fmt: skip
    stats = ReadStats()
    assert list(read_text(CorpusFile(cha, "c", "train", "chat"), stats)) == ["*CHI:\tmore cookie .", "*FAT:\tgood ."]
    assert stats.dropped == {"chat_headers": 2, "chat_malformed": 4, "chat_dependent_tiers": 1}
    assert stats.dropped_at["chat_malformed"] == [2, 4, 5, 6]


def test_speaker_tags_drop_malformed_chat_tiers():
    out, report = clean(["childes_speaker_tags"], ["*MOT look at that .", "*CHI:nope", "*MOT:\tfine .", "*** A Book ***"])
    assert out == [None, None, "fine .", "*** A Book ***"]
    assert report["childes_speaker_tags"]["lines_removed"] == 2


def test_control_characters_removed_and_counted(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a\\u0000b"}\n{"text": "\\u0001\\u0002"}\n{"text": "fine\\ttext"}\n')
    stats = ReadStats()
    assert list(read_text(CorpusFile(path, "s", "train", "jsonl"), stats)) == ["a b", "fine\ttext"]
    assert stats.control_chars == 3 and stats.dropped_at["control_chars"] == [1, 2]
    assert stats.dropped == {"control_only": 1}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "s.jsonl").write_text('{"text": "one two three \\u0000 four five six ."}\n' * 40)
    m = _prepare_small(tmp_path / "c", tmp_path / "out", filters=[])
    assert "\0" not in (tmp_path / "out" / m["inputs"]["train"][0]["clean_file"]).read_text()
    assert any("s.jsonl: removed 40 control character(s)" in w and "line(s) [1, 2, 3" in w for w in m["warnings"])


def test_lone_surrogate_in_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\ud800 half"}\n')
    with pytest.raises(DataError, match=r"s\.jsonl:2: invalid Unicode: lone surrogate U\+D800 in field 'text'"):
        list(read_text(CorpusFile(path, "s", "train", "jsonl"), ReadStats()))


def test_jsonl_wrong_types_name_file_line_and_what_was_expected(tmp_path):
    path = tmp_path / "s.jsonl"
    expected = {"[1, 2]": r"expected one JSON object per line .*, found an array",
                '{"text": 5}': r"expected a string field 'text' \(data.text_field\), found a number",
                "[" * 30_000: r"not usable JSON \(RecursionError: .*\); expected one JSON object",
                '{"n": 1%s}' % ("0" * 5000): r"not usable JSON \(ValueError: .*\); expected one JSON object"}  # fmt: skip
    for line, pattern in expected.items():
        path.write_text('{"text": "fine"}\n' + line + "\n")
        with pytest.raises(DataError, match=r"s\.jsonl:2: " + pattern):
            list(read_text(CorpusFile(path, "s", "train", "jsonl"), ReadStats()))


def test_unreadable_file_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match=r"^\S+: cannot read \(Is a directory\); expected a readable UTF-8 text file$"):
        list(read_lines(tmp_path))


def test_byte_order_marks_where_files_were_joined(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "one"}\n \xef\xbb\xbf \n\xef\xbb\xbf{"text": "two"}\n')
    stats = ReadStats()
    assert list(read_text(CorpusFile(path, "s", "train", "jsonl"), stats)) == ["one", "two"]
    assert (stats.lines, stats.empty_lines) == (2, 1)


def test_cr_only_line_endings_are_line_breaks(tmp_path, monkeypatch):
    path = tmp_path / "mac.train"
    path.write_bytes(b"one two\rthree\r\rfour\r\nfive\r")
    stats = ReadStats()
    assert list(read_lines(path, stats, max_line_bytes=100)) == ["one two", "three", "four", "five"]
    assert (stats.lines, stats.empty_lines, stats.long_lines, stats.bytes) == (4, 1, 0, path.stat().st_size)
    path.write_bytes(b"word word\r" * 50_000)  # 500 KB in CR-only lines, each well under the limit
    assert len(list(read_lines(path, max_line_bytes=1000))) == 50_000
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 3)  # line ends and long lines split between reads
    path.write_bytes(b"ab\r\ncd\r\nlong line here\r\nx\rxy\n")
    stats = ReadStats()
    assert list(read_lines(path, stats, max_line_bytes=5)) == ["ab", "cd", "x", "xy"]
    assert (stats.long_lines, stats.long_line_numbers, stats.empty_lines) == (1, [3], 0)
    path.write_bytes(b"\xef\xbb\xbfab\xff\r")
    with pytest.raises(DataError, match=r"mac\.train:1: invalid UTF-8 at byte offset 5"):
        list(read_lines(path))


# --- mixing and budgets ----------------------------------------------------------------------


def test_allocate_modes():
    avail = {"a": 600, "b": 300, "c": 100}
    assert allocate(avail, 300, "equal") == {"a": 100, "b": 100, "c": 100}
    assert allocate(avail, 500, "proportional") == {"a": 300, "b": 150, "c": 50}
    assert allocate(avail, 400, "weighted", weights={"a": 3, "b": 1, "c": 0}) == {"a": 300, "b": 100, "c": 0}
    assert allocate(avail, 700, "corpus_order") == {"a": 600, "b": 100, "c": 0}
    assert allocate(avail, None, "equal") == {"a": None, "b": None, "c": None}
    assert allocate(avail, None, "listed", listed={"a": 5, "b": 6, "c": 7}) == {"a": 5, "b": 6, "c": 7}
    with pytest.raises(DataError, match=r"listed.*missing: \['c'\]"):
        allocate(avail, None, "listed", listed={"a": 5, "b": 6})


def test_take_within_and_round_robin():
    lines = ["one two", "three", "four five six"]
    assert list(take_within(lines, 3, "words")) == lines[:2]
    assert list(take_within(lines, 14, "bytes")) == lines[:2]  # 8 + 6 bytes with newlines
    assert list(round_robin([iter("ab"), iter("wxyz"), iter("")])) == ["a", "w", "b", "x", "y", "z"]


def test_equal_byte_mixing_prepares_and_adds_up(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    for name, word in (("a", "apple"), ("b", "banana"), ("c", "cherry")):
        (folder / f"{name}.train").write_text("".join(f"{word} {i} is here .\n" for i in range(2000)))
    cfg = load_config(raw={"data": {"corpus": str(folder), "filters": [], "max_bytes": 6000, "allocation": "equal",
                                    "order": "round_robin", "seq_len": 16}, "tokenizer": {"vocab_size": 300}})  # fmt: skip
    m = prepare_data(cfg.data, cfg.tokenizer, tmp_path / "out", progress=False)
    for alloc in m["allocations"].values():
        assert alloc["quota"] == 2000 and 2000 - 20 < alloc["bytes"] <= 2000
    first = (tmp_path / "out" / "clean" / "train").iterdir()
    assert sum(1 for _ in first) == 3
    assert m["splits"]["train"]["words"] + m["splits"]["dev"]["words"] == sum(a["words"] for a in m["allocations"].values())


# --- recipes on the babylike corpus, audit, stats, CLI ---------------------------------------

SOURCES = ("childes", "gutenberg", "simple_wiki", "switchboard", "bnc_spoken")


@pytest.fixture(scope="module")
def babylike_small(tmp_path_factory):
    """A copy of tests/data/babylike: five sources, train and dev."""
    out = tmp_path_factory.mktemp("babylike")
    for src in SOURCES:
        for split in ("train", "dev"):
            shutil.copyfile(BABYLIKE / f"{src}.{split}", out / f"{src}.{split}")
    return out


@pytest.mark.parametrize("recipe", ["data-streammixer.yaml", "data-blalm.yaml"])
def test_recipes_prepare_and_manifest_adds_up(recipe, babylike_small, tmp_path):
    cfg = load_config(REPO / "configs" / recipe, [f"data.corpus={babylike_small}", "data.seq_len=64", "tokenizer.vocab_size=500"])
    m = prepare_data(cfg.data, cfg.tokenizer, tmp_path, progress=False)
    for split, recs in m["inputs"].items():
        for rec in recs:  # raw words - every filter's removals = cleaned words, for every file
            assert rec["words_raw"] - sum(f["words_removed"] for f in rec["filters"].values()) == rec["words_clean"]
            assert rec["lines"] - sum(f["lines_removed"] for f in rec["filters"].values()) == rec["lines_clean"]
        for name, src in m["sources"][split].items():
            assert src["words_clean"] == sum(r["words_clean"] for r in recs if r["source"] == name)
    assert sum(a["words"] for a in m["allocations"].values()) == m["budget"]["words_selected"] == m["splits"]["train"]["words"]
    assert m["budget"]["tokenizer_words"] == m["budget"]["words_used"] == m["splits"]["train"]["words"]
    report = audit(tmp_path)
    assert report["ok"] and report["compliant"], report["checks"]
    childes = m["sources"]["train"]["childes"]["filters"]
    assert childes["childes_speaker_tags"]["lines_changed"] == len(list(read_lines(babylike_small / "childes.train")))
    if recipe == "data-blalm.yaml":
        assert childes["min_words"]["lines_removed"] > 0 and m["sources"]["train"]["gutenberg"]["filters"]["max_per_book"]["lines_removed"] > 0
    else:
        assert childes["chat_annotations"]["lines_changed"] > 0 and m["sources"]["train"]["simple_wiki"]["filters"]["wiki_headers"]["lines_removed"] > 0


def test_audit_detects_tampering_and_cli(babylike_small, tmp_path, capsys):
    cfg = load_config(REPO / "configs" / "data-streammixer.yaml", [f"data.corpus={babylike_small}", "data.seq_len=64", "tokenizer.vocab_size=400"])
    prepare_data(cfg.data, cfg.tokenizer, tmp_path, progress=False)
    rows = source_stats(tmp_path, max_lines=200)
    assert {r["source"] for r in rows} == set(SOURCES)
    assert sum(r["lines"] > 200 for r in rows) >= 2  # childes and gutenberg are sampled
    assert all(r["tokens"] > 0 and r["sampled"] for r in rows if r["lines"] > 200) and "childes" in format_stats(rows)
    assert main(["data", "stats", str(tmp_path), "--max-lines", "100"]) == 0 and (tmp_path / "lengths.png").stat().st_size > 1000
    assert main(["data", "audit", str(tmp_path)]) == 0
    assert "compliant with the strict-small track" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["splits"]["train"]["words"] += 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit):
        main(["data", "audit", str(tmp_path)])
    assert "[FAIL] budget adds up" in capsys.readouterr().out


def test_config_rejects_bad_data_keys():
    with pytest.raises(ValueError) as err:
        load_config(raw={"data": {"corpus": "x", "filters": ["nope", "min_words"], "allocation": "equal",
                                  "sources": {"childes": {"filters": ["html_tags", "max_per_book"]}}}})  # fmt: skip
    text = str(err.value)
    assert "data.filters[0]: unknown filter 'nope'" in text and "data.filters[1]: 'min_words' is switched on" in text
    assert "data.sources.childes.filters[1]: 'max_per_book' is switched on" in text
    assert "data.allocation: 'equal' divides a total" in text
    with pytest.raises(ValueError, match=r"data.sources.childes.min_words: must be >= 0"):
        load_config(raw={"data": {"corpus": "x", "sources": {"childes": {"min_words": -1}}}})
    assert load_config(raw={"data": {"corpus": "x", "allocation": "equal", "max_words": 10}}).data.allocation == "equal"
