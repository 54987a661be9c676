"""The run folder: where everything a run writes lives, and the BabyLM checkpoint names.

    runs/<name>/
      config.yaml                 the configuration it started with   RunDir.config
      config_changes.jsonl        changes made on resume              RunDir.changes
      data/                       the prepared corpus                 RunDir.data
      metrics.jsonl               training and dev records            RunDir.metrics
      checkpoints/chck_<N>M/      BabyLM word milestones              RunDir.checkpoint(name), .milestones()
      checkpoints/last/, final/   resume point, final model
      results/<checkpoint>/       evaluation results                  RunDir.results
      results/fast/<checkpoint>/  fast evaluation of each chck_*      RunDir.fast_results
      submission/                 the leaderboard's files             RunDir.submission
      hf/                         the Hub repository of `babble run`  RunDir.hf
      stages.json                 what each `babble run` stage did    RunDir.stages
      *.png, mixing.md            plots and the mixing card section   RunDir.path / name
      .babble-lock                held by the process writing the run (folders.py)

Milestone names are written (`milestone_name`) and read (`milestone_count`) here only; everything
else lists and resolves a run's checkpoints through this module. `clear` deletes what a run writes
and nothing else.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

# BabyLM checkpoint milestones in millions of words: 1..10 by 1, 20..100 by 10, 200..1000 by 100.
MILESTONES_M = list(range(1, 11)) + list(range(20, 101, 10)) + list(range(200, 1001, 100))
FINAL, LAST = "final", "last"
_MILESTONE = re.compile(r"^chck_(\d+(?:\.\d+)?)([KMB])$")
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9}
LOSS_PLOT = "loss.png"
RUN_FILES = ("config.yaml", "config_changes.jsonl", "metrics.jsonl", "stages.json", LOSS_PLOT, "lr_schedule.png",
             "mixing.png", "mixing.md")  # the files a run writes at its top level (beside the per-metric plots)
RESULT_SUFFIXES = (".json", ".stale", ".md", ".csv", ".png")  # what evaluation writes under results/


def plot_groups(records: list[dict]) -> dict[str, set[str]]:
    """{group: members} of the per-layer metrics (`group/member` keys) of metrics records: one plot each."""
    groups: dict[str, set[str]] = {}
    for record in records:
        for key in record:
            if "/" in key:
                group, _, member = key.partition("/")
                groups.setdefault(group, set()).add(member)
    return groups


def milestone_name(millions: int) -> str:
    """The checkpoint (and Hub branch) name of a milestone: 5 -> chck_5M."""
    return f"chck_{millions}M"


def milestone_count(name: str) -> float | None:
    """The words (or tokens) a milestone name stands for: chck_10M -> 10,000,000; None if not one."""
    match = _MILESTONE.match(name)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


class RunDir:
    """The layout of one run folder (which need not exist yet)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    changes = property(lambda self: self.path / "config_changes.jsonl")
    data = property(lambda self: self.path / "data")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    results = property(lambda self: self.path / "results")
    fast_results = property(lambda self: self.path / "results" / "fast")
    submission = property(lambda self: self.path / "submission")

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    hf = property(lambda self: self.path / "hf")
    stages = property(lambda self: self.path / "stages.json")

    def is_run(self) -> bool:
        return self.checkpoints.is_dir()

    def written_checkpoints(self) -> list[Path]:
        """The folders under checkpoints/ that training wrote: checkpoints (with trainer_state.json) and
        the leftovers of interrupted writes; anything else there is not the run's."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(d for d in self.checkpoints.iterdir() if d.is_dir() and not d.is_symlink() and (
            d.name.startswith((".tmp-", ".old-")) or (d / "trainer_state.json").is_file()))

    def holds_training(self) -> bool:
        """Has a run trained here (checkpoints or metrics written)?"""
        return self.metrics.exists() or bool(self.written_checkpoints())

    def clear(self, log=print) -> None:
        """Delete what a run wrote here, except the prepared data (reused only if its inputs match): its
        config, metrics, plots and run record, its checkpoints, evaluation results, and `hf/` if the
        export stage wrote it. Everything else stays, and is named."""
        written = [self.path / name for name in RUN_FILES]
        written += [self.path / f"{group}.png" for group in plot_groups(self.metric_records())]
        if self.export_record():
            written.append(self.hf)
        written += self.written_checkpoints()
        if self.results.is_dir():
            written += [p for p in self.results.rglob("*") if p.is_file() and p.suffix in RESULT_SUFFIXES]
        for item in written:
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item)
            elif item.exists() or item.is_symlink():
                item.unlink()
        for folder in (self.results, self.checkpoints):
            _remove_empty(folder)
        kept = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file() and
                      self.data not in p.parents and p.name != ".babble-lock")
        if kept:
            log(f"kept {len(kept)} file(s) of {self.path} that a run did not write: {', '.join(kept[:10])}"
                + (f" and {len(kept) - 10} more" if len(kept) > 10 else ""))

    def metric_records(self) -> list[dict]:
        """The records of metrics.jsonl (a line cut off by a kill is skipped)."""
        if not self.metrics.is_file():
            return []
        records = []
        for line in self.metrics.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return [r for r in records if isinstance(r, dict)]

    def export_record(self) -> dict | None:
        """What `babble run`'s export stage recorded of the `hf/` it wrote (stages.json), if anything."""
        try:
            return json.loads(self.stages.read_text(encoding="utf-8")).get("export")
        except (OSError, ValueError, AttributeError):
            return None

    def milestones(self) -> list[Path]:
        """The run's saved `chck_*` checkpoints, in milestone order."""
        found = [d for d in self.checkpoints.glob("chck_*") if milestone_count(d.name) is not None
                 and (d / "config.json").is_file()]
        return sorted(found, key=lambda d: milestone_count(d.name))

    def saved(self) -> list[str]:
        """Names of the run's complete checkpoints (for messages)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(d.name for d in self.checkpoints.iterdir() if (d / "config.json").is_file())

    @classmethod
    def of(cls, model_dir: str | Path) -> RunDir | None:
        """The run a checkpoint folder belongs to, if any."""
        model_dir = Path(model_dir)
        run = cls(model_dir.parent.parent)
        return run if model_dir.parent.name == "checkpoints" and run.config.exists() else None


def _remove_empty(folder: Path) -> None:
    """Remove `folder` and the folders under it that hold nothing."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def resolve_checkpoint(path: str | Path, checkpoint: str | None = None) -> Path:
    """A run folder (+ optional checkpoint name, default `final`) or a model folder -> the model folder."""
    if checkpoint is not None:
        plain_name(checkpoint, "--checkpoint", "a checkpoint name inside the run folder, e.g. final or chck_5M")
    run = RunDir(path)
    if run.is_run():
        folder = run.checkpoint(checkpoint or FINAL)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{run.path}: no checkpoint {folder.name!r}; available: {', '.join(run.saved()) or 'none'}")
        return folder
    if checkpoint:
        raise ValueError(f"--checkpoint needs a run folder, but {path} has no checkpoints/ folder")
    if not (Path(path) / "config.json").exists():
        raise FileNotFoundError(f"{path} is neither a run folder (with checkpoints/) nor a model folder (with config.json)")
    return Path(path)


def plain_name(name: str, option: str, expected: str) -> str:
    """`name` if it is one plain folder name (no separator, not `.` or `..`), else a ValueError naming `option`."""
    if not name or Path(name).name != name or name in (".", "..") or "\\" in name:
        raise ValueError(f"{option} {name!r}: expected {expected}, not a path")
    return name
