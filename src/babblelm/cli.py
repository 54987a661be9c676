"""`babble`: one sub-command per verb. Each handler reads its arguments and calls the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _load_cfg(args):
    from .config import load_config

    return load_config(args.config, overrides=args.set)


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), quick=args.quick, seed=args.seed)


def cmd_info(args) -> None:
    from .configbase import to_dict
    from .models.registry import count_parameters, parameter_breakdown, parse_model_section

    import yaml

    cfg = _load_cfg(args)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip())
    arch, margs = parse_model_section(cfg.model)
    model = arch.model_class(arch.make_config(margs, cfg.tokenizer.vocab_size, 0, 1, 2))
    print(f"\n{arch.name}: {count_parameters(model):,} parameters (vocab {cfg.tokenizer.vocab_size:,})")
    for name, n in parameter_breakdown(model).items():
        print(f"  {n:>12,}  {name}")


def cmd_data_prepare(args) -> None:
    from .data.prepare import prepare_data

    cfg = _load_cfg(args)
    out = Path(args.out) if args.out else cfg.out_dir / "data"
    manifest = prepare_data(cfg.data, cfg.tokenizer, out)
    print(f"prepared {manifest['splits']['train']['words']:,} training words into {out} (manifest: {out / 'manifest.json'})")


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


def cmd_train(args) -> None:
    from .train.loop import train

    cfg = _load_cfg(args)
    result = train(cfg, resume=args.resume, progress=not args.no_progress, stop_after_steps=args.stop_after)
    if int(os.environ.get("RANK", "0")):
        return  # under torchrun only rank 0 reports
    state = "interrupted" if result.interrupted else "finished"
    print(f"{state} after {result.steps:,} steps, {result.words_seen:,} words, {result.seconds:.0f}s; "
          f"model: {result.final_dir if not result.interrupted else cfg.out_dir / 'checkpoints' / 'last'}")


# --- training speed (issue 4): schedule plot and sweeps ---
def cmd_schedule(args) -> None:
    from .train.plot import plot_schedule

    out = plot_schedule(_load_cfg(args), Path(args.out) if args.out else None, steps=args.steps)
    print(f"learning-rate curve written to {out}")


def cmd_sweep(args) -> None:
    from .train.sweep import format_markdown, parse_grid, run_sweep

    rows = run_sweep(args.config, parse_grid(args.grid), args.set, args.out, progress=not args.no_progress)
    print(format_markdown(rows))


def cmd_eval(args) -> None:
    from .eval.blimp import evaluate_blimp, format_table
    from .eval.load import load_model_and_tokenizer
    from .export import resolve_checkpoint, run_dir_of

    if args.task != "blimp":
        raise ValueError(f"--task {args.task!r}: supported tasks: blimp")
    if not args.data:
        raise ValueError("--data DIR is required: a folder of BLiMP-format *.jsonl files")
    model_dir = resolve_checkpoint(args.model, args.checkpoint)
    model, tokenizer = load_model_and_tokenizer(model_dir, device=args.device)
    result = evaluate_blimp(model, tokenizer, args.data, batch_size=args.batch_size, progress=True)
    result.update(model=str(model_dir), data=str(args.data))
    print(format_table(result))
    out = Path(args.out) if args.out else None
    run = run_dir_of(model_dir)
    if out is None and run is not None:
        out = run / "results" / f"{model_dir.name}_{args.task}_{Path(args.data).name}.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(f"results written to {out}")


def cmd_export(args) -> None:
    from .export import export_model

    out = export_model(args.run, args.out, checkpoint=args.checkpoint)
    print(f"exported to {out}; load it with AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)")


def cmd_generate(args) -> None:
    import torch

    from .eval.load import load_model_and_tokenizer
    from .export import resolve_checkpoint

    model, tokenizer = load_model_and_tokenizer(resolve_checkpoint(args.model, args.checkpoint), device=args.device)
    torch.manual_seed(args.seed)
    ids = tokenizer(args.prompt, return_tensors="pt").to(model.device)
    out = model.generate(**ids, max_new_tokens=args.max_new_tokens, do_sample=args.temperature > 0,
                         temperature=args.temperature or None, top_k=args.top_k, top_p=args.top_p)
    print(tokenizer.decode(out[0], skip_special_tokens=True))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="babble", description="Train, evaluate and ship BabyLM models.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("config", help="run YAML file")
        sp.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a config value")
        return sp

    sp = sub.add_parser("demo", help="generate a demo corpus, train, evaluate and export a small model")
    sp.add_argument("--quick", action="store_true", help="a smaller run (under a minute), for tests")
    sp.add_argument("--out", default="babble-demo", help="folder for every artifact (default: ./babble-demo)")
    sp.add_argument("--seed", type=int, default=0)
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

    sp = with_config(sub.add_parser("train", help="train a model as configured"))
    sp.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--stop-after", type=int, metavar="STEPS", help="stop after this many steps, saving a resume point")
    sp.set_defaults(func=cmd_train)

    sp = with_config(sub.add_parser("schedule", help="plot the learning-rate curve of a config to PNG"))
    sp.add_argument("--out", help="PNG path (default: <run dir>/lr_schedule.png)")
    sp.add_argument("--steps", type=int, help="total optimizer steps (default: from the prepared data's plan)")
    sp.set_defaults(func=cmd_schedule)

    sp = with_config(sub.add_parser("sweep", help="train a grid of configs and tabulate dev perplexity and eval"))
    sp.add_argument("--grid", action="append", required=True, metavar="KEY.PATH=V1,V2,...", help="values to sweep")
    sp.add_argument("--out", help="sweep folder (default: runs/sweep-<run.name>)")
    sp.add_argument("--no-progress", action="store_true")
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("eval", help="score a model on minimal pairs")
    sp.add_argument("model", help="run folder, checkpoint folder or exported Hugging Face folder")
    sp.add_argument("--task", default="blimp")
    sp.add_argument("--data", help="folder of task files (BLiMP: *.jsonl)")
    sp.add_argument("--checkpoint", help="checkpoint name inside a run folder (default: final)")
    sp.add_argument("--batch-size", type=int, default=64)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--out", help="results JSON path")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("export", help="write a Hugging Face folder with modeling code and a model card")
    sp.add_argument("run", help="run folder (or checkpoint folder)")
    sp.add_argument("out", help="output folder")
    sp.add_argument("--checkpoint", help="e.g. chck_5M (default: final)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("generate", help="continue a prompt")
    sp.add_argument("model")
    sp.add_argument("prompt")
    sp.add_argument("--checkpoint")
    sp.add_argument("--max-new-tokens", type=int, default=40)
    sp.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    sp.add_argument("--top-k", type=int, default=None)
    sp.add_argument("--top-p", type=float, default=None)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--device", default="auto")
    sp.set_defaults(func=cmd_generate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:  # bad input: a clear message, no traceback
        if os.environ.get("BABBLE_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
