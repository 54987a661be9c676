"""Read UTF-8 text files line by line, streamed, with counts and a sha256 of the bytes read.

    stats = ReadStats()
    for line in read_lines("corpus/childes.train", stats, max_line_bytes=1_000_000):
        ...
    stats.sha256, stats.lines, stats.empty_lines, stats.long_lines   # known once the file is read

Lines end at `\\n`, `\\r\\n` or a lone `\\r` (old Mac files). A NUL byte (binary file), invalid
UTF-8 or a file that cannot be read raises `DataError` naming the file (and the line and byte
offset). A line longer than `max_line_bytes` is skipped, counted in `stats.long_lines` and its
line number kept in `stats.long_line_numbers` (the first 10): a documented skip, never silent.
`ReadStats.drop` and `strip_controls` let the readers on top (`readers.py`) count what they leave out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

CHUNK_BYTES = 1 << 20  # files are read in pieces of this size, so memory stays bounded
KEEP_LINE_NUMBERS = 10  # line numbers kept per kind of skip, for warnings
_BLANK = re.compile(r"[\s\ufeff]*\Z")  # whitespace and byte order marks only
# C0 and C1 control characters except the tab: never text (a JSON "\u0000", a stray form feed).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
_WARNED: set[str] = set()  # the data warnings this process has given (warn_once)


def warn_once(logger, message: str) -> None:
    """Log `message` ("data: ...") as a warning the first time this process meets it: one command may
    prepare, or reuse, the same data more than once."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning("data: %s", message)


class DataError(ValueError):
    """The corpus, a setting or a prepared data folder is not what was expected."""


@dataclass
class ReadStats:
    """What `read_lines` and the readers on top saw in one file: filled in while the file streams."""

    lines: int = 0  # non-empty lines yielded
    empty_lines: int = 0  # blank (or whitespace-only) lines skipped
    bytes: int = 0
    long_lines: int = 0  # lines over max_line_bytes, skipped
    long_line_numbers: list[int] = field(default_factory=list)  # the first 10 of them
    control_chars: int = 0  # control characters removed (each run replaced by a space)
    dropped: dict[str, int] = field(default_factory=dict)  # lines a reader left out, by reason
    dropped_at: dict[str, list[int]] = field(default_factory=dict)  # their first line numbers, by reason
    line_number: int = 0  # the line being read (1-based), for error messages of readers on top
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def drop(self, reason: str, line_number: int, count: int = 1) -> None:
        """Count `count` lines left out for `reason`, the first at `line_number`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.note(reason, line_number)

    def note(self, reason: str, line_number: int) -> None:
        """Keep `line_number` among the first line numbers of `reason`."""
        numbers = self.dropped_at.setdefault(reason, [])
        if len(numbers) < KEEP_LINE_NUMBERS and line_number not in numbers:
            numbers.append(line_number)


def strip_controls(text: str, stats: ReadStats, line_number: int) -> str:
    """`text` with every run of control characters (all but the tab) replaced by a space, counted in `stats`."""
    if not _CONTROL.search(text):
        return text
    stats.control_chars += sum(len(m.group()) for m in _CONTROL.finditer(text))
    stats.note("control_chars", line_number)
    return _CONTROL.sub(" ", text)


def read_lines(path: str | Path, stats: ReadStats | None = None, max_line_bytes: int | None = None) -> Iterator[str]:
    """Yield the non-empty lines of a UTF-8 text file without their line endings, one at a time.

    Lines end at `\\n`, `\\r\\n` or a lone `\\r`; byte order marks that start a line are removed.
    Blank lines (whitespace and byte order marks) are skipped and counted in `stats`; so are lines
    over `max_line_bytes` (never held in memory whole). A NUL byte (binary file), invalid UTF-8 or
    an unreadable file raises `DataError` naming the file, and the line number and byte offset where
    there is one.
    """
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    try:
        with open(path, "rb") as handle:
            for number, (offset, raw) in enumerate(_raw_lines(handle, max_line_bytes, stats), start=1):
                stats.line_number = number
                if raw is None:
                    stats.long_lines += 1
                    if len(stats.long_line_numbers) < KEEP_LINE_NUMBERS:
                        stats.long_line_numbers.append(number)
                    continue
                line = _decode(raw, path, number, offset)
                if line.startswith("\ufeff"):  # a byte order mark, at the top or where files were joined
                    line = line.lstrip("\ufeff")
                if not _BLANK.match(line):
                    stats.lines += 1
                    yield line
                else:
                    stats.empty_lines += 1
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err}); expected a readable UTF-8 text file") from None


def _raw_lines(handle, limit: int | None, stats: ReadStats) -> Iterator[tuple[int, bytes | None]]:
    """(byte offset, line) for every line of a binary stream, without its ending; the line is None
    when it is over `limit` bytes (its bytes are dropped as they are read). Hashes and counts the bytes."""
    pending, start, offset = b"", 0, 0  # the unfinished line, its offset, the offset of the next byte
    too_long = after_cr = False  # the unfinished line is over the limit; the last chunk ended in \r
    while chunk := handle.read(CHUNK_BYTES):
        stats._hash.update(chunk)
        stats.bytes += len(chunk)
        if after_cr and chunk.startswith(b"\n"):  # the \n of a \r\n split between reads
            chunk, start, offset = chunk[1:], start + 1, offset + 1
        parts = chunk.splitlines(keepends=True)  # at \n, \r\n and \r only (bytes)
        rest = parts.pop() if parts and not parts[-1].endswith((b"\n", b"\r")) else b""
        for part in parts:
            line = pending + part.rstrip(b"\r\n") if pending else part.rstrip(b"\r\n")
            yield start, None if too_long or (limit is not None and len(line) > limit) else line
            offset += len(part)
            pending, too_long, start = b"", False, offset
        after_cr = chunk.endswith(b"\r")
        offset += len(rest)
        if not too_long:
            pending += rest
            if limit is not None and len(pending) > limit:
                pending, too_long = b"", True
    if pending or too_long:  # a last line without a line ending
        yield start, None if too_long else pending


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
