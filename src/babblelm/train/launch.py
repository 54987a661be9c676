"""`babble train`: a config in, a trained run folder out.

    result = train(load_config("configs/llama-26m.yaml"))

The run's data decides its batch source (a monolingual corpus read by its word plan, or the TAAM
mixer of several languages); the engine (train/engine.py) does the rest. The run folder's layout
is in rundir.py. One process at a time trains in a run folder: it holds the folder's lock (folders.py).
"""

from __future__ import annotations

from contextlib import nullcontext

from ..config import RunConfig
from ..folders import folder_lock
from . import distributed
from .engine import Training, TrainResult
from .mixedsource import MixedSource
from .plan import PlanSource


def source_for(cfg: RunConfig):
    """The batch source a run's data calls for: the TAAM mixer for several languages, else the word plan."""
    return MixedSource if cfg.mixing.languages else PlanSource


def train(cfg: RunConfig, resume: bool = False, progress: bool = True, stop_after_steps: int | None = None,
          overwrite: bool = False, allow_changes: list[str] | None = None, manifest: dict | None = None) -> TrainResult:
    """Run (or resume) training as configured; under torchrun, one data-parallel rank of it.
    `stop_after_steps` stops early (saving a resume point), as an interruption would; `overwrite`
    clears a folder that holds another run; `allow_changes` lists the config keys a resume may change;
    `manifest`: the run's data as the caller just prepared them (`source_for(cfg).prepare`), else
    they are prepared here."""
    ctx, device = distributed.setup(cfg.run.device)
    try:
        with folder_lock(cfg.out_dir, "run folder") if ctx.is_main else nullcontext():
            training = Training(cfg, source_for(cfg), ctx, device, progress and ctx.is_main, resume, overwrite,
                                allow_changes, manifest)
            return training.run(resume, stop_after_steps)
    finally:
        distributed.shutdown(ctx)
