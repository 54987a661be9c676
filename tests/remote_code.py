"""Shared check for exported folders: they load with `trust_remote_code=True` in a Python process
where babblelm cannot be imported (only torch + transformers, as on a user's machine)."""

import json
import os
import subprocess
import sys

import torch

BLOCK_BABBLELM = r"""
import importlib.abc, json, sys
class _BlockBabblelm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "babblelm" or name.startswith("babblelm."):
            raise ImportError("babblelm is blocked in this process")
sys.meta_path.insert(0, _BlockBabblelm())
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/src")]
try:
    import babblelm
    raise SystemExit("babblelm should not be importable here")
except ImportError:
    pass
"""

LOGITS_BODY = r"""
import torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
ids = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save(model(ids, attention_mask=torch.ones_like(ids), token_type_ids=ids).logits, sys.argv[3])
tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
print("RESULT " + json.dumps({"module": type(model).__module__, "tied": tied}))
"""


def run_without_babblelm(body: str, args, tmp_path) -> dict:
    """Run `body` (argv = `args`) after blocking babblelm; it prints `RESULT <json>`, which is returned."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run([sys.executable, "-c", BLOCK_BABBLELM + body, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def assert_loads_without_babblelm(model, ids, tmp_path, monkeypatch, files) -> None:
    """save_pretrained with auto_map, load in a blocked process, compare logits and weight tying."""
    config_cls, model_cls = type(model.config), type(model)
    for cls in (config_cls, model_cls):  # undo the registration afterwards
        monkeypatch.setattr(cls, "_auto_class", cls._auto_class)
    config_cls.register_for_auto_class()
    model_cls.register_for_auto_class("AutoModelForCausalLM")
    model.save_pretrained(tmp_path / "hf")
    assert set(files) <= {p.name for p in (tmp_path / "hf").iterdir()}
    torch.save(ids, tmp_path / "ids.pt")
    got = run_without_babblelm(LOGITS_BODY, [tmp_path / "hf", tmp_path / "ids.pt", tmp_path / "logits.pt"], tmp_path)
    assert got["module"].startswith("transformers_modules"), got["module"]
    assert got["tied"] == (model.get_output_embeddings().weight is model.get_input_embeddings().weight)
    with torch.no_grad():
        expected = model(ids).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, atol=1e-6, rtol=0)
