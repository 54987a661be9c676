"""`babble schedule cfg.yaml`: the learning-rate curve of a run, per optimizer, as a PNG."""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from .optim import lr_curves, warmup_steps


def planned_steps(cfg: RunConfig) -> int:
    """Total optimizer steps of the run (prepares the data, or reuses the run's prepared data)."""
    from ..data.blocks import load_blocks
    from ..data.prepare import prepare_data
    from .plan import make_plan

    prepare_data(cfg.data, cfg.tokenizer, cfg.out_dir / "data")
    words = load_blocks(cfg.out_dir / "data", "train").words
    return make_plan(words, cfg.train.batch_size * cfg.train.grad_accum, cfg.train.epochs, cfg.train.words, cfg.run.seed).steps


def plot_schedule(cfg: RunConfig, out: Path | None = None, steps: int | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = steps or planned_steps(cfg)
    out = out or cfg.out_dir / "lr_schedule.png"
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
