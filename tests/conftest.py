"""Shared fixtures: a small real corpus cut from ../shared, a tiny run configuration, and the tiny
random Llama (`model`) with its tokenizer (`tokenizer`) that the evaluation tests score with."""

import os
from pathlib import Path

import pytest
from eval_fixtures import make_model, make_tokenizer

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BABBLE_SHARED", REPO.parent / "shared"))  # BABBLE_SHARED: where ../shared lives
BABYLIKE = SHARED / "corpora" / "babylike_10M"


def _head(src: Path, dst: Path, n_lines: int) -> None:
    with src.open(encoding="utf-8") as f:
        dst.write_text("".join(line for _, line in zip(range(n_lines), f)), encoding="utf-8")


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """About 25k words of real BabyLM-format text (CHILDES with speaker tags + Wikipedia)."""
    if not BABYLIKE.is_dir():
        pytest.skip(f"shared corpus not found at {BABYLIKE}")
    out = tmp_path_factory.mktemp("corpus")
    _head(BABYLIKE / "childes.train", out / "childes.train", 3000)
    _head(BABYLIKE / "simple_wiki.train", out / "simple_wiki.train", 300)
    _head(BABYLIKE / "childes.dev", out / "childes.dev", 400)
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
