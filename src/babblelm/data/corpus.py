"""Read UTF-8 text files line by line, streamed, with counts and a sha256 of the bytes read.

    stats = ReadStats()
    for line in read_lines("corpus/childes.train", stats, max_line_bytes=1_000_000):
        ...
    stats.sha256, stats.lines, stats.empty_lines, stats.long_lines   # known once the file is read

A NUL byte (binary file) or invalid UTF-8 raises `DataError` naming the file, the line and the
byte offset. A line longer than `max_line_bytes` is skipped, counted in `stats.long_lines` and
its line number kept in `stats.long_line_numbers` (the first 10): a documented skip, never silent.
`readers.py` finds the files of a corpus folder and reads the other formats on top of this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path


class DataError(ValueError):
    """The corpus, a setting or a prepared data folder is not what was expected."""


@dataclass
class ReadStats:
    """What `read_lines` saw in one file: filled in while the file streams."""

    lines: int = 0  # non-empty lines yielded
    empty_lines: int = 0  # blank (or whitespace-only) lines skipped
    bytes: int = 0
    long_lines: int = 0  # lines over max_line_bytes, skipped
    long_line_numbers: list[int] = field(default_factory=list)  # the first 10 of them
    line_number: int = 0  # the line being read (1-based), for error messages of readers on top
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def read_lines(path: str | Path, stats: ReadStats | None = None, max_line_bytes: int | None = None) -> Iterator[str]:
    """Yield the non-empty lines of a UTF-8 text file without their line endings, one at a time.

    Blank lines are skipped and counted in `stats`; so are lines over `max_line_bytes` (read in
    1 MiB pieces, so memory stays bounded). A NUL byte (binary file) or invalid UTF-8 raises
    `DataError` with the file, the line number and the byte offset in the file.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    limit = max_line_bytes + 1 if max_line_bytes is not None else -1
    offset = 0
    with open(path, "rb") as handle:
        number = 0
        while raw := handle.readline(limit):
            number += 1
            stats.line_number = number
            stats._hash.update(raw)
            if max_line_bytes is not None and len(raw) > max_line_bytes:  # too long: skip the rest of it
                size = len(raw)
                while not raw.endswith(b"\n") and (raw := handle.readline(1 << 20)):
                    stats._hash.update(raw)
                    size += len(raw)
                stats.bytes, offset = stats.bytes + size, offset + size
                stats.long_lines += 1
                if len(stats.long_line_numbers) < 10:
                    stats.long_line_numbers.append(number)
                continue
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
