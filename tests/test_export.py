"""Export of a trained run: the folder's files and model card, and the folder loaded and generating
in the official BabyLM pipeline's environment (transformers 4.51.3, no babblelm)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from babblelm.config import load_config
from babblelm.export import export_model
from babblelm.train.launch import train
import envs
from conftest import tiny_raw

LOAD_WITHOUT_BABBLELM = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer
folder, text = sys.argv[1], sys.argv[2]
model = AutoModelForCausalLM.from_pretrained(folder).eval()  # a native Llama: no remote code
tok = AutoTokenizer.from_pretrained(folder)
# the official 2025 pipeline's zero-shot loader: AutoProcessor, right padding, character offsets
proc = AutoProcessor.from_pretrained(folder, padding_side="right", trust_remote_code=True)
official = proc(text=text, return_offsets_mapping=True)
enc = tok(text, return_tensors="pt")
with torch.inference_mode():
    logits = model(**enc).logits
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
print("RESULT " + json.dumps({"ids": enc["input_ids"][0].tolist(), "bos": tok.bos_token_id, "keys": sorted(enc.keys()),
                  "logits_sum": float(logits.double().sum()), "generated": out[0].tolist(),
                  "module": type(model).__module__, "official_ids": official["input_ids"],
                  "official_ends": [end for _, end in official["offset_mapping"]],
                  "official_padding": getattr(proc, "tokenizer", proc).padding_side}))
"""


@pytest.fixture(scope="module")
def trained_run(small_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("export") / "run"
    train(load_config(raw=tiny_raw(small_corpus, run, train={"epochs": 0.3})), progress=False)
    return run


def test_export_round_trip_without_babblelm(trained_run, tmp_path):
    out = export_model(trained_run, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llama" and "auto_map" not in cfg
    assert (out / "model.safetensors").exists() and (out / "generation_config.json").exists()
    assert (out / "tokenizer.json").exists()
    # a tokenizer class that transformers 4.x (the official pipeline's) also knows
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    card = (out / "README.md").read_text()
    for section in ("## Model details", "## How to use", "## Training", "## Data", "## Intermediate checkpoints"):
        assert section in card

    text = "the dog is here ."
    (tmp_path / "load.py").write_text(LOAD_WITHOUT_BABBLELM)
    proc = envs.run("official", ["python", tmp_path / "load.py", out, text], cwd=tmp_path)
    got = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert got["module"] == "transformers.models.llama.modeling_llama"
    assert got["ids"][0] == got["bos"] and got["keys"] == ["attention_mask", "input_ids"]
    assert got["official_ids"] == got["ids"] and got["official_padding"] == "right"
    assert got["official_ends"][0] == 0 and got["official_ends"][-1] == len(text)  # BOS has no characters
    assert len(got["generated"]) == len(got["ids"]) + 8 or got["generated"][-1] == cfg["eos_token_id"]

    from babblelm.eval.load import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(trained_run / "checkpoints" / "final", device="cpu")
    with torch.inference_mode():
        ref = model(**tok(text, return_tensors="pt")).logits.double().sum().item()
    assert got["logits_sum"] == pytest.approx(ref, rel=1e-5, abs=1e-3)


def test_export_named_checkpoint_and_errors(trained_run, tmp_path):
    name = sorted(p.name for p in (trained_run / "checkpoints").glob("chck_*"))[0]
    out = export_model(trained_run, tmp_path / "hf", checkpoint=name)
    assert (out / "model.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint 'chck_999M'; available: .*final"):
        export_model(trained_run, tmp_path / "x", checkpoint="chck_999M")
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        export_model(tmp_path, tmp_path / "y")


def test_remote_code_export_of_the_transformer_equals_the_native_one(trained_run, tmp_path):
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    native = export_model(trained_run, tmp_path / "native")
    remote = export_model(trained_run, tmp_path / "remote", remote_code=True)
    cfg = json.loads((remote / "config.json").read_text())
    assert cfg["model_type"] == "babble_transformer"
    assert set(cfg["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
    assert {"transformer.py", "layers.py"} <= {p.name for p in remote.glob("*.py")}
    assert 'AutoTokenizer.from_pretrained("REPO", trust_remote_code=True)' in (remote / "README.md").read_text()
    assert "trust_remote_code" not in (native / "README.md").read_text()
    code = f"from babblelm.eval.load import load_tokenizer; load_tokenizer({str(remote)!r})"  # a fresh process
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "[y/N]" not in said and "to instantiate a model of type" not in said, said
    enc = AutoTokenizer.from_pretrained(native)("the dog is here .", return_tensors="pt")
    with torch.inference_mode():
        a = AutoModelForCausalLM.from_pretrained(native)(**enc).logits
        b = AutoModelForCausalLM.from_pretrained(remote, trust_remote_code=True)(**enc).logits
        hidden = AutoModel.from_pretrained(remote, trust_remote_code=True)(**enc).last_hidden_state
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert hidden.shape == (*enc["input_ids"].shape, cfg["hidden_size"])


LOGITS_WITHOUT_BABBLELM = r"""
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
folder, inputs, out = sys.argv[1:]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
with torch.inference_mode():
    save_file({"logits": model(load_file(inputs)["input_ids"]).logits.contiguous()}, out)
print("module", type(model).__module__)
"""


def test_an_imported_reference_model_exports_with_the_reference_logits(tmp_path):
    """`babble import` of the reference's own folder, exported, gives the reference's logits in the
    official pipeline's environment (transformers 4.51.3, no babblelm); its card says where it came from."""
    from safetensors.torch import load_file

    from babblelm.importers import import_model

    reference = Path(__file__).resolve().parent / "data" / "induction_reference"
    imported = import_model(reference, tmp_path / "imported").out
    out = export_model(imported, tmp_path / "hf")
    assert "converted by `babble import` from Conv-Routed Induction LM reference" in (out / "README.md").read_text()
    (tmp_path / "logits.py").write_text(LOGITS_WITHOUT_BABBLELM)
    proc = envs.run("official", ["python", tmp_path / "logits.py", out, reference / "expected.safetensors",
                                 tmp_path / "logits.safetensors"], cwd=tmp_path)
    assert "module transformers_modules." in proc.stdout
    torch.testing.assert_close(load_file(tmp_path / "logits.safetensors")["logits"],
                               load_file(reference / "expected.safetensors")["logits"], atol=1e-5, rtol=0)
