"""Which device to run on, and how many CPU threads: one rule each for every command (`run.device`,
`--device`; `run.threads`, `--threads`)."""

from __future__ import annotations

import os
import time

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
    (a launcher's choice: torchrun gives each process 1); else the cores of this process that other
    processes leave free right now (`busy_cores`), at least 1. On a busy machine, a thread that waits for
    a taken core makes every operation wait for it (BENCHMARKS.md, "CPU threads")."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads / run.threads must be at least 1, got {requested}")
        return requested, "as asked"
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = busy_cores()
    return max(1, min(cores, round(cores - busy))), f"auto: {cores} cores, {busy:.1f} busy with other work"


def busy_cores(window: float = 0.1) -> float:
    """How many of this process's cores other processes keep busy: measured over `window` seconds from
    /proc/stat (Linux), else the 1-minute load average (which lags a load that has just started)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    try:
        before, own = _cpu_times(cpus), time.process_time()
        time.sleep(window)
        after, own = _cpu_times(cpus), time.process_time() - own
    except (OSError, ValueError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    spent = [b - a for a, b in zip(before, after)]  # [busy, all] jiffies over the window
    return max(0.0, spent[0] / spent[1] * len(cpus) - own / window) if spent[1] > 0 else 0.0


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(busy, all) jiffies of `cpus` since boot: /proc/stat's user..steal, idle and iowait not busy."""
    busy = total = 0
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                total += sum(values)
                busy += sum(values) - values[3] - values[4]
    if not total:
        raise ValueError("no CPU lines in /proc/stat")
    return busy, total


def set_threads(requested: int | None = None) -> int:
    """Apply `cpu_threads(requested)` to torch; the number of threads."""
    threads, _ = cpu_threads(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
