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
      *.png, mixing.md            plots and the mixing card section   RunDir.path / name

Milestone names are written (`milestone_name`) and read (`milestone_count`) here only; everything
else lists and resolves a run's checkpoints through this module.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

# BabyLM checkpoint milestones in millions of words: 1..10 by 1, 20..100 by 10, 200..1000 by 100.
MILESTONES_M = list(range(1, 11)) + list(range(20, 101, 10)) + list(range(200, 1001, 100))
FINAL, LAST = "final", "last"
_MILESTONE = re.compile(r"^chck_(\d+(?:\.\d+)?)([KMB])$")
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9}


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

    def is_run(self) -> bool:
        return self.checkpoints.is_dir()

    def holds_training(self) -> bool:
        """Has a run trained here (checkpoints or metrics written)?"""
        return self.metrics.exists() or (self.checkpoints.is_dir() and any(self.checkpoints.iterdir()))

    def clear(self) -> None:
        """Delete everything a run wrote here except the prepared data (reused only if its inputs match)."""
        for item in self.path.iterdir():
            if item.name != self.data.name:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()

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


def resolve_checkpoint(path: str | Path, checkpoint: str | None = None) -> Path:
    """A run folder (+ optional checkpoint name, default `final`) or a model folder -> the model folder."""
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
