"""Prepare a corpus for training: read, clean, count words, enforce the word budget, train the
tokenizer, write token blocks and a manifest that records every number on the way.

    manifest = prepare_data(cfg.data, cfg.tokenizer, "runs/x/data")

The output folder holds `tokenizer/`, `train.bin`, `train.words.npy`, `dev.bin`,
`dev.words.npy` and `manifest.json`. A second call with the same config, unchanged inputs and
intact outputs reuses them. Stages, each streaming the corpus from disk:

1. survey: read and clean every file; count lines and words before/after the filters; hash inputs.
2. budget: pick the training lines (`data.max_words`), check them against the track's cap.
3. tokenizer: byte-level BPE on the cleaned training lines only.
4. blocks: encode train and dev into `seq_len` blocks with words per block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from ..config import TRACK_WORDS, DataSection, TokenizerSection
from .blocks import MANIFEST, token_dtype, write_blocks
from .corpus import DataError, ReadStats, find_sources, read_lines, source_name
from .filters import FilterChain, merge_reports
from .tokenizer import SPECIAL_TOKENS, train_tokenizer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the output format changes, so old folders are rebuilt
DEV_EVERY = 100  # with no dev files, every 100th selected training line becomes dev


def config_hash(data_cfg: DataSection, tok_cfg: TokenizerSection) -> str:
    """A hash of everything that determines the prepared data."""
    payload = {"format": FORMAT_VERSION, "data": dataclasses.asdict(data_cfg), "tokenizer": dataclasses.asdict(tok_cfg)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_data(data_cfg: DataSection, tok_cfg: TokenizerSection, out_dir: str | Path, progress: bool = True) -> dict:
    """Prepare (or reuse) the data folder `out_dir`; return the manifest."""
    out_dir = Path(out_dir)
    files = find_sources(data_cfg.corpus)
    FilterChain(data_cfg.filters)  # unknown filter names fail before any work
    chash = config_hash(data_cfg, tok_cfg)
    cached = _reusable_manifest(out_dir, chash, files)
    if cached is not None:
        log.info("data: reusing %s (same config hash %s, inputs and outputs unchanged)", out_dir, chash[:12])
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    timings: dict[str, float] = {}

    with _timed(timings, "survey"):
        inputs = {split: [_survey(p, split, data_cfg.filters, progress) for p in paths] for split, paths in files.items()}
    budget = _budget(inputs["train"], data_cfg)
    carve = not files["dev"]
    train_lines, dev_lines = _split_streams(files, data_cfg.filters, budget["lines_selected"], carve)

    with _timed(timings, "tokenizer"):
        tok_dir = out_dir / "tokenizer"
        shutil.rmtree(tok_dir, ignore_errors=True)
        log.info("data: training a %d-token byte-level BPE on %s lines", tok_cfg.vocab_size, f"{budget['lines_selected']:,}")
        tokenizer = train_tokenizer(train_lines(), tok_cfg.vocab_size, tok_cfg.min_frequency, tok_dir, progress=progress)

    splits = {}
    for split, lines in (("train", train_lines), ("dev", dev_lines)):
        bar = tqdm(desc=f"encode {split}", unit=" lines", disable=not progress)
        with _timed(timings, f"blocks_{split}"), bar:
            stats = write_blocks(lines(), tokenizer, data_cfg.seq_len, out_dir, split, progress=bar.update)
        splits[split] = dataclasses.asdict(stats)
    _check_splits(splits, budget, carve, data_cfg.seq_len)
    budget["words_used"] = splits["train"]["words"]

    with _timed(timings, "hash_outputs"):
        outputs = {str(p.relative_to(out_dir)): file_sha256(p) for p in _output_files(out_dir)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "config_hash": chash,
        "config": {"data": dataclasses.asdict(data_cfg), "tokenizer": dataclasses.asdict(tok_cfg)},
        "inputs": inputs,
        "filters": {split: merge_reports(i["filters"] for i in recs) for split, recs in inputs.items()},
        "budget": budget,
        "dev_source": f"every {DEV_EVERY}th selected training line" if carve else "dev files",
        "splits": splits,
        "vocab_size": len(tokenizer),
        "seq_len": data_cfg.seq_len,
        "dtype": token_dtype(len(tokenizer)).name,
        "specials": {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS},
        "outputs": outputs,
        "timings_s": timings,
    }
    _write_json(out_dir / MANIFEST, manifest)
    log.info("data: wrote %s: %s train blocks, %s dev blocks", out_dir, splits["train"]["blocks"], splits["dev"]["blocks"])
    return manifest


def _cleaned(path: Path, filters: FilterChain, stats: ReadStats | None = None) -> Iterator[str]:
    for line in read_lines(path, stats):
        if (out := filters(line)) is not None:
            yield out


def _survey(path: Path, split: str, filter_names: list[str], progress: bool) -> dict:
    """Read and clean one file; return its record for the manifest."""
    stats, filters = ReadStats(), FilterChain(filter_names)
    words_raw = lines_clean = words_clean = 0
    for line in tqdm(read_lines(path, stats), desc=f"read {path.name}", unit=" lines", disable=not progress):
        words_raw += len(line.split())
        if (out := filters(line)) is not None:
            lines_clean += 1
            words_clean += len(out.split())
    return {
        "source": source_name(path), "split": split, "file": str(path), "sha256": stats.sha256,
        "bytes": stats.bytes, "lines": stats.lines, "empty_lines": stats.empty_lines, "words_raw": words_raw,
        "lines_clean": lines_clean, "words_clean": words_clean, "filters": filters.reports(),
    }  # fmt: skip


def _budget(train_inputs: list[dict], data_cfg: DataSection) -> dict:
    """Select the training lines (whole lines, corpus order, up to `max_words`) and check the cap."""
    words_clean = sum(i["words_clean"] for i in train_inputs)
    lines_clean = sum(i["lines_clean"] for i in train_inputs)
    lines, words = lines_clean, words_clean
    if data_cfg.max_words is not None and words_clean > data_cfg.max_words:
        lines, words = _prefix_within(train_inputs, data_cfg.filters, data_cfg.max_words)
    cap = TRACK_WORDS.get(data_cfg.track)
    if cap is not None and words > cap:
        raise DataError(
            f"the cleaned training data has {words:,} words, {words - cap:,} over the {data_cfg.track} "
            f"budget of {cap:,}; set data.max_words (e.g. data.max_words={cap}) to use a prefix of the corpus"
        )
    if lines == 0:
        raise DataError(f"no training lines left after cleaning with filters {data_cfg.filters} and data.max_words")
    if words < words_clean:
        log.info("data: data.max_words keeps %s of %s words; %s words (%s lines) left out",
                 f"{words:,}", f"{words_clean:,}", f"{words_clean - words:,}", f"{lines_clean - lines:,}")  # fmt: skip
    return {
        "track": data_cfg.track, "cap": cap, "max_words": data_cfg.max_words, "words_clean": words_clean,
        "lines_clean": lines_clean, "words_selected": words, "lines_selected": lines,
        "words_left_out": words_clean - words, "lines_left_out": lines_clean - lines,
    }  # fmt: skip


def _prefix_within(train_inputs: list[dict], filter_names: list[str], max_words: int) -> tuple[int, int]:
    """(lines, words) of the longest run of whole cleaned lines, in corpus order, within `max_words`."""
    lines = words = 0
    for record in train_inputs:
        if words + record["words_clean"] <= max_words:  # the whole file fits
            lines, words = lines + record["lines_clean"], words + record["words_clean"]
            continue
        for line in _cleaned(Path(record["file"]), FilterChain(filter_names)):
            n = len(line.split())
            if words + n > max_words:
                return lines, words
            lines, words = lines + 1, words + n
    return lines, words


def _split_streams(files: dict, filter_names: list[str], n_train: int, carve: bool) -> tuple[Callable, Callable]:
    """Functions that each start a fresh stream of the cleaned train and dev lines."""

    def selected() -> Iterator[str]:
        every_line = (out for path in files["train"] for out in _cleaned(path, FilterChain(filter_names)))
        return islice(every_line, n_train)

    def train() -> Iterator[str]:
        return (line for i, line in enumerate(selected()) if not (carve and i % DEV_EVERY == DEV_EVERY - 1))

    def dev() -> Iterator[str]:
        if carve:
            return islice(selected(), DEV_EVERY - 1, None, DEV_EVERY)
        return (out for path in files["dev"] for out in _cleaned(path, FilterChain(filter_names)))

    return train, dev


def _check_splits(splits: dict, budget: dict, carve: bool, seq_len: int) -> None:
    train = splits["train"]
    carved = splits["dev"]["words"] if carve else 0
    if train["words"] + carved != budget["words_selected"]:
        raise DataError(f"word counts changed between passes ({train['words'] + carved} vs {budget['words_selected']}): "
                        "are the filters deterministic?")  # fmt: skip
    if train["blocks"] == 0:
        raise DataError(f"the training data makes {train['tokens']} tokens, less than one block of data.seq_len={seq_len}")
    if splits["dev"]["blocks"] == 0:
        log.warning("data: the dev data (%d tokens) is shorter than one block of %d tokens", splits["dev"]["tokens"], seq_len)


def _output_files(out_dir: Path) -> list[Path]:
    names = [f"{split}{ext}" for split in ("train", "dev") for ext in (".bin", ".words.npy")]
    return [out_dir / n for n in names] + sorted(p for p in (out_dir / "tokenizer").iterdir() if p.is_file())


def _reusable_manifest(out_dir: Path, chash: str, files: dict) -> dict | None:
    """The existing manifest if its config hash, input hashes and output hashes all still match."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.info("data: %s is unreadable; preparing again", path)
        return None
    if manifest.get("config_hash") != chash:
        log.info("data: config changed since %s was written; preparing again", path)
        return None
    recorded = {(i["file"], i["sha256"]) for split in manifest["inputs"].values() for i in split}
    current = {(str(p), file_sha256(p)) for paths in files.values() for p in paths}
    if recorded != current:
        log.info("data: corpus files changed since %s was written; preparing again", path)
        return None
    for name, sha in manifest["outputs"].items():
        if not (out_dir / name).is_file() or file_sha256(out_dir / name) != sha:
            log.info("data: %s is missing or changed; preparing again", out_dir / name)
            return None
    return manifest


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = round(time.perf_counter() - start, 3)
    log.info("data: %s took %.1f s", stage, timings[stage])


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
