"""Multilingual data: one prepared corpus per language, one shared tokenizer, a byte-premium budget.

    manifest = prepare_multilingual(cfg.mixing, cfg.data, cfg.tokenizer, "runs/x/data")

Layout: `<out>/tokenizer/` (shared: byte-level BPE on the languages' selected training lines in
round-robin order, or SentencePiece on a byte-equalized sample of them),
`<out>/<lang>/{train,dev}.bin|.words.npy|manifest.json` (load with `load_blocks(out / lang, split)`),
`<out>/<lang>/clean/` and `<out>/multilingual.json`.

Each language is read, cleaned and cut exactly as `prepare_data` does (the same stages). The
budget (`mixing.budget`) is in premium-adjusted bytes: a language's English-equivalent size is
its UTF-8 bytes / premium, and each of K languages gets budget / K of it (so budget / K x premium
real bytes); a language with less clean training text than its share is refused, so the budget
is never silently unequal. The manifest records every language's bytes, adjusted bytes, words and
tokens, and the total is checked against the budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from ..config import DataSection, MixingSection, TokenizerSection
from .blocks import MANIFEST, TOKENIZER_DIR, token_dtype, write_blocks
from .corpus import DataError, warn_once
from .prepare import (_budget, _check_out_dir, _check_splits, _source_settings, _split_streams, _survey, _write_json,
                      file_sha256)
from .readers import scan_corpus, skipped_summary
from .tokenizer import fit_tokenizer

log = logging.getLogger(__name__)

# Byte premiums (UTF-8 bytes needed for the content of 1 English byte), NLLB-based estimates.
PREMIUMS = {"eng": 1.0, "nld": 1.0516, "zho_hans": 0.9360, "zho_hant": 0.9894}
ML_MANIFEST = "multilingual.json"


def premium_table(mix: MixingSection) -> dict[str, float]:
    """Each configured language's premium: its own `premium`, else the table (zho -> mixing.zho_variant)."""
    table = {}
    for lang, sec in mix.languages.items():
        key = mix.zho_variant if lang == "zho" else lang
        if sec.premium is None and key not in PREMIUMS:
            raise ValueError(f"mixing.languages.{lang}.premium: no built-in byte premium for {lang!r} "
                             f"(known: {', '.join(PREMIUMS)}); set it")
        table[lang] = sec.premium if sec.premium is not None else PREMIUMS[key]
    return table


def language_corpus(mix: MixingSection, data_cfg: DataSection, lang: str) -> Path:
    return Path(mix.languages[lang].corpus or Path(data_cfg.corpus) / lang)


def multilingual_config_hash(mix: MixingSection, data_cfg: DataSection, tok_cfg: TokenizerSection) -> str:
    """The hash of every setting the prepared data depends on (not the mixing policy: runs that mix the
    same languages differently share one preparation)."""
    mixing = {"languages": {lang: dataclasses.asdict(sec) for lang, sec in mix.languages.items()},
              "zho_variant": mix.zho_variant, "budget": mix.budget}
    return hashlib.sha256(json.dumps({"mixing": mixing, "data": dataclasses.asdict(data_cfg),
                                      "tokenizer": dataclasses.asdict(tok_cfg), "format": 1}, sort_keys=True).encode()).hexdigest()


def prepare_multilingual(mix: MixingSection, data_cfg: DataSection, tok_cfg: TokenizerSection, out_dir,
                         progress: bool = False) -> dict:
    """Prepare (or reuse) every language's blocks and the shared tokenizer; return the manifest."""
    out_dir = Path(out_dir)
    premiums = premium_table(mix)
    scans = {}
    for lang in mix.languages:
        corpus = language_corpus(mix, data_cfg, lang)
        _check_out_dir(str(corpus), out_dir)
        scans[lang] = scan_corpus(corpus, exclude=out_dir)
        if scans[lang][1]:
            warn_once(log, skipped_summary(corpus, scans[lang][1]))
    files = {lang: scan[0] for lang, scan in scans.items()}
    skipped = {lang: [{"file": str(s.path), "reason": s.reason} for s in scan[1]] for lang, scan in scans.items()}
    chash = multilingual_config_hash(mix, data_cfg, tok_cfg)
    inputs = {lang: sorted([str(f.path), file_sha256(f.path)] for f in fs) for lang, fs in files.items()}
    cached = _reusable(out_dir, chash, inputs, skipped)
    if cached is not None:
        return cached
    share = mix.budget / len(premiums) if mix.budget is not None else None
    streams, languages = {}, {}
    for lang, lang_files in files.items():
        lang_dir = out_dir / lang
        lang_dir.mkdir(parents=True, exist_ok=True)
        quota = int(share * premiums[lang]) if share is not None else None
        cfg = dataclasses.replace(data_cfg, corpus=str(language_corpus(mix, data_cfg, lang)), max_bytes=quota,
                                  max_words=None, track="none")
        warnings: list[str] = []
        settings = _source_settings(cfg, lang_files, warnings)
        records = [_survey(f, i, settings[f.source], cfg, lang_dir, warnings, progress) for i, f in enumerate(lang_files)]
        split_inputs = {split: [r for r in records if r["split"] == split] for split in ("train", "dev")}
        allocations, budget = _budget(split_inputs["train"], cfg, settings, lang_dir)
        carve = not split_inputs["dev"]
        streams[lang] = _split_streams(split_inputs, allocations, cfg.order, lang_dir, budget["lines_selected"], carve)
        nbytes = sum(a["bytes"] for a in allocations.values())
        available = sum(a["available"] for a in allocations.values())
        if quota is not None and available < quota:
            raise DataError(f"mixing.budget: {lang} has {available:,} bytes of clean training text "
                            f"({available / premiums[lang]:,.0f} premium-adjusted), short of its share of {quota:,} bytes "
                            f"(budget {mix.budget:,} / {len(premiums)} languages x premium {premiums[lang]}); "
                            f"lower mixing.budget or add {lang} data")
        languages[lang] = {"corpus": cfg.corpus, "premium": premiums[lang], "quota_bytes": quota, "bytes": nbytes,
                           "adjusted_bytes": nbytes / premiums[lang], "budget": budget, "allocations": allocations,
                           "inputs": split_inputs, "warnings": warnings, "carve": carve}
    adjusted = sum(v["adjusted_bytes"] for v in languages.values())
    if mix.budget is not None and adjusted > mix.budget:
        raise DataError(f"the selected data is {adjusted:,.0f} premium-adjusted bytes, over mixing.budget={mix.budget:,}")

    tokenizer, tok_info = fit_tokenizer(tok_cfg, {lang: train for lang, (train, _) in streams.items()},
                                        out_dir / TOKENIZER_DIR, premiums, progress=progress)
    for lang, (train, dev) in streams.items():
        info = languages[lang]
        splits = {split: dataclasses.asdict(write_blocks(lines(), tokenizer, data_cfg.seq_len, out_dir / lang, split))
                  for split, lines in (("train", train), ("dev", dev))}
        _check_splits(splits, info["budget"], info.pop("carve"), data_cfg.seq_len)
        info["splits"] = splits
        _write_json(out_dir / lang / MANIFEST, {"language": lang, "splits": splits, "seq_len": data_cfg.seq_len,
                                                "dtype": token_dtype(len(tokenizer)).name, **info})
    manifest = {
        "config_hash": chash, "inputs": inputs, "skipped_files": skipped, "languages": list(languages),
        "budget_adjusted_bytes": mix.budget,
        "adjusted_bytes": adjusted, "premiums": premiums, "zho_variant": mix.zho_variant,
        "per_language": {lang: {k: v[k] for k in ("premium", "bytes", "adjusted_bytes", "quota_bytes")}
                         | {"words": v["splits"]["train"]["words"], "tokens": v["splits"]["train"]["tokens"],
                            "train_blocks": v["splits"]["train"]["blocks"], "dev_blocks": v["splits"]["dev"]["blocks"]}
                         for lang, v in languages.items()},
        "vocab_size": len(tokenizer), "seq_len": data_cfg.seq_len,
        "tokenizer_text": tok_info.pop("text"), "tokenizer": tok_info,
    }
    _write_json(out_dir / ML_MANIFEST, manifest)
    return manifest


def _reusable(out_dir: Path, chash: str, inputs: dict, skipped: dict) -> dict | None:
    path = out_dir / ML_MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    complete = all((out_dir / lang / f"{s}.bin").is_file() for lang in inputs for s in ("train", "dev"))
    same = (manifest.get("config_hash") == chash and manifest.get("inputs") == inputs
            and manifest.get("skipped_files") == skipped)
    return manifest if same and complete else None
