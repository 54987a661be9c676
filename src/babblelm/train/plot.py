"""Plots: `babble schedule cfg.yaml` draws the learning-rate curve of a config, per optimizer;
`babble plot RUN` (also run at the end of training) draws a run's curves from its metrics.jsonl:
`loss.png` (training and dev loss against words) and one PNG per group of per-layer metrics a model
reports, e.g. `swa_scale.png` (BLaLM's SWA modulation of every layer, as the paper plots it)."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import RunConfig
from ..rundir import RunDir, plot_groups
from .optim import lr_curves, warmup_steps


def planned_steps(cfg: RunConfig) -> int:
    """Total optimizer steps of the run, from its prepared data (never prepares it)."""
    from ..data.blocks import load_blocks
    from .plan import make_plan

    data = RunDir(cfg.out_dir).data
    if not (data / "train.bin").is_file():
        raise FileNotFoundError(f"{data}: no prepared data to count the run's steps from; give --steps N, or prepare "
                                "it first (`babble data prepare CONFIG`)")
    words = load_blocks(data, "train").words
    return make_plan(words, cfg.train.global_batch, cfg.train.epochs, cfg.train.words, cfg.run.seed,
                     cfg.train.steps).steps


def plot_schedule(cfg: RunConfig, out: Path | None = None, steps: int | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = steps or planned_steps(cfg)
    out = out or RunDir(cfg.out_dir).lr_plot
    out.parent.mkdir(parents=True, exist_ok=True)
    s = cfg.schedule
    title = f"{s.name} schedule, {steps:,} steps, warmup {warmup_steps(steps, s):,}"
    if s.name == "wsd":
        title += f", stable to {s.stable_fraction:.0%}, {s.decay_shape} decay"
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, curve in lr_curves(cfg.optim, s, steps).items():
        ax.plot(range(1, steps + 1), curve, label=f"{name} (peak {max(curve):g})")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_training(run_dir: Path) -> list[Path]:
    """Draw `loss.png` and one `<group>.png` per `group/<layer>` metric of `run_dir/metrics.jsonl`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunDir(run_dir)
    path = run.metrics
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {run_dir}: is it a run folder of babble train?")
    with path.open(encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    x_key = "words" if any("words" in r for r in records) else "tokens"  # multilingual runs count tokens
    train = [r for r in records if "loss" in r and x_key in r]
    dev = [r for r in records if isinstance(r.get("dev_loss"), (int, float)) and x_key in r]
    written = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r[x_key] for r in train], [r["loss"] for r in train], label="training loss")
    if dev:
        ax.plot([r[x_key] for r in dev], [r["dev_loss"] for r in dev], "o-", label="dev loss")
    ax.set(xlabel=f"{x_key} seen", ylabel="loss (nats per token)", title=Path(run_dir).name)
    ax.legend()
    written.append(_save(fig, run.loss_plot))
    for group, members in sorted(plot_groups(train).items()):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for member in sorted(members, key=lambda m: (len(m), m)):  # layer 2 before layer 10
            points = [(r[x_key], r[f"{group}/{member}"]) for r in train if f"{group}/{member}" in r]
            ax.plot(*zip(*points), label=f"layer {member}" if member.isdigit() else member)
        ax.set(xlabel=f"{x_key} seen", ylabel=group, title=f"{group} per layer")
        ax.legend(fontsize="small", ncol=2)
        written.append(_save(fig, run.group_plot(group)))
    return written


def _save(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
