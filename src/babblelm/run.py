"""`babble run CONFIG`: a whole run in one command, each stage skipped when its outputs are there.

    data -> train -> fast eval of every chck_* -> full eval of final -> report -> export -> submit

- data: the prepared corpus (reused when its inputs and settings are unchanged);
- train: with the word-milestone checkpoints; continued from its resume point when interrupted;
- fast: every `chck_*` scored on the official fast data of `eval.rules` (eval/rules.py, `Rules.fast`:
  the fast_eval folder when `eval.data` has one, else subsets of the full data), for the learning
  curves the BabyLM pipeline's fast evaluation draws;
- full: the final model on the configured zero-shot tasks (`eval.tasks`, data in `eval.data`,
  scored under `eval.rules`);
- report: `results/report.md`, each score beside its bounds with ties counted right and wrong;
- export: `<run>/hf`, a git repository with the final model on `main` and a branch per `chck_*`;
- submit: when `eval.data` is a full evaluation folder, `<run>/submission`: the leaderboard's files
  for `data.track` (`babble submit`: what they need and the stages above did not score is scored
  now, every result already there reused), each missing or short task and revision a failure.

A rerun continues where the last one stopped; `--force STAGE` redoes one stage (and, for data
and train, everything after it). The end is one summary table.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .rundir import FINAL, RunDir

STAGES = ("data", "train", "fast", "full", "report", "export", "submit")


@dataclass
class StageResult:
    stage: str
    status: str  # "done", "reused", "skipped", "failed", "interrupted"
    seconds: float
    detail: str = ""


@dataclass
class RunSummary:
    run_dir: Path
    stages: list[StageResult] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        lines = ["| stage | status | time | detail |", "|---|---|---|---|"]
        lines += [f"| {s.stage} | {s.status} | {s.seconds:.0f} s | {s.detail} |" for s in self.stages]
        if self.scores:
            lines += ["", "| score | value |", "|---|---|"]
            lines += [f"| {name} | {value:.2f} |" for name, value in self.scores.items()]
        return "\n".join(lines)


def forced(force: list[str]) -> set[str]:
    """The stages to redo: data and train invalidate what follows them."""
    unknown = [s for s in force if s not in STAGES]
    if unknown:
        raise ValueError(f"--force: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    redo = set(force)
    for stage in ("data", "train"):
        if stage in redo:
            redo |= set(STAGES[STAGES.index(stage):])
    return redo


def run_all(cfg: RunConfig, force: list[str] | None = None, progress: bool = True, log=print) -> RunSummary:
    """Run every stage of `cfg`'s run (see module docstring); return what each did."""
    redo, run = forced(force or []), RunDir(cfg.out_dir)
    summary = RunSummary(run.path)
    for stage in STAGES:
        start = time.perf_counter()
        log(f"== {stage}")
        status, detail = STEPS[stage](cfg, run, stage in redo, progress, summary, log)
        summary.stages.append(StageResult(stage, status, time.perf_counter() - start, detail))
        log(f"   {status}: {detail}" if detail else f"   {status}")
        if status == "interrupted":
            break
    log("\n" + summary.table())
    return summary


def _data(cfg, run, redo, progress, summary, log):
    from .data.blocks import MANIFEST
    from .data.prepare import format_allocation
    from .train.loop import source_for

    if redo and run.data.exists():
        shutil.rmtree(run.data)

    def manifests():  # what preparing rewrites: unchanged means the prepared data was reused
        return {path.name: path.read_bytes() for path in run.data.glob("*.json")}

    before = manifests() if run.data.is_dir() else {}
    run.path.mkdir(parents=True, exist_ok=True)
    source_for(cfg).prepare(cfg, run, progress)
    if (run.data / MANIFEST).is_file():  # one corpus (a multilingual run says its shares when it trains)
        log(format_allocation(json.loads((run.data / MANIFEST).read_text(encoding="utf-8"))))
    return ("reused" if before and before == manifests() else "done"), f"{run.data}"


def _train(cfg, run, redo, progress, summary, log):
    from .train.checkpoints import latest_resumable
    from .train.loop import train

    final = run.checkpoint(FINAL)
    if (final / "model.safetensors").is_file() and (final / "trainer_state.json").is_file() and not redo:
        return "reused", f"{final}"
    resume = not redo and latest_resumable(run.checkpoints) is not None
    result = train(cfg, resume=resume, overwrite=not resume, progress=progress)
    if result.interrupted:
        return "interrupted", f"at step {result.steps:,}; `babble run` again continues from there"
    return "done", f"{result.steps:,} steps, {result.words_seen:,} words, {len(run.milestones())} milestone checkpoints"


def _fast(cfg, run, redo, progress, summary, log):
    from .eval.suite import evaluate_all_checkpoints
    from .eval.tasks import has_fast, parse_task_list

    tasks = [t for t in parse_task_list(",".join(cfg.eval.tasks), cfg.eval.rules) if has_fast(t, cfg.eval.rules)]
    if not cfg.eval.data or not tasks or not run.milestones():
        return "skipped", _why_not(cfg, tasks, run)
    result = evaluate_all_checkpoints(run.path, tasks, cfg.eval.data, run.fast_results, batch_size=cfg.eval.batch_size,
                                      device=cfg.run.device, force=redo, progress=progress, fast=True, log=lambda _: None,
                                      rules=cfg.eval.rules)
    summary.failed.update({f"fast/{c}/{t}": e for c, failed in result["failed"].items() for t, e in failed.items()})
    return "done", f"{len(result['checkpoints'])} checkpoints x {', '.join(tasks)}; curves in {run.fast_results}"


def _full(cfg, run, redo, progress, summary, log):
    from .eval.report import failures, scores_of
    from .eval.suite import evaluate_model
    from .eval.tasks import parse_task_list

    if not cfg.eval.data:
        return "skipped", _why_not(cfg, cfg.eval.tasks, run)
    tasks = parse_task_list(",".join(cfg.eval.tasks), cfg.eval.rules)
    results, out = evaluate_model(run.path, tasks, cfg.eval.data, device=cfg.run.device, rules=cfg.eval.rules,
                                  batch_size=cfg.eval.batch_size, force=redo, progress=progress, log=lambda _: None)
    summary.scores = scores_of(results)
    summary.failed.update(failures(results))
    return ("failed" if failures(results) else "done"), f"{', '.join(results)} in {out}"


def _report(cfg, run, redo, progress, summary, log):
    from .eval.report import read_results, write_run_report

    final = read_results(run.results / FINAL)
    if not final:
        return "skipped", "no results of the final model"
    path = write_run_report(final, run.results / "report.md")
    return "done", f"{path}"


def _export(cfg, run, redo, progress, summary, log):
    from .hubrepo import branches, export_repo

    out = run.path / "hf"
    if out.exists() and not redo:
        return "reused", f"{out}"
    if out.exists():
        shutil.rmtree(out)
    export_repo(run.path, out)
    return "done", f"{out}: branches {', '.join(branches(out))}"


def _submit(cfg, run, redo, progress, summary, log):
    from .submit import SUBMISSION_RULES, full_evaluation_gaps, submit

    if not cfg.eval.data:
        return "skipped", _why_not(cfg, [], run)
    if cfg.data.track not in ("strict-small", "strict"):
        return "skipped", f"data.track is {cfg.data.track}: no strict leaderboard track to submit to"
    if cfg.eval.rules != SUBMISSION_RULES:
        return "skipped", (f"eval.rules is {cfg.eval.rules}; the leaderboard takes the {SUBMISSION_RULES} rules "
                           f"(`babble submit` scores under them)")
    gaps = full_evaluation_gaps(cfg.eval.data)
    if gaps:
        return "skipped", f"eval.data is not a full evaluation folder (it lacks {', '.join(gaps)})"
    report = submit(run.path, cfg.eval.data, cfg.data.track, device=cfg.run.device, batch_size=cfg.eval.batch_size,
                    force=redo, progress=progress, log=lambda _: None)
    summary.failed.update({f"submit/{line.split(':', 1)[0]}": line.split(": ", 1)[1] for line in report.problems})
    if report.problems:
        return "failed", f"{len(report.problems)} missing or short task(s) or revision(s); files in {report.folder}"
    return "done", f"upload {report.collated}"


def _why_not(cfg, tasks, run) -> str:
    if not cfg.eval.data:
        return "no eval.data: set it to the evaluation data folder (official full_eval layout)"
    if not tasks:
        return "none of eval.tasks has a fast subset"
    return "the run has no chck_* checkpoints"


STEPS = {"data": _data, "train": _train, "fast": _fast, "full": _full, "report": _report, "export": _export,
         "submit": _submit}
