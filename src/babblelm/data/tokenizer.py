"""Tokenizers, saved as transformers fast tokenizers: `tokenizer.kind` picks byte-level BPE (the default,
trained here with Hugging Face `tokenizers`) or SentencePiece BPE (data/spm.py).

    tok, report = fit_tokenizer(cfg.tokenizer, {"corpus": lines}, "data/tokenizer")  # report: for the manifest
    tok("the cat").input_ids        # [0, ...]: BOS is prepended on every encode
    AutoTokenizer.from_pretrained("data/tokenizer")   # loads the same tokenizer back

Byte-level BPE: special tokens come first, <bos>=0, <eos>=1, <pad>=2; it covers every byte, so no
<unk> is needed. Words keep their leading space inside tokens (` the`); the first word of a text has
none, since no prefix space is added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .corpus import batched
from .quotas import round_robin

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, PAD]  # ids 0, 1, 2
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def fit_tokenizer(cfg, streams: dict[str, Callable[[], Iterable[str]]], out_dir: str | Path,
                  premiums: dict[str, float] | None = None, progress: bool = False):
    """Train the tokenizer `cfg` (a TokenizerSection) describes on `streams` (training lines per language,
    callables returning a fresh iterator; one entry for a single corpus), save it to `out_dir`, and
    return (it, what the manifest records: kind, `text` (what it was trained on), per-language checks)."""
    if cfg.kind == "sentencepiece":
        from . import spm

        backend, report = spm.train_sentencepiece(cfg, streams, premiums or dict.fromkeys(streams, 1.0), out_dir)
        tokenizer = wrap_tokenizer(backend, bos=spm.BOS, eos=spm.EOS, pad=spm.PAD, unk=spm.UNK)
        tokenizer.save_pretrained(str(out_dir))
        return tokenizer, report
    lines = round_robin([iter(lines()) for lines in streams.values()])
    tokenizer = train_tokenizer(lines, cfg.vocab_size, cfg.min_frequency, out_dir, progress=progress)
    text = "every selected training line" + (" of every language, round-robin" if len(streams) > 1 else "")
    return tokenizer, {"kind": "byte_bpe", "text": text}


def train_tokenizer(
    lines: Iterable[str],
    vocab_size: int,
    min_frequency: int,
    out_dir: str | Path,
    batch_lines: int = 1000,
    progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on `lines`, save it to `out_dir` with `save_pretrained`, and return it."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    backend.train_from_iterator(batched(lines, batch_lines), trainer=trainer)
    tokenizer = wrap_tokenizer(backend)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def wrap_tokenizer(backend: Tokenizer, bos: str = BOS, eos: str = EOS, pad: str = PAD,
                   unk: str | None = None) -> PreTrainedTokenizerFast:
    """A transformers tokenizer around a trained backend: BOS prepended (a pair: BOS A EOS BOS B), no
    token_type_ids."""
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {eos} {bos} $B:1",
        special_tokens=[(tok, backend.token_to_id(tok)) for tok in (bos, eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        **({"unk_token": unk} if unk is not None else {}),
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_input_names=MODEL_INPUT_NAMES,
    )
