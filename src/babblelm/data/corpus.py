"""Read a BabyLM-format corpus folder: `<source>.train` and `<source>.dev` files, UTF-8 text,
one utterance or paragraph per line.

    files = find_sources("corpora/babylike_10M")      # {"train": [Path...], "dev": [Path...]}
    stats = ReadStats()
    for line in read_lines(files["train"][0], stats):  # non-empty lines, streamed
        ...
    stats.sha256, stats.lines, stats.empty_lines       # known once the file is read to the end

Bad input raises `DataError` naming the file, the line and what was expected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

SPLIT_SUFFIXES = {"train": ".train", "dev": ".dev"}


class DataError(ValueError):
    """The corpus, a setting or a prepared data folder is not what was expected."""


@dataclass
class ReadStats:
    """What `read_lines` saw in one file: filled in while the file streams."""

    lines: int = 0  # non-empty lines yielded
    empty_lines: int = 0  # blank (or whitespace-only) lines skipped
    bytes: int = 0
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def source_name(path: Path) -> str:
    """The source a file belongs to: its name without the split suffix (`childes.train` -> `childes`)."""
    return path.stem


def find_sources(corpus_dir: str | Path) -> dict[str, list[Path]]:
    """The training and dev files of a corpus folder, sorted by name; at least one `*.train` file."""
    folder = Path(corpus_dir)
    if not folder.exists():
        raise DataError(f"corpus folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"corpus path is not a folder: {folder}")
    found = {split: sorted(p for p in folder.glob(f"*{suffix}") if p.is_file()) for split, suffix in SPLIT_SUFFIXES.items()}
    if not found["train"]:
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise DataError(
            f"no training files (*.train) in corpus folder {folder}; "
            f"expected BabyLM files such as childes.train, found: {present or 'an empty folder'}"
        )
    return found


def read_lines(path: str | Path, stats: ReadStats | None = None) -> Iterator[str]:
    """Yield the non-empty lines of a UTF-8 text file without their line endings, one at a time.

    Blank lines are skipped and counted in `stats`. A NUL byte (binary file) or invalid UTF-8
    raises `DataError` with the file, the line number and the byte offset in the file.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    offset = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            stats._hash.update(raw)
            stats.bytes += len(raw)
            line = _decode(raw, path, number, offset)
            offset += len(raw)
            line = line.rstrip("\r\n")
            if number == 1:
                line = line.removeprefix("\ufeff")
            if line.strip():
                stats.lines += 1
                yield line
            else:
                stats.empty_lines += 1


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _decode(raw: bytes, path: Path, number: int, offset: int) -> str:
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DataError(
            f"{path}:{number}: NUL byte at byte offset {offset + nul}: this looks like a binary file, "
            "expected UTF-8 text with one utterance per line"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}:{number}: invalid UTF-8 at byte offset {offset + err.start} "
            f"(byte {raw[err.start]:#04x}: {err.reason}); expected UTF-8 text"
        ) from None
