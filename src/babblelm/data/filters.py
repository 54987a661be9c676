"""Named cleaning filters. A filter maps one line to its cleaned form, or to None to drop it.

    chain = FilterChain(["childes_speaker_tags", "chat_annotations"])
    chain("*MOT:\tdon't cha [: you] ?")   # -> "don't you ?"
    chain.reports()                       # {"childes_speaker_tags": {"lines_changed": 1, ...}, ...}

Add a filter by decorating a function with `@register("name")`; configs refer to it by that
name. A filter that keeps state (duplicates seen, lines per book) or takes a number from the
source's config is a factory registered with `@register_factory`: the chain builds a fresh
one, so each file is cleaned the same way in every pass. Every filter's effect is counted, so
nothing is removed silently.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from .corpus import DataError

Filter = Callable[[str], str | None]
FilterFactory = Callable[[dict], Filter]
FILTERS: dict[str, FilterFactory] = {}  # name -> factory(params) -> filter
PARAMETER_FILTERS = {"min_words", "max_per_book"}  # switched on by a source's number, not by name


def register_factory(name: str) -> Callable[[FilterFactory], FilterFactory]:
    """Add a factory `make(params) -> filter` to `FILTERS` under `name`."""

    def add(make: FilterFactory) -> FilterFactory:
        if name in FILTERS:
            raise ValueError(f"filter {name!r} is already registered")
        FILTERS[name] = make
        return make

    return add


def register(name: str) -> Callable[[Filter], Filter]:
    """Add a stateless filter function to `FILTERS` under `name`."""

    def add(fn: Filter) -> Filter:
        register_factory(name)(lambda params: fn)
        return fn

    return add


def _has_text(line: str) -> bool:
    return any(ch.isalnum() for ch in line)


def _squash(line: str) -> str:
    return " ".join(line.split())


# --- speaker tags (CHILDES, Switchboard) -----------------------------------------------------

# A CHAT main-tier tag (`*MOT:\t`, `*CHI: `) or a switchboard-style turn tag (`A:\t`).
_SPEAKER_TAG = re.compile(r"^(?:\*[A-Za-z0-9_+-]+:[\t ]+|[A-Z]:\t+)")
# A line that starts like a CHAT main tier (`*MOT`, `*CHI`) but lacks the `:` and tab ending its tag.
_BROKEN_TAG = re.compile(r"^\*[A-Z][A-Z0-9]{1,3}(?![A-Za-z0-9_+-])(?!:[\t ])")


@register("childes_speaker_tags")
def childes_speaker_tags(line: str) -> str | None:
    """Strip a leading speaker tag such as `*MOT:\\t` or `A:\\t`; drop the line if nothing is left,
    or if it is a malformed CHAT main tier (`*MOT look`, `*CHI:no tab`): its tag cannot be told from its text."""
    if _BROKEN_TAG.match(line):
        return None
    stripped = _SPEAKER_TAG.sub("", line, count=1)
    return stripped if stripped.strip() else None


# --- CHAT transcription codes ----------------------------------------------------------------

_CHAT_STEPS = [
    # `word [: target]` and `<a b> [: target]`: the intended words replace what was said
    (re.compile(r"(?:<[^<>]*>|\S+)\s*\[:\s*([^\]]+)\]"), r"\1"),
    (re.compile(r"\[[^\]]*\]"), " "),  # [/] [//] [*] [!] [<] [+ PI] [=! sighs] [% com] ...
    (re.compile(r"(?<!\S)&-(\S+)"), r"\1"),  # filled pause &-uh -> uh
    (re.compile(r"(?<!\S)&\S*"), " "),  # &=laughs (event), &+wh (fragment), &~ ...
    (re.compile(r"(?<!\S)(?:xxx|yyy|www)(?!\S)"), " "),  # unintelligible / untranscribed
    (re.compile(r"\((?:\.+|\d+(?:\.\d*)?)\)"), " "),  # pauses (.) (..) (1.5)
    (re.compile(r"(?<!\S)\+\S*"), " "),  # terminators and linkers +... +/. +//. +"/. +, ++ +<
    (re.compile(r"(?<!\S)0\S*"), " "),  # omitted words 0is, bare 0
    (re.compile(r"[<>‹›⌈⌉⌊⌋→↗↘↑↓∙°≈≋⁎∬∮↻⇗⇘∞≠]"), " "),  # scope brackets, CA intonation symbols
    (re.compile(r"(?<=[^\s@])@[\w:$]+"), ""),  # special-form markers doggie@c crash@o
    (re.compile(r"\(([A-Za-z']+)\)"), r"\1"),  # incomplete words ye(a)h (o)kay (th)em
    (re.compile(r"(?<=[A-Za-z]):+"), ""),  # lengthening hm: tha:t
    (re.compile(r"(?<!\S):+(?!\S)"), " "),  # a lengthening colon left alone by a removed symbol
    (re.compile(r"(?<=\w)\+(?=\w)"), ""),  # compounds bed+room
    (re.compile(r"(?<=\w)_(?=\w)"), " "),  # thank_you next_to
]


# Lines without any of these characters or words have no CHAT codes (most utterances): skip the work.
_CHAT_ANY = re.compile(r"[\[&()+@:<>_\u0080-\uffff]|(?<!\S)(?:0|xxx|yyy|www)")


@register("chat_annotations")
def chat_annotations(line: str) -> str | None:
    """Remove CHAT transcription codes, keeping the words spoken (`[: word]` gives the corrected word).

    Drops the line when no letter or digit is left (`xxx .`, `0 [=! sighs] .`).
    """
    if not _CHAT_ANY.search(line):
        return line
    for pattern, repl in _CHAT_STEPS:
        line = pattern.sub(repl, line)
    line = _squash(line)
    return line if _has_text(line) else None


# --- Wikipedia -------------------------------------------------------------------------------

_WIKI_HEADER = re.compile(r"^\s*(=\s*){1,6}[^=].*?(\s*=){1,6}\s*$")


@register("wiki_headers")
def wiki_headers(line: str) -> str | None:
    """Drop article and section header lines such as `= = = Title = = =` or `== History ==`."""
    return None if _WIKI_HEADER.match(line) else line


_DOC_OPEN = re.compile(r'^<doc\b[^>]*\btitle="([^"]*)"[^>]*>\s*$')
_DOC_CLOSE = re.compile(r"^\s*</doc>\s*$")


class DocMarkup:
    """Drop WikiExtractor `<doc id=... title=...>` and `</doc>` lines and the title line after `<doc>`."""

    def __init__(self):
        self.title: str | None = None  # the title to drop if it is the next line

    def __call__(self, line: str) -> str | None:
        if match := _DOC_OPEN.match(line):
            self.title = html.unescape(match.group(1)).strip()
            return None
        title, self.title = self.title, None
        if _DOC_CLOSE.match(line) or (title is not None and line.strip() == title):
            return None
        return line


register_factory("wiki_doc_markup")(lambda params: DocMarkup())


# --- markup ----------------------------------------------------------------------------------

# A tag: a name then only name=value attributes, so CHAT's `<should we put>` is not a tag.
_HTML_TAG = re.compile(
    r"</?[A-Za-z][\w:-]*(?:\s+[\w:-]+\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s'\">]+))*\s*/?>|<!--.*?-->"
)


@register("html_tags")
def html_tags(line: str) -> str | None:
    """Remove HTML/XML tags and comments, unescape entities (`&amp;` -> `&`); drop lines left empty."""
    out = _HTML_TAG.sub(" ", line)
    if "&" in out:
        out = html.unescape(out)
    if out == line:
        return line
    out = _squash(out)
    return out if out else None


# --- subtitles -------------------------------------------------------------------------------

_SUB_DROP = re.compile(r"^\s*(?:\d+|\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}.*)\s*$")
_SUB_STEPS = [
    (re.compile(r"\{\\[^}]*\}"), " "),  # ASS/SSA override tags {\an8}
    (re.compile(r"\[[^\]]*\]|\([A-Z][A-Z0-9 ,.'!?-]*\)"), " "),  # [music playing], (DOOR SLAMS)
    (re.compile(r"[♪♫♬♩#]+"), " "),  # music notes
    (re.compile(r"(?:^|(?<=[.!?]\s))-+\s*(?=\S)"), ""),  # dialogue dashes: "- Hi. - Hello."
]


@register("subtitle_format")
def subtitle_format(line: str) -> str | None:
    """Strip subtitle formatting: cue numbers and timestamps, dialogue dashes, sound cues, music notes."""
    if _SUB_DROP.match(line):
        return None
    out = line
    for pattern, repl in _SUB_STEPS:
        out = pattern.sub(repl, out)
    if out == line:
        return line
    out = _squash(out)
    return out if _has_text(out) else None


# --- TinyStories -----------------------------------------------------------------------------

_OPENER = re.compile(r"^\s*(?:once upon a time|one day|a long time ago|long ago)\b\s*,?\s*(?:there (?:was|lived)\b\s*)?", re.I)


@register("tinystories_openers")
def tinystories_openers(line: str) -> str | None:
    """Remove the template opener of a story line (`Once upon a time, there was`, `One day,`) and
    `<|endoftext|>` separators; the next word is capitalized."""
    if line.strip() == "<|endoftext|>":
        return None
    out = _OPENER.sub("", line, count=1)
    if out == line:
        return line
    out = out.strip()
    return out[:1].upper() + out[1:] if _has_text(out) else None


# --- Gutenberg -------------------------------------------------------------------------------

_BOOK_HEADER = re.compile(r"^\*\*\* .+ \*\*\*\s*$")


@register("book_headers")
def book_headers(line: str) -> str | None:
    """Drop `*** Title by Author ***` book header lines."""
    return None if _BOOK_HEADER.match(line) else line


class MaxPerBook:
    """Keep at most `k` lines (paragraphs) of each book; a `*** Title by Author ***` line starts a book."""

    def __init__(self, k: int):
        self.k, self.seen = k, 0

    def __call__(self, line: str) -> str | None:
        if _BOOK_HEADER.match(line):
            self.seen = 0
            return line
        self.seen += 1
        return line if self.seen <= self.k else None


register_factory("max_per_book")(lambda params: MaxPerBook(params["max_per_book"]))


# --- length, normalization, duplicates -------------------------------------------------------


def _min_words(params: dict) -> Filter:
    n = params["min_words"]
    return lambda line: line if len(line.split()) >= n else None


register_factory("min_words")(_min_words)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060\ufeff]")


@register("normalize")
def normalize(line: str) -> str | None:
    """Unicode NFKC, control and zero-width characters removed, whitespace runs collapsed to one space."""
    if line.isascii() and "  " not in line and "\t" not in line and line == line.strip() and line.isprintable():
        return line
    out = _squash(_CONTROL.sub(" ", unicodedata.normalize("NFKC", line)))
    return out if out else None


class ExactDedup:
    """Drop a line identical to an earlier line of the same file (8-byte hashes kept in memory)."""

    def __init__(self):
        self.seen: set[bytes] = set()

    def __call__(self, line: str) -> str | None:
        key = hashlib.blake2b(line.encode(), digest_size=8).digest()
        if key in self.seen:
            return None
        self.seen.add(key)
        return line


register_factory("exact_dedup")(lambda params: ExactDedup())


# --- chains and reports ----------------------------------------------------------------------


@dataclass
class FilterReport:
    """What one filter did: lines it changed, lines it dropped, and the words that went with them."""

    lines_changed: int = 0
    lines_removed: int = 0
    words_removed: int = 0  # negative if the filter added words


def chain_names(filters: list[str], min_words: int = 0, max_per_book: int | None = None) -> list[str]:
    """The full filter list of a source: `max_per_book` first (it must see book headers),
    the named filters, then `min_words` last (it counts cleaned words)."""
    return (["max_per_book"] if max_per_book else []) + list(filters) + (["min_words"] if min_words else [])


class FilterChain:
    """Apply named filters in order to each line, counting what every filter changed."""

    def __init__(self, names: Iterable[str], params: dict | None = None):
        self.names = list(names)
        unknown = [n for n in self.names if n not in FILTERS]
        if unknown:
            raise DataError(f"unknown data filter(s) {unknown}; known filters: {sorted(set(FILTERS) - PARAMETER_FILTERS)}")
        params = params or {}
        self._steps = [(FILTERS[n](params), FilterReport()) for n in self.names]

    def __call__(self, line: str) -> str | None:
        for fn, report in self._steps:
            out = fn(line)
            if out is None:
                report.lines_removed += 1
                report.words_removed += len(line.split())
                return None
            if out != line:
                report.lines_changed += 1
                report.words_removed += len(line.split()) - len(out.split())
                line = out
        return line

    def reports(self) -> dict[str, dict[str, int]]:
        return {name: asdict(report) for name, (_, report) in zip(self.names, self._steps)}


def merge_reports(reports: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum per-file filter reports into one report per filter."""
    total: dict[str, dict[str, int]] = {}
    for report in reports:
        for name, counts in report.items():
            into = total.setdefault(name, dict.fromkeys(counts, 0))
            for key, value in counts.items():
                into[key] += value
    return total
