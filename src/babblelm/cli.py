"""`babble`: one sub-command per verb. Each handler reads its arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _load_cfg(args):
    """The config of a verb that takes one (`--threads` recorded as run.threads), its CPU threads applied."""
    from .config import load_config
    from .device import set_threads

    threads = [f"run.threads={args.threads}"] if getattr(args, "threads", None) is not None else []
    cfg = load_config(args.config, overrides=[*args.set, *threads])
    set_threads(cfg.run.threads)
    return cfg


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), quick=args.quick, seed=args.seed, arch=args.arch, threads=args.threads)


def cmd_info(args) -> None:
    from .configbase import to_dict
    from .models.registry import count_parameters, init_folder, parameter_breakdown

    import yaml

    cfg = _load_cfg(args)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
    arch, margs = cfg.model_section
    folder = init_folder(cfg.model)
    config = (arch.config_class.from_pretrained(folder) if folder is not None
              else arch.make_config(margs, cfg.tokenizer.vocab_size, 0, 1, 2))
    model = arch.model_class(config)
    source = f", weights from {folder}" if folder is not None else ""
    print(f"\n{arch.name}: {count_parameters(model):,} parameters (vocab {config.vocab_size:,}{source})")
    for name, n in parameter_breakdown(model).items():
        print(f"  {n:>12,}  {name}")


def cmd_data_prepare(args) -> None:
    from .data.blocks import MANIFEST
    from .data.prepare import format_allocation, prepare_data
    from .rundir import RunDir

    cfg = _load_cfg(args)
    out = Path(args.out) if args.out else RunDir(cfg.out_dir).data
    manifest = prepare_data(cfg.data, cfg.tokenizer, out)
    print(format_allocation(manifest))
    print(f"prepared {manifest['splits']['train']['words']:,} training words into {out} (manifest: {out / MANIFEST})")
    print(f"next: `babble data stats {out}` for a per-source table, or train: `babble train {args.config}`")


def cmd_data_audit(args) -> None:
    from .data.audit import audit, format_audit

    report = audit(args.dir)
    print(format_audit(report))
    if not report["ok"]:
        sys.exit(1)


def cmd_data_stats(args) -> None:
    from .data.stats import format_stats, plot_lengths, source_stats

    rows = source_stats(args.dir, max_lines=args.max_lines)
    print(format_stats(rows))
    png = plot_lengths(rows, args.png or Path(args.dir) / "lengths.png")
    print(f"length distributions: {png}")


def cmd_run(args) -> int:
    from .interrupts import exit_code
    from .run import run_all
    from .rundir import RunDir

    summary = run_all(_load_cfg(args), force=args.force, progress=not args.no_progress, overwrite=args.overwrite)
    for task, error in summary.failed.items():
        print(f"FAILED {task}: {error}", file=sys.stderr)
    if summary.signal is not None:
        return exit_code(summary.signal)
    interrupted = any(s.status == "interrupted" for s in summary.stages)
    if interrupted:
        print("next: the same `babble run` command again continues where this one stopped")
    elif (hf := RunDir(summary.run_dir).hf).is_dir():
        print(f"next: `babble generate {hf} \"the little dog\"`, `babble report {summary.run_dir} "
              f"OTHER_RUN` to compare, or publish {hf} (README, \"Shipping\")")
    return 1 if summary.failed or interrupted else 0


def cmd_train(args) -> int:
    from .interrupts import exit_code, name
    from .rundir import LAST, RunDir
    from .train.launch import train

    cfg = _load_cfg(args)
    if args.allow_changes and not args.resume:
        raise ValueError("--allow-changes applies to --resume")
    result = train(cfg, resume=args.resume, progress=not args.no_progress, stop_after_steps=args.stop_after,
                   overwrite=args.overwrite, allow_changes=args.allow_changes)
    code = exit_code(result.signal) if result.signal is not None else 0  # 130 / 143: stopped by SIGINT / SIGTERM
    if int(os.environ.get("RANK", "0")):
        return code  # under torchrun only rank 0 reports
    state = "interrupted" if result.interrupted else "finished"
    if result.signal is not None:
        state += f" ({name(result.signal)})"
    print(f"{state} after {result.steps:,} steps, {result.words_seen:,} words, {result.seconds:.0f}s; "
          f"model: {result.final_dir if not result.interrupted else RunDir(cfg.out_dir).checkpoint(LAST)}")
    if result.interrupted:
        print("next: the same `babble train` command with --resume continues from there")
    else:
        print(f"next: `babble eval {cfg.out_dir} --tasks official --data EVAL_DATA`, or `babble export {cfg.out_dir} OUT`")
    return code


def cmd_plot(args) -> None:
    from .train.plot import plot_training

    for path in plot_training(Path(args.run)):
        print(f"wrote {path}")


# --- training speed: schedule plot and sweeps ---
def cmd_schedule(args) -> None:
    from .train.plot import plot_schedule

    out = plot_schedule(_load_cfg(args), Path(args.out) if args.out else None, steps=args.steps)
    print(f"learning-rate curve written to {out}")


def cmd_sweep(args) -> None:
    from .train.sweep import format_markdown, parse_grid, run_sweep

    _load_cfg(args)  # the base config: checked before any training, its threads applied
    threads = [f"run.threads={args.threads}"] if args.threads is not None else []
    rows = run_sweep(args.config, parse_grid(args.grid), [*args.set, *threads], args.out, progress=not args.no_progress)
    print(format_markdown(rows))


def cmd_matrix(args) -> None:
    from .train.matrix import format_markdown, run_matrix

    rows = run_matrix(args.configs, args.seeds, args.out, args.set, args.eval_data, progress=not args.no_progress)
    print(format_markdown(rows))
    print(f"table: {Path(args.out) / 'matrix.md'} (and matrix.csv; every run's numbers in runs.csv)")


def cmd_prior(args) -> None:
    from .train.prior import format_prior, typological_prior

    prior = typological_prior(args.languages, args.temperature, args.floor, args.features, args.reverse)
    print(format_prior(prior, args.temperature, args.floor, args.reverse))


def cmd_eval(args) -> int:
    if args.suite == "multilingual":
        return _eval_multilingual(args)
    from .eval.report import failures, scores_of
    from .eval.suite import evaluate_all_checkpoints, evaluate_model
    from .eval.catalog import parse_task_list
    from .rundir import learning_curves

    tasks = parse_task_list(args.tasks or args.task, args.rules)
    if not args.data:
        raise ValueError("--data DIR is required: the evaluation data folder (official full_eval layout, "
                         "or one task's folder of *.jsonl files)")
    options = dict(batch_size=args.batch_size, force=args.force, progress=True, shared_prefix=args.shared_prefix,
                   rules=args.rules, trust_remote_code=args.trust_remote_code)
    if args.all_checkpoints:
        summary = evaluate_all_checkpoints(args.model, tasks, args.data, args.out and Path(args.out), device=args.device,
                                           **options)
        out = Path(summary["folder"])
        print(learning_curves(out).read_text(encoding="utf-8"))
        if "aoa" in summary:
            print(f"AoA curve fitness (Pearson r, model vs child AoA): {summary['aoa']:.2f}")
        best = summary["best_checkpoint"]
        print(f"best checkpoint by average: {best['name']} ({best['average']:.2f}); tables and curves in {out}")
        failed = {f"{name}/{task}": error for name, tasks_failed in summary["failed"].items()
                  for task, error in tasks_failed.items()}
        written = any(summary["checkpoints"].values())
        return _report_failures(failed, written, f"compare runs with `babble report {args.model} OTHER_RUN`")
    results, out = evaluate_model(args.model, tasks, args.data, checkpoint=args.checkpoint, out_dir=args.out,
                                  language=args.language, device=args.device, **options)
    scores = scores_of(results)
    if scores:
        print(f"average ({len(scores) - 1} scores): {scores['average']:.2f} under the {args.rules} rules; "
              f"results in {out}")
    written = len(results) > len(failures(results))
    return _report_failures(failures(results), written, f"tabulate them beside others with `babble report {out} ...`")


def _eval_multilingual(args) -> int:
    from .eval.lmeval import parse_languages
    from .submit import evaluate_multilingual_model

    if not args.tasks_dir:
        raise ValueError("--suite multilingual needs --tasks-dir PATH: the lm-eval task folder (the official "
                         "multilingual/tasks, which defines zeroshot_eng, zeroshot_nld and zeroshot_zho)")
    summary = evaluate_multilingual_model(args.model, args.tasks_dir, args.out, languages=parse_languages(args.languages),
                                          program=args.lm_eval, device=args.device, batch_size=args.batch_size,
                                          force=args.force, trust_remote_code=args.trust_remote_code)
    out = Path(summary["out"])
    print((out / "multilingual.md").read_text(encoding="utf-8"))
    print(f"tables in {out / 'multilingual.md'} and {out / 'multilingual.json'}")
    return _report_failures(summary["failed"])


def _report_failures(failed: dict[str, str], written: bool = True, next_step: str | None = None) -> int:
    """Print the tasks that failed (stderr; `written`: did any result get written), or what to do next;
    the exit code: 1 if any failed, else 0."""
    for task, error in failed.items():
        print(f"FAILED {task}: {error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} task(s) failed; " + ("the others' results were written" if written
                                                   else "no results were written"), file=sys.stderr)
    elif written and next_step:
        print(f"next: {next_step}")
    return 1 if failed else 0


def cmd_finetune(args) -> None:
    from .eval.catalog import GLUE_TASKS
    from .eval.finetune import finetune_tasks, format_results
    from .rundir import finetune_folder, model_results, resolve_checkpoint

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in GLUE_TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown GLUE task(s) {', '.join(unknown) or '(none)'}; known: {', '.join(GLUE_TASKS)}")
    model_dir = resolve_checkpoint(args.model, args.checkpoint)
    out = Path(args.out) if args.out else finetune_folder(model_results(model_dir))
    results = finetune_tasks(model_dir, tasks, args.data, out, lr=args.lr, batch_size=args.batch_size,
                             epochs=args.epochs, max_length=args.max_length, seed=args.seed, device=args.device,
                             rules=args.rules, force=args.force, trust_remote_code=args.trust_remote_code)
    print(format_results(results))
    print(f"results in {out}")


def cmd_submit(args) -> int:
    from .submit import submit, submit_multilingual

    if args.track == "multilingual":
        if not args.tasks_dir:
            raise ValueError("--track multilingual needs --tasks-dir PATH: the lm-eval task folder (official "
                             "multilingual/tasks)")
        report = submit_multilingual(args.model, args.tasks_dir, args.out, program=args.lm_eval, device=args.device,
                                     batch_size=args.batch_size, force=args.force)
    else:
        if not args.data:
            raise ValueError("--data DIR is required: the official evaluation_data folder (full_eval, fast_eval) "
                             "or its full_eval folder")
        report = submit(args.model, args.data, args.track, args.out, device=args.device, batch_size=args.batch_size,
                        force=args.force, progress=not args.no_progress)
    for line in report.problems:
        print(f"NOT READY {line}", file=sys.stderr)
    verdict = "passes the official size checks" if report.ok else f"has {len(report.problems)} problem(s) above"
    print(f"submission in {report.folder}: upload {report.collated} ({verdict})")
    return 0 if report.ok else 1


def cmd_report(args) -> None:
    from .eval.suite import compare_runs

    out = Path(args.out)
    compare_runs([Path(r) for r in args.runs], out)
    print((out / "comparison.md").read_text(encoding="utf-8"))
    print(f"written: {out / 'comparison.md'}, comparison.csv, comparison.png, model_card_results.md")


def cmd_export(args) -> None:
    from .export import export_model

    if args.branches:
        from .hubrepo import branches, export_repo

        if args.checkpoint:
            raise ValueError("--branches exports every checkpoint; leave out --checkpoint")
        out = export_repo(args.run, args.out, remote_code=args.remote_code)
        print(f"git repository {out}: branches {', '.join(branches(out))}; publish it with "
              f"`git push` to a Hugging Face model repo (see the README)")
        return
    out = export_model(args.run, args.out, checkpoint=args.checkpoint, remote_code=args.remote_code)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    native = "auto_map" not in config
    how = "" if native else ", trust_remote_code=True"
    print(f"exported to {out} ({'a native ' + config['architectures'][0] if native else 'with its modeling code'}); "
          f"load it with AutoModelForCausalLM.from_pretrained({str(out)!r}{how})")


def cmd_import(args) -> None:
    from .importers import import_model

    result = import_model(args.src, args.out)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"imported {args.src} ({result.importer.describe}) into {result.out}: a babblelm {result.importer.arch} "
          f"model with {result.parameters:,} parameters, {'with its tokenizer' if result.tokenizer else 'no tokenizer'}; "
          f"train from it with `model: {{init_from: {result.out}}}`")


def cmd_generate(args) -> None:
    from .generate import generate_file, load_for_generation, stream_text
    from .serve.sampling import Sampling

    if (args.prompt is None) == (args.prompts is None):
        raise ValueError("babble generate takes a PROMPT or --prompts FILE (one prompt per line), not both")
    if args.out is not None and args.prompts is None:
        raise ValueError("--out needs --prompts FILE (a single prompt is printed as it streams)")
    model, tokenizer = load_for_generation(args.model, args.checkpoint, device=args.device,
                                           trust_remote_code=args.trust_remote_code)
    sampling = Sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    if args.prompts is not None:
        count = generate_file(model, tokenizer, args.prompts, sampling, args.out, args.max_batch, args.stop)
        if args.out is not None:
            print(f"{count} continuations written to {args.out}", file=sys.stderr)
        return
    pieces = stream_text(model, tokenizer, args.prompt, sampling, args.stop)  # checks the settings before printing
    print(args.prompt, end="", flush=True)
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def cmd_serve(args) -> None:
    try:
        from .serve.app import Limits, serve
    except ImportError as err:
        raise ValueError(f"babble serve needs the serve extra: pip install 'babblelm[serve]' ({err})") from None
    limits = Limits(max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                    max_tokens=args.max_tokens, max_n=args.max_n, max_choices=args.max_choices,
                    max_batch=args.max_batch, max_context=args.max_context, prefill_chunk=args.prefill_chunk,
                    max_queue=args.max_queue, request_timeout=args.request_timeout)
    serve(args.model, args.checkpoint, host=args.host, port=args.port, limits=limits, device=args.device, name=args.name,
          trust_remote_code=args.trust_remote_code)


TRUST_HELP = ("run the model folder's own Python code (its auto_map) when its architecture is neither babblelm's "
              "nor one transformers implements; only for folders from a source you trust")


def build_parser() -> argparse.ArgumentParser:
    from .eval.catalog import ALL_TASKS, GLUE_TASKS, OFFICIAL
    from .models.registry import DEFAULT_ARCH, names

    p = argparse.ArgumentParser(prog="babble", description="Train, evaluate and ship BabyLM models.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("config", help="run YAML file")
        sp.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY.PATH=VALUE",
                        help="override config values (one or more; the option may repeat)")
        return sp

    def with_threads(sp, config: bool = False):
        sp.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: " + ("run.threads, else " if config else "")
                             + "the cores other processes leave free; docs/training.md)")
        return sp

    sp = sub.add_parser("demo", help="generate a demo corpus, train, evaluate and export a small model")
    sp.add_argument("--quick", action="store_true",
                    help="a smaller corpus and model: the pairs are learnt in under a minute (README)")
    sp.add_argument("--out", default="babble-demo", help="folder for every artifact (default: ./babble-demo)")
    sp.add_argument("--arch", default=DEFAULT_ARCH, choices=names(),
                    help=f"the architecture to train (default: {DEFAULT_ARCH})")
    sp.add_argument("--seed", type=int, default=0, help="seed of the corpus, the pairs and the run (default: 0)")
    with_threads(sp)
    sp.set_defaults(func=cmd_demo)

    sp = with_config(sub.add_parser("info", help="print the resolved config and the model's parameter count"))
    sp.set_defaults(func=cmd_info)

    data = sub.add_parser("data", help="data preparation").add_subparsers(dest="data_command", required=True)
    sp = with_config(data.add_parser("prepare", help="clean, count, tokenize and block a corpus"))
    sp.add_argument("--out", help="output folder (default: <run dir>/data)")
    sp.set_defaults(func=cmd_data_prepare)
    sp = data.add_parser("audit", help="re-verify a prepared folder's manifest (sha256, counts) and track compliance")
    sp.add_argument("dir", help="prepared data folder (holds manifest.json)")
    sp.set_defaults(func=cmd_data_audit)
    sp = data.add_parser("stats", help="per-source table (lines, words, tokens, filters) and a PNG of line lengths")
    sp.add_argument("dir", help="prepared data folder (holds manifest.json)")
    sp.add_argument("--png", help="where to write the PNG (default: DIR/lengths.png)")
    sp.add_argument("--max-lines", type=int, default=None, help="encode at most N lines per source for token counts")
    sp.set_defaults(func=cmd_data_stats)

    sp = with_config(sub.add_parser("run", help="the whole run: data, training, evaluation of every checkpoint, "
                                                 "report and export, each stage skipped when already done"))
    sp.add_argument("--force", nargs="+", default=[], metavar="STAGE",
                    help="redo these stages: data, train, fast, full, report, export, submit (data and train redo what follows)")
    sp.add_argument("--overwrite", action="store_true",
                    help="start over in a run folder that holds a run: deletes what the run wrote, keeps every other file")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    with_threads(sp, config=True)
    sp.set_defaults(func=cmd_run)

    sp = with_config(sub.add_parser("train", help="train a model as configured"))
    sp.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    sp.add_argument("--allow-changes", nargs="+", default=[], metavar="KEY",
                    help="with --resume: config keys (or sections) whose new values apply from here on, recorded")
    sp.add_argument("--overwrite", action="store_true",
                    help="start over in a run folder that holds a run: deletes what the run wrote, keeps every other file")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--stop-after", type=int, metavar="STEPS", help="stop after this many steps, saving a resume point")
    with_threads(sp, config=True)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("plot", help="draw a run's loss curves and per-layer metrics (e.g. swa_scale) to PNGs")
    sp.add_argument("run", help="run folder (holds metrics.jsonl)")
    sp.set_defaults(func=cmd_plot)

    sp = with_config(sub.add_parser("schedule", help="plot the learning-rate curve of a config to PNG"))
    sp.add_argument("--out", help="PNG path (default: <run dir>/lr_schedule.png)")
    sp.add_argument("--steps", type=int, help="total optimizer steps (default: from the prepared data's plan)")
    sp.set_defaults(func=cmd_schedule)

    sp = with_config(sub.add_parser("sweep", help="train a grid of configs and tabulate dev perplexity and eval"))
    sp.add_argument("--grid", action="append", required=True, metavar="KEY.PATH=V1,V2,...", help="values to sweep")
    sp.add_argument("--out", help="sweep folder (default: runs/sweep-<run.name>)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    with_threads(sp, config=True)
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("matrix", help="train multilingual conditions (configs) x seeds; one table of per-language "
                                       "final dev loss, MultiBLiMP and final pi, median (min-max) over seeds")
    sp.add_argument("configs", nargs="+", help="one run YAML per condition, e.g. configs/taam/TAAM.yaml")
    sp.add_argument("--seeds", nargs="+", type=int, required=True, help="e.g. 13 42 71 (the reference's)")
    sp.add_argument("--out", required=True, help="matrix folder: one run folder per condition and seed, the tables")
    sp.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY.PATH=VALUE",
                    help="override config values of every condition")
    sp.add_argument("--eval-data", help="folder with one <language>/ folder of MultiBLiMP pairs per language scored")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    with_threads(sp)
    sp.set_defaults(func=cmd_matrix)

    sp = sub.add_parser("prior", help="the TAAM typological prior pi0 of some languages (URIEL via lang2vec), "
                                      "with the cosine distances and isolation it comes from")
    sp.add_argument("languages", nargs="+", help="ISO 639-3 codes, e.g. eng nld zho")
    sp.add_argument("--temperature", type=float, default=0.5, help="softmax temperature (default 0.5)")
    sp.add_argument("--floor", type=float, default=0.10, help="every pi0 >= this, by linear shrinkage (default 0.10)")
    sp.add_argument("--features", nargs="+", default=["syntax_knn", "phonology_knn", "inventory_knn"], metavar="SET",
                    help="lang2vec feature sets, concatenated (default: syntax_knn phonology_knn inventory_knn)")
    sp.add_argument("--reverse", action="store_true", help="softmax(-isolation / T): the least isolated first (P2)")
    sp.set_defaults(func=cmd_prior)

    sp = sub.add_parser("eval", help="score a model (or every checkpoint of a run) on the BabyLM zero-shot tasks")
    sp.add_argument("model", help="run folder, checkpoint folder or exported Hugging Face folder")
    sp.add_argument("--tasks", help=f"comma-separated: {','.join(ALL_TASKS)}; {OFFICIAL}: the rules' official tasks")
    sp.add_argument("--task", default="blimp", help="one task (kept for compatibility; --tasks wins; default: blimp)")
    sp.add_argument("--data", help="evaluation data folder (official full_eval layout, or one task's folder)")
    sp.add_argument("--checkpoint", help="checkpoint name inside a run folder (default: final)")
    sp.add_argument("--all-checkpoints", action="store_true",
                    help="score every chck_* of the run: learning curves, AoA, best checkpoint by average")
    sp.add_argument("--force", action="store_true", help="re-score tasks whose results file already exists")
    sp.add_argument("--shared-prefix", action=argparse.BooleanOptionalAction, default=True,
                    help="run the shared context of EWoK/entity tracking/WUG options once (KV cache; default on, "
                         "--no-shared-prefix scores every option's whole text as the official loop does)")
    sp.add_argument("--rules", choices=["2026", "2025"], default="2026",
                    help="the official pipeline whose scoring rules apply (ties, EWoK, entity tracking, tasks; "
                         "default 2026): docs/evaluation.md")
    sp.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default: 64)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    sp.add_argument("--out", help="results folder (default: <run>/results/<checkpoint>, or results/<model folder>; "
                                  "data other than the run's eval.data in a folder named by the data inside it)")
    sp.add_argument("--language", help="language tag (e.g. nld): reads DATA/<lang>/ if present, writes OUT/<lang>/")
    sp.add_argument("--suite", choices=("babylm", "multilingual"), default="babylm",
                    help="babylm: the strict-track zero-shot tasks (default); multilingual: lm-eval with the "
                         "multilingual track's task folder over the final model and every chck_*")
    sp.add_argument("--tasks-dir", help="--suite multilingual: the lm-eval task folder (official multilingual/tasks)")
    sp.add_argument("--languages", default="eng,nld,zho", help="--suite multilingual: zeroshot_<lang> groups to run")
    sp.add_argument("--lm-eval", help="--suite multilingual: the lm_eval executable (default: lm_eval on the PATH)")
    sp.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    with_threads(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("finetune", help="fine-tune a classification head on the GLUE tasks (official defaults)")
    sp.add_argument("model", help="run folder, checkpoint folder or exported Hugging Face folder")
    sp.add_argument("--tasks", default=",".join(GLUE_TASKS), help=f"comma-separated GLUE tasks (default: "
                                                                   f"{','.join(GLUE_TASKS)})")
    sp.add_argument("--data", required=True, help="glue_filtered folder: <task>.train.jsonl and <task>.valid.jsonl")
    sp.add_argument("--checkpoint", help="checkpoint name inside a run folder (default: final)")
    sp.add_argument("--lr", type=float, default=3e-5, help="learning rate (default: 3e-5)")
    sp.add_argument("--batch-size", type=int, default=32, help="examples per step (default: 32)")
    sp.add_argument("--epochs", type=int, default=None, help="default: 10 (30 for wsc)")
    sp.add_argument("--max-length", type=int, default=512, help="tokens per example (default: 512)")
    sp.add_argument("--seed", type=int, default=42, help="seed of the head's initialisation and the order (default: 42)")
    sp.add_argument("--rules", choices=("2026", "2025"), default="2026",
                    help="pooling: 2026 reads the last real token of a left-padded batch (official --padding_side left "
                         "--take_final); 2025 the first position of a right-padded one (the 2025 defaults)")
    sp.add_argument("--force", action="store_true", help="fine-tune again tasks whose result has the same inputs")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    sp.add_argument("--out", help="results folder (default: <run>/results/<checkpoint>/finetune, where the model card "
                                  "and `babble submit` read them; for a model folder outside a run "
                                  "results/<folder name>/finetune)")
    sp.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    with_threads(sp)
    sp.set_defaults(func=cmd_finetune)

    sp = sub.add_parser("submit", help="the files the BabyLM leaderboard takes (official layout and collation), "
                                       "evaluating what is missing; names every missing or short task and revision")
    sp.add_argument("model", help="run folder (final model + every chck_*) or model folder (final model only)")
    sp.add_argument("--track", choices=("strict-small", "strict", "multilingual"), default="strict-small")
    sp.add_argument("--data", help="strict tracks: the official evaluation_data folder (or its full_eval)")
    sp.add_argument("--tasks-dir", help="multilingual: the lm-eval task folder (official multilingual/tasks)")
    sp.add_argument("--lm-eval", help="multilingual: the lm_eval executable (default: lm_eval on the PATH)")
    sp.add_argument("--out", help="submission folder (default: <run>/submission, else ./submission)")
    sp.add_argument("--force", action="store_true", help="evaluate again what has results from the same inputs")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    with_threads(sp)
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("report", help="side-by-side table (runs x tasks + average), plots and model-card section")
    sp.add_argument("runs", nargs="+", help="run folders (or results folders) already evaluated")
    sp.add_argument("--out", default="report", help="output folder (default: ./report)")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("export", help="write a Hugging Face folder (native Llama / GPT-2 or with modeling code) and a model card")
    sp.add_argument("run", help="run folder (or checkpoint folder)")
    sp.add_argument("out", help="output folder")
    sp.add_argument("--checkpoint", help="e.g. chck_5M (default: final)")
    sp.add_argument("--branches", action="store_true",
                    help="a git repository: main = final model, one branch per chck_* checkpoint (BabyLM layout)")
    sp.add_argument("--remote-code", action="store_true",
                    help="ship babblelm's modeling code even for a Transformer or GPT-2 (default: native "
                         "LlamaForCausalLM / GPT2LMHeadModel)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("import", help="convert a model folder of another codebase (the Conv-Routed Induction "
                                       "reference) into a babblelm model folder")
    sp.add_argument("src", help="the folder: config.json, model.safetensors, tokenizer files if any")
    sp.add_argument("out", help="the babblelm model folder to write (new or empty)")
    sp.set_defaults(func=cmd_import)

    sp = sub.add_parser("generate", help="continue a prompt (streamed to the terminal) or a file of prompts (JSON lines)")
    sp.add_argument("model", help="run folder, checkpoint folder or exported Hugging Face folder")
    sp.add_argument("prompt", nargs="?", help="the text to continue (or --prompts FILE)")
    sp.add_argument("--prompts", help="a UTF-8 file of prompts, one per line: each line's continuation is written as "
                                      "one JSON object per line, in order")
    sp.add_argument("--out", help="with --prompts: the JSON-lines file to write (default: standard output)")
    sp.add_argument("--max-batch", type=int, default=16, help="with --prompts: sequences decoded at once")
    sp.add_argument("--stop", action="append", default=[], metavar="TEXT", help="end a continuation before TEXT "
                                                                                 "(the option may repeat)")
    sp.add_argument("--checkpoint", help="checkpoint name inside a run folder, e.g. chck_5M (default: final)")
    sp.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default: 40)")
    sp.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    sp.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    sp.add_argument("--top-p", type=float, default=None, help="sample within the top-p probability mass")
    sp.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    sp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    sp.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    with_threads(sp)
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("serve", help="serve a model through an OpenAI-compatible HTTP API (/v1/completions)")
    sp.add_argument("model", help="run folder, checkpoint folder or exported Hugging Face folder")
    sp.add_argument("--checkpoint", help="checkpoint name inside a run folder (default: final)")
    sp.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    sp.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    sp.add_argument("--name", help="model id reported by /v1/models (default: the folder name)")
    sp.add_argument("--max-body-bytes", type=int, default=64 * 1024)
    sp.add_argument("--max-prompt-tokens", type=int, help="default: the model's context")
    sp.add_argument("--max-tokens", type=int, help="largest max_tokens accepted (default: the model's context)")
    sp.add_argument("--max-n", type=int, default=8, help="largest n (samples per prompt)")
    sp.add_argument("--max-choices", type=int, help="largest prompts x n in one request (default: --max-n)")
    sp.add_argument("--max-batch", type=int, default=16, help="sequences decoded together, each in a slot of the "
                                                               "model's decoding state allocated at start")
    sp.add_argument("--max-context", type=int, help="positions per slot, prompt and completion (default: the "
                                                    "length the model was trained for; more only where its positions "
                                                    "extend: rotary or none)")
    sp.add_argument("--prefill-chunk", type=int, default=128, help="prompt tokens per prefill pass: a longer prompt "
                                                                   "starts over several steps")
    sp.add_argument("--max-queue", type=int, default=16, help="requests waiting for slots; more get 503")
    sp.add_argument("--request-timeout", type=float, default=10.0,
                    help="seconds a connection may take to send one request in full; idle connections close then too")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    with_threads(sp)
    sp.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (errors.py), with one line on stderr for every error."""
    from .interrupts import SIGNALS, exit_code, name, raise_on_signals, received, signal_of

    args = build_parser().parse_args(argv)
    restore = raise_on_signals()
    try:
        if hasattr(args, "threads") and not hasattr(args, "config") and args.command != "demo":
            from .device import set_threads

            set_threads(args.threads)  # verbs with a config apply run.threads (_load_cfg), the demo its own
        code = args.func(args) or 0  # a handler may return an exit code (1: some work failed)
        if received() is not None and code not in (exit_code(s) for s in SIGNALS):  # a raise lost in a finalizer
            print(f"interrupted by {name(received())} (after the work in progress finished)", file=sys.stderr)
            return exit_code(received())
        return code
    except KeyboardInterrupt as err:  # SIGINT or SIGTERM: what was written whole stays, nothing half-written
        print(f"interrupted by {name(signal_of(err))}", file=sys.stderr)
        return exit_code(signal_of(err))
    except Exception as err:
        code = _exit_status(err)
        if code is None or os.environ.get("BABBLE_DEBUG"):
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return code
    finally:
        restore()


def _exit_status(err: Exception) -> int | None:
    """1: the work could not be done with what was found (a damaged or busy folder, a failed write or git
    command); 2: the command or its config is wrong (a missing input, a missing extra, divergence
    included); None: a bug, shown with its traceback."""
    from .errors import NotUsable

    if isinstance(err, NotUsable) or isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
        return 1
    if isinstance(err, (FileNotFoundError, ValueError, ImportError, FloatingPointError)):
        return 2
    return None


def _one_line(err: Exception) -> str:
    """An OSError as `path: cause` (a file in the way of a folder named as such), anything else as its
    message, on one line."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        text = f"{err.filename}: {err.strerror}"
        if isinstance(err, (NotADirectoryError, FileExistsError)):
            path = Path(err.filename)
            blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                text = f"{blocker}: is a file, so {path} cannot be written" if blocker != path else \
                    f"{path}: exists and is a file, where a folder was expected"
    else:
        text = str(err)
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
