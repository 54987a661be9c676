"""Which device to run on, and how many CPU threads: one rule each for every command (`run.device`,
`--device`; `run.threads`, `--threads`)."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto`: CUDA when available, else the CPU; `cpu`, `cuda` or `cuda:N` as given, if it exists."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this machine has no CUDA device; use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(name)


def cpu_threads(requested: int | None = None) -> tuple[int, str]:
    """(torch's CPU threads for this process, why): `requested` when given; else OMP_NUM_THREADS when set
    (a launcher's choice: torchrun gives each process 1); else the cores no other process is using, by the
    1-minute load average, at least 1. On a busy machine, threads that wait for a taken core make every
    operation wait for the slowest (BENCHMARKS.md, "CPU threads")."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads / run.threads must be at least 1, got {requested}")
        return requested, "as asked"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - load))), f"auto: {cores} cores, load average {load:.1f}"


def set_threads(requested: int | None = None) -> int:
    """Apply `cpu_threads(requested)` to torch; the number of threads."""
    threads, _ = cpu_threads(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
