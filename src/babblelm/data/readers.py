"""Corpus readers: find the files of a corpus folder and stream each as text lines, whatever its format.

    files = discover("corpora/babylike_10M")     # [CorpusFile(path, source, split, fmt), ...]
    for line in read_text(files[0], stats, text_field="text"):
        ...

A corpus folder holds any mix of:

- BabyLM files `<source>.train` / `<source>.dev` (2023-2025 names: childes, aochildes, bnc_spoken,
  gutenberg, open_subtitles, simple_wiki, simple_wikipedia, switchboard, cbt, children_stories,
  qed, wikipedia, ...); `*.test` files are never read;
- plain `<source>.txt`, one utterance or paragraph per line (training data);
- `<source>.jsonl`, one JSON object per line whose `text_field` holds the text (training data);
- CHAT `<name>.cha` transcripts: main tiers only (`*MOT:\\t...`, continuation lines joined),
  headers (`@...`) and dependent tiers (`%mor`, ...) dropped, the speaker tag kept;
- WikiExtractor `wiki_NN` files: `<doc ...>` / `</doc>` lines and the repeated title dropped;
- sub-folders: every file above inside `<name>/` (recursively) belongs to source `<name>`.

Formats: "lines", "jsonl", "chat", "wikiextractor". Bad input raises `DataError` naming the file
and line; over-long lines are skipped and counted (see `corpus.read_lines`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .corpus import DataError, ReadStats, read_lines
from .filters import DocMarkup

SPLIT_SUFFIXES = {".train": "train", ".dev": "dev"}
FORMAT_SUFFIXES = {".txt": "lines", ".jsonl": "jsonl", ".cha": "chat"}
_WIKI_FILE = re.compile(r"^wiki_\d+$")
# Older or alternative BabyLM file names -> the name used in configs and presets.
SOURCE_ALIASES = {"aochildes": "childes", "simple_wikipedia": "simple_wiki", "bnc": "bnc_spoken",
                  "open_subtitles_2024": "open_subtitles", "subtitles": "open_subtitles"}  # fmt: skip


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    source: str  # the source it belongs to (config key under data.sources)
    split: str  # "train" or "dev"
    fmt: str  # "lines", "jsonl", "chat" or "wikiextractor"


def canonical_source(name: str) -> str:
    """The config name of a source: `aochildes` -> `childes`, `simple_wikipedia` -> `simple_wiki`."""
    return SOURCE_ALIASES.get(name.lower(), name.lower())


def _classify(path: Path) -> tuple[str, str, str] | None:
    """(source stem, split, format) of a file, or None if it is not corpus text."""
    if path.suffix in SPLIT_SUFFIXES:
        return path.stem, SPLIT_SUFFIXES[path.suffix], "lines"
    if path.suffix in FORMAT_SUFFIXES:
        return path.stem, "train", FORMAT_SUFFIXES[path.suffix]
    if _WIKI_FILE.match(path.name):
        return path.parent.name, "train", "wikiextractor"
    return None


def discover(corpus_dir: str | Path) -> list[CorpusFile]:
    """Every corpus file of a folder, sorted by source then path; at least one training file."""
    folder = Path(corpus_dir)
    if not folder.exists():
        raise DataError(f"corpus folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"corpus path is not a folder: {folder}")
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            for path in sorted(p for p in entry.rglob("*") if p.is_file()):
                if (kind := _classify(path)) is not None:
                    found.append(CorpusFile(path, canonical_source(entry.name), kind[1], kind[2]))
        elif entry.is_file() and (kind := _classify(entry)) is not None:
            found.append(CorpusFile(entry, canonical_source(kind[0]), kind[1], kind[2]))
    if not any(f.split == "train" for f in found):
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise DataError(
            f"no training files in corpus folder {folder}; expected BabyLM files such as childes.train, "
            f"or *.txt, *.jsonl, *.cha, wiki_NN files or sub-folders of them; found: {present or 'an empty folder'}"
        )
    return sorted(found, key=lambda f: (f.split, f.source, str(f.path)))


def read_text(file: CorpusFile, stats: ReadStats, text_field: str = "text", max_line_bytes: int | None = None) -> Iterator[str]:
    """Stream the text lines of one corpus file in its format (see the module docstring)."""
    lines = read_lines(file.path, stats, max_line_bytes)
    if file.fmt == "lines":
        return lines
    if file.fmt == "jsonl":
        return _jsonl(lines, file.path, stats, text_field)
    if file.fmt == "chat":
        return _chat(lines)
    if file.fmt == "wikiextractor":
        strip = DocMarkup()
        return (line for line in lines if strip(line) is not None)
    raise ValueError(f"unknown corpus format {file.fmt!r}")


def _jsonl(lines: Iterator[str], path: Path, stats: ReadStats, field: str) -> Iterator[str]:
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path}:{stats.line_number}: not valid JSON ({err.msg} at column {err.colno}); "
                f"expected one JSON object per line with a string field {field!r} (data.text_field)"
            ) from None
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            found = f"keys {sorted(record)[:10]}" if isinstance(record, dict) else type(record).__name__
            raise DataError(f"{path}:{stats.line_number}: expected a string field {field!r} (data.text_field), found {found}")
        yield from (part for part in text.splitlines() if part.strip())


_TIME_BULLET = re.compile("\x15[^\x15]*\x15")


def _chat(lines: Iterator[str]) -> Iterator[str]:
    """CHAT main tiers as `*SPK:\\t<utterance>`, continuation lines joined, whitespace collapsed."""
    current: list[str] | None = None  # the open main tier, or None inside a header / dependent tier
    for line in lines:
        if line[:1] in ("\t", " "):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            yield _chat_tier(current)
        current = [line] if line.startswith("*") else None
    if current is not None:
        yield _chat_tier(current)


def _chat_tier(parts: list[str]) -> str:
    speaker, _, text = _TIME_BULLET.sub(" ", " ".join(parts)).partition(":")
    return f"{speaker}:\t{' '.join(text.split())}"
