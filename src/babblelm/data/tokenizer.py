"""Byte-level BPE tokenizer trained with Hugging Face `tokenizers`, saved as a transformers tokenizer.

    tok = train_tokenizer(lines, vocab_size=16_000, min_frequency=2, out_dir="data/tokenizer")
    tok("the cat").input_ids        # [0, ...]: <bos> is prepended on every encode
    AutoTokenizer.from_pretrained("data/tokenizer")   # loads the same tokenizer back

Special tokens come first: <bos>=0, <eos>=1, <pad>=2. Byte-level BPE covers every byte, so no
<unk> is needed. Words keep their leading space inside tokens (` the`); the first word of a
text has none, since no prefix space is added.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .corpus import batched

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, PAD]  # ids 0, 1, 2
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


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
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {EOS} {BOS} $B:1",
        special_tokens=[(tok, backend.token_to_id(tok)) for tok in (BOS, EOS)],
    )
    tokenizer = wrap_tokenizer(backend)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def wrap_tokenizer(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """A transformers tokenizer around a trained backend: BOS prepended, no token_type_ids."""
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        add_bos_token=True,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_input_names=MODEL_INPUT_NAMES,
    )
