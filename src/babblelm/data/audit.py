"""Re-verify a prepared data folder against its manifest and say whether it is track-compliant.

    report = audit("runs/x/data")      # {"checks": [(name, ok, detail), ...], "ok": bool, "compliant": bool}
    print(format_audit(report))

Checks: the sha256 of every output and every input still present; every entry of the corpus folder
(where present) read or listed in `skipped_files`, none added or gone; the counts add up (raw words
minus what each filter removed = cleaned words, per file; sources -> allocations -> budget ->
train split; block word counts + dropped words = split words); the training words are within
the track's cap; and, when the folder sits in a run folder with `config.yaml`, the run's epochs
are at most 10.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from ..config import MAX_EPOCHS, TRACK_WORDS
from ..rundir import RunDir
from .blocks import MANIFEST
from .corpus import DataError
from .prepare import file_sha256
from .readers import scan_corpus


def load_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"no {MANIFEST} in {data_dir}: prepare the data first (babble data prepare)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def audit(data_dir: str | Path) -> dict:
    """Run every check on `data_dir`; see the module docstring."""
    data_dir = Path(data_dir)
    m = load_manifest(data_dir)
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append((name, bool(ok), detail))

    bad = [n for n, sha in m["outputs"].items() if not (data_dir / n).is_file() or file_sha256(data_dir / n) != sha]
    check("outputs sha256", not bad, f"{len(m['outputs']) - len(bad)}/{len(m['outputs'])} match" + (f"; differ or missing: {bad[:5]}" if bad else ""))
    records = [r for split in m["inputs"].values() for r in split]
    gone = [r["file"] for r in records if not Path(r["file"]).is_file()]
    changed = [r["file"] for r in records if r["file"] not in gone and file_sha256(r["file"]) != r["sha256"]]
    check("inputs sha256", not changed, f"{len(records) - len(gone) - len(changed)}/{len(records)} match"
          + (f"; changed: {changed[:5]}" if changed else "") + (f"; not present to check: {len(gone)}" if gone else ""))  # fmt: skip

    if "skipped_files" in m:
        check("corpus files accounted for", *_accounted(m, data_dir))

    off = [r["file"] for r in records
           if r["words_raw"] - sum(f["words_removed"] for f in r["filters"].values()) != r["words_clean"]
           or r["lines"] - sum(f["lines_removed"] for f in r["filters"].values()) != r["lines_clean"]]  # fmt: skip
    check("filter reports add up", not off, "raw - removed = clean for every file" if not off else f"off for {off[:5]}")
    budget, alloc, train = m["budget"], m["allocations"], m["splits"]["train"]
    clean = sum(r["words_clean"] for r in m["inputs"]["train"])
    selected = sum(a["words"] for a in alloc.values())
    carved = m["splits"]["dev"]["words"] if not m["inputs"]["dev"] else 0
    ok = clean == budget["words_clean"] and selected == budget["words_selected"] == train["words"] + carved
    check("budget adds up", ok, f"clean {clean:,} -> selected {selected:,} = train {train['words']:,} + carved dev {carved:,}")
    for split, stats in m["splits"].items():
        words = np.load(data_dir / f"{split}.words.npy", allow_pickle=False) if (data_dir / f"{split}.words.npy").is_file() else None
        ok = words is not None and len(words) == stats["blocks"] and int(words.sum()) + stats["dropped_words"] == stats["words"]
        check(f"{split} blocks add up", ok, f"{stats['blocks']} blocks; block words + dropped = {stats['words']:,}")

    cap = TRACK_WORDS.get(budget["track"])
    check("track cap", cap is None or budget["words_used"] <= cap,
          f"{budget['words_used']:,} training words (tokenizer trained on {budget.get('tokenizer_words', 0):,} of them)"
          + (f" <= {budget['track']} cap {cap:,}" if cap else "; no track cap (track: none)"))  # fmt: skip
    run_cfg = RunDir(data_dir.parent).config
    if run_cfg.is_file():
        epochs = float((yaml.safe_load(run_cfg.read_text(encoding="utf-8")) or {}).get("train", {}).get("epochs", 1))
        check("epochs", epochs <= MAX_EPOCHS, f"train.epochs={epochs:g} in {run_cfg} (at most {MAX_EPOCHS})")
    verified = all(ok for name, ok, _ in checks if name not in ("track cap", "epochs"))
    compliant = verified and cap is not None and all(ok for _, ok, _ in checks)
    return {"data_dir": str(data_dir), "track": budget["track"], "checks": checks, "ok": verified, "compliant": compliant}


def _accounted(m: dict, data_dir: Path) -> tuple[bool, str]:
    """Whether the corpus folder still holds exactly the files the manifest read or lists as skipped."""
    corpus = m["config"]["data"]["corpus"]
    if not Path(corpus).is_dir():
        return True, f"corpus folder {corpus} not present to check"
    try:
        files, skipped = scan_corpus(corpus, exclude=data_dir)
    except DataError as err:
        return False, str(err)
    current = {str(f.path) for f in files} | {str(s.path) for s in skipped}
    listed = {r["file"] for split in m["inputs"].values() for r in split} | {s["file"] for s in m["skipped_files"]}
    added, gone = sorted(current - listed), sorted(listed - current)
    detail = f"{len(listed)} entries read or listed as skipped ({len(m['skipped_files'])} skipped)"
    detail += (f"; not in the manifest: {added[:5]}" if added else "") + (f"; gone: {gone[:5]}" if gone else "")
    return not added and not gone, detail


def format_audit(report: dict) -> str:
    lines = [f"audit of {report['data_dir']}"]
    lines += [f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}" for name, ok, detail in report["checks"]]
    verdict = "manifest verified" if report["ok"] else "manifest NOT verified"
    track = report["track"]
    compliance = f"compliant with the {track} track" if report["compliant"] else f"NOT shown compliant with a track (track: {track})"
    return "\n".join(lines + [f"{verdict}; {compliance}"])
