"""What may change when a run is resumed, and the record of every change.

A run's `config.yaml` is the configuration it started with and is never rewritten. `--resume` with
a config that differs is refused, unless every differing key is named in `--allow-changes`; the
run then applies the new values from the step it resumes at and appends each change to
`config_changes.jsonl` (step, key, old and new value). The effective configuration at any point
is config.yaml with the changes up to there replayed (`effective_config`).

Keys that decide what the data, the model or the plan are can never change mid-run: the config
fields marked `fixed` (config.py): the data, tokenizer, model, mixing and checkpoint sections, the
seed, and the batch and budget of `train`.
"""

from __future__ import annotations

import dataclasses
import json
import typing

import yaml

from ..config import RunConfig
from ..rundir import RunDir


def fixed_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """The keys marked `fixed` in the config's fields: a setting by its dotted key, a whole section as
    its key and a dot (every key below it)."""
    hints, keys = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        section = dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict
        if f.metadata.get("fixed"):
            keys.append(f"{prefix}{f.name}" + ("." if section else ""))
        elif dataclasses.is_dataclass(tp):
            keys += fixed_keys(tp, f"{prefix}{f.name}.")
    return keys


FIXED = tuple(fixed_keys())


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 1}} -> {"optim.lr": 1}; lists are values."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def recorded(run: RunDir) -> list[dict]:
    if not run.changes.is_file():
        return []
    return [json.loads(line) for line in run.changes.read_text(encoding="utf-8").splitlines() if line.strip()]


def effective_config(run: RunDir) -> dict:
    """The run's configuration now: config.yaml with every recorded change applied, flattened."""
    flat = flatten(yaml.safe_load(run.config.read_text(encoding="utf-8")))
    for change in recorded(run):
        flat[change["key"]] = change["to"]
    return flat


def differences(run: RunDir, new: dict) -> dict[str, tuple]:
    """{key: (the run's value, the new config's value)} for every key that differs; `run.out_dir`
    is where the folder is now (a run folder may be moved), not a setting."""
    old, new = effective_config(run), flatten(new)
    keys = sorted((old.keys() | new.keys()) - {"run.out_dir"})
    return {key: (old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)}


def _fixed(key: str) -> bool:
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in FIXED)


def _allowed(key: str, allowed: list[str]) -> bool:
    return any(key == a or key.startswith(f"{a}.") for a in allowed)


def check(changed: dict[str, tuple], allowed: list[str], config_path) -> None:
    """Raise ValueError unless every change may be made and is allowed."""
    def listing(keys):
        return ", ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in keys)

    fixed = [k for k in changed if _fixed(k)]
    if fixed:
        raise ValueError(f"--resume: {listing(fixed)} cannot change during a run (it decides the data, model or plan); "
                         f"resume with the run's own config ({config_path}) or start a new run")
    refused = [k for k in changed if not _allowed(k, allowed)]
    if refused:
        raise ValueError(f"--resume: the config differs from the run's ({listing(refused)}); resume with the run's own "
                         f"config ({config_path}), or apply the change from here on: --allow-changes {' '.join(refused)}")


def record(run: RunDir, step: int, changed: dict[str, tuple]) -> None:
    """Append the changes made when resuming at `step` (the first step trained with the new values)."""
    with run.changes.open("a", encoding="utf-8") as handle:
        for key, (old, new) in changed.items():
            handle.write(json.dumps({"step": step, "key": key, "from": old, "to": new}) + "\n")
