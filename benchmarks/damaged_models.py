"""Damage exported model folders in every way below and load each the way `babble eval`/`generate` do; time the checks.

Each kind of damage must give one line naming the file (and the tensor or key), exit 1, and nothing
loaded; the intact folder must load. tests/test_model_folders.py runs `DAMAGE` on a tiny export; this
script runs `DAMAGE` and `MORE` on an export of `--width` x `--layers` (default: llama-26m's shape) and
reports how long the checks add to loading it (`modelfolder.load_model` against transformers'
`from_pretrained` alone, best of `--repeat`).

    python benchmarks/damaged_models.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _tensors(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def _put(folder: Path, tensors: dict) -> None:
    save_file(tensors, folder / "model.safetensors")


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _set(folder: Path, **changes) -> None:
    (folder / "config.json").write_text(json.dumps({**_config(folder), **changes}))


def _first(tensors: dict, suffix: str) -> str:
    return next(k for k in sorted(tensors) if k.endswith(suffix))


def damage(folder: Path, kind: str, big_tokenizer: Path) -> str:
    """Damage the export `folder` (a native Llama one) in place; the text its error must name."""
    weights, cfg, tensors = folder / "model.safetensors", _config(folder), _tensors(folder)
    if kind == "renamed weights":
        _put(folder, {k.replace("model.", "transformer."): v for k, v in tensors.items()})
        return "unexpected tensor 'transformer."
    if kind == "one more layer in config.json":
        _set(folder, num_hidden_layers=cfg["num_hidden_layers"] + 1)
        return f"tensor 'model.layers.{cfg['num_hidden_layers']}."
    if kind == "NaN weights":
        _put(folder, {k: torch.full_like(v, float("nan")) for k, v in tensors.items()})
        return "NaN or infinite"
    if kind == "int8 weights":
        _put(folder, {k: v.to(torch.int8) for k, v in tensors.items()})
        return "is stored as int8; expected float32"
    if kind == "bad config.json":
        (folder / "config.json").write_text((folder / "config.json").read_text()[:40])
        return f"{folder / 'config.json'}: not valid JSON"
    if kind == "broken tokenizer.json":
        (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "nope"}}')
        return "its tokenizer files do not load"
    if kind == "eos id beyond the vocabulary":
        _set(folder, eos_token_id=cfg["vocab_size"] + 5)
        return f"eos_token_id {cfg['vocab_size'] + 5} is outside the vocabulary"
    if kind == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:5000])
        return f"{weights}: not a readable weights file"
    if kind == "missing weights":
        weights.unlink()
        return "no weights"
    if kind == "vocabulary mismatch":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(big_tokenizer / name, folder / name)
        return "the tokenizer has"
    if kind == "heads do not divide the width":
        _set(folder, num_attention_heads=3)
        return str(folder / "config.json")  # refused by LlamaConfig, or by the weights' shapes (transformers 4.x)
    # MORE: held out of the test suite
    if kind == "an extra tensor":
        _put(folder, {**tensors, "model.extra.weight": torch.zeros(3)})
        return "unexpected tensor 'model.extra.weight'"
    if kind == "one tensor of another shape":
        _put(folder, {**tensors, "model.norm.weight": torch.ones(cfg["hidden_size"] + 1)})
        return "tensor 'model.norm.weight' has shape"
    if kind == "bfloat16 weights, config.json says float32":
        _put(folder, {k: v.bfloat16() for k, v in tensors.items()})
        return "is stored as bfloat16; expected float32"
    if kind == "one infinite value":
        norm = tensors["model.norm.weight"].clone()
        norm[0] = float("inf")
        _put(folder, {**tensors, "model.norm.weight": norm})
        return "tensor 'model.norm.weight' holds 1 NaN or infinite value(s)"
    if kind == "a shard the index names is missing":
        weights.unlink()
        keys = sorted(tensors)
        save_file({k: tensors[k] for k in keys[: len(keys) // 2]}, folder / "model-00001-of-00002.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {
            k: f"model-0000{1 + (i >= len(keys) // 2)}-of-00002.safetensors" for i, k in enumerate(keys)}}))
        return "model-00002-of-00002.safetensors: missing"
    if kind == "config.json is a list":
        (folder / "config.json").write_text("[1, 2]")
        return "config.json: expected a JSON object"
    if kind == "generation_config.json eos beyond the vocabulary":
        (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, cfg["vocab_size"] + 1]}))
        return "generation_config.json: eos_token_id"
    if kind == "an empty weights file":
        weights.write_bytes(b"")
        return f"{weights}: not a readable weights file"
    if kind == "pickled weights that run code":
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned > /dev/null'\ntR.")
        return "pytorch_model.bin: holds pickled objects other than tensors"
    if kind == "tokenizer_config.json not JSON":
        (folder / "tokenizer_config.json").write_text("{nope")
        return "its tokenizer files do not load"
    if kind == "a negative bos id":
        _set(folder, bos_token_id=-3)
        return "bos_token_id -3 is outside the vocabulary"
    if kind == "config.json's vocab_size smaller than the weights":
        _set(folder, vocab_size=cfg["vocab_size"] // 2)
        return "has shape"
    raise ValueError(f"unknown damage {kind!r}")


DAMAGE = ["renamed weights", "one more layer in config.json", "NaN weights", "int8 weights", "bad config.json",
          "broken tokenizer.json", "eos id beyond the vocabulary", "truncated weights", "missing weights",
          "vocabulary mismatch", "heads do not divide the width"]
MORE = ["an extra tensor", "one tensor of another shape", "bfloat16 weights, config.json says float32",
        "one infinite value", "a shard the index names is missing", "config.json is a list",
        "generation_config.json eos beyond the vocabulary", "an empty weights file", "pickled weights that run code",
        "tokenizer_config.json not JSON", "a negative bos id", "config.json's vocab_size smaller than the weights"]


def export(work: Path, width: int, layers: int, vocab: int) -> tuple[Path, Path]:
    """A random babblelm Transformer of that shape exported as native Llama, and a larger tokenizer."""
    from transformers import AutoTokenizer

    from babblelm.data.tokenizer import train_tokenizer
    from babblelm.export import export_model
    from babblelm.models.registry import get

    lines = [f"w{i} w{i + 1} w{i * 7 % 97} ." for i in range(vocab * 3)]
    train_tokenizer(lines, vocab_size=vocab, min_frequency=1, out_dir=work / "tok")
    train_tokenizer(lines + [f"x{i} y{i}" for i in range(vocab)], vocab_size=vocab * 2, min_frequency=1,
                    out_dir=work / "big")
    tok = AutoTokenizer.from_pretrained(work / "tok")
    arch = get("transformer")
    config = arch.tiny_config(len(tok), hidden_size=width, num_hidden_layers=layers, num_attention_heads=width // 64,
                              num_key_value_heads=width // 64, intermediate_size=4 * width, max_position_embeddings=256,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    arch.config_class.register_for_auto_class()
    arch.model_class.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(0)
    arch.model_class(config).save_pretrained(work / "ckpt")
    tok.save_pretrained(work / "ckpt")
    return export_model(work / "ckpt", work / "llama", log=lambda _: None), work / "big"


def try_damage(folder: Path, kinds: list[str], big: Path, work: Path) -> list[tuple[str, int, str, bool]]:
    """(kind, exit status, stderr, whether the error is one line naming what it must) for each kind."""
    from babblelm.cli import main

    rows = []
    for kind in kinds:
        copy = shutil.copytree(folder, work / kind.replace(" ", "_").replace("'", ""))
        named = damage(copy, kind, big)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["generate", str(copy), "the", "--max-new-tokens", "2", "--device", "cpu"])
        text = err.getvalue()
        rows.append((kind, code, text.strip(), code == 1 and text.count("\n") == 1 and named in text))
        shutil.rmtree(copy)
    return rows


def load_times(folder: Path, repeat: int) -> tuple[float, float]:
    """(seconds to load with babblelm's checks, seconds with transformers' from_pretrained alone), best of `repeat`."""
    from transformers import AutoModelForCausalLM

    from babblelm.modelfolder import load_model
    from babblelm.modelfolder import hf_progress_bars_off

    def best(load) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            load()
            times.append(time.perf_counter() - start)
        return min(times)

    with hf_progress_bars_off():
        return best(lambda: load_model(folder)), best(lambda: AutoModelForCausalLM.from_pretrained(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="damaged-models-"))
    folder, big = export(work, args.width, args.layers, args.vocab)
    checked, plain = load_times(folder, args.repeat)
    size = (folder / "model.safetensors").stat().st_size / 2**20
    print(f"load of a {size:.0f} MiB export: {checked:.2f} s with the checks, {plain:.2f} s with from_pretrained alone\n")
    print("| damage | exit | one line naming it | error |\n|---|---|---|---|")
    rows = try_damage(folder, DAMAGE + MORE, big, work)
    for kind, code, text, ok in rows:
        print(f"| {kind}{' (held out)' if kind in MORE else ''} | {code} | {'yes' if ok else 'NO'} | "
              f"{text.replace(str(work), '…')[:160]} |")
    print(f"\n{sum(ok for *_, ok in rows)} of {len(rows)} kinds refused on one line naming the file and tensor or key")
    shutil.rmtree(work)
    if not all(ok for *_, ok in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
