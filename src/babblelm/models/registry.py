"""Architectures by name, each describing itself to the rest of babblelm.

Each architecture is one self-contained module holding a config class (Hugging Face style: every
setting a typed keyword argument of `__init__`) and a causal-LM class built on models/layers.py.
The YAML `model` section is `arch: <name>` plus any of those arguments; the pipeline fills in the
vocabulary and special ids. Or it is `init_from: <model folder>` (a checkpoint, an export, a `babble
import` output): training then starts from that folder's weights, and its config.json is the shape. Its registry entry says what else the program needs to know: the
smallest shape that exercises every part (tests and `--tiny` runs), the demo's shape, how its
decoding state grows and what bounds its positions.

Adding an architecture: write the module, add one `register(...)` line below and one preset in
configs/ (docs/architectures.md, "Adding an architecture"); the contract tests then cover it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..configbase import ConfigError, from_dict

# Keys the pipeline sets from the tokenizer; users never write them.
PIPELINE_KEYS = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")
INIT_FROM = "init_from"  # model.init_from: start from a model folder's weights (its config.json is the shape)
DEFAULT_ARCH = "transformer"  # the architecture of a `model` section without `arch`


@dataclass(frozen=True)
class Spec:
    """What the registry knows of an architecture before importing it.

    `tiny`: model settings of the smallest shape that exercises every part (hidden size 32);
    `demo(width)`: the demo's settings beyond width, layers and FFN size; `state`: "constant" when
    the decoding state does not grow with the text, else "growing"; `positions`: "rotary" (extended
    past the trained length), "learned" (a hard limit at max_position_embeddings) or "none"."""

    module: str
    config: str
    model: str
    tiny: dict
    demo: Callable[[int], dict] = field(default=lambda width: {})
    state: typing.Literal["constant", "growing"] = "growing"
    positions: typing.Literal["rotary", "learned", "none"] = "none"


_SPECS: dict[str, Spec] = {}


def register(name: str, spec: Spec) -> None:
    """Make an architecture known by `name` (`model.arch`, `--arch`, the contract tests)."""
    if name in _SPECS and _SPECS[name] != spec:
        raise ValueError(f"architecture {name!r} is already registered")
    _SPECS[name] = spec


register(DEFAULT_ARCH, Spec(
    "babblelm.models.transformer", "BabbleTransformerConfig", "BabbleTransformerForCausalLM",
    tiny=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
              max_position_embeddings=64),
    demo=lambda width: dict(num_attention_heads=width // 32, max_position_embeddings=128), positions="rotary"))
register("blalm", Spec(
    "babblelm.models.blalm", "BlalmConfig", "BlalmForCausalLM",
    tiny=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, chunk_size=8,
              short_conv=True, swa_window=4, swa_memory_tokens=2, swa_modulation="bounded", feature_map="hedgehog",
              max_position_embeddings=64),
    demo=lambda width: dict(num_attention_heads=width // 32, max_position_embeddings=128, short_conv=True, chunk_size=32),
    state="constant", positions="rotary"))
register("streammixer", Spec(
    "babblelm.models.streammixer", "StreamMixerConfig", "StreamMixerForCausalLM",
    tiny=dict(hidden_size=32, num_hidden_layers=2, num_streams=4, stream_dim=8, num_read_heads=2, intermediate_size=48,
              scan_chunk_size=4),
    demo=lambda width: dict(num_streams=8, stream_dim=width // 4, num_read_heads=4), state="constant"))
register("induction", Spec(
    "babblelm.models.induction", "BabbleInductionConfig", "BabbleInductionForCausalLM",
    tiny=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, induction_memory=3,
              conv_groups=4, max_position_embeddings=64),
    demo=lambda width: dict(num_attention_heads=width // 32, max_position_embeddings=128), positions="learned"))
register("gpt2", Spec(
    "babblelm.models.gpt2", "BabbleGPT2Config", "BabbleGPT2ForCausalLM",
    tiny=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
              embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0),
    demo=lambda width: dict(num_attention_heads=width // 32, max_position_embeddings=128), positions="learned"))


@dataclass(frozen=True)
class Architecture:
    name: str
    config_class: type
    model_class: type
    spec: Spec

    @property
    def args_class(self) -> type:
        """A dataclass of the YAML-settable fields: the config's own keyword arguments."""
        init = self.config_class.__init__
        hints = typing.get_type_hints(init)
        specs = [(p.name, hints[p.name], dataclasses.field(default=p.default))
                 for p in inspect.signature(init).parameters.values()
                 if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self" and p.name not in PIPELINE_KEYS]
        return dataclasses.make_dataclass(f"{self.config_class.__name__}Args", specs)

    def make_config(self, args, vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int):
        return self.config_class(
            **dataclasses.asdict(args),
            vocab_size=vocab_size,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )

    def tiny_config(self, vocab_size: int = 97, **overrides):
        """A config of the architecture's tiny shape (special ids, unless overridden: pad 0, bos 1, no eos)."""
        ids = dict(pad_token_id=0, bos_token_id=1, eos_token_id=None)
        return self.config_class(**{**ids, **self.spec.tiny, **overrides}, vocab_size=vocab_size)

    def demo_section(self, width: int, layers: int) -> dict:
        """The demo's `model` section at `width` and `layers`, tied embeddings."""
        return {"arch": self.name, "hidden_size": width, "num_hidden_layers": layers, "intermediate_size": 4 * width,
                "tie_word_embeddings": True, **self.spec.demo(width)}


def names() -> list[str]:
    return sorted(_SPECS)


def get(name: str) -> Architecture:
    if not isinstance(name, str) or name not in _SPECS:
        raise ConfigError([("model.arch", f"unknown architecture {name!r}; known: {', '.join(names())}")])
    spec = _SPECS[name]
    mod = importlib.import_module(spec.module)
    return Architecture(name, getattr(mod, spec.config), getattr(mod, spec.model), spec)


class ModelSection(typing.NamedTuple):
    """A validated `model` section: the architecture and its typed arguments."""

    arch: Architecture
    args: typing.Any


def context_limit(model) -> int | None:
    """The most positions `model` accepts at all: a learned position table's size (`Spec.positions`
    "learned"); None where positions extend past the trained length (rotary) or there are none. A model
    of no registered architecture: its `max_position_embeddings`, if it has one."""
    arch = arch_of_type(getattr(model.config, "model_type", None))
    if arch is not None and arch.spec.positions != "learned":
        return None
    return getattr(model.config, "max_position_embeddings", None)


def init_folder(section: dict) -> Path | None:
    """The model folder a `model` section starts from (`model.init_from`), or None."""
    path = section.get(INIT_FROM) if isinstance(section, dict) else None
    return Path(path) if path is not None else None


def parse_model_section(raw: dict) -> ModelSection:
    """Validate a YAML `model` section -> (Architecture, args dataclass instance). With `init_from`,
    the architecture and every setting come from that folder's config.json."""
    raw = dict(raw)
    if INIT_FROM in raw:
        return _folder_section(raw.pop(INIT_FROM), raw)
    arch = get(raw.pop("arch", DEFAULT_ARCH))
    try:
        args = from_dict(arch.args_class, raw)
    except ConfigError as err:
        raise ConfigError([(f"model.{p}" if p else "model", m) for p, m in err.problems]) from None
    try:  # the config class's own checks (e.g. hidden size divisible by heads)
        arch.make_config(args, vocab_size=1024, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    except (ValueError, TypeError) as err:
        message = str(err).strip().splitlines()[-1].strip()
        first = message.split(" ", 1)[0]  # the checks name the field first: "hidden_size must be >= 1"
        key = f"model.{first}" if first in {f.name for f in dataclasses.fields(args)} else "model"
        raise ConfigError([(key, message)]) from None
    return ModelSection(arch, args)


def _folder_section(path, rest: dict):
    """(Architecture, args) of the model folder `path` (`model.init_from`); `rest` may only repeat its arch."""
    key = f"model.{INIT_FROM}"
    if not isinstance(path, str) or not path:
        raise ConfigError([(key, f"expected the path of a model folder, got {path!r}")])
    try:
        arch = arch_for_folder(path)
        settings = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError([(key, f"{err}; a folder of another codebase converts with `babble import SRC OUT`")]) from None
    problems = [(f"model.{name}", f"set by {key} ({path}/config.json); remove it") for name in rest if name != "arch"]
    if rest.get("arch", arch.name) != arch.name:
        problems.append(("model.arch", f"{path} holds a {arch.name!r} model, not {rest['arch']!r}"))
    if problems:
        raise ConfigError(problems)
    fields = {f.name for f in dataclasses.fields(arch.args_class)}
    return ModelSection(arch, from_dict(arch.args_class, {k: v for k, v in settings.items() if k in fields}))


def register_auto_classes() -> None:
    """Let `AutoConfig` / `AutoModel` / `AutoModelForCausalLM` open babblelm folders without remote code."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    for name in names():
        arch = get(name)
        try:
            AutoConfig.register(arch.config_class.model_type, arch.config_class)
            AutoModel.register(arch.config_class, arch.model_class.decoder_class)
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
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{path} is not a model folder: no config.json")
    model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type")
    arch = arch_of_type(model_type)
    if arch is not None:
        return arch
    raise ValueError(f"{cfg_file}: model_type {model_type!r} is not a babblelm architecture ({', '.join(names())})")


def arch_of_type(model_type: str | None) -> Architecture | None:
    """The registered architecture whose config's `model_type` is `model_type`, if any."""
    return next((arch for arch in map(get, names()) if arch.config_class.model_type == model_type), None)
