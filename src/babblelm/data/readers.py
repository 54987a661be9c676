"""Corpus readers: find the files of a corpus folder and stream each as text lines, whatever its format.

    files, skipped = scan_corpus("corpora/babylike_10M")   # [CorpusFile(path, source, split, fmt), ...], [(path, reason), ...]
    for line in read_text(files[0], stats, text_field="text"):
        ...

A corpus folder holds any mix of (extensions in any case: `Gutenberg.TXT` is read like `gutenberg.txt`):

- BabyLM files `<source>.train` / `<source>.dev` (or `.valid`, `.validation`; 2023-2025 names:
  childes, aochildes, bnc_spoken, gutenberg, open_subtitles, simple_wiki, simple_wikipedia,
  switchboard, cbt, children_stories, qed, wikipedia, ...); `*.test` files are never read;
- plain `<source>.txt`, one utterance or paragraph per line (training data);
- `<source>.jsonl`, one JSON object per line whose `text_field` holds the text (training data);
- CHAT `<name>.cha` transcripts: main tiers only (`*MOT:\\t...`, continuation lines joined),
  headers (`@...`) and dependent tiers (`%mor`, ...) dropped, the speaker tag kept;
- WikiExtractor `wiki_NN` files: `<doc ...>` / `</doc>` lines and the repeated title dropped;
- sub-folders: every file above inside `<name>/` (recursively) belongs to source `<name>`.

Every other entry is skipped with a reason (`scan_corpus(...).skipped`): unrecognised or compressed
files, test splits, hidden files and folders, empty folders, dangling links, link loops, a second
link to a file already found, FIFOs and devices. A file reached through a link that leads outside
the corpus folder is read, and its real path is kept (`CorpusFile.target`) for the manifest. Formats: "lines", "jsonl", "chat",
"wikiextractor". Every reader removes control characters (counted) and counts the lines it leaves
out by reason (`ReadStats.dropped`); bad input raises `DataError` naming the file and line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .corpus import DataError, ReadStats, read_lines, strip_controls, warn_once
from .filters import DocMarkup

log = logging.getLogger(__name__)

SPLIT_SUFFIXES = {".train": "train", ".dev": "dev", ".valid": "dev", ".validation": "dev"}
FORMAT_SUFFIXES = {".txt": "lines", ".jsonl": "jsonl", ".cha": "chat"}
COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zip", ".7z", ".tar", ".tgz"}
KNOWN_NAMES = "*.train, *.dev, *.valid, *.txt, *.jsonl, *.cha or wiki_NN"
_WIKI_FILE = re.compile(r"^wiki_\d+$", re.IGNORECASE)
# Older or alternative BabyLM file names -> the name used in configs and presets.
SOURCE_ALIASES = {"aochildes": "childes", "simple_wikipedia": "simple_wiki", "bnc": "bnc_spoken",
                  "open_subtitles_2024": "open_subtitles", "subtitles": "open_subtitles"}  # fmt: skip


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    source: str  # the source it belongs to (config key under data.sources)
    split: str  # "train" or "dev"
    fmt: str  # "lines", "jsonl", "chat" or "wikiextractor"
    target: Path | None = None  # the real file, when a link leads outside the corpus folder


class Skipped(NamedTuple):
    path: Path  # a file or folder under the corpus folder that is not read
    reason: str


class CorpusScan(NamedTuple):
    files: list[CorpusFile]  # sorted by split, source, path
    skipped: list[Skipped]  # sorted by path


def canonical_source(name: str) -> str:
    """The config name of a source: `aochildes` -> `childes`, `simple_wikipedia` -> `simple_wiki`."""
    return SOURCE_ALIASES.get(name.lower(), name.lower())


def _classify(path: Path) -> tuple[str, str, str] | str:
    """(source stem, split, format) of a file, or the reason it is not corpus text."""
    suffix = path.suffix.lower()
    if suffix in SPLIT_SUFFIXES:
        return path.stem, SPLIT_SUFFIXES[suffix], "lines"
    if suffix in FORMAT_SUFFIXES:
        return path.stem, "train", FORMAT_SUFFIXES[suffix]
    if _WIKI_FILE.match(path.name):
        return path.parent.name, "train", "wikiextractor"
    if suffix == ".test":
        return "a test split: never read"
    if suffix in COMPRESSED_SUFFIXES:
        return "a compressed file: not read (decompress it into the corpus folder)"
    return f"unrecognised file type (expected {KNOWN_NAMES})"


def scan_corpus(corpus_dir: str | Path, exclude: str | Path | None = None) -> CorpusScan:
    """Every corpus file of a folder and every entry not read, with the reason; at least one training file.

    `exclude` (the output folder, when it lies inside the corpus folder) is skipped, not searched."""
    folder = Path(corpus_dir)
    if not folder.exists():
        raise DataError(f"corpus folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"corpus path is not a folder: {folder}")
    scanner = _Scanner(Path(exclude).resolve() if exclude is not None else None, os.path.realpath(folder))
    for entry in _entries(folder):
        scanner.visit(entry, None, (os.path.realpath(folder),))
    files = sorted(scanner.files, key=lambda f: (f.split, f.source, str(f.path)))
    skipped = sorted(scanner.skipped)
    if not any(f.split == "train" for f in files):
        found = [f"{f.path.name} (dev)" for f in files] + [f"{s.path.name} ({s.reason})" for s in skipped]
        raise DataError(
            f"no training files in corpus folder {folder}; expected BabyLM files such as childes.train, "
            f"or *.txt, *.jsonl, *.cha, wiki_NN files or sub-folders of them; found: {'; '.join(found[:10]) or 'an empty folder'}"
        )
    return CorpusScan(files, skipped)


def discover(corpus_dir: str | Path) -> list[CorpusFile]:
    """The corpus files of a folder (see `scan_corpus`); entries not read are logged as a warning."""
    files, skipped = scan_corpus(corpus_dir)
    if skipped:
        warn_once(log, skipped_summary(corpus_dir, skipped))
    return files


def skipped_summary(corpus_dir: str | Path, skipped: list[Skipped]) -> str:
    """One line naming the entries of a corpus folder that are not read (the first 10) and why."""
    shown = "; ".join(f"{s.path.relative_to(corpus_dir)} ({s.reason})" for s in skipped[:10])
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    return f"{len(skipped)} file(s) under {corpus_dir} not used: {shown}{more}"


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        raise DataError(f"{folder}: cannot list the folder ({err.strerror or err}); expected a readable corpus folder") from None


class _Scanner:
    """Walks a corpus folder (following links, never in circles), collecting files and skips."""

    def __init__(self, exclude: Path | None, root: str):
        self.exclude, self.root = exclude, root
        self.files: list[CorpusFile] = []
        self.skipped: list[Skipped] = []
        self.seen: dict[str, Path] = {}  # real path of every file taken -> the path it was found at

    def visit(self, path: Path, source: str | None, ancestors: tuple[str, ...]) -> None:
        """Take or skip `path`; `source` is None at the top level (a file names its own source)."""
        reason = self._unusable(path, ancestors)
        if reason is not None:
            self.skipped.append(Skipped(path, reason))
        elif path.is_dir():
            entries = _entries(path)
            if not entries:
                self.skipped.append(Skipped(path, "empty folder"))
            for entry in entries:
                self.visit(entry, source or canonical_source(path.name), ancestors + (os.path.realpath(path),))
        else:
            self._file(path, source)

    def _unusable(self, path: Path, ancestors: tuple[str, ...]) -> str | None:
        """Why `path` cannot be read (hidden, excluded, dangling, a loop, not a file or folder), or None."""
        try:
            mode = os.stat(path).st_mode
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "symbolic link loop"
            if path.is_symlink():
                return f"dangling symbolic link (target {os.readlink(path)} not found)"
            raise DataError(f"{path}: cannot read ({err.strerror or err}); expected a readable corpus file") from None
        if path.name.startswith("."):
            return "hidden folder: not searched" if stat.S_ISDIR(mode) else "hidden file"
        if self.exclude is not None and path.resolve() == self.exclude:
            return "the output folder of this preparation"
        if stat.S_ISDIR(mode) and _leads_back(os.path.realpath(path), ancestors):
            return f"symbolic link loop (back to {os.path.realpath(path)}, which holds this folder)"
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            return "not a regular file (a FIFO, socket or device)"
        return None

    def _file(self, path: Path, source: str | None) -> None:
        kind = _classify(path)
        if isinstance(kind, str):
            self.skipped.append(Skipped(path, kind))
            return
        real = os.path.realpath(path)
        if real in self.seen:
            self.skipped.append(Skipped(path, f"same file as {self.seen[real]} (read once)"))
            return
        self.seen[real] = path
        outside = Path(real) if not Path(real).is_relative_to(self.root) else None
        self.files.append(CorpusFile(path, source or canonical_source(kind[0]), kind[1], kind[2], outside))


def _leads_back(real: str, ancestors: tuple[str, ...]) -> bool:
    """Whether a folder (real path) is one being walked, or holds the corpus folder (`ancestors[0]`)."""
    return real in ancestors or Path(ancestors[0]).is_relative_to(real)


def read_text(file: CorpusFile, stats: ReadStats, text_field: str = "text", max_line_bytes: int | None = None) -> Iterator[str]:
    """Stream the text lines of one corpus file in its format (see the module docstring)."""
    lines = read_lines(file.path, stats, max_line_bytes)
    if file.fmt == "lines":
        return _plain(lines, stats)
    if file.fmt == "jsonl":
        return _jsonl(lines, file.path, stats, text_field)
    if file.fmt == "chat":
        return _chat(lines, stats)
    if file.fmt == "wikiextractor":
        return _wiki(lines, stats)
    raise ValueError(f"unknown corpus format {file.fmt!r}")


def _text(text: str, stats: ReadStats, number: int) -> str | None:
    """`text` without control characters, or None (counted) if no text is left."""
    if not text.strip():
        stats.drop("blank_text_lines", number)
        return None
    text = strip_controls(text, stats, number)
    if not text.strip():
        stats.drop("control_only", number)
        return None
    return text


def _plain(lines: Iterator[str], stats: ReadStats) -> Iterator[str]:
    for line in lines:
        if (text := _text(line, stats, stats.line_number)) is not None:
            yield text


def _wiki(lines: Iterator[str], stats: ReadStats) -> Iterator[str]:
    strip = DocMarkup()
    for line in _plain(lines, stats):
        if strip(line) is None:
            stats.drop("wiki_doc_markup", stats.line_number)
        else:
            yield line


_LINE_BREAK = re.compile(r"\r\n?|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}  # fmt: skip


def _jsonl(lines: Iterator[str], path: Path, stats: ReadStats, field: str) -> Iterator[str]:
    for line in lines:
        number = stats.line_number
        for part in _LINE_BREAK.split(_json_text(line, f"{path}:{number}", field)):
            if (text := _text(part, stats, number)) is not None:
                yield text


def _json_text(line: str, where: str, field: str) -> str:
    """The string `field` of the JSON object on one line; `DataError` naming `where` otherwise."""
    expected = f"expected one JSON object per line with a string field {field!r} (data.text_field)"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); {expected}") from None
    except (ValueError, RecursionError) as err:  # an integer too long to convert, arrays nested too deep
        raise DataError(f"{where}: not usable JSON ({type(err).__name__}: {str(err)[:100]}); {expected}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: {expected}, found {_JSON_TYPES.get(type(record), type(record).__name__)}")
    if field not in record:
        raise DataError(f"{where}: expected a string field {field!r} (data.text_field), found keys {sorted(record)[:10]}")
    text = record[field]
    if not isinstance(text, str):
        raise DataError(f"{where}: expected a string field {field!r} (data.text_field), found {_JSON_TYPES.get(type(text))}")
    if bad := _SURROGATE.search(text):
        raise DataError(f"{where}: invalid Unicode: lone surrogate U+{ord(bad.group()):04X} in field {field!r} "
                        "(half of an escaped UTF-16 pair); expected valid Unicode text")  # fmt: skip
    return text


_TIME_BULLET = re.compile("\x15[^\x15]*\x15")
_MAIN_TIER = re.compile(r"\*([A-Za-z0-9_+-]+):(?:[\t ]+|$)")
_CHAT_DROPPED = {"@": "chat_headers", "%": "chat_dependent_tiers"}  # first character -> reason; others malformed


def _chat(lines: Iterator[str], stats: ReadStats) -> Iterator[str]:
    """CHAT main tiers as `*SPK:\\t<utterance>`, continuation lines joined, whitespace collapsed.

    Headers and dependent tiers are dropped and counted; so is every other line (a `*` line
    without `*SPK:` and a tab, plain text), as `chat_malformed`, with its continuation lines."""
    tier: list[str] | None = None  # the open main tier
    start, dropping = 0, "chat_malformed"  # the tier's first line; what continuation lines of a dropped line count as
    for line in lines:
        number = stats.line_number
        if line[:1] in ("\t", " "):
            if tier is not None:
                tier.append(line)
            else:
                stats.drop(dropping, number)
            continue
        if tier is not None:
            yield _chat_tier(tier, stats, start)
            tier = None
        if _MAIN_TIER.match(line):
            tier, start = [line], number
        else:
            dropping = _CHAT_DROPPED.get(line[:1], "chat_malformed")
            stats.drop(dropping, number)
    if tier is not None:
        yield _chat_tier(tier, stats, start)


def _chat_tier(parts: list[str], stats: ReadStats, number: int) -> str:
    text = strip_controls(_TIME_BULLET.sub(" ", " ".join(parts)), stats, number)
    tag = _MAIN_TIER.match(text)
    return f"*{tag.group(1)}:\t{' '.join(text[tag.end():].split())}"
