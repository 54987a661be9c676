"""`babble import SRC OUT`: turn a model folder written by another codebase into a babblelm model folder.

    result = import_model("downloads/conv-induction", "models/conv-induction")

An importer is registered per source format, keyed by the `model_type` of the source's config.json.
It says which babblelm architecture the model becomes, how the source's config keys map onto that
architecture's config (`config`), and how its tensor names map onto babblelm's (`names`, a `NameMap`).
Everything else is shared: reading config.json and the safetensors weights (nothing is unpickled),
refusing what cannot be mapped with the name of the file, key or tensor, copying the tokenizer when
the source has one, and writing the folder the way a babblelm checkpoint is written (config, weights,
modeling code, tokenizer) plus `import.json`, the record of where it came from. The result loads in
`babble eval`, `generate`, `serve`, `export`, and starts or continues training through
`model.init_from`.

Adding a format (a Hugging Face Llama or GPT-2 folder, say): a module beside importers/induction.py
with its config function and name map (an `Importer`, importers/spec.py), and its entry in `IMPORTERS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.prepare import file_sha256
from ..eval.load import TOKENIZER_FILES
from ..modelfolder import hf_progress_bars_off
from ..models.registry import count_parameters, get
from . import induction
from .spec import Importer, NameMap

IMPORT_RECORD = "import.json"


@dataclass
class ImportResult:
    out: Path
    importer: Importer
    parameters: int
    tokenizer: bool
    warnings: list[str] = field(default_factory=list)


IMPORTERS: dict[str, Importer] = {importer.model_type: importer for importer in (induction.IMPORTER,)}


def formats() -> list[str]:
    return sorted(IMPORTERS)


def import_model(src: str | Path, out: str | Path) -> ImportResult:
    """Convert the folder `src` into the babblelm model folder `out` (which must not exist or be empty)."""
    from safetensors.torch import load_file

    src, out = Path(src), Path(out)
    source_config = _read_config(src)
    model_type = source_config.get("model_type")
    if model_type not in IMPORTERS:
        raise ValueError(f"{src / 'config.json'}: model_type {model_type!r} has no importer; "
                         f"babble import reads: {', '.join(formats())}")
    importer = IMPORTERS[model_type]
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; choose a new output folder")
    weights = src / "model.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in src.glob("*.bin")) + sorted(p.name for p in src.glob("*.safetensors"))
        raise FileNotFoundError(f"{src}: no model.safetensors (found: {', '.join(found) or 'no weights'}); "
                                "babble import reads safetensors weights only, never pickled files")
    arch = get(importer.arch)
    try:
        config = arch.config_class(**importer.config(source_config))
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{src / 'config.json'}: cannot build a {importer.arch} model from it: {err}") from None
    try:
        tensors = load_file(weights)
    except Exception as err:  # noqa: BLE001 (a truncated or foreign file: name it)
        raise ValueError(f"{weights}: not a readable safetensors file ({type(err).__name__}: {err})") from None
    model = arch.model_class(config)
    model.load_state_dict(_convert(tensors, model, importer.names, weights, config.tie_word_embeddings))
    warnings = []
    tokenizer = _tokenizer(src)
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise ValueError(f"{src}: its tokenizer has {len(tokenizer):,} tokens but config.json's vocab_size is "
                         f"{config.vocab_size:,}")
    if tokenizer is None:
        warnings.append(f"{src} holds no tokenizer files ({', '.join(TOKENIZER_FILES)}): {out} can start a "
                        "training run (model.init_from; the run trains its own tokenizer, which must fit the "
                        f"vocabulary of {config.vocab_size:,}), but eval, generate, serve and export need the "
                        "tokenizer the weights were trained with: copy its files into the folder")
    _write(out, model, tokenizer, {
        "source": str(src.resolve()), "model_type": model_type, "format": importer.describe, "arch": importer.arch,
        "weights_sha256": file_sha256(weights), "tokenizer": tokenizer is not None})
    return ImportResult(out, importer, count_parameters(model), tokenizer is not None, warnings)


def _read_config(src: Path) -> dict:
    path = src / "config.json"
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: folder not found")
    if not path.is_file():
        raise FileNotFoundError(f"{src}: no config.json; expected a model folder (config.json, model.safetensors)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def _convert(source: dict[str, torch.Tensor], model, names: NameMap, file: Path, tied: bool) -> dict[str, torch.Tensor]:
    """The source tensors under babblelm's names, every one checked: none unexpected, none missing,
    every shape as the config implies."""
    expected = model.state_dict()
    if tied:
        expected.pop("lm_head.weight")
    converted = {}
    for name, tensor in source.items():
        target = names.babblelm_name(name)
        if tied and target == "lm_head.weight":
            continue  # config.json ties the head to the embeddings, so the embeddings are the head
        if target is None:
            raise ValueError(f"{file}: unexpected tensor {name!r} (shape {list(tensor.shape)}): it has no place in "
                             "the model config.json describes")
        want = names.source_shape(target, tuple(expected[target].shape))
        if tuple(tensor.shape) != want:
            raise ValueError(f"{file}: tensor {name!r} has shape {list(tensor.shape)}; config.json implies {list(want)}")
        converted[target] = tensor.reshape(expected[target].shape).to(expected[target].dtype)
    missing = [names.source_name(key) or key for key in expected if key not in converted]
    if missing:
        raise ValueError(f"{file}: missing tensor {missing[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if tied:
        converted["lm_head.weight"] = converted["model.embed_tokens.weight"]
    return converted


def _tokenizer(src: Path):
    """The source's tokenizer (transformers' AutoTokenizer), or None when it has no tokenizer files."""
    if not any((src / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(src)
    except Exception as err:  # noqa: BLE001 (any failure to read the files: name the folder)
        raise ValueError(f"{src}: its tokenizer files do not load ({type(err).__name__}: {err})") from None


def _write(out: Path, model, tokenizer, record: dict) -> None:
    """The folder as a babblelm checkpoint is written (modeling code included), plus import.json."""
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForCausalLM")
    out.mkdir(parents=True, exist_ok=True)
    with hf_progress_bars_off():
        model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    (out / IMPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
