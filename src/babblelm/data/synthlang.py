"""Three synthetic "languages" of different difficulty, for mixing experiments (benchmarks/taam_floor.py).

    write_synthetic_languages("corpora/synth", words=60_000, seed=0)   # -> easy/, medium/, hard/

Each language has its own vocabulary: every word is mapped to a pseudo-word spelled from
syllables chosen by the CRC-32 of (language, word), so the shared tokenizer must learn three
lexicons.
  easy    the demo grammar's utterances (data/synthetic.py), words mapped
  medium  the same grammar with its own lexicon and the words of every utterance shuffled
  hard    words drawn uniformly from 3,000 pseudo-words: nothing to learn beyond the unigram
          distribution, so its loss has a high structural floor (log 3000 per word)
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

from .synthetic import Grammar

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
HARD_VOCAB = 3000
LANGUAGES = ("easy", "medium", "hard")


def pseudo_word(language: str, word: str) -> str:
    h = zlib.crc32(f"{language}:{word}".encode())
    n = 1 + h % 3
    return "".join(SYLLABLES[(h >> (4 + 6 * i)) % len(SYLLABLES)] for i in range(n + 1))


def utterances(language: str, rng: random.Random, grammar: Grammar):
    hard_vocab = [pseudo_word("hard", str(i)) for i in range(HARD_VOCAB)]
    while True:
        words = grammar.utterance()
        if language == "hard":
            yield [rng.choice(hard_vocab) for _ in words]
            continue
        words = [pseudo_word(language, w) for w in words]
        if language == "medium":
            rng.shuffle(words)
        yield words


def write_synthetic_languages(out_dir, words: int, seed: int = 0, dev_every: int = 20) -> dict[str, Path]:
    """Write `<lang>/<lang>.train` and `<lang>.dev` (about `words` words each); return the folders."""
    out = {}
    for i, language in enumerate(LANGUAGES):
        rng = random.Random(f"{seed}:{language}")
        lines, total = [], 0
        for sentence in utterances(language, rng, Grammar(rng)):
            lines.append(" ".join(sentence))
            total += len(sentence)
            if total >= words:
                break
        folder = Path(out_dir) / language
        folder.mkdir(parents=True, exist_ok=True)
        train = [line for j, line in enumerate(lines) if j % dev_every]
        dev = [line for j, line in enumerate(lines) if not j % dev_every]
        (folder / f"{language}.train").write_text("".join(f"{line}\n" for line in train), encoding="utf-8")
        (folder / f"{language}.dev").write_text("".join(f"{line}\n" for line in dev), encoding="utf-8")
        out[language] = folder
    return out
