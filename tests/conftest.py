"""Shared fixtures: a small corpus built from the data shipped in tests/data and the embedded demo
grammar, a tiny run configuration, and the tiny random Llama (`model`) with its tokenizer
(`tokenizer`) that the evaluation tests score with.

No test outside `@pytest.mark.slow` reads ../shared: tests/data/babylike is a miniature corpus in the
babylike_10M layout (five sources, train and dev, original text), tests/data/blimp holds original
minimal pairs in the official BLiMP jsonl format, and `demo_childes_lines` adds as many CHILDES-style
lines as a test needs.
"""

import os
import random
from pathlib import Path

import pytest
from eval_fixtures import make_model, make_tokenizer

from babblelm.data.synthetic import Grammar

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
BABYLIKE = DATA / "babylike"  # childes, gutenberg, simple_wiki, switchboard, bnc_spoken (.train, .dev)
BLIMP = DATA / "blimp"  # six UIDs, all four BLiMP fields
SHARED = Path(os.environ.get("BABBLE_SHARED", REPO.parent / "shared"))  # only `slow` tests read it

SPEAKERS, SPEAKER_WEIGHTS = ("*MOT:\t", "*CHI:\t", "*FAT:\t"), (6, 3, 1)


def read_text_lines(path: Path) -> list[str]:
    """The non-blank lines of a shipped text file."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def demo_childes_lines(n_lines: int, seed: int) -> list[str]:
    """`n_lines` utterances of the demo grammar, each with a CHILDES speaker tag (`*MOT:\t`, ...)."""
    rng = random.Random(seed)
    grammar = Grammar(rng)
    return [rng.choices(SPEAKERS, SPEAKER_WEIGHTS)[0] + " ".join(grammar.utterance()) for _ in range(n_lines)]


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """About 25k training words (speaker tags not counted) of BabyLM-format text: CHILDES-style lines
    with speaker tags (the shipped transcripts with CHAT codes, then demo-grammar utterances) and
    Wikipedia-style articles, plus a CHILDES dev file. Sized so a tiny run takes about as many steps
    as on the first 3000 lines of the real corpus (111 steps an epoch with `tiny_raw`)."""
    out = tmp_path_factory.mktemp("corpus")
    _write(out / "childes.train", read_text_lines(BABYLIKE / "childes.train") + demo_childes_lines(3500, seed=11))
    _write(out / "simple_wiki.train", read_text_lines(BABYLIKE / "simple_wiki.train"))
    _write(out / "childes.dev", read_text_lines(BABYLIKE / "childes.dev") + demo_childes_lines(300, seed=12))
    return out


def tiny_raw(corpus: Path, out_dir: Path, **sections) -> dict:
    """A raw config dict for a tiny, fast CPU run; `sections` update individual sections."""
    raw = {
        "run": {"name": "tiny", "out_dir": str(out_dir), "seed": 7, "device": "cpu"},
        "data": {"corpus": str(corpus), "seq_len": 32, "track": "strict-small"},
        "tokenizer": {"vocab_size": 400},
        "model": {"arch": "transformer", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 64, "max_position_embeddings": 32},
        "optim": {"lr": 3e-3},
        "schedule": {"warmup_steps": 5},
        "train": {"epochs": 1, "batch_size": 8, "grad_accum": 2, "log_every": 5, "dev_every": 20,
                  "dev_batches": 2, "save_every": 0},
        "checkpoints": {"scale": 0.002},
    }
    for key, values in sections.items():
        raw[key].update(values)
    return raw


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE (with BOS) trained on a few sentences; test files may define their own."""
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    """A tiny random Llama sized to `tokenizer`."""
    return make_model(len(tokenizer))
