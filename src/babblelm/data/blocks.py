"""Token blocks: the training stream cut into fixed-length rows, with exact words per row.

Each line becomes `[BOS] + ids + [EOS]`; the lines are concatenated in order and cut into
blocks of `seq_len` tokens with no padding. A line's words are credited to the block that
holds its last token (its EOS), so the per-block counts add up to exactly the words used and
a trainer knows the words seen after every block. The final partial block is dropped and its
tokens and words are reported.

    stats = write_blocks(lines, tokenizer, seq_len=512, out_dir="data", split="train")
    blocks = load_blocks("data", "train")   # blocks.tokens: memmap [n_blocks, seq_len]

Files: `<split>.bin` (raw uint16 or uint32 ids, row-major) and `<split>.words.npy` (int64).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from .corpus import DataError, batched

MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"  # the prepared data's tokenizer folder, beside the manifest


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids 0..vocab_size-1."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


@dataclass
class BlockStats:
    """What `write_blocks` wrote (and dropped) for one split."""

    lines: int = 0
    words: int = 0  # words of all lines encoded
    tokens: int = 0  # stream length, BOS and EOS included
    blocks: int = 0
    dropped_tokens: int = 0  # the final partial block
    dropped_words: int = 0  # words of lines whose EOS fell in the dropped tail


@dataclass
class Blocks:
    tokens: np.memmap  # [n_blocks, seq_len]
    words: np.ndarray  # [n_blocks] int64, words credited to each block


class _BlockWriter:
    """Append token chunks to a file in whole blocks, carrying the partial block between chunks."""

    def __init__(self, handle, seq_len: int, dtype: np.dtype):
        self.handle, self.seq_len = handle, seq_len
        self.tail = np.zeros(0, dtype=dtype)  # tokens of the open (partial) block
        self.tail_words = 0  # words already credited to the open block
        self.blocks = 0
        self.word_chunks: list[np.ndarray] = []

    def add(self, stream: np.ndarray, eos_pos: np.ndarray, words: np.ndarray) -> None:
        """Add a chunk of the stream; `eos_pos` are the lines' last-token positions within it."""
        pending = np.concatenate([self.tail, stream])
        eos_block = (len(self.tail) + eos_pos) // self.seq_len  # relative to the open block
        full = len(pending) // self.seq_len
        credit = np.bincount(eos_block, weights=words, minlength=full + 1).astype(np.int64)
        credit[0] += self.tail_words
        self.handle.write(pending[: full * self.seq_len].tobytes())
        self.word_chunks.append(credit[:full])
        self.tail, self.tail_words = pending[full * self.seq_len :], int(credit[full])
        self.blocks += full


def write_blocks(
    lines: Iterable[str],
    tokenizer,
    seq_len: int,
    out_dir: str | Path,
    split: str,
    batch_lines: int = 4096,
    progress=None,
) -> BlockStats:
    """Encode `lines` in batches and write `<split>.bin` and `<split>.words.npy` under `out_dir`.

    `tokenizer` is a transformers fast tokenizer with `bos_token_id`/`eos_token_id`; `progress`,
    if given, is called with the number of lines done after each batch.
    """
    out_dir = Path(out_dir)
    backend = tokenizer.backend_tokenizer
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    dtype = token_dtype(len(tokenizer))
    stats = BlockStats()
    bin_path = out_dir / f"{split}.bin"
    tmp_path = bin_path.with_name(bin_path.name + ".tmp")
    with open(tmp_path, "wb") as handle:
        writer = _BlockWriter(handle, seq_len, dtype)
        for batch in batched(lines, batch_lines):
            encodings = backend.encode_batch(batch, add_special_tokens=False)
            stream, eos_pos = _frame([e.ids for e in encodings], bos, eos, dtype)
            words = np.fromiter((len(line.split()) for line in batch), dtype=np.int64, count=len(batch))
            writer.add(stream, eos_pos, words)
            stats.lines += len(batch)
            stats.words += int(words.sum())
            stats.tokens += len(stream)
            if progress is not None:
                progress(len(batch))
    os.replace(tmp_path, bin_path)
    block_words = np.concatenate(writer.word_chunks) if writer.word_chunks else np.zeros(0, np.int64)
    np.save(out_dir / f"{split}.words.npy", block_words)
    stats.blocks = writer.blocks
    stats.dropped_tokens, stats.dropped_words = len(writer.tail), writer.tail_words
    return stats


def _frame(ids: list[list[int]], bos: int, eos: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate `[bos] + ids + [eos]` per line; return the stream and each line's EOS position."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) + 2
    eos_pos = np.cumsum(lengths) - 1
    bos_pos = eos_pos - lengths + 1
    stream = np.empty(int(lengths.sum()), dtype=dtype)
    stream[bos_pos], stream[eos_pos] = bos, eos
    is_text = np.ones(len(stream), dtype=bool)
    is_text[bos_pos] = is_text[eos_pos] = False
    stream[is_text] = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(is_text.sum()))
    return stream, eos_pos


def load_blocks(data_dir: str | Path, split: str) -> Blocks:
    """Memory-map `<split>.bin` and load `<split>.words.npy`, checked against `manifest.json`."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"no {MANIFEST} in {data_dir}: prepare the data first (babble data)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if split not in manifest["splits"]:
        raise DataError(f"{manifest_path}: no split {split!r}; has {sorted(manifest['splits'])}")
    n_blocks, seq_len = manifest["splits"][split]["blocks"], manifest["seq_len"]
    dtype = np.dtype(manifest["dtype"])
    bin_path, words_path = data_dir / f"{split}.bin", data_dir / f"{split}.words.npy"
    expected = n_blocks * seq_len * dtype.itemsize
    size = bin_path.stat().st_size if bin_path.is_file() else None
    if size != expected:
        raise DataError(
            f"{bin_path}: expected {expected} bytes ({n_blocks} blocks x {seq_len} tokens x {dtype.itemsize} bytes "
            f"per {manifest['dtype']}, from {manifest_path}), found {'no file' if size is None else f'{size} bytes'}"
        )
    words = np.load(words_path, allow_pickle=False) if words_path.is_file() else None
    if words is None or words.shape != (n_blocks,) or words.dtype != np.int64:
        found = "no file" if words is None else f"shape {words.shape} dtype {words.dtype}"
        raise DataError(f"{words_path}: expected int64 word counts of shape ({n_blocks},), found {found}")
    if n_blocks == 0:
        return Blocks(np.zeros((0, seq_len), dtype=dtype), words)
    return Blocks(np.memmap(bin_path, dtype=dtype, mode="r", shape=(n_blocks, seq_len)), words)
