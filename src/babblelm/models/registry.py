"""Architectures by name.

Each architecture is one self-contained module holding a `PreTrainedConfig` subclass (dataclass
style, transformers v5) and a causal-LM class. The YAML `model` section is `arch: <name>` plus any
field declared on that config class itself; the pipeline fills in the vocabulary and special ids.

Adding an architecture: write the module, then add one line to `_MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from huggingface_hub.errors import StrictDataclassError

from ..configbase import ConfigError, from_dict

# name -> (module, config class, model class)
_MODULES: dict[str, tuple[str, str, str]] = {
    "transformer": ("babblelm.models.transformer", "BabbleTransformerConfig", "BabbleTransformerForCausalLM"),
    "blalm": ("babblelm.models.blalm", "BlalmConfig", "BlalmForCausalLM"),
    "streammixer": ("babblelm.models.streammixer", "StreamMixerConfig", "StreamMixerForCausalLM"),
    "induction": ("babblelm.models.induction", "BabbleInductionConfig", "BabbleInductionForCausalLM"),
}

# Keys the pipeline sets from the tokenizer; users never write them.
PIPELINE_KEYS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class Architecture:
    name: str
    config_class: type
    model_class: type

    @property
    def args_class(self) -> type:
        """A dataclass of the YAML-settable fields: those declared on the config class itself."""
        cls = self.config_class
        namespace = vars(sys.modules[cls.__module__])
        own = {n: t for n, t in cls.__dict__.get("__annotations__", {}).items() if n not in PIPELINE_KEYS}
        hints = {n: eval(t, namespace) if isinstance(t, str) else t for n, t in own.items()}  # noqa: S307 (own source)
        specs = [(n, hints[n], dataclasses.field(default=getattr(cls, n))) for n in own]
        return dataclasses.make_dataclass(f"{self.config_class.__name__}Args", specs)

    def make_config(self, args, vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int):
        return self.config_class(
            **dataclasses.asdict(args),
            vocab_size=vocab_size,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> Architecture:
    if name not in _MODULES:
        raise ConfigError([("model.arch", f"unknown architecture {name!r}; known: {', '.join(names())}")])
    module, cfg_name, model_name = _MODULES[name]
    mod = importlib.import_module(module)
    return Architecture(name, getattr(mod, cfg_name), getattr(mod, model_name))


def parse_model_section(raw: dict):
    """Validate a YAML `model` section -> (Architecture, args dataclass instance)."""
    raw = dict(raw)
    arch = get(raw.pop("arch", "transformer"))
    try:
        args = from_dict(arch.args_class, raw)
    except ConfigError as err:
        raise ConfigError([(f"model.{p}" if p else "model", m) for p, m in err.problems]) from None
    try:  # the config class's own checks (e.g. hidden size divisible by heads)
        arch.make_config(args, vocab_size=1024, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    except (ValueError, TypeError, StrictDataclassError) as err:
        raise ConfigError([("model", str(err).strip().splitlines()[-1].strip())]) from None
    return arch, args


def register_auto_classes() -> None:
    """Let `AutoConfig` / `AutoModelForCausalLM` open babblelm folders without remote code."""
    from transformers import AutoConfig, AutoModelForCausalLM

    for name in names():
        arch = get(name)
        try:
            AutoConfig.register(arch.config_class.model_type, arch.config_class)
            AutoModelForCausalLM.register(arch.config_class, arch.model_class)
        except ValueError:
            pass  # already registered


def count_parameters(model) -> int:
    """Unique trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def parameter_breakdown(model) -> dict[str, int]:
    """Unique trainable parameters per tensor name, layers merged (`model.layers.*.mlp...`)."""
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            key = re.sub(r"\.\d+\.", ".*.", name)
            counts[key] = counts.get(key, 0) + p.numel()
    return counts


def arch_for_folder(path) -> Architecture:
    """The architecture whose `model_type` is in `path/config.json`."""
    import json
    from pathlib import Path

    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{path} is not a model folder: no config.json")
    model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type")
    for name in names():
        arch = get(name)
        if arch.config_class.model_type == model_type:
            return arch
    raise ValueError(f"{cfg_file}: model_type {model_type!r} is not a babblelm architecture ({', '.join(names())})")


@contextmanager
def hf_progress_bars_off():
    """Hide the one-line bars transformers draws when it loads or saves weights (noise amid
    babblelm's own output); restores the previous setting."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
