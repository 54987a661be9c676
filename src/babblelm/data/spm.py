"""SentencePiece BPE (`tokenizer.kind: sentencepiece`): trained with the `sentencepiece` package as the
TAAM reference trains it, shipped as a transformers fast tokenizer (`tokenizer.json`) that encodes as
the SentencePiece model does, so it loads without sentencepiece (the official BabyLM pipeline has none).

    backend, report = train_sentencepiece(cfg.tokenizer, {"eng": lines, "nld": ...}, premiums, "data/tokenizer")

Training. Each language contributes `sample_bytes x premium` UTF-8 bytes of its training lines
(`lines` are callables returning a fresh iterator): each line is kept with the same probability
(a fixed seed), so the sample spreads over the whole text.
When a language has less text than that, every language's share shrinks by the same factor, so the
samples stay equal in premium-adjusted bytes. Every 20th sampled line is held out (the reference
holds out 5%); SentencePiece trains BPE on the rest with the reference's settings (ids <unk> 0,
<s> 1, </s> 2, <pad> 3; at most 2M sentences, shuffled), and the share of <unk> pieces in each
language's held-out lines must stay within `unk_rate_limits` (a one-line error names the language;
the reference stops there too). With `byte_fallback` an unknown character becomes its UTF-8 byte
tokens, so nothing is <unk>. `sentencepiece.model` stays in the folder.

The fast tokenizer (`to_tokenizers`) holds the model's vocabulary and ids, BPE merges ranked by the
merged piece's score (every split of a piece into two pieces, as SentencePiece merges any adjacent
pair that forms a piece), byte fallback, consecutive unknowns fused into one <unk>, and the
normalizer spec: SentencePiece's own normalization table (`Precompiled`), then whitespace as
SentencePiece treats it (runs collapsed, ends stripped, a leading "▁" added, pieces never cross a
space). The `tokenizers` library's `Precompiled` applies the table to whole grapheme clusters, dropping a
combining mark or emoji modifier that follows a character the table rewrites (an uppercase letter
under case folding). So the text is first composed (NFC) and a control character that the NMT
tables delete is put before every such mark: each character is then looked up alone, as
SentencePiece does. What remains different (docs/data.md): a letter carrying a precomposed
accent plus a separate combining mark, and a fullwidth letter followed by a combining mark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..config import UNK_RATE_LIMITS
from .corpus import DataError
from .quotas import measure

SEED = 0
HOLD_OUT_EVERY = 20  # every 20th sampled line checks the unknown rate (5%, as the reference)
MAX_SENTENCES = 2_000_000  # SentencePiece's input_sentence_size: lines it samples from the training text
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"  # ids 0, 1, 2, 3
MODEL_FILE = "sentencepiece.model"
MARK = "\x01"  # deleted by SentencePiece's NMT normalization tables; a grapheme boundary in Unicode
MARKS = r"(?<!\A)(?=[\p{M}\p{Grapheme_Extend}\x{200D}\x{1F3FB}-\x{1F3FF}])"  # characters that join the one before


def _sentencepiece():
    try:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise DataError("tokenizer.kind: sentencepiece needs the sentencepiece and protobuf packages: "
                        "pip install 'babblelm[multilingual]'") from None
    return sentencepiece, sentencepiece_model_pb2


def train_sentencepiece(cfg, streams: dict[str, Callable[[], Iterable[str]]], premiums: dict[str, float],
                        out_dir: str | Path):
    """Train on a byte-equalized sample of `streams`, check the unknown rates, save the SentencePiece
    model in `out_dir`; return (its `tokenizers.Tokenizer`, the manifest's report)."""
    spm, _ = _sentencepiece()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    available = {lang: sum(measure(line, "bytes") for line in lines()) for lang, lines in streams.items()}
    empty = [lang for lang, n in available.items() if n == 0]
    if empty:
        raise DataError(f"tokenizer: no training text for {', '.join(empty)} to train SentencePiece on")
    scale = min(1.0, *(available[lang] / (cfg.sample_bytes * premiums[lang]) for lang in streams))
    sample_file = out_dir / "sample.txt"
    report, held_out = {}, {}
    with open(sample_file, "w", encoding="utf-8") as handle:
        for index, (lang, lines) in enumerate(streams.items()):
            target = cfg.sample_bytes * premiums[lang] * scale
            report[lang], held_out[lang] = _sample(lines(), target / available[lang], index, handle)
            report[lang]["target_bytes"] = round(target)
    try:
        model_file = train_model(sample_file, cfg, out_dir)
    finally:
        sample_file.unlink(missing_ok=True)
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    for lang, lines in held_out.items():
        pieces = processor.encode(lines)
        total = sum(map(len, pieces))
        rate = sum(ids.count(processor.unk_id()) for ids in pieces) / max(total, 1)
        limit = cfg.unk_rate_limits.get(lang, cfg.unk_rate_limits.get("default", UNK_RATE_LIMITS["default"]))
        if rate > limit:
            raise DataError(f"tokenizer.unk_rate_limits.{lang}: {rate:.4%} of {lang}'s held-out pieces are <unk>, "
                            f"over the limit {limit:.4%}; raise tokenizer.character_coverage, set "
                            f"tokenizer.byte_fallback: true or raise the limit")
        report[lang].update(unk_rate=rate, unk_rate_limit=limit)
    words = sum(r["words"] for r in report.values())
    if len(streams) == 1:
        text = "all the selected training lines" if scale < 1 else \
            f"a random {cfg.sample_bytes:,}-byte sample of the selected training lines"
    else:
        shrink = f", x {scale:.4f} to fit the shortest language" if scale < 1 else ""
        text = (f"a byte-equalized sample of every language's selected training lines "
                f"({cfg.sample_bytes:,} bytes x premium{shrink})")
    text += f"; every {HOLD_OUT_EVERY}th sampled line held out for the <unk> check"
    return to_tokenizers(model_file), {"kind": "sentencepiece", "text": text, "words": words, "languages": report}


def train_model(text_file: str | Path, cfg, out_dir: str | Path) -> Path:
    """SentencePiece BPE trained on the lines of `text_file` with the reference's settings and `cfg`'s;
    returns the path of `out_dir/sentencepiece.model`."""
    spm, _ = _sentencepiece()
    model_file = Path(out_dir) / MODEL_FILE
    try:
        spm.set_random_generator_seed(SEED)
        spm.SentencePieceTrainer.train(
            input=str(text_file), model_prefix=str(model_file.with_suffix("")), model_type="bpe",
            vocab_size=cfg.vocab_size, character_coverage=cfg.character_coverage, byte_fallback=cfg.byte_fallback,
            normalization_rule_name=cfg.normalization, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            input_sentence_size=MAX_SENTENCES, shuffle_input_sentence=True, num_threads=os.cpu_count() or 1,
            minloglevel=1)  # warnings and errors only
    except RuntimeError as err:
        key = "tokenizer.vocab_size" if "ocabulary size" in str(err) else "tokenizer"
        reason = str(err).strip().splitlines()[-1].rsplit("] ", 1)[-1]  # without the C++ source location
        raise DataError(f"{key}: SentencePiece could not train on the sample: {reason}") from None
    finally:
        model_file.with_suffix(".vocab").unlink(missing_ok=True)
    return model_file


def _sample(lines: Iterable[str], rate: float, index: int, handle) -> tuple[dict, list[str]]:
    """Keep each line with probability `rate` (seeded per language); write the kept lines to `handle`
    except every HOLD_OUT_EVERY-th, which is returned. Returns (counts, held-out lines)."""
    rng = np.random.default_rng([SEED, index])
    counts = {"bytes": 0, "lines": 0, "words": 0}
    held: list[str] = []
    for line in lines:
        if rng.random() >= rate:
            continue
        counts["lines"] += 1
        counts["bytes"] += measure(line, "bytes")
        counts["words"] += len(line.split())
        if counts["lines"] % HOLD_OUT_EVERY == 0:
            held.append(line)
        else:
            handle.write(line + "\n")
    counts["held_out_lines"] = len(held)
    return counts, held


def to_tokenizers(model_file: str | Path):
    """A `tokenizers.Tokenizer` that encodes as the SentencePiece BPE model in `model_file` (no BOS/EOS)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    spm, pb = _sentencepiece()
    proto = pb.ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    if proto.trainer_spec.model_type != pb.TrainerSpec.BPE:
        raise ValueError(f"{model_file}: not a SentencePiece BPE model")
    piece = pb.ModelProto.SentencePiece
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    mergeable = {p.piece for p in proto.pieces if p.type in (piece.NORMAL, piece.USER_DEFINED)}
    ranked = []
    for p in proto.pieces:
        if p.type == piece.NORMAL and len(p.piece) > 1:
            splits = [(p.piece[:k], p.piece[k:]) for k in range(1, len(p.piece))]
            ranked += [(-p.score, vocab[a], vocab[b], a, b) for a, b in splits if a in mergeable and b in mergeable]
    merges = [(a, b) for *_, a, b in sorted(ranked)]
    unk = proto.pieces[proto.trainer_spec.unk_id].piece
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                                   byte_fallback=proto.trainer_spec.byte_fallback))
    spec = proto.normalizer_spec
    steps = []
    if spec.precompiled_charsmap:
        processor = spm.SentencePieceProcessor(model_file=str(model_file))
        if processor.normalize(f"a{MARK}b") == processor.normalize("ab"):
            steps += [normalizers.NFC(), normalizers.Replace(Regex(MARKS), MARK)]
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:  # runs of spaces collapsed, the first one and the last ones (or "▁") dropped
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Replace(Regex(r"\A |[ ▁]+\z"), "")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(" "))
    steps.append(normalizers.Replace(" ", "▁"))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    backend.decoder = decoders.Sequence([  # leading spaces dropped, <unk> written as SentencePiece writes it
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        *([decoders.Strip(" ", 1 << 20, 0)] if spec.add_dummy_prefix else []),
        decoders.Replace(unk, proto.trainer_spec.unk_surface)])
    return backend
