"""Opening a model folder for eval, generate, serve, export, fine-tuning and `model.init_from`:
checked before it is used, and without running the folder's own code unless asked to.

    model = load_model(folder)                           # AutoModelForCausalLM
    model = load_model(folder, arch.model_class)         # one babblelm architecture

Code: a folder of an architecture babblelm implements (every folder babblelm writes: checkpoints,
exports, `babble import` outputs) or one transformers implements (llama, gpt2, ...) loads with the
installed code; its `auto_map` modules never run. Any other folder's code runs only with
`trust_remote_code` (`--trust-remote-code`), and the error without it says so.

Weights: before loading, the tensors of the weight files (safetensors headers; `.bin` files are read
as tensors only) are compared with the model config.json describes: every weight present (tied
weights count once), none unexpected, each of its shape and of the dtype config.json declares
(float32 when it declares none). After loading, every weight must be finite. config.json must be
valid JSON that its config class accepts, with special token ids inside the vocabulary. Each
problem is a `ModelFolderError`: one line naming the file and the tensor or key.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import NotUsable
from .models.registry import names, register_auto_classes

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PYTORCH, PYTORCH_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


class ModelFolderError(NotUsable, ValueError):
    """A model folder that cannot be used as it is."""


def read_config(folder: str | Path) -> dict:
    """config.json of a model folder, as a JSON object."""
    folder = Path(folder)
    path = folder / "config.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: model folder not found")
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; expected a Hugging Face model folder (config.json, "
                                "weights, tokenizer)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFolderError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    return config


def runs_own_code(folder: Path, config: dict, trust_remote_code: bool) -> bool:
    """Whether loading `folder` must run its own code: never for an architecture babblelm or
    transformers implements; otherwise only when trusted, else a `ModelFolderError` saying so."""
    from transformers import CONFIG_MAPPING

    register_auto_classes()
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in CONFIG_MAPPING:
        return False
    path = folder / "config.json"
    auto_map = config.get("auto_map")
    known = f"neither a babblelm architecture ({', '.join(names())}) nor one transformers implements"
    if not isinstance(auto_map, dict) or not auto_map:
        raise ModelFolderError(f"{path}: model_type {model_type!r} is {known}, and the folder brings no code (auto_map)")
    if not trust_remote_code:
        modules = sorted({str(ref).split(".")[0] + ".py" for ref in auto_map.values()})
        raise ModelFolderError(f"{path}: model_type {model_type!r} is {known}: loading it would run the folder's own "
                               f"code ({', '.join(modules)}); pass --trust-remote-code if you trust where it came from")
    return True


def load_model(folder: str | Path, model_class=None, trust_remote_code: bool = False, **kwargs):
    """The folder's model (`model_class`: default AutoModelForCausalLM, another transformers Auto class such
    as AutoModel, or one babblelm architecture's class), checked as the module says."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    raw = read_config(folder)
    model_class = model_class or AutoModelForCausalLM
    auto = model_class.__module__.startswith("transformers.models.auto")
    remote = runs_own_code(folder, raw, trust_remote_code) if auto else False
    trust = {"trust_remote_code": remote} if auto else {}
    path = folder / "config.json"
    _check_ids(raw, raw.get("vocab_size"), path)  # before transformers reads it (and warns about the same)
    try:
        config = (AutoConfig.from_pretrained(folder, **trust) if auto else model_class.config_class.from_pretrained(folder))
    except Exception as err:  # noqa: BLE001 (a config its class refuses, e.g. heads that do not divide the width)
        raise ModelFolderError(f"{path}: not a usable {raw.get('model_type')} config ({_one_line(err)})") from None
    vocab = getattr(config, "vocab_size", None)
    _check_ids(raw, vocab, path)
    _check_ids(_json(folder / "generation_config.json"), vocab, folder / "generation_config.json")
    _check_weights(folder, _expected(model_class, config, remote, path), _declared_dtype(config))
    with hf_progress_bars_off():
        try:
            model = model_class.from_pretrained(folder, config=config, **trust, **kwargs)
        except Exception as err:  # noqa: BLE001 (whatever the checks above could not foresee: name the folder)
            raise ModelFolderError(f"{folder}: the model does not load ({_one_line(err)})") from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelFolderError(f"{folder}: tensor {name!r} holds {bad:,} NaN or infinite value(s) of "
                                   f"{tensor.numel():,}; the weights are damaged")
    return model


def check_tokenizer(folder: Path, tokenizer, vocab_size: int) -> None:
    """The tokenizer's tokens and special ids must all be rows of the model's embedding."""
    if len(tokenizer) > vocab_size:
        raise ModelFolderError(f"{folder}: the tokenizer has {len(tokenizer):,} tokens but config.json's vocab_size "
                               f"is {vocab_size:,}; the tokenizer and the weights do not belong together")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None and not 0 <= value < vocab_size:
            raise ModelFolderError(f"{folder}: the tokenizer's {key} {value} is outside the vocabulary (vocab_size "
                                   f"{vocab_size:,})")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFolderError(f"{path}: not valid JSON ({err})") from None
    return data if isinstance(data, dict) else {}


def _check_ids(config: dict, vocab_size: int | None, path: Path) -> None:
    """Special token ids (an int or a list of them) inside [0, vocab_size)."""
    if not isinstance(vocab_size, int):
        return
    for key in SPECIAL_IDS:
        value = config.get(key)
        for token in value if isinstance(value, list) else [value]:
            if token is not None and (not isinstance(token, int) or not 0 <= token < vocab_size):
                raise ModelFolderError(f"{path}: {key} {token!r} is outside the vocabulary (vocab_size {vocab_size:,})")


def _declared_dtype(config) -> torch.dtype:
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


@dataclass
class Expected:
    """The weights of the model config.json describes."""

    tensors: dict[str, tuple[tuple, torch.dtype]]  # name -> (shape, dtype)
    groups: list[list[str]]  # names that share one tensor (tied weights): one of each must be stored
    ignored: list[re.Pattern]  # stored names the model class says to pass by
    prefix: str  # the bare model's attribute name (a folder saved from the bare model lacks it)


def _expected(model_class, config, remote: bool, path: Path) -> Expected:
    """The weights of the model `config` describes, built without memory on the meta device."""
    try:
        with torch.device("meta"):
            model = (model_class.from_config(config, trust_remote_code=remote) if hasattr(model_class, "from_config")
                     else model_class(config))
    except Exception as err:  # noqa: BLE001 (a config the model cannot be built from)
        raise ModelFolderError(f"{path}: describes no model that can be built ({_one_line(err)})") from None
    tensors, groups = {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        tensors[name] = (tuple(tensor.shape), tensor.dtype)
        groups.setdefault(id(tensor), []).append(name)
    optional = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_missing", None) or [])]
    needed = [g for g in groups.values() if not all(any(p.search(n) for p in optional) for n in g)]
    ignored = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    return Expected(tensors, needed, ignored, getattr(model, "base_model_prefix", "") or "")


def _stored(folder: Path) -> tuple[dict[str, tuple[tuple, torch.dtype, Path]], str]:
    """{name: (shape, dtype, file)} of every tensor in the folder's weight files, and how they are named."""
    from safetensors import safe_open

    for index_name, single in ((SAFETENSORS_INDEX, SAFETENSORS), (PYTORCH_INDEX, PYTORCH)):
        if (folder / index_name).is_file():
            weight_map = _json(folder / index_name).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ModelFolderError(f"{folder / index_name}: no weight_map")
            files = sorted({folder / str(f) for f in weight_map.values()})
            break
        if (folder / single).is_file():
            files = [folder / single]
            break
    else:
        raise ModelFolderError(f"{folder}: no weights ({SAFETENSORS} or {PYTORCH}, or their sharded index)")
    stored = {}
    for file in files:
        if not file.is_file():
            raise ModelFolderError(f"{file}: missing (named by the folder's weight index)")
        try:
            if file.suffix == ".safetensors":
                with safe_open(str(file), "pt") as handle:
                    for key in handle.keys():
                        part = handle.get_slice(key)
                        dtype = part.get_dtype()
                        stored[key] = (tuple(part.get_shape()), _SAFETENSORS_DTYPES.get(dtype, dtype), file)
            else:
                for key, tensor in _load_bin(file).items():
                    stored[key] = (tuple(tensor.shape), tensor.dtype, file)
        except ModelFolderError:
            raise
        except Exception as err:  # noqa: BLE001 (a truncated or foreign file)
            raise ModelFolderError(f"{file}: not a readable weights file ({_one_line(err)})") from None
    return stored, ", ".join(f.name for f in files)


def _load_bin(file: Path) -> dict:
    """A pickled weights file, as tensors only (weights_only: no code runs); memory-mapped when its format allows."""
    with warnings.catch_warnings():  # torch's notes on pickle protocols: the error below says what matters
        warnings.simplefilter("ignore")
        try:
            try:
                return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
                return torch.load(file, map_location="cpu", weights_only=True)  # the legacy (non-zip) format
        except pickle.UnpicklingError:
            raise ModelFolderError(f"{file}: holds pickled objects other than tensors (code, classes), which babblelm "
                                   "never loads; convert it to safetensors where you trust it") from None


def _check_weights(folder: Path, expected: Expected, declared: torch.dtype) -> None:
    stored, where = _stored(folder)
    prefix, tensors = expected.prefix, expected.tensors
    if prefix and not stored.keys() & tensors.keys():  # one of model and file has a head, the other not
        if any(f"{prefix}.{k}" in tensors for k in stored):  # a bare model's file: transformers adds the prefix
            stored = {f"{prefix}.{k}": v for k, v in stored.items()}
        elif any(k.startswith(f"{prefix}.") and k[len(prefix) + 1:] in tensors for k in stored):
            # the bare model (AutoModel) of a file with a head: transformers takes the body, leaves the head
            stored = {k[len(prefix) + 1:]: v for k, v in stored.items() if k.startswith(f"{prefix}.")}
    config_json = folder / "config.json"
    for name, (shape, dtype, file) in stored.items():
        if name not in tensors:
            if any(p.search(name) for p in expected.ignored):
                continue
            raise ModelFolderError(f"{file}: unexpected tensor {name!r} (shape {list(shape)}): the model {config_json} "
                                   "describes has no such weight; the weights and config.json do not belong together")
        want_shape, want_dtype = tensors[name]
        if shape != want_shape:
            raise ModelFolderError(f"{file}: tensor {name!r} has shape {list(shape)}; the model {config_json} describes "
                                   f"needs {list(want_shape)}")
        want = declared if want_dtype.is_floating_point else want_dtype
        if dtype != want:
            raise ModelFolderError(f"{file}: tensor {name!r} is stored as {str(dtype).replace('torch.', '')}; expected "
                                   f"{str(want).replace('torch.', '')} (the dtype {config_json} declares)")
    for group in expected.groups:
        if not any(name in stored for name in group):
            raise ModelFolderError(f"{folder}: tensor {group[0]!r} (shape {list(tensors[group[0]][0])}) is missing "
                                   f"from {where}; the model {config_json} describes needs it")


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
