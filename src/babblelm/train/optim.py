"""Optimizers (AdamW, or Muon on hidden matrices + AdamW on the rest) and learning-rate schedules.

    opt = build_optimizer(model, cfg.optim)          # an `Optimizers`: one or two torch optimizers
    sched = LRSchedule(opt, total_steps, cfg.schedule)
    ... opt.step(); sched.step(); opt.zero_grad()

Parameter families (`split_parameters`):
  muon         weight matrices of the hidden linear layers (only with optim.name: muon_adamw)
  adamw_decay  other matrices (the output head when untied, learned key tables and sinks; every matrix
               under plain AdamW)
  adamw_plain  embeddings (tied heads included), norms, biases, gate vectors: no weight decay
               (optim.decay_all: the same decay as every other parameter)
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..config import OptimSection, ScheduleSection

FAMILIES = ("muon", "adamw_decay", "adamw_plain")


def split_parameters(model: nn.Module, muon: bool) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Trainable parameters by family (shared/tied parameters listed once, under their first name)."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linear_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_ids = {id(head.weight)} if head is not None else set()
    out: dict[str, list] = {name: [] for name in FAMILIES}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim < 2 or id(p) in embedding_ids:
            out["adamw_plain"].append((name, p))
        elif muon and id(p) in linear_ids and id(p) not in head_ids:
            out["muon"].append((name, p))
        else:
            out["adamw_decay"].append((name, p))
    return out


class Optimizers:
    """Several torch optimizers stepped as one (state_dict keyed by optimizer name)."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise ValueError(f"resume state holds optimizers {sorted(state)} but this run uses {sorted(self.optimizers)}; "
                             "resume with the run's own optim.name")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def build_optimizer(model: nn.Module, cfg: OptimSection) -> Optimizers:
    """AdamW for everything, or Muon for hidden matrices + AdamW for the rest (fused AdamW on CUDA)."""
    families = split_parameters(model, muon=cfg.name == "muon_adamw")
    cuda = next(model.parameters()).is_cuda
    adamw_groups = [
        {"params": [p for _, p in families[f]], "names": [n for n, _ in families[f]], "weight_decay": wd, "family": f}
        for f, wd in (("adamw_decay", cfg.weight_decay), ("adamw_plain", cfg.weight_decay if cfg.decay_all else 0.0))
        if families[f]
    ]
    optimizers = {"adamw": torch.optim.AdamW(adamw_groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                             fused=True if cuda else None, foreach=None)}
    if families["muon"]:
        wd = cfg.weight_decay if cfg.muon_weight_decay is None else cfg.muon_weight_decay
        group = {"params": [p for _, p in families["muon"]], "names": [n for n, _ in families["muon"]], "family": "muon"}
        optimizers["muon"] = torch.optim.Muon([group], lr=cfg.muon_lr, weight_decay=wd, momentum=cfg.muon_momentum,
                                              adjust_lr_fn=cfg.adjust_lr_fn)
    return Optimizers(optimizers)


def describe(optimizers: Optimizers) -> str:
    """Which parameter went to which optimizer, one line per parameter group (the layers' tensors by name
    pattern: `model.layers.*.mlp.up_proj.weight x4` for one tensor in each of 4 layers)."""
    lines = []
    for opt_name, opt in optimizers.optimizers.items():
        for g in opt.param_groups:
            n = sum(p.numel() for p in g["params"])
            lines.append(f"  {opt_name} [{g['family']}] peak lr {g.get('peak_lr', g['lr']):g} wd {g['weight_decay']:g}: "
                         f"{len(g['params'])} tensors, {n:,} parameters: {name_patterns(g['names'])}")
    return "optimizer parameter groups:\n" + "\n".join(lines)


def name_patterns(names: list[str]) -> str:
    """Tensor names with their layer numbers as `*`, each pattern once, with its count when above one."""
    counts: dict[str, int] = {}
    for name in names:
        pattern = re.sub(r"\.\d+\.", ".*.", name)
        counts[pattern] = counts.get(pattern, 0) + 1
    return ", ".join(pattern + (f" x{n}" if n > 1 else "") for pattern, n in counts.items())


def warmup_steps(total_steps: int, cfg: ScheduleSection) -> int:
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return int(cfg.warmup_fraction * total_steps)


def _decay(progress: float, shape: str) -> float:
    """1 -> 0 as progress goes 0 -> 1."""
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - math.sqrt(progress)  # "1-sqrt"


def lr_multiplier(step: int, total_steps: int, cfg: ScheduleSection) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based) of `total_steps`.

    Linear warmup, then: constant; cosine to min_lr_ratio over the remaining steps; or WSD:
    peak until `stable_fraction` of all steps, then `decay_shape` down to min_lr_ratio at the last step."""
    warmup = warmup_steps(total_steps, cfg)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        shape = "cosine"
    else:  # wsd
        decay_start = max(warmup, int(cfg.stable_fraction * total_steps))
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / max(1, total_steps - decay_start))
        shape = cfg.decay_shape
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * _decay(progress, shape)


class LRSchedule:
    """Sets every group's lr to its peak (the optimizer's lr at construction) x `lr_multiplier`."""

    def __init__(self, optimizer, total_steps: int, cfg: ScheduleSection):
        self.optimizer, self.total_steps, self.cfg = optimizer, total_steps, cfg
        for g in optimizer.param_groups:
            g.setdefault("peak_lr", g["lr"])
        self.step_count = 0
        self._apply()

    def _apply(self) -> None:
        mult = lr_multiplier(self.step_count, self.total_steps, self.cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = g["peak_lr"] * mult

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self._apply()


def build_scheduler(optimizer, total_steps: int, cfg: ScheduleSection) -> LRSchedule:
    return LRSchedule(optimizer, total_steps, cfg)


def lr_curves(optim_cfg: OptimSection, sched_cfg: ScheduleSection, total_steps: int) -> dict[str, list[float]]:
    """Learning rate per step for each optimizer (`babble schedule` plots these)."""
    peaks = {"adamw": optim_cfg.lr} | ({"muon": optim_cfg.muon_lr} if optim_cfg.name == "muon_adamw" else {})
    mults = [lr_multiplier(s, total_steps, sched_cfg) for s in range(total_steps)]
    return {name: [peak * m for m in mults] for name, peak in peaks.items()}
