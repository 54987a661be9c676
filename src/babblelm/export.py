"""Export a trained checkpoint as a self-contained Hugging Face folder with a model card.

The folder loads on every transformers from the official BabyLM pipeline's pin (4.51.3) to the
newest, with only torch and transformers installed:

- the Transformer is written as a native `LlamaForCausalLM` and GPT-2 as a native `GPT2LMHeadModel`
  (no remote code; see models/native.py), unless `remote_code=True` or the mapping fails its logits
  check, which is then said;
- every other architecture carries its modeling code (the module, `layers.py`, BLaLM's `mlstm.py`)
  with an `auto_map` for `AutoConfig`, `AutoModel` (the bare decoder: `last_hidden_state`, as the
  official GLUE fine-tuning reads it) and `AutoModelForCausalLM`.

The tokenizer files are the fast tokenizer (`tokenizer.json`) with a `tokenizer_config.json` that
transformers 4.x and 5.x read alike: `PreTrainedTokenizerFast`, right padding, a pad token, and
only `input_ids` and `attention_mask` as model inputs.

The checkpoint is checked as it is loaded (modelfolder.py). The folder is written whole: into a
temporary sibling, moved into place when complete, under a lock on the target (folders.py), so a
failed or interrupted export leaves nothing at the target and a second export there is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .card import model_card
from .folders import check_new_folder, folder_lock, recover, written_whole
from .modelfolder import check_tokenizer, hf_progress_bars_off, load_model, read_config
from .models.native import NATIVE, as_native
from .models.registry import arch_for_folder, register_auto_classes
from .rundir import HYPERPARAMETERS, RunDir, resolve_checkpoint
from .train.checkpoints import hyperparameters

MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def export_model(path: str | Path, out_dir: str | Path, checkpoint: str | None = None, remote_code: bool = False,
                 log=print, replace: bool = False) -> Path:
    """Write the exported folder for a run's checkpoint (default `final`) or a checkpoint folder into
    `out_dir`, which must not exist or be empty, unless `replace` (then the folder there is replaced
    once the new export is complete)."""
    src = resolve_checkpoint(path, checkpoint)
    out = check_new_folder(out_dir, "export", empty=not replace)
    with folder_lock(out, "export target", beside=True):
        check_new_folder(out, "export", empty=not replace)
        recover(out.parent, out.name)
        with written_whole(out, replace=replace) as tmp:
            write_export(src, tmp, remote_code, log)
    return out


def write_export(src: Path, out: Path, remote_code: bool = False, log=print) -> None:
    """The exported files of the checkpoint folder `src`, written into the existing folder `out`."""
    from transformers import GenerationConfig

    from .eval.load import load_tokenizer

    read_config(src)  # valid JSON, named otherwise
    arch = arch_for_folder(src)
    register_auto_classes()  # the tokenizer loader reads config.json; resolve it to our class, no prompt
    model = load_model(src, arch.model_class).eval()
    tokenizer = load_tokenizer(src)  # names the folder when it has no tokenizer (a `babble import` without one)
    check_tokenizer(src, tokenizer, model.config.vocab_size)
    generation = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
    mapping = NATIVE.get(arch.name)
    native, why = (None, "remote code requested") if remote_code or mapping is None else as_native(arch.name, model)
    if native is not None:
        _save_weights(native, out, generation)
        (out / "config.json").write_text(json.dumps(mapping.config(model.config), indent=2), encoding="utf-8")
    else:
        if mapping is not None and not remote_code:
            log(f"exporting as babblelm remote code, not as {mapping.class_name}: {why}")
        _save_weights(model, out, generation)
        _write_auto_map(out / "config.json", model)
    _save_tokenizer(tokenizer, out)
    _write_hyperparameters(src, out / HYPERPARAMETERS)
    (out / "README.md").write_text(model_card(src, model, arch.name, native=mapping.class_name if native is not None else None), encoding="utf-8")
    if (run := RunDir.of(src)) is not None and run.mixing_plot.exists():
        (out / run.mixing_plot.name).write_bytes(run.mixing_plot.read_bytes())


def _save_weights(model, out: Path, generation) -> None:
    """safetensors weights + config.json (+ the modeling files of a registered remote-code class)."""
    model.generation_config = generation
    if type(model).__module__.startswith("babblelm."):
        type(model.config).register_for_auto_class()
        type(model).register_for_auto_class("AutoModelForCausalLM")
    with hf_progress_bars_off():
        model.save_pretrained(out, safe_serialization=True)


def _write_auto_map(path: Path, model) -> None:
    """Name the config, the bare decoder (`AutoModel`) and the causal LM in config.json's auto_map."""
    module = type(model).__module__.rsplit(".", 1)[-1]
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["auto_map"] = {
        "AutoConfig": f"{module}.{type(model.config).__name__}",
        "AutoModel": f"{module}.{type(model).decoder_class.__name__}",
        "AutoModelForCausalLM": f"{module}.{type(model).__name__}",
    }
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def _save_tokenizer(tokenizer, out: Path) -> None:
    """tokenizer.json plus a tokenizer_config.json that transformers 4.x and 5.x both read."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(out)
    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", padding_side="right", model_input_names=MODEL_INPUT_NAMES,
               bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token, pad_token=tokenizer.pad_token)
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def _write_hyperparameters(src: Path, path: Path) -> None:
    """The checkpoint's hyperparameters.json, else the one derived from its run's config.yaml."""
    if (src / HYPERPARAMETERS).exists():
        path.write_text((src / HYPERPARAMETERS).read_text(encoding="utf-8"), encoding="utf-8")
    elif (run := RunDir.of(src)) is not None:
        cfg = yaml.safe_load(run.config.read_text(encoding="utf-8"))
        path.write_text(json.dumps(hyperparameters(cfg), indent=2), encoding="utf-8")
