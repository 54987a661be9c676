"""Fuzz: a few hundred generated (seeded) bad corpora across every reader format.

Each case is a corpus folder holding, most of the time, one good training file plus bad inputs of
one kind. Preparation must either succeed with every entry under the folder accounted for (read,
or listed in `manifest.skipped_files` with a reason) and every count adding up, or stop with a
one-line `DataError` naming a file that was allowed to stop it (with a line number inside the file,
where the message gives one) and what was expected. No file outside the output folder may change.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path

import pytest

from babblelm.config import load_config
from babblelm.data.audit import audit
from babblelm.data.corpus import DataError
from babblelm.data.prepare import prepare_data

SEED = 20250601
CASES_PER_KIND = 16
MAX_LINE_BYTES = 8000  # over the 4300-digit integer and the recursion limit of bad JSON records
WORDS = "the a dog cat ran sat on mat big small red ball look at that we go home now".split()
FILTER_LISTS = ([], ["childes_speaker_tags"], ["childes_speaker_tags", "chat_annotations", "normalize"])
# Stops that name no file: possible only when a case has no good training file.
GLOBAL_STOPS = re.compile(r"no training files in corpus folder|no training lines left|less than one block")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
KINDS = {}


def kind(fn):
    KINDS[fn.__name__] = fn
    return fn


class Case:
    """One generated corpus: the folder, the random source, the files that must give text and the
    files allowed to stop preparation."""

    def __init__(self, root: Path, rng: random.Random, index: int = 0):
        self.root, self.rng, self.index = root, rng, index
        self.corpus = root / "corpus"
        self.corpus.mkdir()
        self.text_field = rng.choice(["text", "story"])
        self.fragile: set[Path] = set()
        self.readable: set[Path] = set()  # named for a reader and holding text: must be read
        self.locked: list[Path] = []  # made unreadable; unlocked after the case
        self.made: list[str] = []  # what was made, to reproduce a failure
        self.count = 0

    def name(self, stem: str = "f") -> str:
        self.count += 1
        return f"{stem}{self.count}"

    def file(self, rel: str, data: bytes, fragile: bool = False, readable: bool = False) -> Path:
        path = self.corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.made.append(f"{rel} ({len(data)} bytes{', may stop' if fragile else ''}): {data[:60]!r}")
        if fragile:
            self.fragile.add(path)
        if readable:
            self.readable.add(path)
        return path

    def link(self, rel: str, target: Path | str) -> None:
        path = self.corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        self.made.append(f"{rel} -> {target}")

    def folder(self, rel: str) -> None:
        (self.corpus / rel).mkdir(parents=True, exist_ok=True)
        self.made.append(f"{rel}/")


# --- text ------------------------------------------------------------------------------------


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(2, 9))) + " ."


def random_case(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


def good(rng: random.Random, fmt: str, field: str, n: int | None = None) -> bytes:
    n = n if n is not None else rng.randint(1, 12)
    lines = [sentence(rng) for _ in range(n)]
    if fmt == "jsonl":
        lines = [json.dumps({field: line, "id": i}) for i, line in enumerate(lines)]
    elif fmt == "chat":
        lines = ["@UTF8", "@Begin"] + [f"*{rng.choice(['MOT', 'CHI', 'FAT'])}:\t{line}" for line in lines] + ["@End"]
    elif fmt == "wiki":
        lines = ['<doc id="7" url="u" title="Dogs">', "Dogs", ""] + lines + ["</doc>"]
    return ("\n".join(lines) + "\n").encode()


def good_name(rng: random.Random, fmt: str, stem: str) -> str:
    if fmt == "lines":
        return stem + random_case(rng, rng.choice([".train", ".dev", ".valid", ".validation", ".txt"]))
    if fmt == "wiki":
        return f"{stem}/AA/wiki_{rng.randint(0, 99):02d}"
    return stem + random_case(rng, {"jsonl": ".jsonl", "chat": ".cha"}[fmt])


def any_good_file(case: Case, stem: str | None = None) -> Path:
    fmt = case.rng.choice(["lines", "jsonl", "chat", "wiki"])
    return case.file(good_name(case.rng, fmt, stem or case.name()), good(case.rng, fmt, case.text_field), readable=True)


# --- kinds of bad input ----------------------------------------------------------------------


@kind
def extension_case(case: Case) -> None:
    for _ in range(case.rng.randint(1, 3)):
        any_good_file(case)


@kind
def unrecognised_names(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 4)):
        name = case.name() + rng.choice([".md", ".csv", ".json", ".tsv", ".train.gz", ".TEST", ".trian", "", ".jsonl.bz2"])
        data = good(rng, "lines", case.text_field) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 300))
        case.file(rng.choice(["", "sub/"]) + name, data)


@kind
def empty_and_blank(case: Case) -> None:
    rng = case.rng
    blanks = [b" ", b"\t", b"\n", b"\r", b"\r\n", "\u3000".encode(), "\xa0".encode(), b"\x0b", b"\x0c", "\ufeff".encode()]
    for _ in range(rng.randint(1, 3)):
        fmt = rng.choice(["lines", "jsonl", "chat", "wiki"])
        data = b"" if rng.random() < 0.3 else b"".join(rng.choices(blanks, k=rng.randint(1, 20)))
        case.file(good_name(rng, fmt, case.name()), data)


@kind
def line_endings(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 3)):
        fmt = rng.choice(["lines", "jsonl", "chat", "wiki"])
        lines = good(rng, fmt, case.text_field).decode().splitlines()
        ends = [rng.choice(["\n", "\r", "\r\n", "\r\r\n", "\n\r"]) for _ in lines]
        text = "".join(line + end for line, end in zip(lines, ends))
        case.file(good_name(rng, fmt, case.name()), (text.rstrip("\r\n") if rng.random() < 0.3 else text).encode(), readable=True)


@kind
def binary_junk(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 2)):
        fmt = rng.choice(["lines", "jsonl", "chat", "wiki"])
        data = rng.randbytes(rng.randint(1, 3000))
        if rng.random() < 0.5:  # text with a binary blob inside
            data = good(rng, fmt, case.text_field) + data + good(rng, fmt, case.text_field)
        case.file(good_name(rng, fmt, case.name()), data, fragile=True)


@kind
def invalid_utf8(case: Case) -> None:
    rng = case.rng
    bad = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\x80"]
    for _ in range(rng.randint(1, 2)):
        fmt = rng.choice(["lines", "jsonl", "chat", "wiki"])
        data = bytearray(good(rng, fmt, case.text_field))
        at = rng.randrange(len(data))
        data[at:at] = rng.choice(bad)
        case.file(good_name(rng, fmt, case.name()), bytes(data), fragile=True)


@kind
def control_characters(case: Case) -> None:
    rng = case.rng
    controls = [chr(c) for c in [*range(1, 9), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x85, 0x9B]]
    for _ in range(rng.randint(1, 3)):
        fmt = rng.choice(["lines", "chat", "wiki"])
        lines = good(rng, fmt, case.text_field).decode().split("\n")
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(lines))
            at = rng.randint(0, len(lines[i]))
            lines[i] = lines[i][:at] + "".join(rng.choices(controls, k=rng.randint(1, 3))) + lines[i][at:]
        if rng.random() < 0.3:
            lines.append("".join(rng.choices(controls, k=4)))  # a line of nothing but control characters
        case.file(good_name(rng, fmt, case.name()), "\n".join(lines).encode(), readable=True)


def huge_line(fmt: str, field: str, size: int) -> bytes:
    """A line of `size` bytes that is good text in format `fmt` (a JSON record, a CHAT tier)."""
    def words(n: int) -> bytes:
        return (b"big dog " * n)[:n]

    if fmt == "jsonl":
        return b'{"%s": "%s"}' % (field.encode(), words(size - len(field) - 8))
    if fmt == "chat":
        return b"*MOT:\t" + words(size - 6)
    return words(size)


@kind
def huge_lines(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 2)):
        fmt = rng.choice(["lines", "jsonl", "chat", "wiki"])
        lines = good(rng, fmt, case.text_field).split(b"\n")
        for _ in range(rng.randint(1, 3)):
            size = rng.choice([MAX_LINE_BYTES, MAX_LINE_BYTES + 1, rng.randint(MAX_LINE_BYTES, 5 * MAX_LINE_BYTES)])
            lines.insert(rng.randint(0, len(lines)), huge_line(fmt, case.text_field, size))
        end = rng.choice([b"\n", b"\r", b"\r\n"])
        case.file(good_name(rng, fmt, case.name()), end.join(lines), readable=True)


def good_records(rng: random.Random, field: str) -> list[str]:
    """Records that must be read: escaped control characters, empty and multi-line text, extra keys, emoji."""
    text = sentence(rng)
    palette = [json.dumps({field: text}), json.dumps({field: text + "\n\n" + text + "\r\n" + text + "\r" + text}),
               json.dumps({field: "a\u0000b " + text}), json.dumps({field: ""}), json.dumps({field: "\u0001\u001b"}),
               json.dumps({field: text, "n": float("nan")}), json.dumps({field: "\U0001f600 " + text}, ensure_ascii=False),
               json.dumps({field: text + "\ud83d\ude00"}), json.dumps({"x": [1, {"y": None}], field: text}), " "]  # fmt: skip
    return [json.dumps({field: text})] + rng.choices(palette, k=rng.randint(0, 12))


def bad_records(field: str) -> list[str]:
    """Records that must stop preparation, each with a one-line error naming its file and line."""
    other = "story" if field == "text" else "text"
    return [json.dumps({field: "cut"})[:-1], "not json", "[1, 2]", "42", '"a string"', "null", json.dumps({other: "x"}),
            json.dumps({field: 5}), json.dumps({field: None}), json.dumps({field: ["x"]}), json.dumps({field: {"t": "x"}}),
            json.dumps({field: "bad \ud800 half"}), '{"%s": "x\\udfff"}' % field, "[" * 5000, '{"n": 1%s}' % ("0" * 5000),
            '{"%s": "a", "%s": 5}' % (field, field), "{'%s': 'single quotes'}" % field, '{"%s": "tab\there"}' % field]  # fmt: skip


@kind
def jsonl_records(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 3)):
        data = "\n".join(good_records(rng, case.text_field)) + rng.choice(["\n", "", "\r\n"])
        case.file(case.name() + random_case(rng, ".jsonl"), data.encode(), readable=True)


@kind
def jsonl_bad_records(case: Case) -> None:
    """Every bad record in turn (by case index), at a random place among good ones."""
    palette = bad_records(case.text_field)
    for k in range(case.rng.randint(1, 2)):
        lines = good_records(case.rng, case.text_field)
        lines.insert(case.rng.randint(0, len(lines)), palette[(case.index + k) % len(palette)])
        case.file(case.name() + random_case(case.rng, ".jsonl"), ("\n".join(lines) + "\n").encode(), fragile=True)


CHAT_LINES = ["@Begin", "@Participants:\tCHI Eve Target_Child", "@End", "*MOT:\tlook at that .", "*CHI:\tmore cookie .\x1512_15\x15",
              "*FAT:\tyou <want> [/] want", "\tanother cookie ?", "%mor:\tn|cookie", "%com:\tlaughs", "*MOT look .", "*CHI:nope",
              "*", "*:\tx", "plain text line", "*MOTHER said", "\x15", "*CHI:\t\x15", "", "  ", "*MOT:", "*CHI:\txxx .", "@"]  # fmt: skip


@kind
def chat_transcripts(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 3)):
        lines = rng.choices(CHAT_LINES, k=rng.randint(1, 25))
        case.file(case.name() + random_case(rng, ".cha"), ("\n".join(lines) + "\n").encode())


@kind
def chat_headers_only(case: Case) -> None:
    rng = case.rng
    headers = ["@UTF8", "@Begin", "@Languages:\teng", "@Participants:\tCHI Eve Target_Child", "%com:\tnothing", "\tmore", "@End"]
    case.file(case.name() + ".cha", ("\n".join(rng.choices(headers, k=rng.randint(1, 8))) + "\n").encode())


@kind
def wikiextractor(case: Case) -> None:
    rng = case.rng
    parts = ['<doc id="1" url="u" title="Cats">', "Cats", "</doc>", '<doc id="2" title="A &amp; B">', "A & B",
             "<doc>", '<doc id="3" url="u">', "= = Section = =", "", "</doc> trailing"]  # fmt: skip
    for _ in range(rng.randint(1, 3)):
        markup = [rng.random() < 0.5 for _ in range(rng.randint(1, 20))]
        lines = [rng.choice(parts) if is_markup else sentence(rng) for is_markup in markup]
        rel = f"{case.name('wiki')}/{rng.choice(['AA', 'AB'])}/wiki_{rng.randint(0, 99):02d}"
        case.file(rel, ("\n".join(lines) + "\n").encode(), readable=not all(markup))


@kind
def sub_folders(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 3)):
        top = case.name("src")
        for _ in range(rng.randint(1, 4)):
            depth = "/".join(case.name("d") for _ in range(rng.randint(0, 3)))
            prefix = f"{top}/{depth}/" if depth else f"{top}/"
            if rng.random() < 0.7:
                fmt = rng.choice(["lines", "jsonl", "chat"])
                case.file(prefix + good_name(rng, fmt, case.name()), good(rng, fmt, case.text_field), readable=True)
            elif rng.random() < 0.5:
                case.file(prefix + case.name() + ".md", b"notes\n")
            else:
                case.folder(prefix + case.name("empty"))


@kind
def empty_folders(case: Case) -> None:
    for _ in range(case.rng.randint(1, 4)):
        case.folder("/".join(case.name("e") for _ in range(case.rng.randint(1, 3))))


@kind
def hidden_entries(case: Case) -> None:
    rng = case.rng
    case.file("._" + case.name() + ".train", b"\x00\x05\x16\x07\x00\x02" + rng.randbytes(40))  # macOS resource fork
    case.file(".DS_Store", rng.randbytes(64))
    if rng.random() < 0.5:
        case.file(f".git/objects/{case.name()}", rng.randbytes(30))
    if rng.random() < 0.5:
        case.file(f"{case.name('src')}/.hidden.txt", good(rng, "lines", case.text_field))


@kind
def dangling_links(case: Case) -> None:
    for _ in range(case.rng.randint(1, 3)):
        name = good_name(case.rng, case.rng.choice(["lines", "jsonl", "chat"]), case.name())
        case.link(case.rng.choice(["", "sub/"]) + name, case.root / "nowhere" / name)


@kind
def link_loops(case: Case) -> None:
    rng = case.rng
    case.link(f"{case.name('loop')}", case.rng.choice([case.corpus, case.root, Path("/")]))  # the corpus or above it
    sub = case.name("sub")
    case.file(f"{sub}/{case.name()}.train", good(rng, "lines", case.text_field))
    case.link(f"{sub}/{case.name('up')}", case.corpus / sub)
    self_link = case.name() + ".train"
    case.link(self_link, case.corpus / self_link)
    if rng.random() < 0.5:
        case.link("ping.txt", case.corpus / "pong.txt")
        case.link("pong.txt", case.corpus / "ping.txt")


@kind
def duplicate_links(case: Case) -> None:
    rng = case.rng
    target = any_good_file(case)
    case.link(case.name() + ".train", target)
    case.link(f"{case.name('sub')}/{case.name()}.txt", target)
    outside = case.root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "kept.txt").write_bytes(good(rng, "lines", case.text_field))
    case.link(case.name("ext"), outside)  # a source folder kept elsewhere
    case.link(case.name() + ".dev", outside / "kept.txt")


@kind
def special_files(case: Case) -> None:
    for _ in range(case.rng.randint(1, 2)):
        rel = case.rng.choice(["", "sub/"]) + case.name() + case.rng.choice([".train", ".jsonl", ".cha"])
        (case.corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(case.corpus / rel)
        case.made.append(f"{rel} (FIFO)")


@kind
def unreadable(case: Case) -> None:
    path = any_good_file(case)
    sub = case.corpus / case.name("locked")
    sub.mkdir()
    (sub / "a.train").write_bytes(good(case.rng, "lines", case.text_field))
    for locked in (path, sub):
        locked.chmod(0)
        case.locked.append(locked)
        case.fragile.add(locked)


@kind
def odd_names(case: Case) -> None:
    rng = case.rng
    stems = ["with space", "dètails", "-dash", "x" * 200, "a.b.c", "UPPER", "wiki_00", "WIKI_01", "x.", "\u4e2d\u6587"]
    for _ in range(rng.randint(1, 3)):
        stem = rng.choice(stems) + str(case.count)
        fmt = rng.choice(["lines", "jsonl", "chat"])
        case.file(good_name(rng, fmt, stem), good(rng, fmt, case.text_field), readable=True)
    if rng.random() < 0.5:  # a file name that is not UTF-8
        path = os.path.join(os.fsencode(case.corpus), b"bad\xff" + str(case.count).encode() + b".train")
        with open(path, "wb") as handle:
            handle.write(good(rng, "lines", case.text_field))
        case.made.append(f"{path!r}")


@kind
def dev_only_sources(case: Case) -> None:
    for _ in range(case.rng.randint(1, 3)):
        name = case.name() + random_case(case.rng, case.rng.choice([".dev", ".valid", ".validation"]))
        case.file(name, good(case.rng, "lines", case.text_field), readable=True)


@kind
def byte_order_marks(case: Case) -> None:
    rng = case.rng
    for _ in range(rng.randint(1, 3)):
        fmt = rng.choice(["lines", "jsonl", "chat", "wiki"])
        lines = good(rng, fmt, case.text_field).split(b"\n")
        if fmt != "jsonl" and rng.random() < 0.5:
            i = rng.randrange(len(lines))
            lines[i] = b"\xef\xbb\xbf" + lines[i]
        case.file(good_name(rng, fmt, case.name()), b"\xef\xbb\xbf" + b"\n".join(lines), readable=True)


@kind
def mixed(case: Case) -> None:
    others = [fn for name, fn in KINDS.items() if name not in ("mixed", "unreadable")]
    for fn in case.rng.sample(others, 4):
        fn(case)


# --- checks ----------------------------------------------------------------------------------


def snapshot(root: Path, skip: Path) -> dict:
    """Every entry under `root` except `skip`: its type, size, mtime and content hash (regular files)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            content = os.readlink(path) if path.is_symlink() else None
            if content is None and os.path.isfile(path) and os.access(path, os.R_OK):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return state


def entries(corpus: Path) -> list[Path]:
    """Everything the case made: files, links, FIFOs, and folders that are empty or links."""
    found = []
    for dirpath, dirnames, filenames in os.walk(corpus):
        for name in dirnames:
            path = Path(dirpath, name)
            if path.is_symlink() or not os.access(path, os.R_OK) or not any(path.iterdir()):
                found.append(path)
        found += [Path(dirpath, name) for name in filenames]
    return found


def physical_lines(data: bytes) -> int:
    return len(re.findall(rb"\r\n|\r|\n", data)) + (1 if data and not data.endswith((b"\n", b"\r")) else 0)


def check_manifest(m: dict, case: Case, filters: list[str], out: Path) -> None:
    records = [r for split in m["inputs"].values() for r in split]
    used = {Path(r["file"]) for r in records if r["lines"]}
    skipped = {Path(s["file"]): s["reason"] for s in m["skipped_files"]}
    assert all(reason.strip() for reason in skipped.values())
    assert not used & set(skipped), "a file both used and listed as skipped"
    assert all(Path(r["file"]) in skipped for r in records if not r["lines"]), "a file read without text is not listed"
    assert case.readable <= used, f"not read: {sorted(map(str, case.readable - used))}"
    real = [os.path.realpath(r["file"]) for r in records]
    assert len(real) == len(set(real)), "a file read twice"
    named = used | set(skipped)
    for path in entries(case.corpus):
        covered = path in named or any(parent in skipped for parent in path.parents)
        covered = covered or (path.is_dir() and any(p.is_relative_to(path) for p in named))
        assert covered, f"{path} is neither used nor listed in skipped_files"
    assert all(p.is_relative_to(case.corpus) for p in named)
    for rec in records:
        data = Path(rec["file"]).read_bytes()
        assert (rec["bytes"], rec["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert rec["file_lines"] + rec["empty_lines"] + rec["long_lines"] == physical_lines(data), rec["file"]
        dropped = sum(rec["dropped_lines"].values())
        if rec["format"] in ("lines", "wikiextractor"):
            assert rec["lines"] + dropped == rec["file_lines"], rec
        elif rec["format"] == "chat":
            assert rec["lines"] + dropped <= rec["file_lines"], rec
        else:
            assert rec["lines"] + dropped >= rec["file_lines"], rec
        assert rec["lines"] - sum(f["lines_removed"] for f in rec["filters"].values()) == rec["lines_clean"]
        clean = (out / rec["clean_file"]).read_text(encoding="utf-8").split("\n")[:-1]
        assert len(clean) == rec["lines_clean"] and sum(len(x.split()) for x in clean) == rec["words_clean"]
        assert not any(CONTROL.search(x) or "\r" in x for x in clean), rec["file"]
        if rec["format"] == "chat":
            tag = re.compile(r"\*[A-Za-z0-9_+-]+:\t") if not filters else re.compile(r"\*[A-Za-z0-9_+-]+:")
            assert all(bool(tag.match(x)) != bool(filters) for x in clean), clean
    report = audit(out)
    assert report["ok"], report["checks"]


def check_stop(err: Exception, case: Case, has_base: bool) -> None:
    message = str(err)
    assert type(err) in (DataError, ValueError), f"{type(err).__name__} escaped: {message}"
    assert "\n" not in message, message
    if not has_base and GLOBAL_STOPS.search(message):
        return
    culprits = [p for p in case.fragile if str(p) in message]
    assert culprits, f"stopped on a file that should have been read: {message}"
    assert "expected" in message, message
    if (line := re.search(re.escape(str(culprits[0])) + r":(\d+):", message)) and culprits[0].is_file():
        assert 1 <= int(line.group(1)) <= physical_lines(culprits[0].read_bytes()), message


def run_case(root: Path, rng: random.Random, make, index: int = 0) -> None:
    case = Case(root, rng, index)
    has_base = rng.random() < 0.8
    if has_base:
        case.file("base.train", good(rng, "lines", case.text_field, n=60))
    try:
        make(case)
        check_case(case, has_base)
    finally:
        for path in case.locked:
            path.chmod(0o755)


def check_case(case: Case, has_base: bool) -> None:
    """Prepare the case's corpus and check the outcome (see the module docstring)."""
    root, rng = case.root, case.rng
    filters = rng.choice(FILTER_LISTS)
    raw = {"data": {"corpus": str(case.corpus), "seq_len": 16, "max_line_bytes": MAX_LINE_BYTES, "filters": filters,
                    "text_field": case.text_field}, "tokenizer": {"vocab_size": 300}}  # fmt: skip
    cfg = load_config(raw=raw)
    out = root / "out"
    before = snapshot(root, out)
    try:
        try:
            manifest = prepare_data(cfg.data, cfg.tokenizer, out, progress=False)
        except Exception as err:  # noqa: BLE001 - what escapes is the point of the test
            check_stop(err, case, has_base)
        else:
            check_manifest(manifest, case, filters, out)
        assert snapshot(root, out) == before, "a file outside the output folder changed"
    except AssertionError as err:
        made = "".join(f"\n  {m}" for m in case.made)
        raise AssertionError(f"{err}\nfilters {filters}, text_field {case.text_field!r}, corpus:{made}") from err


def permissions_apply(folder: Path) -> bool:
    """Whether a file without read permission is unreadable here (not so for root)."""
    probe = folder / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        return False
    except PermissionError:
        return True
    finally:
        probe.unlink()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_bad_corpora_are_used_listed_or_named(name, tmp_path):
    if name == "unreadable" and not permissions_apply(tmp_path):
        pytest.skip("running as root: permissions do not stop reading")
    for i in range(CASES_PER_KIND):
        root = tmp_path / f"case{i}"
        root.mkdir()
        run_case(root, random.Random(f"{SEED}-{name}-{i}"), KINDS[name], i)
