"""Prepare a corpus for training: read, clean, count words, enforce the word budget, train the
tokenizer, write token blocks and a manifest that records every number on the way.

    manifest = prepare_data(cfg.data, cfg.tokenizer, "runs/x/data")

The output folder holds `clean/` (the cleaned text of every input file), `tokenizer/`,
`train.bin`, `train.words.npy`, `dev.bin`, `dev.words.npy` and `manifest.json`. A second call
with the same config, unchanged inputs and intact outputs reuses them. Stages, each streaming
from disk, so memory stays bounded whatever the corpus size:

1. clean: read every file (readers.py), apply its source's filters once, write `clean/`; count
   lines and words before/after every filter; hash the inputs. Every entry of the corpus folder
   not used (and every file that gave no text) goes into `skipped_files` with the reason; a file
   read through a link leading outside the corpus folder into `outside_links` with its target.
2. allocate: split the budget (`data.max_words` or `data.max_bytes`) between sources
   (quotas.py), keep whole lines of each, check the words against the track's cap.
3. tokenizer: `tokenizer.kind` (byte-level BPE, or SentencePiece BPE on a sample) trained on the
   selected training lines only (they count in the budget).
4. blocks: encode train and dev into `seq_len` blocks with words per block.
See docs/data.md for the manifest's keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path

from tqdm import tqdm

from ..config import TRACK_WORDS, DataSection, SourceSection, TokenizerSection
from .blocks import MANIFEST, TOKENIZER_DIR, token_dtype, write_blocks
from .corpus import DataError, ReadStats, warn_once
from .filters import FilterChain, chain_names, merge_reports
from .quotas import allocate, measure, round_robin, take_within
from .readers import CorpusFile, Skipped, canonical_source, read_text, scan_corpus, skipped_summary
from .tokenizer import fit_tokenizer

log = logging.getLogger(__name__)

CLEAN_DIR = "clean"  # the cleaned text of every input file, one line per unit
FORMAT_VERSION = 3  # bump when the output format changes, so old folders are rebuilt
DEV_EVERY = 100  # with no dev files, every 100th selected training line becomes dev


def config_hash(data_cfg: DataSection, tok_cfg: TokenizerSection, tokenizer_from: Path | None = None) -> str:
    """A hash of everything that determines the prepared data (a given tokenizer: its files' hashes)."""
    payload = {"format": FORMAT_VERSION, "data": dataclasses.asdict(data_cfg), "tokenizer": dataclasses.asdict(tok_cfg)}
    if tokenizer_from is not None:
        payload["tokenizer_from"] = {p.name: file_sha256(p) for p in sorted(Path(tokenizer_from).glob("*token*"))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_data(data_cfg: DataSection, tok_cfg: TokenizerSection, out_dir: str | Path, progress: bool = True,
                 tokenizer_from: Path | None = None) -> dict:
    """Prepare (or reuse) the data folder `out_dir`; return the manifest. `tokenizer_from`: a model
    folder whose tokenizer encodes the text instead of one trained here (the `tokenizer` section unused)."""
    out_dir = Path(out_dir)
    _check_out_dir(data_cfg.corpus, out_dir)
    files, not_read = scan_corpus(data_cfg.corpus, exclude=out_dir)
    warnings: list[str] = []
    settings = _source_settings(data_cfg, files, warnings)
    chash = config_hash(data_cfg, tok_cfg, tokenizer_from)
    cached = _reusable_manifest(out_dir, chash, files, not_read)
    if cached is not None:
        log.info("data: reusing %s (same config hash %s, inputs and outputs unchanged)", out_dir, chash[:12])
        for message in cached["warnings"]:
            if message not in warnings:  # the others were just logged again
                warn_once(log, message)
        return cached
    if not_read:
        warnings.append(skipped_summary(data_cfg.corpus, not_read) + "; all listed in manifest.skipped_files")
        warn_once(log, warnings[-1])
    outside = [{"file": str(f.path), "target": str(f.target)} for f in files if f.target is not None]
    if outside:
        shown = "; ".join(f"{o['file']} -> {o['target']}" for o in outside[:10])
        warnings.append(f"{len(outside)} corpus file(s) are links to files outside {data_cfg.corpus}, read from "
                        f"there: {shown}{' ...' if len(outside) > 10 else ''}; all listed in manifest.outside_links")
        warn_once(log, warnings[-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out_dir / CLEAN_DIR, ignore_errors=True)
    timings: dict[str, float] = {}

    with _timed(timings, "clean"):
        records = [_survey(f, i, settings[f.source], data_cfg, out_dir, warnings, progress) for i, f in enumerate(files)]
    inputs = {split: [r for r in records if r["split"] == split] for split in ("train", "dev")}
    skipped = [{"file": str(s.path), "reason": s.reason} for s in not_read]
    skipped += [{"file": r["file"], "reason": reason} for r in records if (reason := no_text_reason(r)) is not None]
    with _timed(timings, "allocate"):
        allocations, budget = _budget(inputs["train"], data_cfg, settings, out_dir)
    carve = not inputs["dev"]
    train_lines, dev_lines = _split_streams(inputs, allocations, data_cfg.order, out_dir, budget["lines_selected"], carve)

    with _timed(timings, "tokenizer"):
        tok_dir = out_dir / TOKENIZER_DIR
        shutil.rmtree(tok_dir, ignore_errors=True)
        if tokenizer_from is not None:
            log.info("data: encoding with the tokenizer of %s (the tokenizer section is not used)", tokenizer_from)
            tokenizer = _given_tokenizer(Path(tokenizer_from), tok_dir)
            tok_info = {"text": f"none: the tokenizer of {tokenizer_from}", "words": 0}
            special_names = _given_specials(tokenizer)
        else:
            log.info("data: training a %d-token %s tokenizer on %s lines", tok_cfg.vocab_size, tok_cfg.kind,
                     f"{budget['lines_selected']:,}")
            tokenizer, tok_info = fit_tokenizer(tok_cfg, {"corpus": train_lines}, tok_dir, progress=progress)
            tok_info["text"] += " (dev lines excluded); counted in budget.words_used"
            special_names = tokenizer.all_special_tokens

    splits = {}
    for split, lines in (("train", train_lines), ("dev", dev_lines)):
        bar = tqdm(desc=f"encode {split}", unit=" lines", disable=not progress)
        with _timed(timings, f"blocks_{split}"), bar:
            stats = write_blocks(lines(), tokenizer, data_cfg.seq_len, out_dir, split, progress=bar.update)
        splits[split] = dataclasses.asdict(stats)
    _check_splits(splits, budget, carve, data_cfg.seq_len)
    budget["words_used"] = splits["train"]["words"]
    budget["tokenizer_words"] = tok_info.get("words", splits["train"]["words"])  # byte_bpe: every training line

    with _timed(timings, "hash_outputs"):
        outputs = {p.relative_to(out_dir).as_posix(): file_sha256(p) for p in _output_files(out_dir)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "config_hash": chash,
        "config": {"data": dataclasses.asdict(data_cfg), "tokenizer": dataclasses.asdict(tok_cfg)},
        "inputs": inputs,
        "skipped_files": sorted(skipped, key=lambda s: s["file"]),
        "outside_links": outside,
        "sources": {split: _by_source(recs) for split, recs in inputs.items()},
        "filters": {split: merge_reports(i["filters"] for i in recs) for split, recs in inputs.items()},
        "allocations": allocations,
        "budget": budget,
        "tokenizer_text": tok_info.pop("text"),
        "tokenizer": tok_info,
        "dev_source": f"every {DEV_EVERY}th selected training line" if carve else "dev files",
        "splits": splits,
        "vocab_size": len(tokenizer),
        "seq_len": data_cfg.seq_len,
        "dtype": token_dtype(len(tokenizer)).name,
        "specials": {tok: tokenizer.convert_tokens_to_ids(tok) for tok in special_names},
        "outputs": outputs,
        "warnings": warnings,
        "timings_s": timings,
    }
    _write_json(out_dir / MANIFEST, manifest)
    log.info("data: wrote %s: %s train blocks, %s dev blocks", out_dir, splits["train"]["blocks"], splits["dev"]["blocks"])
    return manifest


def format_allocation(manifest: dict) -> str:
    """What each source gave to the training text (`allocations`), one line per source, under a line
    naming the budget and how it was split (`data.allocation`)."""
    budget, allocations = manifest["budget"], manifest["allocations"]
    unit = next(iter(allocations.values()))["unit"]
    total = budget["max_bytes"] if unit == "bytes" else budget["max_words"]
    head = (f"{budget['allocation']} allocation of {total:,} {unit}" if total is not None
            else "no data.max_words or data.max_bytes: all the cleaned text")
    width = max(map(len, allocations))
    lines = [f"sources ({head}):"]
    for name, a in allocations.items():
        share = a[unit] / a["available"] if a["available"] else 0.0
        lines.append(f"  {name:<{width}}  {a['words']:>12,} words  {a['lines']:>10,} lines  "
                     f"({share:.0%} of its {a['available']:,} clean {unit})")
    return "\n".join(lines)


def _given_tokenizer(folder: Path, tok_dir: Path):
    """The tokenizer of a model folder, copied to `tok_dir`; it must know its BOS and EOS tokens (blocks frame lines)."""
    from transformers import AutoTokenizer

    from ..models.registry import register_auto_classes

    register_auto_classes()  # an export's config names a babblelm model type: no remote-code prompt
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise DataError(f"{folder}: its tokenizer has no BOS or EOS token (bos_token, eos_token in "
                        "tokenizer_config.json); the token blocks put them around every line")
    tokenizer.save_pretrained(str(tok_dir))
    return tokenizer


def _given_specials(tokenizer) -> list[str]:
    """A given tokenizer's BOS, EOS and pad tokens (those it has)."""
    return [t for t in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) if t is not None]


def _source_settings(data_cfg: DataSection, files: list[CorpusFile], warnings: list[str]) -> dict[str, dict]:
    """Per source: its filter list (parameter filters placed) and the parameters they read."""
    configured = {canonical_source(name): sec for name, sec in data_cfg.sources.items()}
    present = sorted({f.source for f in files})
    for name in sorted(set(configured) - set(present)):  # presets list sources a corpus may not have
        warnings.append(f"data.sources.{name}: no such source in {data_cfg.corpus} (its sources: {present}); unused")
        warn_once(log, warnings[-1])
    settings = {}
    for source in present:
        sec = configured.get(source, SourceSection())
        names = chain_names(sec.filters if sec.filters is not None else data_cfg.filters, sec.min_words, sec.max_per_book)
        params = {"min_words": sec.min_words, "max_per_book": sec.max_per_book}
        FilterChain(names, params)  # unknown filter names fail before any work
        settings[source] = {"filters": names, "params": params, "weight": sec.weight, "words": sec.words}
    return settings


def _survey(file: CorpusFile, index: int, setting: dict, data_cfg: DataSection, out_dir: Path, warnings: list, progress: bool) -> dict:
    """Read and clean one file, writing its cleaned lines under clean/; return its manifest record."""
    stats, filters = ReadStats(), FilterChain(setting["filters"], setting["params"])
    clean_rel = f"{CLEAN_DIR}/{file.split}/{index:04d}_{_safe_name(file.source)}_{_safe_name(file.path.name)}.txt"
    (out_dir / clean_rel).parent.mkdir(parents=True, exist_ok=True)
    units = words_raw = lines_clean = words_clean = bytes_clean = 0
    with open(out_dir / clean_rel, "w", encoding="utf-8", newline="\n") as out:
        lines = read_text(file, stats, data_cfg.text_field, data_cfg.max_line_bytes)
        for line in tqdm(lines, desc=f"clean {file.path.name}", unit=" lines", disable=not progress):
            units += 1
            words_raw += len(line.split())
            if (clean := filters(line)) is not None:
                out.write(clean + "\n")
                lines_clean += 1
                words_clean += len(clean.split())
                bytes_clean += len(clean.encode("utf-8")) + 1
    record = {
        "source": file.source, "split": file.split, "file": str(file.path), "format": file.fmt,
        "sha256": stats.sha256, "bytes": stats.bytes, "file_lines": stats.lines, "empty_lines": stats.empty_lines,
        "long_lines": stats.long_lines, "dropped_lines": stats.dropped, "control_chars": stats.control_chars,
        "lines": units, "words_raw": words_raw, "lines_clean": lines_clean, "words_clean": words_clean,
        "bytes_clean": bytes_clean, "filter_list": setting["filters"], "filters": filters.reports(), "clean_file": clean_rel,
        **({"target": str(file.target)} if file.target else {}),
    }  # fmt: skip
    for message in _read_warnings(record, stats, data_cfg.max_line_bytes):
        warnings.append(f"{file.path}: {message}")
        warn_once(log, warnings[-1])
    return record


def _read_warnings(record: dict, stats: ReadStats, max_line_bytes: int) -> list[str]:
    """What reading one file left out or changed that its owner should hear about."""
    messages = []
    if (reason := no_text_reason(record)) is not None:
        messages.append(f"not used: {reason}")
    if stats.long_lines:
        messages.append(f"skipped {stats.long_lines} line(s) over data.max_line_bytes={max_line_bytes} bytes: "
                        f"line(s) {stats.long_line_numbers}")  # fmt: skip
    if stats.control_chars:
        messages.append(f"removed {stats.control_chars} control character(s) (NUL, escape, ...; each run became a space) "
                        f"from line(s) {stats.dropped_at['control_chars']}")  # fmt: skip
    if malformed := stats.dropped.get("chat_malformed"):
        messages.append(f"left out {malformed} malformed CHAT line(s) (expected `*SPK:<tab>`, `%tier:`, `@header` "
                        f"or a tab-indented continuation): line(s) {stats.dropped_at['chat_malformed']}")  # fmt: skip
    return messages


def no_text_reason(record: dict) -> str | None:
    """Why a file that was read gave no text lines (None if it gave some)."""
    if record["lines"]:
        return None
    if record["bytes"] == 0:
        return "empty file (0 bytes)"
    if record["long_lines"] and not record["file_lines"]:
        return f"every line is over data.max_line_bytes ({record['long_lines']} line(s))"
    if not record["file_lines"]:
        return f"only blank lines ({record['empty_lines']})"
    dropped = ", ".join(f"{n} {reason}" for reason, n in record["dropped_lines"].items())
    return f"no text lines in {record['format']} format ({dropped or 'nothing usable'})"


def _safe_name(name: str) -> str:
    """A short file-name-safe form of `name` for files under clean/."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:80]


def _by_source(records: list[dict]) -> dict[str, dict]:
    """Per-source sums of the file records (counts and filter reports)."""
    out: dict[str, dict] = {}
    for rec in records:
        into = out.setdefault(rec["source"], {"files": 0, "filter_list": rec["filter_list"], "filters": {}})
        into["files"] += 1
        for key in ("bytes", "lines", "long_lines", "control_chars", "words_raw", "lines_clean", "words_clean", "bytes_clean"):
            into[key] = into.get(key, 0) + rec.get(key, 0)
        into["filters"] = merge_reports([into["filters"], rec["filters"]])
    return out


def clean_lines(out_dir: Path, records: list[dict]) -> Iterator[str]:
    for rec in records:
        with open(out_dir / rec["clean_file"], encoding="utf-8", newline="\n") as handle:
            for line in handle:
                yield line[:-1]


def _budget(train_inputs: list[dict], data_cfg: DataSection, settings: dict, out_dir: Path) -> tuple[dict, dict]:
    """Split the total between sources, count the whole lines each source keeps, check the track's cap."""
    unit = "bytes" if data_cfg.max_bytes is not None else "words"
    total = data_cfg.max_bytes if unit == "bytes" else data_cfg.max_words
    per_source = _by_source(train_inputs)
    available = {name: s[f"{unit}_clean"] for name, s in per_source.items()}
    quotas = allocate(available, total, data_cfg.allocation, weights={n: settings[n]["weight"] for n in available},
                      listed={n: settings[n]["words"] for n in available})  # fmt: skip
    allocations = {}
    for name, quota in quotas.items():
        src = per_source[name]
        if quota is None or quota >= available[name]:
            lines, words, nbytes = src["lines_clean"], src["words_clean"], src["bytes_clean"]
        else:
            lines = words = nbytes = 0
            records = [r for r in train_inputs if r["source"] == name]
            for line in take_within(clean_lines(out_dir, records), quota, unit):
                lines, words, nbytes = lines + 1, words + len(line.split()), nbytes + measure(line, "bytes")
        allocations[name] = {"quota": quota, "unit": unit, "available": available[name],
                             "lines": lines, "words": words, "bytes": nbytes}  # fmt: skip
    words_clean = sum(s["words_clean"] for s in per_source.values())
    lines_clean = sum(s["lines_clean"] for s in per_source.values())
    words = sum(a["words"] for a in allocations.values())
    lines = sum(a["lines"] for a in allocations.values())
    cap = TRACK_WORDS.get(data_cfg.track)
    if cap is not None and words > cap:
        raise DataError(
            f"the cleaned training data has {words:,} words, {words - cap:,} over the {data_cfg.track} "
            f"budget of {cap:,}; set data.max_words (e.g. data.max_words={cap}) to use a part of the corpus"
        )
    if lines == 0:
        raise DataError("no training lines left after cleaning and allocation: check data.filters, data.sources and data.max_words")
    if words < words_clean:
        log.info("data: the budget keeps %s of %s words; %s words (%s lines) left out",
                 f"{words:,}", f"{words_clean:,}", f"{words_clean - words:,}", f"{lines_clean - lines:,}")  # fmt: skip
    budget = {
        "track": data_cfg.track, "cap": cap, "max_words": data_cfg.max_words, "max_bytes": data_cfg.max_bytes,
        "allocation": data_cfg.allocation, "order": data_cfg.order, "words_clean": words_clean,
        "lines_clean": lines_clean, "words_selected": words, "lines_selected": lines,
        "words_left_out": words_clean - words, "lines_left_out": lines_clean - lines,
    }  # fmt: skip
    return allocations, budget


def _split_streams(inputs: dict, allocations: dict, order: str, out_dir: Path, n_train: int, carve: bool) -> tuple[Callable, Callable]:
    """Functions that each start a fresh stream of the selected train lines and the dev lines."""

    def selected() -> Iterator[str]:
        streams = [islice(clean_lines(out_dir, [r for r in inputs["train"] if r["source"] == name]), alloc["lines"])
                   for name, alloc in allocations.items()]  # fmt: skip
        return round_robin(streams) if order == "round_robin" else chain.from_iterable(streams)

    def train() -> Iterator[str]:
        return (line for i, line in enumerate(selected()) if not (carve and i % DEV_EVERY == DEV_EVERY - 1))

    def dev() -> Iterator[str]:
        if carve:
            return islice(selected(), DEV_EVERY - 1, None, DEV_EVERY)
        return clean_lines(out_dir, inputs["dev"])

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


def copy_prepared(prepared: str | Path, out_dir: str | Path, manifest: str = MANIFEST) -> None:
    """Copy a prepared data folder into `out_dir` unless it already holds a manifest, so that another
    run with the same data config finds it there and reuses it (`prepare_data` still checks every
    hash). Copies, not links: a later re-preparation of one folder must not change the other."""
    out_dir = Path(out_dir)
    if not (out_dir / manifest).is_file():
        shutil.copytree(prepared, out_dir, dirs_exist_ok=True)


def _output_files(out_dir: Path) -> list[Path]:
    names = [f"{split}{ext}" for split in ("train", "dev") for ext in (".bin", ".words.npy")]
    tokenizer = sorted(p for p in (out_dir / TOKENIZER_DIR).iterdir() if p.is_file())
    return [out_dir / n for n in names] + tokenizer + sorted(p for p in (out_dir / CLEAN_DIR).rglob("*") if p.is_file())


def _check_out_dir(corpus: str, out_dir: Path) -> None:
    """Preparing rewrites `out_dir`: it must not be, or contain, the corpus folder."""
    corpus_path, out = Path(corpus).resolve(), out_dir.resolve()
    if corpus_path == out or out in corpus_path.parents:
        raise DataError(f"the output folder {out_dir} must not contain the corpus folder {corpus} "
                        "(preparing rewrites the output folder); choose another --out")  # fmt: skip


def _reusable_manifest(out_dir: Path, chash: str, files: list[CorpusFile], not_read: list[Skipped]) -> dict | None:
    """The existing manifest if its config hash, input hashes, skipped entries and output hashes all still match."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("config_hash") != chash:
            log.info("data: config changed since %s was written; preparing again", path)
            return None
        recorded = {(i["file"], i["sha256"]) for split in manifest["inputs"].values() for i in split}
        read = {file for file, _ in recorded}
        skips = {(s["file"], s["reason"]) for s in manifest["skipped_files"] if s["file"] not in read}
        current = {(str(f.path), file_sha256(f.path)) for f in files}
        if recorded != current or skips != {(str(s.path), s.reason) for s in not_read}:
            log.info("data: corpus files changed since %s was written; preparing again", path)
            return None
        for name, sha in manifest["outputs"].items():
            if not (out_dir / name).is_file() or file_sha256(out_dir / name) != sha:
                log.info("data: %s is missing or changed; preparing again", out_dir / name)
                return None
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        log.info("data: %s is unreadable or incomplete (%s); preparing again", path, err)
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
