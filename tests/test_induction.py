"""The Conv-Routed Induction LM: occurrence index vs brute force, linear memory (a 16k-token
forward), config checks; the reference implementation's outputs reproduced through `babble import`
(tests/data/induction_reference), training from an imported model (`model.init_from`), and the
reference's parameter counts of the presets. The checks every architecture passes are in
tests/contract.py."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils._python_dispatch import TorchDispatchMode

from babblelm.cli import main as cli_main
from babblelm.config import load_config
from babblelm.configbase import ConfigError
from babblelm.eval.load import load_model_and_tokenizer
from babblelm.export import export_model
from babblelm.importers import import_model
from babblelm.models.induction import BabbleInductionConfig, BabbleInductionForCausalLM, previous_occurrences
from babblelm.models.layers import CACHE_ARG
from babblelm.train.launch import train
from conftest import tiny_raw
from contract import padded_batch
from contract import random_ids as any_ids

VOCAB = 23  # small, so tokens repeat often and the induction mixer has candidates


def tiny_config(**overrides) -> BabbleInductionConfig:
    shape = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 induction_memory=3, conv_groups=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1)
    return BabbleInductionConfig(**{**shape, **overrides})


def tiny_model(seed: int = 0, **overrides) -> BabbleInductionForCausalLM:
    torch.manual_seed(seed)
    model = BabbleInductionForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():  # large sinks, so abstaining and copying both matter
        for layer in model.model.layers:
            layer.induction.sink_key.normal_()
            layer.induction.sink_value.normal_()
    return model


def random_ids(*shape, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    return any_ids(*shape, seed=seed, vocab=vocab)


def brute_force_occurrences(ids, mask, memory):
    out = torch.full((*ids.shape, memory), -1, dtype=torch.long)
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if mask[b, t]:
                earlier = [p for p in range(t - 1, -1, -1) if mask[b, p] and ids[b, p] == ids[b, t]][:memory]
                out[b, t, : len(earlier)] = torch.tensor(earlier, dtype=torch.long)
    return out


@pytest.mark.parametrize("side", ["left", "right"])
def test_occurrence_index_matches_brute_force(side):
    for trial in range(5):
        lengths = torch.randint(1, 40, (4,), generator=torch.Generator().manual_seed(trial)).tolist()
        seqs = [random_ids(n, seed=100 * trial + n, vocab=6) for n in lengths]
        ids, mask = padded_batch(seqs, side, pad=3)  # the pad id is also a real token id
        keys = torch.where(mask.bool(), ids, -1)
        for memory in (1, 4):
            got = previous_occurrences(keys, memory)[0]
            assert torch.equal(got, brute_force_occurrences(ids, mask, memory)), (trial, memory)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@torch.no_grad()
def test_memory_grows_linearly_a_16k_token_forward_runs_on_cpu():
    model = tiny_model(max_position_embeddings=16384, vocab_size=97)
    largest = {}
    for seq in (4096, 16384):
        ids = random_ids(1, seq, vocab=97)
        with LargestTensor() as probe:
            logits = model(ids, use_cache=False).logits
        assert torch.isfinite(logits).all()
        largest[seq] = probe.largest
    assert largest[16384] < 16384 * 16384 / 64  # nothing close to a T x T matrix
    assert largest[16384] == pytest.approx(4 * largest[4096], rel=0.01)  # 4x the tokens, 4x the biggest tensor


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=30), "divisible by num_attention_heads"),
    (dict(conv_groups=5), "divisible by conv_groups"),
    (dict(conv_dilations=[1, 0]), "conv_dilations must be"),
    (dict(induction_memory=0), "induction_memory must be >= 1"),
])
def test_config_rejects_bad_shapes(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**bad)


def test_initialisation_is_the_reference_s():
    """Normal(0, 0.02) for every linear layer and embedding (no depth scaling), zero biases and position
    table, sinks Normal(0, 0.02), norms at 1 (the final LayerNorm's bias at 0)."""
    torch.manual_seed(0)
    model = BabbleInductionForCausalLM(tiny_config(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                                   conv_groups=8, vocab_size=500))
    for name, p in model.named_parameters():
        if name == "model.embed_positions.weight" or name.endswith("bias") and "norm" not in name:
            assert not p.any(), name
        elif "norm" in name:
            assert torch.equal(p, torch.ones_like(p) if name.endswith("weight") else torch.zeros_like(p)), name
        else:
            assert p.std().item() == pytest.approx(0.02, rel=0.15) and abs(p.mean().item()) < 0.005, name
    assert isinstance(model.model.norm, torch.nn.LayerNorm) and model.lm_head.weight is model.model.embed_tokens.weight


# --- the reference implementation's numbers (tests/data/induction_reference/README.md) ---

REFERENCE = Path(__file__).resolve().parent / "data" / "induction_reference"


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """The reference-format folder converted by `babble import`'s library call."""
    return import_model(REFERENCE, tmp_path_factory.mktemp("imported") / "model").out


def expected() -> dict:
    return load_file(REFERENCE / "expected.safetensors")


def test_import_gives_the_reference_outputs(imported):
    model, tokenizer = load_model_and_tokenizer(imported, device="cpu")
    ref = expected()
    ids = ref["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids, use_cache=False).logits, ref["logits"], atol=1e-5, rtol=0)
    model.train()
    loss = model(ids, labels=ids).loss
    loss.backward()
    grads = [p.grad for p in {id(p): p for p in model.parameters()}.values() if p.grad is not None]
    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert loss.item() == pytest.approx(ref["loss"].item(), abs=1e-5)
    assert grad_norm.item() == pytest.approx(ref["grad_norm"].item(), rel=1e-5)
    assert len(tokenizer) == model.config.vocab_size == 320 and tokenizer.bos_token == "<s>"
    assert json.loads((imported / "import.json").read_text())["model_type"] == "induction_lm"


@torch.no_grad()
def test_cached_decoding_and_padding_keep_the_reference_outputs(imported):
    """Token by token through the cache (each conv stage carries its running state), and left-padded
    in a batch, the imported model still gives the reference's logits."""
    model, _ = load_model_and_tokenizer(imported, device="cpu")
    ref = expected()
    ids, logits = ref["input_ids"], ref["logits"]
    out = model(ids[:, :1], use_cache=True)
    pieces, cache = [out.logits], out.get(CACHE_ARG)
    for t in range(1, ids.shape[1]):
        out = model(ids[:, t : t + 1], use_cache=True, **{CACHE_ARG: cache})
        pieces.append(out.logits)
    torch.testing.assert_close(torch.cat(pieces, 1), logits, atol=1e-5, rtol=0)
    rows = [ids[0:1, :25], ids[1:2], ids[2:3, :33]]
    batch, mask = padded_batch(rows, "left")
    padded = model(batch, attention_mask=mask, use_cache=False).logits
    for row, seq in enumerate(rows):
        torch.testing.assert_close(padded[row, -seq.shape[1]:], logits[row, : seq.shape[1]], atol=1e-5, rtol=0)


def reference_copy(tmp_path: Path, drop_tokenizer: bool = False) -> Path:
    folder = tmp_path / "reference"
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("expected.*", "README.md"))
    if drop_tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink()
    return folder


def edit_tensors(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


@pytest.mark.parametrize("change, message", [
    (lambda f: edit_tensors(f, lambda t: t.pop("model.layers.1.mixer.sink_v")),
     r"missing tensor 'model.layers.1.mixer.sink_v'"),
    (lambda f: edit_tensors(f, lambda t: t.update({"model.pos": t["model.pos"][:, :32]})),
     r"tensor 'model.pos' has shape \[1, 32, 32\]; config.json implies \[1, 64, 32\]"),
    (lambda f: edit_tensors(f, lambda t: t.update({"model.layers.0.conv.extra.weight": torch.zeros(2)})),
     r"unexpected tensor 'model.layers.0.conv.extra.weight' \(shape \[2\]\)"),
    (lambda f: (f / "config.json").write_text(json.dumps({**json.loads((f / "config.json").read_text()),
                                                          "model_type": "gpt_neo"})),
     r"model_type 'gpt_neo' has no importer; babble import reads: induction_lm"),
    (lambda f: (f / "config.json").write_text(json.dumps({**json.loads((f / "config.json").read_text()),
                                                          "dyn_groups": 5})),
     r"config.json: cannot build a induction model from it: hidden_size \(32\) must be divisible by conv_groups"),
    (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"),
     r"no model.safetensors \(found: pytorch_model.bin\); babble import reads safetensors weights only"),
])
def test_import_refuses_what_cannot_be_mapped(tmp_path, change, message):
    folder = reference_copy(tmp_path)
    change(folder)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        import_model(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_without_tokenizer_warns_and_refuses_a_used_folder(tmp_path):
    result = import_model(reference_copy(tmp_path, drop_tokenizer=True), tmp_path / "out")
    assert not result.tokenizer and "holds no tokenizer files" in result.warnings[0]
    assert not (tmp_path / "out" / "tokenizer.json").exists()
    with pytest.raises(FileNotFoundError, match="out: no tokenizer files"):
        export_model(tmp_path / "out", tmp_path / "hf")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        import_model(REFERENCE, tmp_path / "out")


def test_training_starts_from_an_imported_model(imported, small_corpus, tmp_path, capsys):
    """model.init_from: the run encodes its text with the folder's tokenizer, starts from its weights
    with a fresh optimizer (and says so), records where it started, and trains."""
    raw = tiny_raw(small_corpus, tmp_path / "run", train={"epochs": 0.1, "dev_every": 0})
    raw["model"] = {"init_from": str(imported)}
    raw["tokenizer"] = {"vocab_size": 8000}  # unused: the folder's tokenizer encodes the text
    cfg = load_config(raw=raw)
    result = train(cfg, progress=False)
    assert f"weights from {imported} (model.init_from); the optimizer and the learning-rate schedule start fresh" \
        in capsys.readouterr().out
    state = json.loads((result.final_dir / "trainer_state.json").read_text())
    assert state["init_from"] == str(imported) and result.steps >= 5
    recorded = json.loads((result.final_dir / "hyperparameters.json").read_text())["model"]
    assert recorded["init_from"] == str(imported) and (recorded["arch"], recorded["hidden_size"]) == ("induction", 32)
    manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    assert manifest["vocab_size"] == 320 and manifest["specials"] == {"<s>": 2, "</s>": 3, "<pad>": 0}
    before, after = load_file(imported / "model.safetensors"), load_file(result.final_dir / "model.safetensors")
    name = "model.layers.0.conv.out_proj.weight"
    assert before.keys() == after.keys() and not torch.equal(before[name], after[name])
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert all(math.isfinite(x) for x in losses)
    card = export_model(tmp_path / "run", tmp_path / "hf").joinpath("README.md").read_text()
    assert f"trained starting from the weights of `{imported}`" in card


def test_init_from_takes_the_shape_from_the_folder(imported, small_corpus, tmp_path):
    raw = tiny_raw(small_corpus, tmp_path / "run")
    raw["model"] = {"init_from": str(imported), "arch": "induction"}
    assert load_config(raw=raw).model_args.hidden_size == 32
    raw["model"] = {"init_from": str(imported), "hidden_size": 64, "arch": "transformer"}
    with pytest.raises(ConfigError) as err:
        load_config(raw=raw)
    assert "model.hidden_size: set by model.init_from" in str(err.value)
    assert f"model.arch: {imported} holds a 'induction' model, not 'transformer'" in str(err.value)
    raw["model"] = {"init_from": str(REFERENCE)}
    with pytest.raises(ConfigError, match="model_type 'induction_lm' is not a babblelm architecture.*babble import"):
        load_config(raw=raw)


@pytest.mark.parametrize("preset, count", [("conv-induction-strict-small", 12_288_816), ("conv-induction-3.9m", 3_932_784)])
def test_babble_info_gives_the_reference_parameter_counts(preset, count, capsys):
    assert cli_main(["info", f"configs/{preset}.yaml"]) == 0
    assert f"induction: {count:,} parameters (vocab 8,000)" in capsys.readouterr().out
