"""`babble run CONFIG`: a whole run in one command, each stage skipped when its outputs are done.

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

A stage is done only when its outputs are complete and were made from the current config:
`stages.json` records per stage the hash of the config it depended on and the inputs it used (the
weights of the checkpoints it read); evaluation results record their own inputs (eval/suite.py). A
folder holding a run is continued only with the config it was trained with: any difference outside
`eval` is refused at the start, naming the keys, before anything is written.

`babble run` deletes nothing it did not write and overwrites nothing without `--overwrite`: a run it
cannot continue is refused, and `--overwrite` deletes what a run wrote (RunDir.clear) and keeps every
other file. One process at a time runs in a folder (its lock, folders.py). A rerun continues where
the last one stopped; `--force STAGE` redoes one stage (and, for data and train, everything after
it). A stage that fails is named in the summary table and the stages needing its outputs are
skipped; SIGINT or SIGTERM stop the run (training saves its exact resume point) with the table too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import interrupts
from .config import RunConfig
from .configbase import to_dict
from .folders import folder_lock, recover
from .rundir import FINAL, RunDir

STAGES = ("data", "train", "fast", "full", "report", "export", "submit")
NEEDS = {"train": "data", "fast": "train", "full": "train", "export": "train", "submit": "train"}  # a stage skipped when that one fails
FREE = ("eval.",)  # config keys a run may change between `babble run`s: they decide only the evaluation


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
    signal: int | None = None  # the SIGINT or SIGTERM that stopped the run
    manifest: dict | None = field(default=None, repr=False)  # the data stage's, handed to training: prepared once

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


def run_all(cfg: RunConfig, force: list[str] | None = None, progress: bool = True, log=print,
            overwrite: bool = False, after_stage: Callable[[str], None] | None = None) -> RunSummary:
    """Run every stage of `cfg`'s run (see module docstring); return what each did. `after_stage(stage)`
    is called after each stage that is done or reused (the demo scores the untrained model after `data`)."""
    redo, run = forced(force or []), RunDir(cfg.out_dir)
    summary = RunSummary(run.path)
    with folder_lock(run.path, "run folder", log=log):
        check_start(cfg, run, redo, overwrite, log)
        blocked: dict[str, str] = {}  # stage -> why the stages needing it are skipped
        for stage in STAGES:
            start = time.perf_counter()
            log(f"== {stage}")
            if NEEDS.get(stage) in blocked:
                status, detail = "skipped", blocked[NEEDS[stage]]
                blocked[stage] = detail
            else:
                status, detail, stopped = _stage(stage, cfg, run, redo, progress, summary, log)
                if stopped:
                    blocked[stage] = f"{stage} {status}"
            if summary.signal is None and interrupts.received() is not None:  # its raise was lost: stop here
                summary.signal = interrupts.received()
                status, detail = "interrupted", (f"by {interrupts.name(summary.signal)}, after it finished ({detail}); "
                                                 "`babble run` again continues from here")
            summary.stages.append(StageResult(stage, status, time.perf_counter() - start, detail))
            log(f"   {status}: {detail}" if detail else f"   {status}")
            if after_stage is not None and status in ("done", "reused"):
                after_stage(stage)
            if summary.signal is not None:
                break
    log("\n" + summary.table())
    return summary


def _stage(stage: str, cfg, run: RunDir, redo: set[str], progress: bool, summary: RunSummary,
           log) -> tuple[str, str, bool]:
    """(status, detail, whether it stopped short of its outputs) of one stage; its record written when it is
    done. An error is the stage's failure (some of an evaluation's tasks failing is not: its others are done)."""
    try:
        status, detail, inputs = STEPS[stage](cfg, run, stage in redo, progress, summary, log)
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM (interrupts.Interrupted)
        summary.signal = interrupts.signal_of(err)
        return "interrupted", f"by {interrupts.name(summary.signal)}; `babble run` again continues from here", True
    except Exception as err:  # noqa: BLE001 (every stage's failure ends in the summary table)
        if os.environ.get("BABBLE_DEBUG"):
            raise
        message = " ".join(f"{type(err).__name__}: {err}".split())
        summary.failed[stage] = message
        return "failed", message, True
    if status in ("done", "reused"):
        _record(run, stage, {"config_sha256": config_hash(cfg, stage), "inputs": inputs, "status": status,
                             "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return status, detail, status == "interrupted"


def check_start(cfg: RunConfig, run: RunDir, redo: set[str], overwrite: bool, log) -> None:
    """Refuse what would mix two runs in one folder, before anything is written: a config that differs
    from the run's (outside `eval`) and retraining over a run, unless `overwrite` (which clears what
    the run wrote)."""
    from .train import changes
    from .train.checkpoints import latest_resumable

    if not run.holds_training():
        return
    if overwrite:
        log(f"--overwrite: deleting what the run in {run.path} wrote (its data is reused if its inputs match)")
        run.clear(log)
        return
    saved = ", ".join(run.saved()) or "none"
    if "train" in redo:
        raise ValueError(f"--force {'data' if 'data' in redo else 'train'} retrains from scratch, replacing the run in "
                         f"{run.path} (checkpoints: {saved}): add --overwrite to do that")
    if not run.config.is_file():
        raise ValueError(f"{run.path} holds training (checkpoints: {saved}) but no {run.config.name}, so nothing shows "
                         "what trained it: start over with --overwrite, or use another run.out_dir")
    changed = {k: v for k, v in changes.differences(run, to_dict(cfg)).items() if not k.startswith(FREE)}
    if changed:
        listing = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(f"the config differs from that of the run in {run.path} ({listing}); run it with the run's "
                         f"own config ({run.config}), choose another run.out_dir, start over with --overwrite, or "
                         "change a setting a run may change mid-way with `babble train CONFIG --resume --allow-changes KEY`")
    if not run.finished() and latest_resumable(run.checkpoints) is None:
        raise ValueError(f"{run.path} holds a run that cannot be continued: no final model and no checkpoint with resume "
                         f"state (checkpoints: {saved}); start over with --overwrite (deletes what the run wrote, keeps "
                         "every other file), or use another run.out_dir")


def config_hash(cfg: RunConfig, stage: str) -> str:
    """A hash of the config keys `stage` depends on: data the data settings (and the folder it starts from),
    train and export everything but `eval`, the evaluation stages everything. Unset keys (null) do not
    count, so a setting added in a later release, unset, leaves the stages of existing runs done."""
    from .train.changes import flatten

    flat = {k: v for k, v in flatten(to_dict(cfg)).items() if k != "run.out_dir" and v is not None}
    if stage == "data":
        flat = {k: v for k, v in flat.items() if k.startswith(("data.", "tokenizer.", "mixing.", "model.init_from"))}
    elif stage in ("train", "export"):
        flat = {k: v for k, v in flat.items() if not k.startswith(FREE)}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


def _records(run: RunDir) -> dict:
    try:
        records = json.loads(run.stages.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def _record(run: RunDir, stage: str, record: dict) -> None:
    records = {**_records(run), stage: record}
    tmp = run.stages.with_name(f".{run.stages.name}.tmp")
    tmp.write_text(json.dumps(records, indent=2), encoding="utf-8")
    os.replace(tmp, run.stages)


def _weights(folders: list[Path]) -> dict[str, str]:
    """{checkpoint name: hash of its weights, config and tokenizer}: what a stage read."""
    from .eval.suite import model_identity

    return {folder.name: model_identity(folder)["model_sha256"] for folder in folders}


def _data(cfg, run, redo, progress, summary, log):
    import shutil

    from .data.blocks import MANIFEST
    from .data.prepare import format_allocation
    from .train.launch import source_for

    if redo and run.data.exists():
        shutil.rmtree(run.data)

    def manifests():  # what preparing rewrites: unchanged means the prepared data was reused
        return {path.name: path.read_bytes() for path in run.data.glob("*.json")}

    before = manifests() if run.data.is_dir() else {}
    summary.manifest = source_for(cfg).prepare(cfg, run, progress)
    if (run.data / MANIFEST).is_file():  # one corpus (a multilingual run says its shares when it trains)
        log(format_allocation(summary.manifest))
    after = manifests()
    return ("reused" if before and before == after else "done"), f"{run.data}", {
        "manifest_sha256": hashlib.sha256(b"".join(after[k] for k in sorted(after))).hexdigest()}


def _train(cfg, run, redo, progress, summary, log):
    from .train.checkpoints import latest_resumable
    from .train.launch import train

    final = run.checkpoint(FINAL)
    if run.finished() and not redo:
        return "reused", f"{final}", _weights([final])
    result = train(cfg, resume=latest_resumable(run.checkpoints) is not None, progress=progress, manifest=summary.manifest)
    summary.signal = result.signal
    if result.interrupted:
        how = f"by {interrupts.name(result.signal)} " if result.signal else ""
        return "interrupted", f"{how}after step {result.steps:,}; `babble run` again continues from there", {}
    return "done", (f"{result.steps:,} steps, {result.words_seen:,} words, {len(run.milestones())} milestone "
                    "checkpoints"), _weights([final])


def _fast(cfg, run, redo, progress, summary, log):
    from .eval.suite import evaluate_all_checkpoints
    from .eval.catalog import parse_task_list
    from .eval.tasks import has_fast

    asked = parse_task_list(",".join(cfg.eval.tasks), cfg.eval.rules)
    tasks = [t for t in asked if has_fast(t, cfg.eval.rules)]
    without = [t for t in asked if t not in tasks]
    if not cfg.eval.data or not tasks or not run.milestones():
        return "skipped", _why_not(cfg, tasks, run), {}
    result = evaluate_all_checkpoints(run.path, tasks, cfg.eval.data, run.fast_results, batch_size=cfg.eval.batch_size,
                                      device=cfg.run.device, force=redo, progress=progress, fast=True, log=lambda _: None,
                                      rules=cfg.eval.rules)
    failed = {f"fast/{c}/{t}": e for c, failed in result["failed"].items() for t, e in failed.items()}
    summary.failed.update(failed)
    where = f"{len(result['checkpoints'])} checkpoints x {', '.join(tasks)}; curves in {run.fast_results}"
    if without:
        where += f"; no fast subset under the {cfg.eval.rules} rules: {', '.join(without)}"
    if failed:
        return "failed", f"{len(failed)} of {len(result['checkpoints']) * len(tasks)} scores failed; {where}", {}
    return "done", where, {}


def _full(cfg, run, redo, progress, summary, log):
    from .eval.report import failures, scores_of
    from .eval.catalog import parse_task_list
    from .eval.suite import evaluate_model

    if not cfg.eval.data:
        return "skipped", _why_not(cfg, cfg.eval.tasks, run), {}
    tasks = parse_task_list(",".join(cfg.eval.tasks), cfg.eval.rules)
    results, out = evaluate_model(run.path, tasks, cfg.eval.data, device=cfg.run.device, rules=cfg.eval.rules,
                                  batch_size=cfg.eval.batch_size, force=redo, progress=progress, log=lambda _: None)
    summary.scores = scores_of(results)
    summary.failed.update(failures(results))
    return ("failed" if failures(results) else "done"), f"{', '.join(results)} in {out}", {}


def _report(cfg, run, redo, progress, summary, log):
    """The report of the final model's results on eval.data computed from its current weights; without any,
    an earlier report is set aside (`report.md.stale`), never left to read as current."""
    from .eval.report import read_results, write_run_report
    from .eval.catalog import parse_task_list
    from .eval.suite import model_identity, results_folder, stale_path

    final, path = run.checkpoint(FINAL), run.report
    folder = run.results_of(FINAL)  # the full stage's results of eval.data (eval/suite.py, results_folder)
    if cfg.eval.data:
        folder = results_folder(folder, run, cfg.eval.data, parse_task_list(",".join(cfg.eval.tasks), cfg.eval.rules))
    identity = model_identity(final)["model_sha256"] if (final / "config.json").is_file() else None
    results = {task: r for task, r in read_results(folder).items()
               if identity is not None and r.get("inputs", {}).get("model_sha256") == identity}
    if not results:
        why = "no results of the final model's current weights"
        if path.exists():
            path.replace(stale_path(path))
            why += f"; set aside the earlier {path.name} as {stale_path(path).name}"
        return "skipped", why, {}
    write_run_report(results, path)
    stale_path(path).unlink(missing_ok=True)
    return "done", f"{path}", {task: r["inputs"] for task, r in results.items()}


def _export(cfg, run, redo, progress, summary, log):
    """`hf/`, replaced only when the export stage wrote it and the checkpoints or config changed since."""
    from .hubrepo import branches, complete, export_repo

    with folder_lock(run.hf, "export target", beside=True, log=log):
        recover(run.path, run.hf.name)  # what an export killed mid-way left
        milestones = run.milestones()
        inputs = _weights([run.checkpoint(FINAL), *milestones])
        record = run.export_record()
        if run.hf.exists():
            if record is None:
                raise ValueError(f"{run.hf} exists but this run's export stage did not write it ({run.stages} has no "
                                 "record of it): move it away, then run again")
            current = record.get("inputs") == inputs and record.get("config_sha256") == config_hash(cfg, "export")
            if current and not redo and complete(run.hf, ["main", *(m.name for m in milestones)]):
                return "reused", f"{run.hf}", inputs
        export_repo(run.path, run.hf, replace=run.hf.exists())
    return "done", f"{run.hf}: branches {', '.join(branches(run.hf))}", inputs


def _submit(cfg, run, redo, progress, summary, log):
    from .submit import SUBMISSION_RULES, full_evaluation_gaps, submit

    if not cfg.eval.data:
        return "skipped", _why_not(cfg, [], run), {}
    if cfg.data.track not in ("strict-small", "strict"):
        return "skipped", f"data.track is {cfg.data.track}: no strict leaderboard track to submit to", {}
    if cfg.eval.rules != SUBMISSION_RULES:
        return "skipped", (f"eval.rules is {cfg.eval.rules}; the leaderboard takes the {SUBMISSION_RULES} rules "
                           f"(`babble submit` scores under them)"), {}
    gaps = full_evaluation_gaps(cfg.eval.data)
    if gaps:
        return "skipped", f"eval.data is not a full evaluation folder (it lacks {', '.join(gaps)})", {}
    report = submit(run.path, cfg.eval.data, cfg.data.track, device=cfg.run.device, batch_size=cfg.eval.batch_size,
                    force=redo, progress=progress, log=lambda _: None)
    summary.failed.update({f"submit/{line.split(':', 1)[0]}": line.split(": ", 1)[1] for line in report.problems})
    if report.problems:
        return "failed", f"{len(report.problems)} missing or short task(s) or revision(s); files in {report.folder}", {}
    return "done", f"upload {report.collated}", {}


def _why_not(cfg, tasks, run) -> str:
    if not cfg.eval.data:
        return "no eval.data: set it to the evaluation data folder (official full_eval layout)"
    if not tasks:
        return "none of eval.tasks has a fast subset"
    return "the run has no chck_* checkpoints"


STEPS = {"data": _data, "train": _train, "fast": _fast, "full": _full, "report": _report, "export": _export,
         "submit": _submit}
