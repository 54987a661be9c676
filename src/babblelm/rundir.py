"""The run folder: where everything a run writes lives, and the BabyLM checkpoint names.

    runs/<name>/
      config.yaml                 the configuration it started with   RunDir.config
      config_changes.jsonl        changes made on resume              RunDir.changes
      data/                       the prepared corpus                 RunDir.data
      metrics.jsonl               training and dev records            RunDir.metrics
      checkpoints/chck_<N>M/      BabyLM word milestones              RunDir.checkpoint(name), .milestones()
      checkpoints/last/, final/   resume point, final model           RunDir.finished()
      results/<checkpoint>/       full evaluation of a checkpoint     RunDir.results_of(name)
      results/<checkpoint>/finetune/  its GLUE fine-tuning            RunDir.finetune_results(name)
      results/fast/<chck_*>/      fast evaluation of each chck_*      RunDir.fast_results_of(name)
      results[/fast]/learning_curves.{md,csv}, best_checkpoint.json, curves/   across checkpoints
      results/report.md           the final model's report            RunDir.report
      results/multilingual/       lm-eval of every revision           RunDir.multilingual_results
      submission/                 the leaderboard's files             RunDir.submission
      hf/                         the Hub repository of `babble run`  RunDir.hf
      stages.json                 what each `babble run` stage did    RunDir.stages
      loss.png, lr_schedule.png, <group>.png, mixing.png, mixing.md   plots and the mixing card section
      .babble-lock                held by the process writing the run (folders.py)

Every path and file name of a run (and of a checkpoint folder's state files, and of a results
folder's tables) is written here only; everything else asks this module. Milestone names are
written (`milestone_name`) and read (`milestone_count`) here only. `clear` deletes what a run
writes and nothing else.
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

# the run's folders and top-level files
DATA, CHECKPOINTS, RESULTS, FAST, SUBMISSION, HF = "data", "checkpoints", "results", "fast", "submission", "hf"
CONFIG, CHANGES, METRICS, STAGES = "config.yaml", "config_changes.jsonl", "metrics.jsonl", "stages.json"
LOSS_PLOT, LR_PLOT, MIXING_PLOT, MIXING_CARD = "loss.png", "lr_schedule.png", "mixing.png", "mixing.md"
RUN_FILES = (CONFIG, CHANGES, METRICS, STAGES, LOSS_PLOT, LR_PLOT, MIXING_PLOT, MIXING_CARD)  # beside <group>.png
# the state files of a checkpoint folder (beside its Hugging Face files)
TRAINER_STATE, RESUME_STATE, HYPERPARAMETERS = "trainer_state.json", "resume_state.pt", "hyperparameters.json"
# a results folder: <checkpoint>/<task>.json per checkpoint, these across checkpoints, finetune/ per checkpoint
LEARNING_CURVES, BEST_CHECKPOINT, CURVES, AOA = "learning_curves", "best_checkpoint.json", "curves", "aoa.json"
AOA_SURPRISAL = "aoa_surprisal.json"  # per checkpoint: every word's surprisal after each context
FINETUNE, REPORT, MULTILINGUAL = "finetune", "report.md", "multilingual"
RESULT_SUFFIXES = (".json", ".stale", ".md", ".csv", ".png")  # what evaluation writes under results/
LOOSE_RESULTS = Path(RESULTS)  # where results of a model folder outside a run go (relative to the working folder)


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

    config = property(lambda self: self.path / CONFIG)
    changes = property(lambda self: self.path / CHANGES)
    data = property(lambda self: self.path / DATA)
    metrics = property(lambda self: self.path / METRICS)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    results = property(lambda self: self.path / RESULTS)
    fast_results = property(lambda self: self.results / FAST)
    report = property(lambda self: self.results / REPORT)
    multilingual_results = property(lambda self: self.results / MULTILINGUAL)
    submission = property(lambda self: self.path / SUBMISSION)
    hf = property(lambda self: self.path / HF)
    stages = property(lambda self: self.path / STAGES)
    loss_plot = property(lambda self: self.path / LOSS_PLOT)
    lr_plot = property(lambda self: self.path / LR_PLOT)
    mixing_plot = property(lambda self: self.path / MIXING_PLOT)
    mixing_card = property(lambda self: self.path / MIXING_CARD)

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / name

    def results_of(self, checkpoint: str) -> Path:
        """The full evaluation results of one checkpoint (`babble eval`, the full stage, `babble submit`)."""
        return self.results / checkpoint

    def fast_results_of(self, checkpoint: str) -> Path:
        """The fast evaluation results of one `chck_*` (the fast stage, `babble submit`)."""
        return self.fast_results / checkpoint

    def finetune_results(self, checkpoint: str) -> Path:
        """The GLUE fine-tuning results of one checkpoint (`babble finetune`, `babble submit`)."""
        return finetune_folder(self.results_of(checkpoint))

    def group_plot(self, group: str) -> Path:
        """The plot of one per-layer metric group (`group/<layer>` keys of metrics.jsonl)."""
        return self.path / f"{group}.png"

    def finished(self) -> bool:
        """Whether training finished: a complete final model whose state says it is the plan's last step."""
        final = self.checkpoint(FINAL)
        if not all((final / name).is_file() for name in ("config.json", "model.safetensors", TRAINER_STATE)):
            return False
        try:
            state = json.loads((final / TRAINER_STATE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(state, dict) and state.get("step") == state.get("total_steps", 0) - 1

    def is_run(self) -> bool:
        return self.checkpoints.is_dir()

    def written_checkpoints(self) -> list[Path]:
        """The folders under checkpoints/ that training wrote: checkpoints (with trainer_state.json) and
        the leftovers of interrupted writes; anything else there is not the run's."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(d for d in self.checkpoints.iterdir() if d.is_dir() and not d.is_symlink() and (
            d.name.startswith((".tmp-", ".old-")) or (d / TRAINER_STATE).is_file()))

    def holds_training(self) -> bool:
        """Has a run trained here (checkpoints or metrics written)?"""
        return self.metrics.exists() or bool(self.written_checkpoints())

    def clear(self, log=print) -> None:
        """Delete what a run wrote here, except the prepared data (reused only if its inputs match): its
        config, metrics, plots and run record, its checkpoints, evaluation results, and `hf/` if the
        export stage wrote it. Everything else stays, and is named."""
        written = [self.path / name for name in RUN_FILES]
        written += [self.group_plot(group) for group in plot_groups(self.metric_records())]
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
        return run if model_dir.parent.name == CHECKPOINTS and run.config.exists() else None


def learning_curves(results: Path, suffix: str = ".md") -> Path:
    """The table of scores across checkpoints in a results folder (`.md` or `.csv`)."""
    return Path(results) / f"{LEARNING_CURVES}{suffix}"


def finetune_folder(results: Path) -> Path:
    """The fine-tuning results beside a checkpoint's zero-shot results."""
    return Path(results) / FINETUNE


def model_results(model_dir: str | Path) -> Path:
    """Where results of a model folder go by default: `<run>/results/<checkpoint>` for a run's checkpoint,
    else `results/<folder name>` in the working folder."""
    model_dir = Path(model_dir)
    run = RunDir.of(model_dir)
    return run.results_of(model_dir.name) if run else LOOSE_RESULTS / model_dir.name


def submission_folder(run: RunDir) -> Path:
    """Where `babble submit` writes by default: the run's `submission/`, else `submission/` in the working folder."""
    return run.submission if run.is_run() else Path(SUBMISSION)


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
